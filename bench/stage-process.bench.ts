/**
 * Opt-in benchmark (not part of npm test): what running the `train` stage in a child process
 * (src/isolate/, how workers run it) costs against running it inline in the worker's thread, on the
 * same config, alternating inline and child for `rounds` rounds so machine drift hits both.
 *
 *   node --import tsx bench/stage-process.bench.ts [steps=60] [rounds=3] [hidden=64] [layers=2] [method=full]
 *
 * Reports per side the median wall time of the whole stage (the child's includes starting Node with
 * tsx and loading the modules) and the median step throughput the stage reported (samples/s).
 * Results are bit for bit the same either way; the bench checks the exported model hashes match.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticRows, writeTextTable } from '../src/finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../src/models/tiny.testing.ts';
import { runStageInChild } from '../src/isolate/run-in-child.ts';
import { trainStage } from '../src/stages/train.ts';
import type { StageContext } from '../src/stages/types.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { MEDIA, type ArtifactRef } from '../src/types.ts';
import { median, reexecWithMallocTuning } from './common.ts';

reexecWithMallocTuning();
const [steps, rounds, hidden, layers] = [60, 3, 64, 2].map((d, i) => Number(process.argv[2 + i] ?? d));
const method = (process.argv[6] ?? 'full') as 'full' | 'lora';
const root = mkdtempSync(join(tmpdir(), 'bench-stage-process-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const store = new ArtifactStore(join(root, 'store'));
const modelDir = tinyBertDir(join(root, 'model'), 7, {
  ...TINY_MINILM,
  hidden,
  layers,
  heads: Math.max(1, hidden / 32),
  intermediate: hidden * 4,
});
const train: ArtifactRef = await store.putFile(writeTextTable(join(root, 'train.arrow'), syntheticRows(16 * steps, 1)), {
  mediaType: MEDIA.arrow,
});
const cfg = {
  model: modelDir,
  train,
  method,
  lora: { r: 8, alpha: 16 },
  lr: 1e-3,
  maxSteps: steps,
  batchSize: 16,
  maxLength: 64,
  seed: 1,
  checkpointEvery: 20,
  threads: 2,
};

let fit = 0;
async function once(side: 'inline' | 'child'): Promise<{ wallMs: number; sps: number; model: string }> {
  fit++;
  const sps: number[] = [];
  const ctx: StageContext = {
    runId: `bench-${fit}`,
    stageId: 'train',
    attempt: 1,
    baseDir: root,
    specHash: 'bench',
    actor: 'bench',
    cacheKey: `bench-${side}-${fit}`,
    store,
    workDir: mkdtempSync(join(root, 'work-')),
    stateDir: root,
    signal: new AbortController().signal,
    progress: (p) => p.metrics?.samplesPerSec !== undefined && sps.push(p.metrics.samplesPerSec),
    log: () => undefined,
  };
  const t0 = performance.now();
  const out = side === 'inline' ? await trainStage.run(cfg, ctx) : await runStageInChild(trainStage, cfg, ctx);
  return { wallMs: performance.now() - t0, sps: median(sps.slice(2)), model: (out.model as ArtifactRef).sha256 };
}

const res = {
  inline: [] as { wallMs: number; sps: number; model: string }[],
  child: [] as { wallMs: number; sps: number; model: string }[],
};
for (let r = 1; r <= rounds; r++) {
  for (const side of ['inline', 'child'] as const) {
    const x = await once(side);
    res[side].push(x);
    console.log(
      `round ${r}: ${side.padEnd(6)} wall ${(x.wallMs / 1000).toFixed(2)} s, ${x.sps.toFixed(1)} samples/s, model ${x.model.slice(0, 12)}`,
    );
  }
}
const models = new Set([...res.inline, ...res.child].map((x) => x.model));
const med = (xs: { wallMs: number; sps: number }[], k: 'wallMs' | 'sps') => median(xs.map((x) => x[k]));
console.log(`\n${method} fine-tuning, ${steps} steps of 16, hidden ${hidden}, ${layers} layers, ${rounds} rounds:`);
console.log(`inline: wall ${(med(res.inline, 'wallMs') / 1000).toFixed(2)} s, ${med(res.inline, 'sps').toFixed(1)} samples/s`);
console.log(`child:  wall ${(med(res.child, 'wallMs') / 1000).toFixed(2)} s, ${med(res.child, 'sps').toFixed(1)} samples/s`);
console.log(
  `child/inline: wall ${(med(res.child, 'wallMs') / med(res.inline, 'wallMs')).toFixed(3)}x, step throughput ${(med(res.child, 'sps') / med(res.inline, 'sps')).toFixed(3)}x`,
);
console.log(models.size === 1 ? 'exported models identical on both sides' : `MODELS DIFFER: ${[...models].join(', ')}`);
