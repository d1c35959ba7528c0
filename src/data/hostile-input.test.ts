/**
 * Hostile and broken inputs at the ingest library: paths that try to leave the data roots, CSV
 * quotes that never close, lines too long to hold, UTF-16 files, Parquet files hashed from what
 * was parsed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { InputError } from '../errors.ts';
import { columnValues, readArrowBatches } from './arrow-io.ts';
import type { IngestConfig } from './config.ts';
import { ingest } from './ingest.ts';
import { readLineChunks } from './lines.ts';
import { sniffUnicode } from '../util/unicode-sniff.ts';
import { readDelimited, type SourceRecord } from './read-records.ts';

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
  // A folder walk that comes upon the link to a folder outside leaves it out with a report warning naming it (it used
  // to leave it out without a word); once the link leads inside, the folder's files are read.
  const left = await run(dir, { path: 'd', task: 'classification' });
  assert.deepEqual(
    left.sourceFiles.map((f) => f.path),
    ['d/ok.jsonl'],
  );
  const subLeftOut = (r: { warnings?: string[] }) =>
    assert.ok(
      r.warnings?.some(
        (w) => w.startsWith('d/sub is a symbolic link to ') && w.includes('a folder outside the allowed data roots: not walked'),
      ),
      r.warnings?.join('\n'),
    );
  subLeftOut(left);
  // So does a glob (a `venv -> /opt/...` link in a pipeline folder failed every `**` ingest), while a matched link to a
  // FILE that leads out still fails: it is data the pipeline names.
  await assert.rejects(run(dir, { path: '**/*.jsonl', task: 'classification' }), outsideRoots);
  rmSync(join(dir, 'data.jsonl'));
  const globbed = await run(dir, { path: '**/*.jsonl', task: 'classification' });
  assert.deepEqual(
    globbed.sourceFiles.map((f) => f.path),
    ['d/ok.jsonl'],
  );
  subLeftOut(globbed);
  rmSync(join(dir, 'd', 'sub'));
  mkdirSync(join(dir, 'inside'));
  writeFileSync(join(dir, 'inside', 'more.jsonl'), '{"text":"more","label":"y"}\n');
  symlinkSync(join(dir, 'inside'), join(dir, 'd', 'sub'));
  const r = await run(dir, { path: 'd', task: 'classification' });
  assert.deepEqual(
    r.sourceFiles.map((f) => f.path),
    ['d/ok.jsonl', 'd/sub/more.jsonl'],
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

async function quarantined(path: string): Promise<{ row: unknown; raw: unknown; detail: unknown }[]> {
  const rows = [];
  for await (const b of readArrowBatches(path)) {
    const [row, raw, detail] = ['_row', 'raw', 'detail'].map((n) => columnValues(b, n));
    for (let i = 0; i < b.numRows; i++) rows.push({ row: row[i], raw: raw[i], detail: detail[i] });
  }
  return rows;
}

test('csv: an unclosed quote followed by a quoted row: only the opening line is bad, the next row is kept (400-row file)', async () => {
  // A reviewer's file: every row quoted, one quote never closed at line 101. The next row's opening
  // quote "closed" it, the two lines were parsed as one record, and the bad row swallowed a good one.
  const dir = tmp();
  const rows = Array.from({ length: 400 }, (_, i) => `"review ${i} , with a comma .",${i % 3 ? 'positive' : 'negative'}`);
  rows[99] = '"an inexperienced director , mehta has much to learn .",negative';
  writeFileSync(
    join(dir, 'a.csv'),
    ['text,label', ...rows.slice(0, 99), '"unterminated quote,positive', ...rows.slice(99)].join('\n') + '\n',
  );
  const r = await run(dir, { ...csv, path: 'a.csv' });
  assert.deepEqual([r.rowsIn, r.rowsOut, r.linesIn, r.badLines], [401, 400, 401, 1]);
  assert.deepEqual(r.badRows, { 'csv-syntax': 1 });
  const q = await quarantined(join(dir, 'quarantine.arrow'));
  assert.deepEqual(
    q.map((x) => [x.row, x.raw]),
    [[101, '"unterminated quote,positive']],
  );
  assert.match(String(q[0].detail), /quote opened on line 101 is not closed properly \(.* on line 102 .*\); reading resumed at line 102/);
});

/** Records of a CSV text through readDelimited: [line, lines spanned, values or bad reason]. */
async function delimited(content: string | Uint8Array, opts: { maxLineBytes?: number; quote?: string } = {}): Promise<unknown[][]> {
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), content);
  const got: SourceRecord[] = [];
  for await (const recs of readDelimited({ abs: join(dir, 'a.csv'), display: 'a.csv', format: 'csv' }, opts)) got.push(...recs);
  return got.map((r) => [r.row, r.lines, r.bad ? r.bad.reason : Object.values(r.values!)]);
}

