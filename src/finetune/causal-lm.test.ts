import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { readSafetensorsHeader } from '../formats/safetensors.ts';
import { Rng } from '../engine/prng.ts';
import { tinyGpt2Dir } from '../models/tiny.testing.ts';
import { evaluateCausalLm, trainCausalLm, type CausalProgress } from './causal-lm.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-causal-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const modelDir = tinyGpt2Dir(join(root, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });

/** "repeat: xyz" → "xyz": the response is predictable from the prompt, so the loss on it can fall far. */
function table(path: string, n: number, seed: number): string {
  const rng = new Rng(seed);
  const letters = 'abcdefgh';
  const prompts: string[] = [],
    responses: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = Array.from({ length: 3 }, () => letters[rng.int(letters.length)]).join('');
    prompts.push(`repeat: ${w}`);
    responses.push(w);
  }
  const wr = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: prompts, response: responses });
  wr.close();
  return path;
}
const train = table(join(root, 'train.arrow'), 128, 1);
const heldOut = table(join(root, 'test.arrow'), 32, 2);
const template = { prompt: '{prompt}\n', addEos: true };

for (const method of ['full', 'lora'] as const) {
  test(`${method}: response-token loss falls and held-out perplexity improves`, async () => {
    const outDir = join(root, method, 'out');
    const before = await evaluateCausalLm({ model: modelDir, table: heldOut, template, maxLength: 32, threads: 2 });
    const r = await trainCausalLm({
      // LoRA with dropout: the host-drawn masks follow the model's own (batch, seq) dims.
      modelDir,
      train,
      template,
      method,
      lora: { r: 4, alpha: 8, dropout: 0.05 },
      lr: method === 'full' ? 1e-2 : 3e-2,
      epochs: 6,
      batchSize: 16,
      schedule: 'linear',
      weightDecay: 0,
      clipNorm: 1,
      seed: 3,
      maxLength: 32,
      device: 'cpu',
      threads: 2,
      checkpointDir: join(root, method, 'ck'),
      checkpointEvery: 0,
      outDir,
      // As the train stage names a Hub model's repo and commit (peftBaseOf).
      peftBase: { name: 'org/tiny-gpt2', revision: 'c'.repeat(40) },
    });
    const k = 5;
    const mean = (a: { loss: number }[]) => a.reduce((s, h) => s + h.loss, 0) / a.length;
    assert.ok(
      mean(r.history.slice(-k)) < mean(r.history.slice(0, k)) - 0.3,
      `loss ${mean(r.history.slice(0, k))} → ${mean(r.history.slice(-k))}`,
    );
    const after = await evaluateCausalLm({ model: outDir, table: heldOut, threads: 2 });
    assert.equal(after.tokens, before.tokens, 'the same response tokens are scored');
    // 3 letters + EOS per response.
    assert.equal(after.tokens, 32 * 4);
    assert.ok(after.perplexity < before.perplexity * 0.7, `perplexity ${before.perplexity} → ${after.perplexity}`);
    const manifest = JSON.parse(readFileSync(join(outDir, 'tempered-model.json'), 'utf8'));
    assert.equal(manifest.task, 'causal-lm');
    assert.equal(existsSync(join(outDir, 'adapter', 'adapter_config.json')), method === 'lora');
    if (method === 'lora') {
      // GPT2LMHeadModel nests its blocks under `transformer.` and its Conv1D weights are [in, out] (peft's fan_in_fan_out).
      const names = [...readSafetensorsHeader(join(outDir, 'adapter', 'adapter_model.safetensors')).tensors.keys()].sort();
      assert.deepEqual(names.slice(0, 2), [
        'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight',
        'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight',
      ]);
      const config = JSON.parse(readFileSync(join(outDir, 'adapter', 'adapter_config.json'), 'utf8'));
      assert.equal(config.fan_in_fan_out, true);
      assert.deepEqual([config.base_model_name_or_path, config.revision], ['org/tiny-gpt2', 'c'.repeat(40)]);
    }
  });
}

/** The constant-rate LoRA run the abort and warm-up tests share; each adds its own steps and paths. */
const smallLora = () =>
  ({
    modelDir,
    train,
    template,
    method: 'lora',
    lora: { r: 4, alpha: 8 },
    lr: 1e-2,
    batchSize: 16,
    schedule: 'constant',
    weightDecay: 0,
    seed: 3,
    maxLength: 32,
    device: 'cpu',
    threads: 2,
  }) as const;

test('training stops between steps when its signal aborts, and exports nothing', async () => {
  const outDir = join(root, 'aborted', 'out');
  const ac = new AbortController();
  let steps = 0;
  await assert.rejects(
    trainCausalLm({
      ...smallLora(),
      maxSteps: 500,
      stepsPerRun: 1,
      checkpointDir: join(root, 'aborted', 'ck'),
      checkpointEvery: 0,
      outDir,
      signal: ac.signal,
      onProgress: () => {
        if (++steps === 2) ac.abort('run cancelled');
      },
    }),
    /run cancelled/,
  );
  assert.ok(steps < 10, `stopped after ${steps} steps`);
  assert.equal(existsSync(outDir), false);
});

