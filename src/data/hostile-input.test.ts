/**
 * Hostile and broken inputs at the ingest library: paths that try to leave the data roots, CSV
 * quotes that never close, lines too long to hold, Parquet files hashed from what was parsed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { InputError } from '../errors.ts';
import type { IngestConfig } from './config.ts';
import { ingest } from './ingest.ts';
import { readLineChunks } from './lines.ts';
import { readDelimited } from './read-records.ts';

const tmp = (p = 'hostile-') => mkdtempSync(join(tmpdir(), p));
const run = (dir: string, cfg: IngestConfig) =>
  ingest(cfg, { baseDir: dir, outPath: join(dir, 'out.arrow'), quarantinePath: join(dir, 'quarantine.arrow') });
const outsideRoots = (e: unknown) =>
  e instanceof InputError && e.message.includes('outside the allowed data roots') && (e.hint ?? '').includes('TEMPERED_DATA_ROOTS');

test('ingest refuses ../ and absolute paths out of the data roots (/etc/passwd), and leaves nothing behind', async () => {
  const dir = tmp();
  const up = relative(dir, '/etc/passwd');
  await assert.rejects(
    run(dir, {
      path: up,
      format: 'csv',
      header: false,
      columns: ['text'],
      task: 'classification',
      onBadRow: 'quarantine',
      maxBadFraction: 1,
    }),
    outsideRoots,
  );
  await assert.rejects(
    run(dir, { path: '/etc/passwd', format: 'csv', header: false, columns: ['text'], task: 'classification' }),
    outsideRoots,
  );
  await assert.rejects(run(dir, { path: '/etc/*', format: 'jsonl', task: 'classification' }), outsideRoots);
  assert.deepEqual(readdirSync(dir), []);
});

test('ingest refuses a symlink in the pipeline folder that leads out of the data roots', async () => {
  const dir = tmp(),
    outside = tmp('outside-');
  writeFileSync(join(outside, 'secret.jsonl'), '{"text":"secret","label":"x"}\n');
  symlinkSync(join(outside, 'secret.jsonl'), join(dir, 'data.jsonl'));
  mkdirSync(join(dir, 'd'));
  symlinkSync(outside, join(dir, 'd', 'sub'));
  writeFileSync(join(dir, 'd', 'ok.jsonl'), '{"text":"fine","label":"y"}\n');
  await assert.rejects(run(dir, { path: 'data.jsonl', task: 'classification' }), outsideRoots);
  // A folder walk does not follow the link either: only the real file is read.
  const r = await run(dir, { path: 'd', task: 'classification' });
  assert.deepEqual(
    r.sourceFiles.map((f) => f.path),
    ['d/ok.jsonl'],
  );
});

const csv = { task: 'classification', format: 'csv', onBadRow: 'quarantine' } as const;

test('csv: an unclosed quote does not swallow the file: the opening line is bad, reading resumes at the next line', async () => {
  const dir = tmp();
  const good = Array.from({ length: 20 }, (_, i) => `row ${i},${i % 2 ? 'spam' : 'ham'}`);
  writeFileSync(join(dir, 'a.csv'), ['text,label', ...good.slice(0, 2), '"never closed,spam', ...good.slice(2)].join('\n') + '\n');
  const r = await run(dir, { ...csv, path: 'a.csv' });
  assert.equal(r.rowsOut, 20, 'every good row after the broken quote is kept');
  assert.deepEqual(r.badRows, { 'csv-syntax': 1 });
  assert.equal(r.linesIn, 21);
  assert.equal(r.badLines, 1);
});

test('csv: maxBadFraction holds for physical lines: a bad record spanning many lines cannot pass as one row', async () => {
  const dir = tmp();
  const good = Array.from({ length: 20 }, (_, i) => `row ${i},ham`);
  // A closed quoted record of 12 lines with a missing column: 1 bad row of 21, but 12 bad lines of 32.
  const spanning = '"' + Array.from({ length: 12 }, (_, i) => `part ${i}`).join('\n') + '"';
  writeFileSync(join(dir, 'a.csv'), ['text,label', ...good.slice(0, 10), spanning, ...good.slice(10)].join('\n') + '\n');
  await assert.rejects(
    run(dir, { ...csv, path: 'a.csv', maxBadFraction: 0.1 }),
    (e: unknown) => e instanceof InputError && e.where === 'maxBadFraction' && /12 of 32 lines are bad/.test(e.message),
  );
  const r = await run(dir, { ...csv, path: 'a.csv', maxBadFraction: 0.5 });
  assert.deepEqual([r.rowsIn, r.rowsOut, r.linesIn, r.badLines], [21, 20, 32, 12]);
});

test('csv: a quoted record is bounded in lines; past the bound the quote is reported and later lines are read', async () => {
  const dir = tmp();
  const lines = ['text,label', 'a,ham', '"open', ...Array.from({ length: 10 }, (_, i) => `r${i},spam`)];
  writeFileSync(join(dir, 'a.csv'), lines.join('\n') + '\n" closes far away",ham\n');
  const got = [];
  for await (const recs of readDelimited({ abs: join(dir, 'a.csv'), display: 'a.csv', format: 'csv' }, { maxRecordLines: 4 }))
    got.push(...recs);
  assert.equal(got[1].row, 3);
  assert.equal(got[1].bad?.reason, 'csv-syntax');
  assert.match(got[1].bad!.detail, /quote opened on line 3 is not closed within 4 lines/);
  assert.deepEqual(
    got.slice(2, 12).map((r) => r.values?.text),
    Array.from({ length: 10 }, (_, i) => `r${i}`),
  );
  assert.equal(got.length, 13);
});

test('csv: a header that opens a quote it never closes fails the file, naming the line', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), '"text,label\na,ham\n');
  await assert.rejects(run(dir, { ...csv, path: 'a.csv' }), (e: unknown) => e instanceof InputError && e.where === 'a.csv:1');
});

test('lines: a line over the limit becomes one bad row with its length, the next lines are read', async () => {
  const dir = tmp();
  const long = '{"text":"' + 'x'.repeat(5000) + '","label":"ham"}';
  writeFileSync(join(dir, 'a.jsonl'), ['{"text":"a","label":"ham"}', long, '{"text":"b","label":"spam"}'].join('\n'));
  const lines = [];
  for await (const c of readLineChunks(join(dir, 'a.jsonl'), { maxLineBytes: 1000 })) lines.push(...c);
  assert.deepEqual(
    lines.map((l) => [l.line, !!l.tooLong, l.tooLong ? l.bytes : l.text.length]),
    [
      [1, false, 26],
      [2, true, long.length],
      [3, false, 27],
    ],
  );
  assert.equal(lines[1].text.length, 256, 'only a prefix of an over-long line is kept');
});

test('lines: one long line spread over many read chunks is joined once (linear, not quadratic), byte for byte', async () => {
  const dir = tmp();
  // 24 MiB on one line: ~24 read chunks. Joining on every chunk (the old way) copied ~300 MiB.
  const big = Buffer.alloc(24 << 20, 0x61);
  writeFileSync(join(dir, 'a.txt'), Buffer.concat([big, Buffer.from('\nend')]));
  const seen: number[] = [];
  const hashed = createHash('sha256');
  // Count the bytes joined, the work that grew with the square of the line's length.
  const concat = Buffer.concat;
  let joined = 0;
  Buffer.concat = ((list: readonly Uint8Array[], n?: number) => {
    const b = concat(list, n);
    joined += b.length;
    return b;
  }) as typeof Buffer.concat;
  try {
    for await (const c of readLineChunks(join(dir, 'a.txt'), { onData: (b) => hashed.update(b) }))
      seen.push(...c.map((l) => l.text.length));
  } finally {
    Buffer.concat = concat;
  }
  assert.deepEqual(seen, [24 << 20, 3]);
  assert.ok(joined <= 2 * (24 << 20), `joined ${joined} bytes for a ${24 << 20}-byte line`);
  assert.equal(
    hashed.digest('hex'),
    createHash('sha256')
      .update(readFileSync(join(dir, 'a.txt')))
      .digest('hex'),
  );
});

test('parquet sources are hashed from the copy that is parsed, and the copy is removed', async () => {
  const dir = tmp();
  const buf = Buffer.from(
    parquetWriteBuffer({
      columnData: [
        { name: 'text', data: ['a', 'b'], type: 'STRING' },
        { name: 'label', data: ['x', 'y'], type: 'STRING' },
      ],
    }),
  );
  writeFileSync(join(dir, 'a.parquet'), buf);
  const r = await run(dir, { path: 'a.parquet', task: 'classification' });
  assert.equal(r.rowsOut, 2);
  assert.deepEqual(r.sourceFiles, [{ path: 'a.parquet', sha256: createHash('sha256').update(buf).digest('hex'), bytes: buf.length }]);
  assert.deepEqual(readdirSync(dir).sort(), ['a.parquet', 'out.arrow', 'quarantine.arrow']);
});

test('field names that objects inherit are plain names: a __proto__ column is read, a missing constructor field is missing', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), '__proto__,label\nhello,ham\n');
  const r = await run(dir, { path: 'a.csv', task: 'classification', fields: { text: '__proto__' } });
  assert.equal(r.rowsOut, 1);
  writeFileSync(join(dir, 'b.jsonl'), '{"label":"ham"}\n');
  await assert.rejects(
    run(dir, { path: 'b.jsonl', task: 'classification', fields: { text: 'constructor' } }),
    (e: unknown) => e instanceof InputError && /missing-field/.test(e.message),
  );
  await assert.rejects(
    run(dir, { path: 'b.jsonl', task: 'instruction', promptTemplate: '{toString}', fields: { response: 'label' } }),
    (e: unknown) => e instanceof InputError && /missing-field/.test(e.message),
  );
});

test(
  'a corrupt Parquet page header that makes the decoder loop is an input error, and the worker thread stays free',
  { timeout: 120_000 },
  async () => {
    // fixtures/rle-hang.parquet: a 50-row file with three bytes changed; hyparquet 1.33 spins in
    // readRleBitPackedHybrid on it without end. Decoding runs in a worker thread with a budget.
    const dir = tmp();
    writeFileSync(join(dir, 'a.parquet'), readFileSync(new URL('./fixtures/rle-hang.parquet', import.meta.url)));
    let ticks = 0;
    const beat = setInterval(() => ticks++, 50);
    try {
      await assert.rejects(
        ingest(
          { path: 'a.parquet', task: 'classification' },
          {
            baseDir: dir,
            outPath: join(dir, 'out.arrow'),
            quarantinePath: join(dir, 'q.arrow'),
            parquetLimits: { baseMs: 3000, msPerMiB: 0 },
          },
        ),
        (e: unknown) => e instanceof InputError && e.where === 'a.parquet' && /did not finish within 3 s/.test(e.message),
      );
    } finally {
      clearInterval(beat);
    }
    assert.ok(ticks > 0, 'timers (heartbeats) ran while the file was being decoded');
    assert.deepEqual(readdirSync(dir), ['a.parquet']);
  },
);

test(
  'an Arrow file with one flipped byte that makes the reader re-read its end forever is an input error',
  { timeout: 120_000 },
  async () => {
    // fixtures/flipped-schema.arrow: a 50-row file written by ArrowTableWriter with byte 30 changed;
    // apache-arrow's async reader loops on it without end. Decoding runs in a worker thread with a budget.
    const dir = tmp();
    writeFileSync(join(dir, 'a.arrow'), readFileSync(new URL('./fixtures/flipped-schema.arrow', import.meta.url)));
    await assert.rejects(
      ingest(
        { path: 'a.arrow', task: 'classification' },
        { baseDir: dir, outPath: join(dir, 'out.arrow'), quarantinePath: join(dir, 'q.arrow'), parquetLimits: { baseMs: 3000 } },
      ),
      (e: unknown) => e instanceof InputError && e.where === 'a.arrow' && /did not finish within 3 s/.test(e.message),
    );
    assert.deepEqual(readdirSync(dir), ['a.arrow']);
  },
);