test('csv: an unclosed quote in the last or a middle column, or on the last line, is its opening line alone', async () => {
  // Last column, the next row quoted in its first column.
  assert.deepEqual(await delimited('text,label\n"a",ham\n"b","spam\n"c",ham\n"d","spam"\n'), [
    [2, 1, ['a', 'ham']],
    [3, 1, 'csv-syntax'],
    [4, 1, ['c', 'ham']],
    [5, 1, ['d', 'spam']],
  ]);
  // Middle column; the next row quotes only its middle column.
  assert.deepEqual(await delimited('id,text,label\n1,"a",ham\n2,"b unclosed,spam\n3,"c",ham\n4,d,spam\n'), [
    [2, 1, ['1', 'a', 'ham']],
    [3, 1, 'csv-syntax'],
    [4, 1, ['3', 'c', 'ham']],
    [5, 1, ['4', 'd', 'spam']],
  ]);
  // Two unclosed quotes in a row, then quoted rows: each opening line alone.
  assert.deepEqual(await delimited('text,label\n"a,ham\n"b,spam\n"c",ham\n'), [
    [2, 1, 'csv-syntax'],
    [3, 1, 'csv-syntax'],
    [4, 1, ['c', 'ham']],
  ]);
  // Unquoted rows, then a quoted one further on: every row in between is read.
  assert.deepEqual(await delimited('text,label\n"a,ham\nb,spam\nc,ham\n"d",spam\n'), [
    [2, 1, 'csv-syntax'],
    [3, 1, ['b', 'spam']],
    [4, 1, ['c', 'ham']],
    [5, 1, ['d', 'spam']],
  ]);
  // A bad byte on the opening line does not take the next row with it either.
  assert.deepEqual(
    await delimited(Buffer.concat([Buffer.from('text,label\n"caf'), Buffer.from([0xe9]), Buffer.from(',ham\n"b",spam\n')])),
    [
      [2, 1, 'csv-syntax'],
      [3, 1, ['b', 'spam']],
    ],
  );
  // An over-long line ends the open quote too, and is read after the lines before it.
  const long = 'z'.repeat(300);
  assert.deepEqual(await delimited(`text,label\n"a,ham\nb,spam\n${long}\nc,ham\n"d\n${long}\n"e",spam\n`, { maxLineBytes: 100 }), [
    [2, 1, 'csv-syntax'],
    [3, 1, ['b', 'spam']],
    [4, 1, 'line-too-long'],
    [5, 1, ['c', 'ham']],
    [6, 1, 'csv-syntax'],
    [7, 1, 'line-too-long'],
    [8, 1, ['e', 'spam']],
  ]);
  // The last line of the file, with and without a final newline.
  for (const end of ['\n', ''])
    assert.deepEqual(await delimited(`text,label\n"a",ham\n"b","spam${end}`), [
      [2, 1, ['a', 'ham']],
      [3, 1, 'csv-syntax'],
    ]);
});

