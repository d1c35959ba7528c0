// Instruction tuning of a LLaMA model loaded from GGUF (the tiny fixture, src/formats/fixtures/tiny-llama.gguf) through
// trainCausalLm, records rendered with a chat template: LoRA on every projection by default, the loss on reply
// tokens only (checked against the loss computed by hand from the base model's logits), and training lowers it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { Rng } from '../engine/prng.ts';
import { encodeModel } from '../onnx/proto.ts';
import { encodeChatExample } from '../models/chat-encoding.ts';
import { ChatTemplate, loadChatTemplate } from '../models/chat-template.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { resolveModelSource } from '../models/sources.ts';
import { IGNORE_INDEX, loadTokenizer } from '../models/tokenizer.ts';
import { evaluateCausalLm, trainCausalLm } from './causal-lm.ts';
import { QA_TEMPLATE, writeReversalTable } from './reversal-task.testing.ts';

const TINY_GGUF = new URL('../formats/fixtures/tiny-llama.gguf', import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), 'ft-instruct-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const model = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'cache') });

// The fixture's model has 64 embeddings: the task uses capitals and punctuation only (checked below).
const TEMPLATE = QA_TEMPLATE;
const chat = { template: TEMPLATE };

const table = (path: string, n: number, seed: number): string => writeReversalTable(path, n, seed);
const train = table(join(root, 'train.arrow'), 64, 1);
const heldOut = table(join(root, 'test.arrow'), 16, 2);
const common = {
  modelDir: model.dir,
  train,
  chat,
  method: 'lora' as const,
  lora: { r: 4, alpha: 8 },
  schedule: 'constant' as const,
  weightDecay: 0,
  clipNorm: 1,
  seed: 3,
  maxLength: 32,
  device: 'cpu' as const,
  threads: 2,
  checkpointEvery: 0,
};

/** Mean NLL over the training table's reply tokens (and over all tokens), by hand from the base model's logits, one example per run. */
async function handNll(): Promise<{ reply: number; all: number }> {
  const tok = loadTokenizer(model.dir);
  const template = new ChatTemplate(TEMPLATE, 'test');
  const session = await ort.InferenceSession.create(encodeModel(buildCausalLmGraph(model.dir).model), { intraOpNumThreads: 1 });
  const rng = new Rng(1);
  const letters = 'BCDFGHJK';
  let scored = 0,
    scoredSum = 0,
    all = 0,
    allSum = 0;
  for (let i = 0; i < 64; i++) {
    const w = Array.from({ length: 3 }, () => letters[rng.int(letters.length)]!);
    const e = encodeChatExample(tok, w.join(''), [...w].reverse().join(''), { template });
    assert.ok(
      e.inputIds.every((t) => t < 64),
      "every id is inside the tiny model's vocabulary",
    );
    // Q : X Y Z <eot> A : Z Y X <eot>: the last four tokens carry loss.
    assert.deepEqual(
      e.labels.map((l) => l !== IGNORE_INDEX),
      [...new Array<boolean>(8).fill(false), true, true, true, true],
    );
    const T = e.inputIds.length;
    const ids = new ort.Tensor('int64', BigInt64Array.from(e.inputIds, BigInt), [1, T]);
    const out = await session.run({ input_ids: ids, attention_mask: new ort.Tensor('int64', new BigInt64Array(T).fill(1n), [1, T]) });
    const logits = out.logits!.data as Float32Array;
    const V = out.logits!.dims[2]!;
    for (let p = 0; p + 1 < T; p++) {
      const row = logits.subarray(p * V, (p + 1) * V);
      const max = row.reduce((m, v) => Math.max(m, v), -Infinity);
      const lse = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      const nll = lse - row[e.inputIds[p + 1]!]!;
      all++;
      allSum += nll;
      if (e.labels[p + 1] !== IGNORE_INDEX) {
        scored++;
        scoredSum += nll;
      }
    }
  }
  await session.release();
  assert.equal(scored, 64 * 4);
  return { reply: scoredSum / scored, all: allSum / all };
}
const hand = handNll();

/** Mean loss over the first and last 4 steps; fails unless it fell by more than 0.3. */
function assertLossFalls(history: { loss: number }[]): [number, number] {
  const mean = (a: { loss: number }[]) => a.reduce((s, h) => s + h.loss, 0) / a.length;
  const first = mean(history.slice(0, 4));
  const last = mean(history.slice(-4));
  assert.ok(last < first - 0.3, `loss ${first} → ${last}`);
  return [first, last];
}

