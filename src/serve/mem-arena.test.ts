/**
 * A served session gives back what one large request took: onnxruntime's CPU memory arena kept a batch's peak for
 * as long as the server ran, so serve's classifier sessions run without it (SERVE_MEM_ARENA). Each side runs in a process of
 * its own, since resident memory is the process's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportTinyClassifier } from './tiny-classifier.testing.ts';

const MAX_LENGTH = 384;

const CHILD = `
import { readFileSync } from 'node:fs';
import { loadPooledPredictor } from ${JSON.stringify(new URL('./worker-pool.ts', import.meta.url).href)};
const [folder, arena] = process.argv.slice(2);
const rssMiB = () => Number(/^VmRSS:\\s+(\\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const p = await loadPooledPredictor(folder, { threads: 1, ...(arena === 'default' ? {} : { memArena: arena === 'on' }) });
const short = ['a fine film', 'call now to win', 'the plot was thin', 'see you at lunch'];
for (let i = 0; i < 3; i++) await p.predict(short);
const warm = rssMiB();
// The server's largest batch (64 texts), every text as long as the model takes.
const long = Array.from({ length: 64 }, (_, i) => Array.from({ length: ${MAX_LENGTH} }, (_, j) => short[(i + j) % 4].split(' ')[0]).join(' '));
const predictions = await p.predict(long);
const after = rssMiB();
await p.predict(short);
await p.close();
console.log(JSON.stringify({ warm, after, answered: predictions.length }));
`;

test('a served classifier returns to its warm resident memory after its largest batch; with the arena it held that batch', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-mem-arena-'));
  try {
    const folder = await exportTinyClassifier(root, { hidden: 128, layers: 2, maxLength: MAX_LENGTH });
    const file = join(root, 'child.mts');
    writeFileSync(file, CHILD);
    // glibc's own keeping of freed memory (its growing mmap threshold) is left out by a fixed trim threshold, the same
    // for both sides: what is measured is what onnxruntime holds.
    const env: NodeJS.ProcessEnv = { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=131072' };
    delete env.TEMPERED_SERVE_MEM_ARENA;
    const run = (arena: 'default' | 'on') => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', file, folder, arena], { env, encoding: 'utf8', cwd: process.cwd() });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as { warm: number; after: number; answered: number };
    };
    const served = run('default');
    const arena = run('on');
    assert.equal(served.answered, 64);
    const held = { served: served.after - served.warm, arena: arena.after - arena.warm };
    // The arena keeps the batch's activations (attention scores of 32 texts × 4 heads × 384² alone are 75 MiB a
    // layer): if it holds little, this test no longer shows anything, and says so.
    assert.ok(held.arena > 100, `with the arena the process held only ${held.arena.toFixed(0)} MiB after the large batch`);
    assert.ok(
      held.served < 40,
      `serve's session held ${held.served.toFixed(0)} MiB after the large batch (warm ${served.warm.toFixed(0)} MiB); with the arena: ${held.arena.toFixed(0)} MiB`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