test('lines that end in a carriage return alone are named as such, not an empty file or one long row', async () => {
  await assert.rejects(
    delimited('text,label\r"hello, world",pos\r"bye",neg\r'),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'a.csv' &&
      /carriage return alone \(classic Mac OS line endings\)/.test(e.message) &&
      (e.hint ?? '').includes("tr '\\r' '\\n' < 'a.csv' > converted.csv"),
  );
  // A \r inside a line of a \n-ended file is data, and a CRLF file is read as lines.
  assert.deepEqual(await delimited('text,label\r\na\rb,pos\r\n'), [[2, 1, ['a\rb', 'pos']]]);
});

test('csv: a header that does not parse stops the ingest, naming its line (its first data row became the header)', async () => {
  await assert.rejects(
    delimited('te"xt,label\na,1\nb,2\n'),
    (e: unknown) => e instanceof InputError && e.where === 'a.csv:1' && /the header line does not parse as CSV/.test(e.message),
  );
});

test('csv: with quote: "\'" a quote is escaped by doubling it, and a " inside is text', async () => {
  assert.deepEqual(await delimited("text,label\n'it''s',1\n'say \"\nhi',2\n", { quote: "'" }), [
    [2, 1, ["it's", '1']],
    [3, 2, ['say "\nhi', '2']],
  ]);
});

test('csv: a multi-line field with a stray quote inside is one bad record: its middle lines do not become rows', async () => {
  assert.deepEqual(await delimited('text,label\n"I watched this\nthe ending was sad, neg\nbut they called it "awesome",pos\n"ok",pos\n'), [
    [2, 3, 'csv-syntax'],
    [5, 1, ['ok', 'pos']],
  ]);
  assert.deepEqual(await delimited('text,label\n"Para one, with comma\nmiddle line, with comma\nend" x,1\n'), [[2, 3, 'csv-syntax']]);
});

test('csv: quoted fields with newlines that do close are still one record, also right after an unclosed quote', async () => {
  assert.deepEqual(await delimited('text,label\n"a\nb, ""c""",ham\n"x,spam\n"d\n\ne",spam\n"f","g\nh"\n'), [
    [2, 2, ['a\nb, "c"', 'ham']],
    [4, 1, 'csv-syntax'],
    [5, 3, ['d\n\ne', 'spam']],
    [8, 2, ['f', 'g\nh']],
  ]);
  // A closed multi-line record broken otherwise (a column missing) is still one bad record.
  assert.deepEqual(await delimited('text,label\n"a\nb"\nc,ham\n'), [
    [2, 2, 'column-count'],
    [4, 1, ['c', 'ham']],
  ]);
});

test('csv: a lone carriage return inside a line is data, not a record whose row is dropped', async () => {
  // csv-parse took the \r for a record delimiter, and only the first record of the line was kept.
  assert.deepEqual(await delimited('text,label\n"a",ham\rb,spam\n"c\rd",ham\n'), [
    [2, 1, 'column-count'],
    [3, 1, ['c\rd', 'ham']],
  ]);
});