test('warmupRatio ramps the learning rate over that share of the steps', async () => {
  const run = (warmupRatio?: number) =>
    trainCausalLm({
      ...smallLora(),
      maxSteps: 4,
      checkpointDir: join(root, `warmup-${warmupRatio}`, 'ck'),
      checkpointEvery: 0,
      outDir: join(root, `warmup-${warmupRatio}`, 'out'),
      warmupRatio,
    });
  const lrs = (await run(0.5)).history.map((h) => h.lr);
  assert.ok(lrs[0]! < 1e-2 && lrs[1]! <= 1e-2, `warmup over 2 of 4 steps: ${lrs}`);
  assert.equal(lrs[3], 1e-2);
  assert.deepEqual(
    (await run()).history.map((h) => h.lr),
    [1e-2, 1e-2, 1e-2, 1e-2],
  );
});

test('progress reports each phase, and every step with its loss, learning rate, tokens per second and a time left that reaches 0', async () => {
  const seen: CausalProgress[] = [];
  const phases: string[] = [];
  const r = await trainCausalLm({
    ...smallLora(),
    schedule: 'linear',
    maxSteps: 4,
    checkpointDir: join(root, 'progress', 'ck'),
    checkpointEvery: 0,
    outDir: join(root, 'progress', 'out'),
    onProgress: (m) => seen.push(m),
    onStatus: (s) => phases.push(s),
  });
  // What it does before the first step and after the last, in order (128 rows of "repeat: xyz" padded to 16 tokens).
  assert.deepEqual(phases, [
    'tokenizing the training rows',
    'building the training graph (128 rows of 16 tokens)',
    'starting onnxruntime, then step 1 of 4',
    'exporting the model',
  ]);
  assert.deepEqual(
    seen.map((m) => [m.step, m.totalSteps, m.loss, m.lr]),
    r.history.map((h) => [h.step, 4, h.loss, h.lr]),
  );
  // Rows are "repeat: xyz\n" + "xyz" + EOS, padded to a multiple of 8: some real tokens, never all 32 (maxLength).
  const perRow = seen.map((m) => m.tokensPerSec / m.samplesPerSec);
  for (const m of seen) assert.ok(Number.isFinite(m.tokensPerSec) && m.tokensPerSec > 0, `tokens/s ${m.tokensPerSec}`);
  assert.ok(
    perRow.every((t) => Math.abs(t - perRow[0]!) < 1e-9 * perRow[0]!) && perRow[0]! >= 5 && perRow[0]! < 32,
    `real tokens per row ${perRow}`,
  );
  assert.ok(
    seen.slice(0, -1).every((m) => Number.isFinite(m.etaSec) && m.etaSec > 0),
    `eta ${seen.map((m) => m.etaSec)}`,
  );
  assert.equal(seen.at(-1)!.etaSec, 0);
});

test("the export carries the base's generation_config.json, and its chat_template.jinja unless training set a template", async () => {
  // Generation stops on generation_config.json's end ids; a chat_template.jinja outranks tokenizer_config.json's
  // template, so a base's file would override the template a model was tuned with.
  const base = tinyGpt2Dir(join(root, 'templated-base'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  writeFileSync(join(base, 'generation_config.json'), '{"eos_token_id": [0, 1]}\n');
  writeFileSync(join(base, 'chat_template.jinja'), "{% for m in messages %}{{ m['content'] }}{% endfor %}");
  const tuned = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}<|endoftext|>{% endfor %}";
  const out = async (name: string, o: object) => {
    const outDir = join(root, name, 'out');
    await trainCausalLm({
      ...smallLora(),
      modelDir: base,
      maxSteps: 1,
      checkpointDir: join(root, name, 'ck'),
      checkpointEvery: 0,
      outDir,
      ...o,
    });
    return outDir;
  };
  const plain = await out('templated-plain', {});
  assert.equal(readFileSync(join(plain, 'generation_config.json'), 'utf8'), '{"eos_token_id": [0, 1]}\n');
  assert.equal(readFileSync(join(plain, 'chat_template.jinja'), 'utf8'), readFileSync(join(base, 'chat_template.jinja'), 'utf8'));
  const chat = await out('templated-chat', { template: undefined, chat: { template: tuned } });
  assert.equal(existsSync(join(chat, 'chat_template.jinja')), false);
  assert.equal(JSON.parse(readFileSync(join(chat, 'tokenizer_config.json'), 'utf8')).chat_template, tuned);
  assert.ok(existsSync(join(chat, 'generation_config.json')));
});
