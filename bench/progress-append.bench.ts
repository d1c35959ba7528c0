/**
 * What one training point costs to append (src/store/progress-log.ts): a train stage appends one a step, every stage
 * one per progress report. `node --import tsx bench/progress-append.bench.ts [points]`: best and median of 5 rounds,
 * in µs a point, on a file in os.tmpdir() that already holds 2,000 points.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendProgressPoint } from '../src/store/progress-log.ts';

const N = Number(process.argv[2] ?? 50_000);
const dir = mkdtempSync(join(tmpdir(), 'bench-progress-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const path = join(dir, 'run', 'exec', 'train.jsonl');
const point = (i: number) => ({ attempt: 1, t: i, metrics: { step: i, loss: 0.5, lr: 1e-4 } });
for (let i = 0; i < 2000; i++) appendProgressPoint(path, point(i));
const us: number[] = [];
for (let r = 0; r < 5; r++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) appendProgressPoint(path, point(i));
  us.push(Number(process.hrtime.bigint() - t0) / 1e3 / N);
}
us.sort((a, b) => a - b);
console.log(`appendProgressPoint: best ${us[0]!.toFixed(2)} µs a point, median ${us[2]!.toFixed(2)} (5 rounds of ${N})`);
