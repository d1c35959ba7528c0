// QLoRA through trainCausalLm on a tiny LLaMA (hidden 32: every projection's input axis holds whole 4-bit blocks):
// the loss falls, the export is the float32 dequantized base with the adapter merged, and it scores as trained.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { Rng } from '../engine/prng.ts';
import { loadModel } from '../onnx/proto.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { evaluateCausalLm, trainCausalLm } from './causal-lm.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-qlora-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

function table(path: string, n: number, seed: number): string {
  const rng = new Rng(seed);
  const prompts: string[] = [],
    responses: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = Array.from({ length: 3 }, () => 'abcdefgh'[rng.int(8)]).join('');
    prompts.push(`repeat: ${w}`);
    responses.push(w);
  }
  const wr = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: prompts, response: responses });
  wr.close();
  return path;
}

test('qlora: response-token loss falls; the export is float32 (dequantized base + merged adapter) and scores better than the base', async () => {
  const modelDir = tinyLlamaDir(join(root, 'model'), 5, { hidden: 32, heads: 4, kvHeads: 2, layers: 2 });
  const train = table(join(root, 'train.arrow'), 64, 1);
  const heldOut = table(join(root, 'test.arrow'), 16, 2);
  const template = { prompt: '{prompt}\n', addEos: true };
  const outDir = join(root, 'out');
  const before = await evaluateCausalLm({ model: modelDir, table: heldOut, template, maxLength: 32, threads: 2 });
  const r = await trainCausalLm({
    modelDir,
    train,
    template,
    method: 'qlora',
    lora: { r: 4, alpha: 8 },
    lr: 3e-2,
    epochs: 4,
    batchSize: 16,
    schedule: 'constant',
    weightDecay: 0,
    clipNorm: 1,
    seed: 3,
    maxLength: 32,
    device: 'cpu',
    threads: 2,
    checkpointDir: join(root, 'ck'),
    checkpointEvery: 0,
    outDir,
  });
  const mean = (a: { loss: number }[]) => a.reduce((s, h) => s + h.loss, 0) / a.length;
  assert.ok(mean(r.history.slice(-3)) < mean(r.history.slice(0, 3)) - 0.3, `loss ${r.history.map((h) => h.loss.toFixed(3))}`);
  const manifest = JSON.parse(readFileSync(join(outDir, 'tempered-model.json'), 'utf8'));
  assert.equal(manifest.method, 'qlora');
  assert.ok(existsSync(join(outDir, 'adapter', 'adapter_model.safetensors')));
  const exported = loadModel(join(outDir, 'model.onnx'));
  const inits = [...exported.graph.initializers.values()];
  assert.ok(!inits.some((t) => t.name.includes('.q4')) && !exported.graph.nodes.some((n) => n.opType === 'DequantizeLinear'));
  assert.equal(exported.graph.initializers.get('model.layers.0.mlp.down_proj.weight')?.dtype, 'float32');
  const after = await evaluateCausalLm({ model: outDir, table: heldOut, threads: 2 });
  assert.ok(after.perplexity < before.perplexity * 0.8, `perplexity ${before.perplexity} → ${after.perplexity}`);
});

test('qlora on a model whose projections do not split into 4-bit blocks is an input error naming the weight', async () => {
  const modelDir = tinyLlamaDir(join(root, 'small'), 5, { hidden: 16, layers: 1 });
  await assert.rejects(
    trainCausalLm({
      modelDir,
      train: table(join(root, 'small.arrow'), 8, 1),
      template: { prompt: '{prompt}\n', addEos: true },
      method: 'qlora',
      lora: { r: 2, alpha: 4 },
      lr: 1e-2,
      maxSteps: 1,
      batchSize: 4,
      schedule: 'constant',
      weightDecay: 0,
      clipNorm: 1,
      seed: 1,
      maxLength: 32,
      device: 'cpu',
      threads: 1,
      checkpointDir: join(root, 'small-ck'),
      checkpointEvery: 0,
      outDir: join(root, 'small-out'),
    }),
    /q_proj\.weight: 16 input features are not a multiple of the 4-bit block size 32/,
  );
});