test('the step-1 loss is the mean NLL of exactly the reply tokens and <|endoftext|>, computed by hand from the base model', async () => {
  // LoRA's B starts at zero, so step 1's forward pass is the base model's.
  const r = await trainCausalLm({
    ...common,
    lr: 1e-4,
    maxSteps: 1,
    batchSize: 64,
    checkpointDir: join(root, 'one', 'ck'),
    outDir: join(root, 'one', 'out'),
  });
  const want = (await hand).reply;
  assert.ok(Math.abs(r.history[0]!.loss - want) < 1e-4 * want, `step-1 loss ${r.history[0]!.loss} vs reply-token NLL ${want}`);
  // The check can tell: scoring every token gives a different number.
  assert.ok(Math.abs((await hand).all - want) > 1e-2, `all-token NLL ${(await hand).all} vs ${want}`);
});

test('packed rows (two 12-token examples per 32-token row): the step-1 loss is the same reply-token NLL, so no example sees another', async () => {
  const r = await trainCausalLm({
    ...common,
    pack: true,
    lr: 1e-4,
    maxSteps: 1,
    batchSize: 32,
    checkpointDir: join(root, 'packed-one', 'ck'),
    outDir: join(root, 'packed-one', 'out'),
  });
  const want = (await hand).reply;
  assert.ok(Math.abs(r.history[0]!.loss - want) < 1e-4 * want, `packed step-1 loss ${r.history[0]!.loss} vs reply-token NLL ${want}`);
});

test('packed LoRA training: reply loss falls; the exported model is the ordinary graph and scores better on held-out records', async () => {
  const outDir = join(root, 'packed', 'out');
  const before = await evaluateCausalLm({ model: model.dir, table: heldOut, chat, maxLength: 32, threads: 2 });
  const r = await trainCausalLm({
    ...common,
    pack: true,
    lr: 3e-2,
    epochs: 8,
    batchSize: 8,
    checkpointDir: join(root, 'packed', 'ck'),
    outDir,
  });
  assert.equal(r.steps, 32, '64 examples → 32 packed rows → 4 steps an epoch');
  const [first, last] = assertLossFalls(r.history);
  const session = await ort.InferenceSession.create(readFileSync(join(outDir, 'model.onnx')));
  assert.deepEqual([...session.inputNames].sort(), ['attention_mask', 'input_ids']);
  await session.release();
  const after = await evaluateCausalLm({ model: outDir, table: heldOut, threads: 2 });
  if (process.env.TEMPERED_VERBOSE) console.log('packed: loss', first, '→', last, 'perplexity', before.perplexity, '→', after.perplexity);
  assert.ok(after.perplexity < before.perplexity * 0.8, `perplexity ${before.perplexity} → ${after.perplexity}`);
});

test('LoRA from GGUF on every projection by default: reply loss falls, held-out perplexity improves, the manifest names the GGUF', async () => {
  const outDir = join(root, 'lora', 'out');
  const before = await evaluateCausalLm({ model: model.dir, table: heldOut, chat, maxLength: 32, threads: 2 });
  const r = await trainCausalLm({ ...common, lr: 3e-2, epochs: 8, batchSize: 16, checkpointDir: join(root, 'lora', 'ck'), outDir });
  const [first, last] = assertLossFalls(r.history);
  // The chat settings travel in the manifest: evaluation renders the same way without being told.
  const after = await evaluateCausalLm({ model: outDir, table: heldOut, threads: 2 });
  assert.equal(after.tokens, 16 * 4);
  assert.equal(before.tokens, after.tokens);
  if (process.env.TEMPERED_VERBOSE) console.log('loss', first, '→', last, 'perplexity', before.perplexity, '→', after.perplexity);
  assert.ok(after.perplexity < before.perplexity * 0.8, `perplexity ${before.perplexity} → ${after.perplexity}`);
  const adapter = JSON.parse(readFileSync(join(outDir, 'adapter', 'adapter_config.json'), 'utf8')) as { target_modules: string[] };
  assert.deepEqual([...adapter.target_modules].sort(), ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
  const manifest = JSON.parse(readFileSync(join(outDir, 'tempered-model.json'), 'utf8')) as {
    baseModel: { sha256: string };
    chat: { template: string };
  };
  assert.equal(manifest.baseModel.sha256, createHash('sha256').update(readFileSync(TINY_GGUF)).digest('hex'));
  assert.equal(manifest.chat.template, TEMPLATE);
  // Served with the template it was tuned with, not the GGUF's own.
  assert.equal(loadChatTemplate(outDir).text, TEMPLATE);
  assert.notEqual(loadChatTemplate(model.dir).text, TEMPLATE);
});
