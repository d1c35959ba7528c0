// Training on conversations end to end: OpenAI-format JSONL → ingest (task chat) → the train stage (causal-lm, LoRA,
// the tiny LLaMA) → a falling loss, the truncation named in the stage's warnings; and packing keeps every reply's loss.
// Each conversation is two or three exchanges of the reversal task ("Q:BCD" → "A:DCB"), so the replies are learnable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { columnValues, readArrowBatches } from '../data/arrow-io.ts';
import { writeJsonl } from '../data/conversations.testing.ts';
import { ingest } from '../data/ingest.ts';
import { Rng } from '../engine/prng.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { testStageContext } from '../stages/stage-context.testing.ts';
import { trainStage, type TrainConfig } from '../stages/train.ts';
import type { ArtifactRef } from '../types.ts';
import { trainCausalLm } from './causal-lm.ts';

const root = mkdtempSync(join(tmpdir(), 'chat-convo-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const modelDir = tinyLlamaDir(join(root, 'model'), 4, { hidden: 32, maxPositions: 64 });
const TEMPLATE =
  "{% for m in messages %}{% if m.role == 'system' %}S:{% elif m.role == 'user' %}Q:{% else %}A:{% endif %}{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}A:{% endif %}";

/** 64 conversations: every eighth has a third exchange (36 tokens, over maxLength 32), every fifth a weight-0 first reply. */
function conversations(n: number, seed: number): { messages: object[] }[] {
  const rng = new Rng(seed);
  const word = () => Array.from({ length: 3 }, () => 'BCDFGHJK'[rng.int(8)]!).join('');
  return Array.from({ length: n }, (_, i) => {
    const exchanges = i % 8 === 0 ? 3 : 2;
    return {
      messages: Array.from({ length: exchanges }, (_, k) => {
        const w = word();
        const reply = [...w].reverse().join('');
        return [
          { role: 'user', content: w },
          { role: 'assistant', content: reply, ...(k === 0 && i % 5 === 0 ? { weight: 0 } : {}) },
        ];
      }).flat(),
    };
  });
}

const dataDir = join(root, 'data');
const ingested = (async () => {
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dataDir, { recursive: true });
  writeJsonl(join(dataDir, 'chat.jsonl'), conversations(64, 1));
  const r = await ingest(
    { path: 'chat.jsonl', task: 'chat' },
    { baseDir: dataDir, outPath: join(dataDir, 'table.arrow'), quarantinePath: join(dataDir, 'q.arrow') },
  );
  assert.equal(r.rowsOut, 64);
  return join(dataDir, 'table.arrow');
})();

test('the train stage on an ingested conversation table: the reply loss falls, and the cut conversations are named', async () => {
  const store = new ArtifactStore(join(root, 'home', 'store'));
  const train: ArtifactRef = await store.putFile(await ingested, { mediaType: 'application/vnd.apache.arrow.file' });
  const cfg: TrainConfig = {
    model: modelDir,
    task: 'causal-lm',
    train,
    method: 'lora',
    lora: { r: 4, alpha: 8 },
    lr: 3e-2,
    epochs: 8,
    batchSize: 16,
    schedule: 'constant',
    weightDecay: 0,
    clipNorm: 1,
    seed: 3,
    maxLength: 32,
    threads: 2,
    checkpointEvery: 0,
    chat: { template: TEMPLATE },
  };
  const out = await trainStage.run(cfg, testStageContext({ root: join(root, 'home'), store, baseDir: root, cacheKey: 'c'.repeat(64) }));
  const loss: number[] = [];
  for await (const b of readArrowBatches(await store.localPath((out.history as ArtifactRef).uri)))
    loss.push(...(columnValues(b, 'loss') as number[]));
  assert.equal(loss.length, 32, '64 conversations, 4 steps an epoch, 8 epochs');
  const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
  const [first, last] = [mean(loss.slice(0, 4)), mean(loss.slice(-4))];
  if (process.env.TEMPERED_VERBOSE) console.log('conversation loss', first, '→', last);
  assert.ok(last < first - 0.3, `loss ${first} → ${last}`);
  assert.match(
    String(out.warnings),
    /^8 of 64 conversations of the train table are longer than maxLength 32: each was kept up to the end of its last assistant reply that fits, and the 8 trained replies after that were left out/,
  );
});

test('packed conversations (two per 64-token row, 32 rows): the step-1 loss is the unpacked one, so every reply keeps its own context', async () => {
  const table = await ingested;
  const run = (pack: boolean) =>
    trainCausalLm({
      modelDir,
      train: table,
      chat: { template: TEMPLATE },
      method: 'lora',
      lora: { r: 4, alpha: 8 },
      lr: 1e-4,
      maxSteps: 1,
      batchSize: pack ? 32 : 64,
      schedule: 'constant',
      weightDecay: 0,
      seed: 3,
      maxLength: 64,
      pack,
      device: 'cpu',
      threads: 2,
      checkpointEvery: 0,
      checkpointDir: join(root, `pack-${pack}`, 'ck'),
      outDir: join(root, `pack-${pack}`, 'out'),
    });
  // LoRA's B starts at zero: step 1's forward pass is the base model's, so the two losses are of the same tokens.
  const [packed, plain] = [await run(true), await run(false)];
  assert.ok(packed.history[0]!.loss > 0);
  assert.ok(
    Math.abs(packed.history[0]!.loss - plain.history[0]!.loss) < 1e-4 * plain.history[0]!.loss,
    `${packed.history[0]!.loss} vs ${plain.history[0]!.loss}`,
  );
});
