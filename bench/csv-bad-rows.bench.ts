/**
 * How long the CSV reader takes on files whose every line is a bad row (a quote opened and never
 * closed, a stray quote, a quote closed by the next line's), against a clean quoted file of the same
 * size: a crafted file costs the reader far more a megabyte than real data, and this says how much.
 *
 *   nice node --import tsx bench/csv-bad-rows.bench.ts [MB=1] [rounds=3]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readDelimited } from '../src/data/read-records.ts';

const mb = Number(process.argv[2] ?? 1);
const rounds = Number(process.argv[3] ?? 3);
const shapes: Record<string, { header: string; line: string }> = {
  'clean, quoted fields': { header: 'id,text,label', line: 'hello,"a ""quoted"" text, with a comma",ham' },
  'quote never closed': { header: 'text,label', line: '"a,b' },
  'stray quote': { header: 'text,label', line: 'x,"y' },
  'quote closed by the next line': { header: 'text,label', line: '"a\n"b,c' },
};

const dir = mkdtempSync(join(tmpdir(), 'tempered-csv-bench-'));
try {
  console.log(`${mb} MB a file, median of ${rounds} rounds, this machine's load: ${(await import('node:os')).loadavg()[0]!.toFixed(1)}`);
  for (const [name, { header, line }] of Object.entries(shapes)) {
    const path = join(dir, 'x.csv');
    const body = `${header}\n${`${line}\n`.repeat(Math.ceil((mb * 1e6) / (line.length + 1)))}`;
    writeFileSync(path, body);
    const times: number[] = [];
    let rows = 0;
    let bad = 0;
    for (let r = 0; r < rounds; r++) {
      rows = bad = 0;
      const t = performance.now();
      for await (const chunk of readDelimited({ abs: path, display: 'x.csv', format: 'csv' })) {
        for (const rec of chunk) {
          rows++;
          if ('bad' in rec && rec.bad) bad++;
        }
      }
      times.push((performance.now() - t) / 1000);
    }
    const s = times.sort((a, b) => a - b)[Math.floor(rounds / 2)]!;
    const size = Buffer.byteLength(body) / 1e6;
    console.log(`${name.padEnd(32)} ${(s / size).toFixed(2).padStart(6)} s/MB  (${rows} rows, ${bad} bad)`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
