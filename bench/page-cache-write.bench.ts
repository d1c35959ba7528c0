/**
 * Opt-in benchmark (not part of npm test): how fast and at what CPU cost this machine writes a new
 * file from memory, the floor under every cold download into the store's cache. One write at a time
 * (how `src/store/ranged-download.ts` writes) against 8 positional writes in flight on the same file
 * (how it wrote before), alternating, each round into a new file that is then deleted.
 *
 *   node --import tsx bench/page-cache-write.bench.ts [sizeMB=1024] [rounds=3] [idleMs=0]
 *
 * `idleMs` waits before each write. On a VM that hands freed memory back to its host (Firecracker
 * with free-page reporting, as on the development machine), writing into memory freed moments ago
 * is far cheaper than into memory the host has taken back, so runs with 0 and with a few seconds
 * differ: that difference is the point of the argument. CPU is the whole process's (user + system),
 * which includes libuv's write threads.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, procCpuSec, writeNewFile } from './common.ts';

const [sizeMB, rounds, idleMs] = [1024, 3, 0].map((d, i) => Number(process.argv[2 + i] ?? d)) as [number, number, number];
const bytes = sizeMB * 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'bench-page-cache-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const buf = randomBytes(1024 * 1024);

const modes = { 'one at a time': 1, '8 in flight': 8 } as const;
const res: Record<string, { mbps: number; cpuPerGiB: number }[]> = {};
for (let r = 0; r < rounds; r++)
  for (const [mode, writers] of Object.entries(modes)) {
    if (idleMs > 0) await new Promise((ok) => setTimeout(ok, idleMs));
    const path = join(dir, `w-${r}-${writers}.bin`);
    const cpu0 = procCpuSec('/proc/self/stat');
    const t0 = performance.now();
    await writeNewFile(path, bytes, buf, writers);
    const s = (performance.now() - t0) / 1000;
    const cpu = procCpuSec('/proc/self/stat') - cpu0;
    rmSync(path);
    const row = { mbps: sizeMB / s, cpuPerGiB: (cpu * 1024 ** 3) / bytes };
    (res[mode] ??= []).push(row);
    console.log(`round ${r + 1}, ${mode}: ${row.mbps.toFixed(0)} MB/s, ${row.cpuPerGiB.toFixed(2)} CPU-s per GiB`);
  }
console.log(`\nnew ${sizeMB} MiB file from memory, 1 MiB writes, ${rounds} rounds (medians), ${idleMs} ms idle before each:`);
for (const mode of Object.keys(modes)) {
  const rows = res[mode]!;
  console.log(
    `${mode}: ${median(rows.map((x) => x.mbps)).toFixed(0)} MB/s, ${median(rows.map((x) => x.cpuPerGiB)).toFixed(2)} CPU-s per GiB`,
  );
}
