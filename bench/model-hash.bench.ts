/**
 * What the hash record (src/models/hash-record.ts) saves each resolve of a local model file:
 *
 *   nice node --import tsx bench/model-hash.bench.ts [mib=256] [rounds=5]
 *
 * A file of `mib` MiB of random bytes, left until its times are past the record's 2 s "racy" window (as a model folder
 * exported earlier is), then, `rounds` times each, side by side: the sha256 read whole (what every resolve did
 * before the record: `sha256File`) and `hashFileRecorded` (the first call reads and records, later ones stat and read
 * the record). Printed: milliseconds per call (median and range) and bytes read, and the ratio.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hashFileRecorded, RACY_MS } from '../src/models/hash-record.ts';
import { sha256File } from '../src/util/hash-file.ts';
import { median } from './common.ts';

const mib = Number(process.argv[2] ?? 256);
const rounds = Number(process.argv[3] ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'tempered-model-hash-'));
try {
  const file = join(dir, 'model.safetensors');
  const chunk = randomBytes(1 << 20);
  writeFileSync(file, Buffer.concat(Array.from({ length: mib }, () => chunk)));
  // Past the record's "racy" window (RACY_MS) on mtime and ctime both, as a folder exported earlier is.
  await sleep(RACY_MS + 100);
  const records = join(dir, 'hashes');

  const time = async (fn: () => Promise<unknown>) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  const whole: number[] = [];
  const recorded: number[] = [];
  let first = 0;
  let read = 0;
  for (let i = 0; i < rounds; i++) {
    whole.push(await time(() => sha256File(file)));
    const ms = await time(async () => (read = (await hashFileRecorded(file, records)).hashedBytes));
    if (i === 0) first = ms;
    else recorded.push(ms);
    if (i > 0 && read !== 0) throw new Error(`resolve ${i + 1} read ${read} bytes: the record was not used`);
  }
  const fmt = (xs: number[]) => `${median(xs).toFixed(2)} ms (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
  console.log(`${mib} MiB file, ${rounds} rounds`);
  console.log(`  read whole each time (before):  ${fmt(whole)}, ${mib} MiB read`);
  console.log(`  hash record, first call:        ${first.toFixed(2)} ms (reads and records)`);
  console.log(`  hash record, later calls:       ${fmt(recorded)}, 0 bytes read`);
  console.log(`  later calls / read whole:       ${(median(recorded) / median(whole)).toFixed(4)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
