/**
 * Opt-in benchmark: what a lone client pays for the worker-thread pool without HTTP in the way.
 * Sequential one-text predict() calls on the same exported classifier (BERT hidden 128, 4 layers,
 * 2 onnxruntime threads), in-thread predictor vs pool, alternating for 6 rounds of 200 calls;
 * prints the median per-call latency of each. The difference is the thread hop and structured clone
 * (plus, before the pool dispatched at once when idle, the 2 ms batching window).
 *
 *   nice node --import tsx bench/serve-lone.bench.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPredictor } from '../src/finetune/predictor.ts';
import { syntheticRows } from '../src/finetune/synthetic-text.testing.ts';
import { loadPooledPredictor } from '../src/serve/worker-pool.ts';
import { exportTinyClassifier } from '../src/serve/tiny-classifier.testing.ts';
const root = mkdtempSync(join(tmpdir(), 'lone-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const outDir = await exportTinyClassifier(root, { hidden: 128, layers: 4, threads: 2 });
const texts = syntheticRows(256, 7).map((r) => r.text);
const d = await loadPredictor(outDir, { threads: 2 });
const p = await loadPooledPredictor(outDir, { threads: 2, workers: 1 });
const med = (x: number[]) => [...x].sort((a, b) => a - b)[x.length >> 1]!;
const res: Record<string, number[]> = { direct: [], pool: [] };
for (let round = 0; round < 6; round++)
  for (const [k, f] of [
    ['direct', d],
    ['pool', p],
  ] as const) {
    const lat: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t = performance.now();
      await f.predict([texts[i]!]);
      lat.push(performance.now() - t);
    }
    res[k]!.push(med(lat));
  }
console.log('median per-request latency ms (median of 6 rounds): direct', med(res.direct!).toFixed(3), 'pool', med(res.pool!).toFixed(3));
await p.close();
await d.close();
process.exit(0);