test('ingest: a UTF-16 or UTF-32 data file (with or without byte-order mark) fails at once, named, with how to convert it', async () => {
  const csvText = 'text,label\n"café, olé",ham\nplain,spam\n';
  const tsvText = 'text\tlabel\ncafé\tham\n';
  const jsonlText = '{"text":"café","label":"ham"}\n{"text":"b","label":"spam"}\n';
  const utf16le = (t: string) => Buffer.from(t, 'utf16le');
  const utf16be = (t: string) => Buffer.from(t, 'utf16le').swap16();
  const utf32 = (t: string, le: boolean) => {
    const cps = [...t].map((c) => c.codePointAt(0)!);
    const b = Buffer.alloc(4 * cps.length);
    cps.forEach((c, i) => (le ? b.writeUInt32LE(c, 4 * i) : b.writeUInt32BE(c, 4 * i)));
    return b;
  };
  const bom = /it starts with a (UTF-\d\d) byte-order mark/;
  const encodings: [string, (t: string) => Buffer, RegExp, RegExp][] = [
    ['UTF-16LE + BOM', (t) => utf16le('\ufeff' + t), /UTF-16 \(it starts with a UTF-16 byte-order mark\)/, /iconv -f UTF-16 -t UTF-8/],
    ['UTF-16BE + BOM', (t) => utf16be('\ufeff' + t), /UTF-16 \(it starts with a UTF-16 byte-order mark\)/, /iconv -f UTF-16 -t UTF-8/],
    ['UTF-16LE', utf16le, /UTF-16 \(it has no byte-order mark, but .* UTF-16LE text\)/, /iconv -f UTF-16LE -t UTF-8/],
    ['UTF-16BE', utf16be, /UTF-16 \(it has no byte-order mark, but .* UTF-16BE text\)/, /iconv -f UTF-16BE -t UTF-8/],
    ['UTF-32LE + BOM', (t) => utf32('\ufeff' + t, true), /UTF-32 \(it starts with a UTF-32 byte-order mark\)/, /iconv -f UTF-32 -t UTF-8/],
    ['UTF-32BE + BOM', (t) => utf32('\ufeff' + t, false), /UTF-32 \(it starts with a UTF-32 byte-order mark\)/, /iconv -f UTF-32 -t UTF-8/],
    ['UTF-32LE', (t) => utf32(t, true), /UTF-32 \(it has no byte-order mark, but .* UTF-32LE text\)/, /iconv -f UTF-32LE -t UTF-8/],
  ];
  for (const [encoding, encode, message, hint] of encodings)
    for (const [file, text] of [
      ['u.csv', csvText],
      ['u.tsv', tsvText],
      ['u.jsonl', jsonlText],
    ]) {
      const dir = tmp();
      writeFileSync(join(dir, file), encode(text));
      for (const onBadRow of ['fail', 'quarantine'] as const)
        await assert.rejects(
          // maxBadFraction applies to quarantine only (with onBadRow: fail it is a config error).
          run(dir, { task: 'classification', path: file, onBadRow, ...(onBadRow === 'quarantine' && { maxBadFraction: 1 }) }),
          (e: unknown) => {
            assert.ok(e instanceof InputError, `${encoding} ${file}: ${String(e)}`);
            assert.equal(e.where, file, `${encoding} ${file}: ${e.message}`);
            assert.match(e.message, message, `${encoding} ${file}`);
            assert.match(e.message, /data files must be UTF-8/);
            assert.match(e.hint ?? '', hint, `${encoding} ${file}`);
            if (bom.test(e.message)) assert.match(e.hint ?? '', new RegExp(`'${file}' > 'u\\.utf8\\.${file.split('.')[1]}'`));
            return true;
          },
        );
      assert.deepEqual(readdirSync(dir), [file], 'no output or quarantine table is left behind');
    }
});

test('ingest: UTF-8 with a byte-order mark is read, in every text format', async () => {
  for (const [file, text] of [
    ['a.csv', '\ufefftext,label\n"café",ham\n'],
    ['a.tsv', '\ufefftext\tlabel\ncafé\tham\n'],
    ['a.jsonl', '\ufeff{"text":"café","label":"ham"}\n'],
  ]) {
    const dir = tmp();
    writeFileSync(join(dir, file), text);
    const r = await run(dir, { task: 'classification', path: file });
    assert.deepEqual([r.rowsIn, r.rowsOut], [1, 1], file);
  }
});

test('sniffUnicode: UTF-8 text is never taken for UTF-16 or UTF-32; bytes with control characters are not either', () => {
  for (const t of ['text,label\n', 'a', 'ab\n', '\ufeffx,y\n', 'ÿþ', 'þÿ', '日本語,ラベル\n', '😀,🙂\n'])
    assert.equal(sniffUnicode(Buffer.from(t, 'utf8')), null, JSON.stringify(t));
  assert.equal(sniffUnicode(Uint8Array.from([0, 0, 0, 1])), null);
  assert.equal(sniffUnicode(Uint8Array.from([0x61, 0, 1, 0, 0x62, 0])), null, 'U+0001 is no text');
  assert.equal(sniffUnicode(new Uint8Array(64)), null, 'NULs alone are no text');
  assert.deepEqual(sniffUnicode(Buffer.from('a,b\n', 'utf16le')), { encoding: 'UTF-16LE', bom: false });
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
