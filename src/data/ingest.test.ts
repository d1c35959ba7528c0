import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
  renameSync,
  mkdirSync,
  symlinkSync,
  openSync,
  closeSync,
  constants,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { parse } from 'yaml';
import { Field, makeData, RecordBatch, Schema, Struct, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import { InputError } from '../errors.ts';
import { ArrowTableWriter, columnValues, readArrowBatches } from './arrow-io.ts';
import type { IngestConfig } from './config.ts';
import { ingest, type IngestOptions } from './ingest.ts';
import { formatDataReport } from './report.ts';
import { datasetsDir } from './datasets-dir.ts';
import { confinedOpenHooks } from './roots.ts';

const DATASETS = datasetsDir();

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'ingest-'));
}

async function readAll(path: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for await (const b of readArrowBatches(path)) {
    const names = b.schema.fields.map((f) => f.name);
    const cols = names.map((n) => columnValues(b, n));
    for (let i = 0; i < b.numRows; i++) rows.push(Object.fromEntries(names.map((n, c) => [n, cols[c][i]])));
  }
  return rows;
}

async function run(dir: string, cfg: IngestConfig, more: Partial<IngestOptions> = {}) {
  return ingest(cfg, { baseDir: dir, outPath: join(dir, 'out.arrow'), quarantinePath: join(dir, 'quarantine.arrow'), ...more });
}

/**
 * One bad row among good ones: fail mode must name `file:line: reason`, leave no output behind,
 * and quarantine mode must record the same line and reason while keeping the good rows.
 */
async function expectBad(
  file: string,
  content: string | Uint8Array,
  cfg: Omit<IngestConfig, 'path'>,
  line: number,
  reason: string,
  goodRows: number,
) {
  const dir = tmp();
  writeFileSync(join(dir, file), content);
  await assert.rejects(run(dir, { ...cfg, path: file, onBadRow: 'fail' }), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.where, `${file}:${line}`);
    assert.match(e.message, new RegExp(`${file.replace('.', '\\.')}:${line}: ${reason}:`));
    return true;
  });
  assert.deepEqual(readdirSync(dir), [file], 'no output or temp file left after failure');
  const r = await run(dir, { ...cfg, path: file, onBadRow: 'quarantine', maxBadFraction: 1 });
  assert.deepEqual(r.badRows, { [reason]: 1 });
  assert.equal(r.rowsOut, goodRows);
  assert.equal(r.rowsIn, goodRows + 1);
  const q = await readAll(join(dir, 'quarantine.arrow'));
  assert.equal(q.length, 1);
  assert.equal(q[0]._source, file);
  assert.equal(q[0]._row, line);
  assert.equal(q[0].reason, reason);
  assert.equal((await readAll(join(dir, 'out.arrow'))).length, goodRows);
}

const cls: Omit<IngestConfig, 'path'> = { task: 'classification' };
const j = (o: unknown) => JSON.stringify(o);
const good = (i: number) => j({ text: `message ${i}`, label: i % 2 ? 'spam' : 'ham' });

test('jsonl: malformed JSON', () =>
  expectBad('a.jsonl', [good(1), '{"text": "x", "label": ', good(2)].join('\n') + '\n', cls, 2, 'invalid-json', 2));
test('jsonl: a last line cut short (no line break after it, and it does not parse) says the file may be unfinished', async () => {
  const dir = tmp();
  // An export still being written, or a copy or download stopped mid-line.
  writeFileSync(join(dir, 'a.jsonl'), [good(1), good(2), '{"text": "mess'].join('\n'));
  await assert.rejects(run(dir, { ...cls, path: 'a.jsonl' }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'a.jsonl:3', String(e));
    assert.match(
      e.message,
      /a\.jsonl:3: invalid-json: .*; it is the file's last line and no line break follows it: the file may be cut short/,
    );
    return true;
  });
  // A bad line that is not the last, or a last line that parses without a line break, is no such case.
  writeFileSync(join(dir, 'b.jsonl'), ['{"text": "mess', good(1)].join('\n'));
  await assert.rejects(run(dir, { ...cls, path: 'b.jsonl' }), (e: unknown) => {
    assert.ok(e instanceof InputError && !/cut short/.test(e.message), String(e));
    return true;
  });
});
test('jsonl: array instead of object', () => expectBad('a.jsonl', [good(1), good(2), '["x","ham"]'].join('\n'), cls, 3, 'not-object', 2));
test('jsonl: null line', () => expectBad('a.jsonl', ['null', good(1)].join('\n'), cls, 1, 'not-object', 1));
test('jsonl: invalid UTF-8 bytes', () =>
  expectBad(
    'a.jsonl',
    Buffer.concat([
      Buffer.from(good(1) + '\n'),
      Buffer.from('{"text": "caf'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('", "label": "ham"}\n'),
    ]),
    cls,
    2,
    'invalid-utf8',
    1,
  ));
test('jsonl: a field the task reads given twice in one object (JSON.parse keeps the last without a word)', async () => {
  await expectBad('a.jsonl', [good(1), '{"text":"x","label":"ham","label":"spam"}', good(2)].join('\n'), cls, 2, 'duplicate-field', 2);
  // Spelled with an escape, it is the same name.
  await expectBad('a.jsonl', ['{"text":"x","\\u0074ext":"y","label":"ham"}', good(2)].join('\n'), cls, 1, 'duplicate-field', 1);
  // A name the task does not read, or one repeated inside a nested object, or in a value, is no business of ingest's.
  const dir = tmp();
  const rows = [
    '{"text":"x","label":"ham","note":1,"note":2}',
    '{"text":"y","label":"spam","meta":{"label":1,"label":2},"list":[{"text":1},{"text":2}]}',
    '{"text":"\\"text\\": \\"label\\"","label":"ham","other":"\\"label\\""}',
  ];
  writeFileSync(join(dir, 'a.jsonl'), rows.join('\n'));
  const r = await run(dir, { ...cls, path: 'a.jsonl' });
  assert.equal(r.rowsOut, 3);
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => x.text),
    ['x', 'y', '"text": "label"'],
  );
});
test('jsonl: missing text field', () => expectBad('a.jsonl', [good(1), j({ label: 'ham' })].join('\n'), cls, 2, 'missing-field', 1));
test('jsonl: non-string text', () => expectBad('a.jsonl', [j({ text: 42, label: 'ham' }), good(1)].join('\n'), cls, 1, 'not-string', 1));
test('jsonl: whitespace-only text', () =>
  expectBad('a.jsonl', [good(1), j({ text: ' \t ', label: 'ham' })].join('\n'), cls, 2, 'empty-text', 1));
test('jsonl: missing label', () => expectBad('a.jsonl', [good(1), good(2), j({ text: 'x' })].join('\n'), cls, 3, 'missing-label', 2));
test('jsonl: empty label', () => expectBad('a.jsonl', [j({ text: 'x', label: '' }), good(2)].join('\n'), cls, 1, 'missing-label', 1));
test('jsonl: fractional label', () => expectBad('a.jsonl', [good(1), j({ text: 'x', label: 0.5 })].join('\n'), cls, 2, 'invalid-label', 1));
test('jsonl: an integer label past 2^53 is read exactly from its text, not rounded into another class by JSON.parse', async () => {
  const dir = tmp();
  const rows = [
    '{"text":"a","label":9007199254740993}',
    '{"text":"b","label":9007199254740992}',
    '{"text":"c","label":-12345678901234567890}',
    '{"text":"d","label":1.5e20}',
    '{"text":"e","label":9007199254740993}',
    // Any spelling of one integer is one class: 1e3 was "1000" before, as 1000 is.
    '{"text":"f","label":1e3}',
    '{"text":"g","label" : 10000000000000000000.000}',
  ];
  writeFileSync(join(dir, 'a.jsonl'), rows.join('\n') + '\n');
  const r = await run(dir, { task: 'classification', path: 'a.jsonl' });
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => x.label),
    [
      '9007199254740993',
      '9007199254740992',
      '-12345678901234567890',
      '150000000000000000000',
      '9007199254740993',
      '1000',
      '10000000000000000000',
    ],
  );
  assert.equal(r.labels['9007199254740993'], 2);
  assert.equal(r.labels['9007199254740992'], 1);
  // Declared labels are strings: the exact one matches.
  const d = await run(dir, {
    task: 'classification',
    path: 'a.jsonl',
    labels: ['9007199254740993'],
    onBadRow: 'quarantine',
    maxBadFraction: 1,
  });
  assert.equal(d.rowsOut, 2);
  // A number that only rounds to an integer is the non-integer it is, named with its text.
  await expectBad('b.jsonl', [good(1), '{"text":"x","label":9007199254740993.5}'].join('\n'), cls, 2, 'invalid-label', 1);
  writeFileSync(join(dir, 'b.jsonl'), '{"text":"x","label":9007199254740993.5}\n');
  await assert.rejects(
    run(dir, { task: 'classification', path: 'b.jsonl' }),
    /b\.jsonl:1: invalid-label: label field "label" is 9007199254740993\.5, a non-integer number/,
  );
});
test('jsonl: label outside the declared set', () =>
  expectBad(
    'a.jsonl',
    [good(1), good(2), j({ text: 'x', label: 'eggs' })].join('\n'),
    { ...cls, labels: ['ham', 'spam'] },
    3,
    'unknown-label',
    2,
  ));
test('jsonl: blank lines are skipped but line numbers stay physical', () =>
  expectBad('a.jsonl', [good(1), '', '  ', j({ text: '', label: 'ham' })].join('\n'), cls, 4, 'empty-text', 1));
test('jsonl: text over maxLength counts code points, not UTF-16 units', async () => {
  // 5 emoji = 10 UTF-16 units but 5 characters: allowed at maxLength 5; 6 emoji are not.
  await expectBad(
    'a.jsonl',
    [j({ text: '😀'.repeat(5), label: 'ham' }), j({ text: '😀'.repeat(6), label: 'ham' })].join('\n'),
    { ...cls, maxLength: 5 },
    2,
    'too-long',
    1,
  );
});
test('jsonl: CRLF line endings and BOM are accepted', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.jsonl'), '\ufeff' + [good(1), good(2)].join('\r\n') + '\r\n');
  const r = await run(dir, { ...cls, path: 'a.jsonl' });
  assert.equal(r.rowsOut, 2);
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => x.text),
    ['message 1', 'message 2'],
  );
  // Files saved with one, concatenated (`cat a.jsonl b.jsonl`): each file's mark begins a line. It was an invalid-json
  // row whose detail showed the invisible character (Unexpected token followed by an invisible U+FEFF).
  writeFileSync(join(dir, 'b.jsonl'), `\ufeff${good(1)}\r\n\ufeff${good(2)}\r\n`);
  assert.equal((await run(dir, { ...cls, path: 'b.jsonl' })).rowsOut, 2);
});

const csv: Omit<IngestConfig, 'path'> = { task: 'classification' };
test('csv: a record holding lines that end in a carriage return alone (files of both kinds joined) says so', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), 'text,label\r\na,ham\nb,spam\rc,ham\rd,spam\r\ne,ham\n');
  await assert.rejects(run(dir, { ...csv, path: 'a.csv' }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'a.csv:3', String(e));
    assert.match(
      e.message,
      /a\.csv:3: column-count: expected 2 columns, got 4; the record holds 2 carriage returns not followed by a line break: lines ending in \\r alone \(classic Mac OS\) read as one; convert them, e\.g\. perl -pe/,
    );
    return true;
  });
});
test('csv: wrong column count', () => expectBad('a.csv', 'text,label\nhello,ham\nbye,spam,extra\n', csv, 3, 'column-count', 1));
test('csv: unclosed quote is reported at the line it opens; reading resumes after it', () =>
  expectBad('a.csv', 'text,label\n"ok, fine",ham\n"never closed,spam\nmore,ham\n', csv, 3, 'csv-syntax', 2));
test('csv: junk after a closing quote', () =>
  expectBad('a.csv', 'text,label\n"bad"x,ham\n"good ""quoted""",spam\n', csv, 2, 'csv-syntax', 1));
test('csv: quotes inside a field that is not quoted (an inch mark) are bad rows whose error says how to quote them, or quote: false', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), 'text,label\nhe said "hi",ham\n5" screen,spam\n');
  for (const onBadRow of ['fail', 'quarantine'] as const)
    await assert.rejects(run(dir, { ...csv, path: 'a.csv', onBadRow }), (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, /a\.csv:2: (csv-syntax: )?Invalid Opening Quote/);
      assert.match(e.hint ?? '', /"5"" screen".*quote: false/);
      return true;
    });
  const r = await run(dir, { ...csv, path: 'a.csv', quote: false });
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => x.text),
    ['he said "hi"', '5" screen'],
  );
  assert.equal(r.rowsOut, 2);
});
test('csv: multi-line quoted records keep later line numbers right', async () => {
  await expectBad('a.csv', 'text,label\n"line one\nline two",ham\n"x",\n', csv, 4, 'missing-label', 1);
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), 'text,label\n"line one\nline two, ""quoted""",ham\n');
  await run(dir, { ...csv, path: 'a.csv' });
  const rows = await readAll(join(dir, 'out.arrow'));
  assert.equal(rows[0].text, 'line one\nline two, "quoted"');
  assert.equal(rows[0]._row, 2);
});
test('csv: invalid UTF-8', () =>
  expectBad(
    'a.csv',
    Buffer.concat([Buffer.from('text,label\nok,ham\n'), Buffer.from([0xff, 0xfe]), Buffer.from(',spam\n')]),
    csv,
    3,
    'invalid-utf8',
    1,
  ));
test('csv: duplicate header names fail the whole file at line 1', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), 'text,text\nx,y\n');
  await assert.rejects(
    run(dir, { ...csv, path: 'a.csv' }),
    (e: unknown) => e instanceof InputError && e.where === 'a.csv:1' && /duplicate/.test(e.message),
  );
  assert.deepEqual(readdirSync(dir), ['a.csv']);
});
test('csv: a duplicated column name the task does not read is left out with a warning; one it reads (an optional template field too) fails the file', async () => {
  const dir = tmp();
  // A spreadsheet's two "notes" columns: nothing the task reads, so which one is meant does not matter.
  writeFileSync(join(dir, 'a.csv'), 'text,notes,label,notes\nhello,a,ham,b\n');
  const r = await run(dir, { ...csv, path: 'a.csv' });
  assert.equal(r.rowsOut, 1);
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => [x.text, x.label]),
    [['hello', 'ham']],
  );
  assert.equal(r.warnings?.length, 1);
  assert.match(
    r.warnings![0],
    /a\.csv: column "notes" appears more than once in the header; the task reads no column of that name, so it is left out/,
  );
  assert.match(formatDataReport(r), /warning: a\.csv: column "notes"/);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  writeFileSync(join(dir, 'b.csv'), 'instruction,input,output,input\nAdd,2 and 3,5,x\n');
  const instruction: IngestConfig = {
    task: 'instruction',
    path: 'b.csv',
    promptTemplate: '{instruction}[[\n\nInput: {input}]]',
    fields: { response: 'output' },
  };
  await assert.rejects(run(dir, instruction), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'b.csv:1', String(e));
    assert.match(e.message, /header has a duplicate \("input"\) column name/);
    return true;
  });
  assert.deepEqual(readdirSync(dir).sort(), ['a.csv', 'b.csv']);
});
test('csv: a header read as one column that holds another delimiter is refused before any row, naming the delimiter', async () => {
  // Excel in a locale whose decimal mark is the comma saves ';'-separated CSV (with a byte-order mark and CRLF).
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), '\ufeffMessage;Category\r\n"a; ""b""";ham\r\nc;spam\r\n');
  await assert.rejects(
    run(dir, { task: 'classification', fields: { text: 'Message', label: 'Category' }, path: 'a.csv' }),
    (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.equal(e.where, 'fields.text');
      assert.match(e.message, /its columns: "Message;Category"/);
      assert.equal(e.hint, 'the header line is read as one column, and it holds ";": set delimiter: ";"');
      return true;
    },
  );
  assert.deepEqual(readdirSync(dir), ['a.csv']);
  const r = await run(dir, { task: 'classification', fields: { text: 'Message', label: 'Category' }, path: 'a.csv', delimiter: ';' });
  assert.equal(r.rowsOut, 2);
  assert.equal((await readAll(join(dir, 'out.arrow')))[0].text, 'a; "b"');
});
test('an HTML page saved in place of a data file fails as that file, also among good files with quarantine', async () => {
  const dir = tmp();
  mkdirSync(join(dir, 'parts'));
  writeFileSync(join(dir, 'parts/1.jsonl'), '{"text":"a","label":"ham"}\n');
  writeFileSync(join(dir, 'parts/2.jsonl'), '<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>\n</html>\n');
  writeFileSync(join(dir, 'page.csv'), '\n<html lang="en">\n<body>Sign in</body></html>\n');
  // A tag whose attributes go on the next lines, and a bare body (a proxy's error text).
  writeFileSync(join(dir, 'wrapped.jsonl'), '<html\n  lang="en">\n</html>\n');
  writeFileSync(join(dir, 'body.tsv'), '<BODY>\nToo many requests\n</BODY>\n');
  for (const [path, where, kind] of [
    ['parts/*.jsonl', 'parts/2.jsonl:1', 'JSON Lines'],
    ['page.csv', 'page.csv:2', 'CSV'],
    ['wrapped.jsonl', 'wrapped.jsonl:1', 'JSON Lines'],
    ['body.tsv', 'body.tsv:1', 'TSV'],
  ]) {
    await assert.rejects(run(dir, { task: 'classification', path, onBadRow: 'quarantine' }), (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.equal(e.where, where);
      assert.match(e.message, new RegExp(`an HTML or XML page, not ${kind}`));
      assert.match(e.hint ?? '', /download the file again/);
      return true;
    });
    assert.deepEqual(readdirSync(dir).sort(), ['body.tsv', 'page.csv', 'parts', 'wrapped.jsonl']);
  }
});
test('an HTML page saved as a headerless TSV (header: false) fails as that file too, not as rows', async () => {
  const dir = tmp();
  mkdirSync(join(dir, 'shards'));
  writeFileSync(join(dir, 'shards/1.tsv'), 'ham\thello\n');
  writeFileSync(join(dir, 'shards/2.tsv'), '<html>\n<body>Rate limit exceeded</body>\n</html>\n');
  const cfg: IngestConfig = { task: 'classification', path: 'shards', header: false, columns: ['label', 'text'], onBadRow: 'quarantine' };
  await assert.rejects(run(dir, cfg), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'shards/2.tsv:1', String(e));
    assert.match(e.message, /an HTML or XML page, not TSV/);
    return true;
  });
  // An HTML mail in a spam set is data: its line splits into the columns set, as no page's does.
  rmSync(join(dir, 'shards/2.tsv'));
  writeFileSync(join(dir, 'mail.tsv'), '<html><body>Buy now</body></html>\tspam\n');
  const r = await run(dir, { ...cfg, path: 'mail.tsv', columns: ['text', 'label'], onBadRow: 'fail' });
  assert.equal(r.rowsOut, 1);
});
test('a Windows-1252 file: each bad row names its first byte that is not UTF-8, the hint the encoding; encoding: windows-1252 reads it', async () => {
  const dir = tmp();
  // Excel on Windows: é (0xE9), the curly apostrophe (0x92), the euro sign (0x80) and a dash (0x96).
  const win = (s: string) => Buffer.from([...s].map((c) => ({ é: 0xe9, '’': 0x92, '€': 0x80, '–': 0x96 })[c] ?? c.charCodeAt(0)));
  writeFileSync(join(dir, 'a.csv'), win('text,label\r\nJe t’appelle,ham\r\nplain ascii,ham\r\nGagné 1000€ – vite,spam\r\n'));
  await assert.rejects(run(dir, { task: 'classification', path: 'a.csv' }), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, /a\.csv:2: invalid-utf8: record is not valid UTF-8: byte 0x92 \("’" in Windows-1252\) at byte 5\n/);
    assert.match(e.message, /a\.csv:4: invalid-utf8: record is not valid UTF-8: byte 0xE9 \("é" in Windows-1252\) at byte 5$/);
    assert.match(e.hint ?? '', /set encoding: windows-1252/);
    return true;
  });
  await assert.rejects(run(dir, { task: 'classification', path: 'a.csv', onBadRow: 'quarantine', maxBadFraction: 0.5 }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'maxBadFraction', String(e));
    assert.match(e.hint ?? '', /probably not UTF-8: .*set encoding: windows-1252/);
    return true;
  });
  assert.deepEqual(readdirSync(dir), ['a.csv']);
  for (const encoding of ['windows-1252', 'cp1252', 'latin1'] as const) {
    const r = await run(dir, { task: 'classification', path: 'a.csv', encoding });
    assert.equal(r.rowsOut, 3);
    assert.deepEqual(
      (await readAll(join(dir, 'out.arrow'))).map((x) => x.text),
      ['Je t’appelle', 'plain ascii', 'Gagné 1000€ – vite'],
    );
  }
  // A header that is not UTF-8 fails the file: its column names would not match any mapping.
  writeFileSync(join(dir, 'b.csv'), win('texté,label\nx,ham\n'));
  await assert.rejects(run(dir, { task: 'classification', path: 'b.csv', fields: { text: 'texté' } }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'b.csv:1', String(e));
    assert.match(e.message, /the header is not valid UTF-8: byte 0xE9 \("é" in Windows-1252\) at byte 5/);
    return true;
  });
  assert.equal((await run(dir, { task: 'classification', path: 'b.csv', fields: { text: 'texté' }, encoding: 'windows-1252' })).rowsOut, 1);
  // A UTF-8 file (its byte-order mark says so) read as windows-1252 would be mojibake; a Parquet file's strings are UTF-8.
  writeFileSync(join(dir, 'c.csv'), '\ufefftext,label\ncafé,ham\n');
  await assert.rejects(
    run(dir, { task: 'classification', path: 'c.csv', encoding: 'windows-1252' }),
    /c\.csv: the file starts with a UTF-8 byte-order mark, but encoding is windows-1252/,
  );
  await assert.rejects(
    run(dir, { task: 'classification', path: 'd.parquet', encoding: 'latin1' }),
    (e: unknown) => e instanceof InputError && e.where === 'encoding',
  );
});
/** Labels spelt three ways, plus numbers: what the warning and labelMap tests both start from. */
function writeMixedLabels(dir: string): void {
  const labels: (string | number)[] = ['ham', 'Ham', 'ham ', 'spam', 0, 1, 'spam'];
  writeFileSync(join(dir, 'a.jsonl'), labels.map((label, i) => JSON.stringify({ text: 'abcdefg'[i], label })).join('\n'));
}
test('inferred labels that differ only in case or spaces, or mix numbers and words, are warnings in the report', async () => {
  const dir = tmp();
  writeMixedLabels(dir);
  const r = await run(dir, { task: 'classification', path: 'a.jsonl' });
  assert.deepEqual(r.warnings, [
    'labels that differ only in case or surrounding spaces are classes of their own: "Ham" 1, "ham" 1, "ham " 1; merge them with labelMap: {"Ham": "ham", "ham ": "ham"}, or clean them in the data, or declare labels: [...] to make the other spellings bad rows',
    'labels mix numbers ("0" 1, "1" 1) and words ("Ham" 1, "ham" 1, "ham " 1, "spam" 2), each a class of its own: if the numbers stand for the words, map them with labelMap: {"0": "…", "1": "…"} (each to the word it stands for) or write the words in the data; declare labels: [...] to make the others bad rows',
  ]);
  assert.match(formatDataReport(r), /\nwarning: labels that differ only in case/);
  // Declared labels make other spellings bad rows: only those left out is there to warn of (the numbers are no
  // spelling of ham or spam, so only quarantined). Clean labels: nothing.
  const declared = await run(dir, {
    task: 'classification',
    path: 'a.jsonl',
    labels: ['ham', 'spam'],
    onBadRow: 'quarantine',
    maxBadFraction: 1,
  });
  assert.deepEqual(declared.warnings, [
    '2 row(s) were left out as unknown-label whose label is a declared one written differently ("Ham" 1 → "ham", "ham " 1 → "ham"): labelMap: {"Ham": "ham", "ham ": "ham"} keeps them',
  ]);
  writeFileSync(join(dir, 'b.jsonl'), [j({ text: 'a', label: 'ham' }), j({ text: 'b', label: 'spam' })].join('\n'));
  assert.equal((await run(dir, { task: 'classification', path: 'b.jsonl' })).warnings, undefined);
  // The most common spelling padded with a space is no class name to merge onto; a group padded alone is merged trimmed.
  const padded = ['ham ', 'ham ', 'ham ', 'Ham', 'Ham', 'ham', ' spam', 'spam ', 'spam ', 'spam'];
  writeFileSync(join(dir, 'c.jsonl'), padded.map((label, i) => j({ text: `t${i}`, label })).join('\n'));
  assert.match(
    (await run(dir, { task: 'classification', path: 'c.jsonl' })).warnings?.[0] ?? '',
    /merge them with labelMap: \{" spam": "spam", "spam ": "spam", "ham": "Ham", "ham ": "Ham"\}/,
  );
  writeFileSync(join(dir, 'd.jsonl'), ['ok ', ' ok', ' ok'].map((label, i) => j({ text: `t${i}`, label })).join('\n'));
  assert.match((await run(dir, { task: 'classification', path: 'd.jsonl' })).warnings?.[0] ?? '', /labelMap: \{" ok": "ok", "ok ": "ok"\}/);
});
test('one number written two ways ("0", "0.0": pandas writes floats for a column with a missing value) is one class in the warnings, and rows left out for another spelling of a declared label are a warning naming the labelMap', async () => {
  const dir = tmp();
  // An export by pandas (floats) beside a JSONL of integers: 0/1/2 and 0.0/1.0/2.0 were six classes, and the warning
  // called "0.0" a word to map onto a number.
  writeFileSync(join(dir, 'a.csv'), 'text,label\n' + Array.from({ length: 6 }, (_, i) => `csv ${i},${i % 3}.0\n`).join(''));
  writeFileSync(join(dir, 'b.jsonl'), Array.from({ length: 6 }, (_, i) => j({ text: `json ${i}`, label: i % 3 })).join('\n'));
  const inferred = await run(dir, { task: 'classification', path: '.' });
  assert.deepEqual(inferred.warnings, [
    'labels that are one number written differently are classes of their own: "0" 2, "0.0" 2; "1" 2, "1.0" 2; "2" 2, "2.0" 2 (pandas writes a whole-number column that holds a missing value as 0.0, 1.0, …); merge them with labelMap: {"0.0": "0", "1.0": "1", "2.0": "2"}, or clean them in the data, or declare labels: [...] to make the other spellings bad rows',
  ]);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  // Declared, the other spelling's rows were quarantined with nothing but "not one of" to say why: half the data.
  const declared = await run(dir, {
    task: 'classification',
    path: '.',
    labels: ['0', '1', '2'],
    onBadRow: 'quarantine',
    maxBadFraction: 0.5,
  });
  assert.deepEqual([declared.rowsOut, declared.badRows], [6, { 'unknown-label': 6 }]);
  assert.deepEqual(declared.warnings, [
    '6 row(s) were left out as unknown-label whose label is a declared one written differently ("0.0" 2 → "0", "1.0" 2 → "1", "2.0" 2 → "2"): labelMap: {"0.0": "0", "1.0": "1", "2.0": "2"} keeps them',
  ]);
  assert.match(
    declared.firstQuarantined![0]!,
    /^a\.csv:2: unknown-label: label "0\.0" is not one of \["0","1","2"\]; it is "0" written differently: labelMap: \{"0\.0": "0"\} keeps such rows$/,
  );
  assert.match(formatDataReport(declared), /\nwarning: 6 row\(s\) were left out as unknown-label/);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  const mapped = await run(dir, {
    task: 'classification',
    path: '.',
    labels: ['0', '1', '2'],
    labelMap: { '0.0': '0', '1.0': '1', '2.0': '2' },
  });
  assert.deepEqual([mapped.rowsOut, mapped.labels, mapped.warnings], [12, { '0': 4, '1': 4, '2': 4 }, undefined]);
});
test('a null text is said to be null, not missing, and is no sign that the mapping is wrong', async () => {
  const dir = tmp();
  // pandas writes NaN as null: the field is there. "is missing", and with every bad row such, "every row lacks field
  // Body: the mapping is probably wrong", sent the user looking for a column the file has.
  writeFileSync(join(dir, 'a.jsonl'), [j({ Body: 'ok', label: 'a' }), j({ Body: null, label: 'a' }), j({ label: 'b' })].join('\n'));
  const r = await run(dir, {
    task: 'classification',
    path: 'a.jsonl',
    fields: { text: 'Body' },
    onBadRow: 'quarantine',
    maxBadFraction: 1,
  });
  assert.deepEqual(r.firstQuarantined, [
    'a.jsonl:2: missing-field: field "Body" (text) is null',
    'a.jsonl:3: missing-field: field "Body" (text) is missing',
  ]);
  writeFileSync(
    join(dir, 'b.jsonl'),
    [j({ Body: 'ok', label: 'a' }), j({ Body: null, label: 'a' }), j({ Body: null, label: 'b' })].join('\n'),
  );
  await assert.rejects(
    run(dir, { task: 'classification', path: 'b.jsonl', fields: { text: 'Body' }, onBadRow: 'quarantine', maxBadFraction: 0.5 }),
    (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, /b\.jsonl:2: field "Body" \(text\) is null/);
      assert.doesNotMatch(e.hint ?? '', /every row lacks/);
      return true;
    },
  );
});
test('a null promptTemplate field is said to be null, not missing, and is no sign that the template names the wrong field', async () => {
  const dir = tmp();
  // d3a47c9 did this for fields read whole; a template field that pandas wrote as null still said "is missing", and
  // with every bad row such, the hint said the template probably names the wrong field.
  writeFileSync(
    join(dir, 'a.jsonl'),
    [j({ instruction: 'ok', output: 'x' }), j({ instruction: null, output: 'y' }), j({ instruction: null, output: 'z' })].join('\n'),
  );
  const cfg = { task: 'instruction', path: 'a.jsonl', promptTemplate: 'Q: {instruction}', fields: { response: 'output' } } as const;
  await assert.rejects(run(dir, { ...cfg, onBadRow: 'quarantine', maxBadFraction: 0.5 }), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, /a\.jsonl:2: template field "instruction" is null/);
    assert.doesNotMatch(e.hint ?? '', /every row lacks|lack/);
    return true;
  });
});
test('labels with leading zeros ("01" beside "1") are codes, not one number written two ways: no merge is suggested, "01.0" is still "01"', async () => {
  const dir = tmp();
  // Two ZIP-like codes: the number-forms warning suggested labelMap: {"01": "1", "02": "2"}, merging them.
  writeFileSync(join(dir, 'a.jsonl'), ['01', '1', '02', '2', '01', '1'].map((label, i) => j({ text: `t${i}`, label })).join('\n'));
  assert.equal((await run(dir, { task: 'classification', path: 'a.jsonl' })).warnings, undefined);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  writeFileSync(join(dir, 'b.jsonl'), ['01', '01.0', '1'].map((label, i) => j({ text: `t${i}`, label })).join('\n'));
  assert.deepEqual((await run(dir, { task: 'classification', path: 'b.jsonl' })).warnings, [
    'labels that are one number written differently are classes of their own: "01" 1, "01.0" 1 (pandas writes a whole-number column that holds a missing value as 0.0, 1.0, …); merge them with labelMap: {"01.0": "01"}, or clean them in the data, or declare labels: [...] to make the other spellings bad rows',
  ]);
});
test("a label that differs from another in spaces alone is merged by one warning's labelMap, not by both", async () => {
  const dir = tmp();
  // " 1" beside "1" and "1.0": the case-or-spaces warning and the number-forms warning each offered " 1" → "1".
  writeFileSync(join(dir, 'a.jsonl'), [' 1', '1', '1.0', '1'].map((label, i) => j({ text: `t${i}`, label })).join('\n'));
  const warnings = (await run(dir, { task: 'classification', path: 'a.jsonl' })).warnings ?? [];
  assert.equal(warnings.length, 2, warnings.join('\n'));
  assert.match(warnings[0]!, /merge them with labelMap: \{" 1": "1"\}/);
  assert.match(warnings[1]!, /merge them with labelMap: \{"1\.0": "1"\}/);
});
test('labels that differ only in Unicode normalisation (café as U+00E9, or e + U+0301) are a warning with the spellings escaped; declared, such rows say which label they are', async () => {
  const dir = tmp();
  // One export from macOS (NFD), one from elsewhere (NFC): two classes that printed alike, without a word.
  const nfc = 'caf\u00e9';
  const nfd = 'cafe\u0301';
  writeFileSync(join(dir, 'a.jsonl'), [nfc, nfc, 'tea', 'tea'].map((label, i) => j({ text: `a${i}`, label })).join('\n'));
  writeFileSync(join(dir, 'b.csv'), `text,label\n${[nfd, 'tea', nfd, nfd].map((label, i) => `b${i},${label}\n`).join('')}`);
  const inferred = await run(dir, { task: 'classification', path: '.' });
  assert.deepEqual(inferred.labels, { [nfc]: 2, [nfd]: 3, tea: 3 });
  assert.deepEqual(inferred.warnings, [
    'labels that differ only in Unicode normalisation print alike but are classes of their own: "cafe\\u0301" 3, "caf\\u00e9" 2 (é as one code point, \\u00e9, or as e and a combining accent, e\\u0301); merge them with labelMap: {"cafe\\u0301": "caf\\u00e9"}, or normalise the data to NFC, or declare labels: [...] to make the other spellings bad rows',
  ]);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  const declared = await run(dir, { task: 'classification', path: '.', labels: [nfc, 'tea'], onBadRow: 'quarantine', maxBadFraction: 0.5 });
  assert.deepEqual([declared.rowsOut, declared.badRows], [5, { 'unknown-label': 3 }]);
  assert.equal(
    declared.firstQuarantined![0],
    `b.csv:2: unknown-label: label "cafe\\u0301" is not one of ${JSON.stringify([nfc, 'tea'])}; it is "caf\\u00e9" written differently: labelMap: {"cafe\\u0301": "caf\\u00e9"} keeps such rows`,
  );
  assert.deepEqual(declared.warnings, [
    '3 row(s) were left out as unknown-label whose label is a declared one written differently ("cafe\\u0301" 3 → "caf\\u00e9"): labelMap: {"cafe\\u0301": "caf\\u00e9"} keeps them',
  ]);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  // The labelMap as the warning writes it, read as YAML reads a pipeline's: the escapes are the rows' bytes.
  const labelMap = parse('m: {"cafe\\u0301": "caf\\u00e9"}').m as Record<string, string>;
  const mapped = await run(dir, { task: 'classification', path: '.', labels: [nfc, 'tea'], labelMap });
  assert.deepEqual([mapped.labels, mapped.warnings], [{ [nfc]: 5, tea: 3 }, undefined]);
  // "Café" in the other normal form differs in case too: it was in neither warning. The two labelMaps together merge
  // every spelling onto one class, each spelling in one of them.
  writeFileSync(join(dir, 'c.jsonl'), ['Cafe\u0301', nfc, nfc, nfd].map((label, i) => j({ text: `c${i}`, label })).join('\n'));
  assert.deepEqual((await run(dir, { task: 'classification', path: 'c.jsonl' })).warnings, [
    'labels that differ only in case or surrounding spaces (and Unicode normalisation, shown escaped) are classes of their own: "Cafe\\u0301" 1, "cafe\\u0301" 1, "caf\\u00e9" 2; merge them with labelMap: {"Cafe\\u0301": "caf\\u00e9"}, or clean them in the data, or declare labels: [...] to make the other spellings bad rows',
    'labels that differ only in Unicode normalisation print alike but are classes of their own: "cafe\\u0301" 1, "caf\\u00e9" 2 (é as one code point, \\u00e9, or as e and a combining accent, e\\u0301); merge them with labelMap: {"cafe\\u0301": "caf\\u00e9"}, or normalise the data to NFC, or declare labels: [...] to make the other spellings bad rows',
  ]);
});
// A label over the 40 characters a list shows is cut there and written whole in the labelMap: the escaped set held the
// cut spellings only, so the map wrote the two spellings unescaped, alike on screen.
test('a long label that differs in case and Unicode normalisation is escaped in the labelMap too, not only in the list', async () => {
  const dir = tmp();
  const p = 'x'.repeat(45);
  writeFileSync(
    join(dir, 'a.jsonl'),
    [`${p}Caf\u00e9`, `${p}Caf\u00e9`, `${p}cafe\u0301`].map((label, i) => j({ text: `a${i}`, label })).join('\n'),
  );
  const warnings = (await run(dir, { task: 'classification', path: 'a.jsonl' })).warnings ?? [];
  assert.equal(warnings.length, 1, warnings.join('\n'));
  assert.ok(warnings[0]!.includes(`merge them with labelMap: {"${p}cafe\\u0301": "${p}Caf\\u00e9"}`), warnings[0]);
});
// "Cafe\u0301" the most common, beside "caf\u00e9" and "cafe\u0301": the case warning mapped "cafe\u0301" onto
// "Cafe\u0301" and the normalisation warning onto "caf\u00e9", a key in both labelMaps (a YAML error together; either
// one's alone left two classes). Spaces round all of them: the normalisation warning merged onto " caf\u00e9".
test("the case and normalisation warnings' labelMaps, taken together, map each spelling once and merge the group into one class", async () => {
  const dir = tmp();
  for (const labels of [
    ['Cafe\u0301', 'Cafe\u0301', 'Cafe\u0301', 'caf\u00e9', 'caf\u00e9', 'cafe\u0301', 'tea'],
    [' cafe\u0301', ' cafe\u0301', ' cafe\u0301', ' caf\u00e9', 'Caf\u00e9 ', 'tea'],
    ['Cafe\u0301', 'cafe\u0301', 'cafe\u0301', 'caf\u00e9', 'tea'],
    // Two forms that are not NFC (the marks in either order) and no NFC one: both warnings merge onto one of them.
    ['e\u0301\u0323', 'e\u0301\u0323', 'e\u0323\u0301', 'e\u0323\u0301', 'E\u0323\u0301', 'tea'],
  ]) {
    writeFileSync(join(dir, 'a.jsonl'), labels.map((label, i) => j({ text: `a${i}`, label })).join('\n'));
    const warned = await run(dir, { task: 'classification', path: 'a.jsonl' });
    rmSync(join(dir, 'out.arrow'));
    const labelMap: Record<string, string> = {};
    for (const w of warned.warnings ?? [])
      for (const [k, v] of Object.entries(parse(/merge them with labelMap: (\{.*?\}), or/.exec(w)![1]!) as Record<string, string>)) {
        assert.ok(!Object.hasOwn(labelMap, k), `${JSON.stringify(k)} in two labelMaps: ${warned.warnings!.join('\n')}`);
        labelMap[k] = v;
      }
    const mapped = await run(dir, { task: 'classification', path: 'a.jsonl', labelMap });
    rmSync(join(dir, 'out.arrow'));
    assert.equal(Object.keys(mapped.labels!).length, 2, JSON.stringify([labels, labelMap, mapped.labels]));
    assert.ok(
      Object.keys(mapped.labels!).every((l) => l === l.trim()),
      JSON.stringify(mapped.labels),
    );
    assert.equal(mapped.warnings, undefined);
  }
});
// A label over 40 characters is shown cut short ("…"), and its suggested labelMap was cut the same way: pasted, it
// matched no row. An emoji at the cut was split in half ("\ud83d" in the JSON).
test('a suggested labelMap writes a long label whole, so pasted it merges the rows; one over 200 characters is counted, not cut', async () => {
  const dir = tmp();
  const long = `Billing and account questions, refunds 🧾 included`;
  const huge = `x${'y'.repeat(250)}`;
  const labels = [long, long, long.toUpperCase(), huge, huge, huge.toUpperCase(), 'tea'];
  writeFileSync(join(dir, 'a.jsonl'), labels.map((label, i) => j({ text: `a${i}`, label })).join('\n'));
  const warned = await run(dir, { task: 'classification', path: 'a.jsonl' });
  rmSync(join(dir, 'out.arrow'));
  const [w] = warned.warnings!;
  assert.match(w!, /\(and 1 label\(s\) over 200 characters left out of it: map them by their whole text\)/);
  assert.doesNotMatch(w!, /\\ud83c/, 'no half of a surrogate pair');
  const labelMap = parse(/merge them with labelMap: (\{.*?\})/.exec(w!)![1]!) as Record<string, string>;
  assert.deepEqual(labelMap, { [long.toUpperCase()]: long });
  const mapped = await run(dir, { task: 'classification', path: 'a.jsonl', labelMap });
  assert.deepEqual(mapped.labels, { [long]: 3, [huge]: 2, [huge.toUpperCase()]: 1, tea: 1 });
  // Declared labels: the rows of a long one written differently are named with the labelMap that keeps them, whole.
  rmSync(join(dir, 'out.arrow'));
  const declared = await run(dir, {
    task: 'classification',
    path: 'a.jsonl',
    labels: [long, huge, 'tea'],
    onBadRow: 'quarantine',
    maxBadFraction: 0.5,
  });
  const kept = declared.warnings!.find((x) => x.includes('keeps them'))!;
  assert.match(kept, /and 1 label\(s\) over 200 characters left out of it/);
  assert.deepEqual(parse(/labelMap: (\{.*?\})/.exec(kept)![1]!), { [long.toUpperCase()]: long });
});
test('the case warning escapes only the groups that differ in normalisation too', async () => {
  const dir = tmp();
  // Every group was escaped once one was: "\u0421\u043f\u0430\u043c" for a Russian "Спам" beside one "cafe\u0301".
  const labels = ['Спам', 'Спам', 'спам', 'Cafe\u0301', 'caf\u00e9', 'caf\u00e9'];
  writeFileSync(join(dir, 'a.jsonl'), labels.map((label, i) => j({ text: `a${i}`, label })).join('\n'));
  assert.deepEqual((await run(dir, { task: 'classification', path: 'a.jsonl' })).warnings, [
    'labels that differ only in case or surrounding spaces (and Unicode normalisation, shown escaped) are classes of their own: "Cafe\\u0301" 1, "caf\\u00e9" 2; "Спам" 2, "спам" 1; merge them with labelMap: {"Cafe\\u0301": "caf\\u00e9", "спам": "Спам"}, or clean them in the data, or declare labels: [...] to make the other spellings bad rows',
  ]);
});
test('a JSON boolean label is the class "true" or "false"; beside "True" strings (pandas\' CSV) it is the case warning\'s, and a declared "True" names it', async () => {
  const dir = tmp();
  // No warning of its own: a boolean alone is a class like any other, read as its JSON text.
  writeFileSync(join(dir, 'a.jsonl'), [true, false, true].map((label, i) => j({ text: `a${i}`, label })).join('\n'));
  const alone = await run(dir, { task: 'classification', path: 'a.jsonl' });
  assert.deepEqual([alone.labels, alone.warnings], [{ false: 1, true: 2 }, undefined]);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  // JSONL booleans beside a CSV of True/TRUE, as pandas and spreadsheets write them: look-alike classes, one warning.
  writeFileSync(join(dir, 'b.csv'), 'text,label\nb0,True\nb1,TRUE\nb2,False\n');
  const mixed = await run(dir, { task: 'classification', path: '.' });
  assert.deepEqual(mixed.warnings, [
    'labels that differ only in case or surrounding spaces are classes of their own: "False" 1, "false" 1; "TRUE" 1, "True" 1, "true" 2; merge them with labelMap: {"False": "false", "TRUE": "true", "True": "true"}, or clean them in the data, or declare labels: [...] to make the other spellings bad rows',
  ]);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  const declared = await run(dir, {
    task: 'classification',
    path: '.',
    labels: ['True', 'False'],
    onBadRow: 'quarantine',
    maxBadFraction: 1,
  });
  assert.match(
    declared.firstQuarantined![0]!,
    /^a\.jsonl:1: unknown-label: label "true" is not one of \["True","False"\]; it is "True" written differently: labelMap: \{"true": "True"\} keeps such rows$/,
  );
});
test('inferred labels that are nearly all one row each are a warning (the label field holds text), and the report lists 30 at most', async () => {
  const dir = tmp();
  // fields.label pointed at the text by mistake: a class per row.
  writeFileSync(join(dir, 'a.jsonl'), Array.from({ length: 40 }, (_, i) => j({ text: `t${i}`, label: `message number ${i}` })).join('\n'));
  const r = await run(dir, { task: 'classification', path: 'a.jsonl' });
  assert.deepEqual(r.warnings, [
    '40 distinct labels among 40 rows, 40 of them on one row only: each label is a class, so field "label" (fields.label) probably holds text, not a class; point fields.label at the class column, or declare labels: [...] to make the others bad rows',
  ]);
  const labelsLine = formatDataReport(r)
    .split('\n')
    .find((l) => l.startsWith('labels: '))!;
  assert.match(labelsLine, /, and 10 more labels \(10 rows\)$/);
  assert.equal(labelsLine.split(', ').length, 31);
  // Many classes of several rows each (an intent set) are no such warning, and 30 labels are all listed.
  writeFileSync(join(dir, 'b.jsonl'), Array.from({ length: 90 }, (_, i) => j({ text: `t${i}`, label: `intent${i % 30}` })).join('\n'));
  const b = await run(dir, { task: 'classification', path: 'b.jsonl', fields: { label: 'label' } });
  assert.equal(b.warnings, undefined);
  assert.doesNotMatch(formatDataReport(b), /more labels/);
});
test('labelMap merges label spellings before labels are checked; a target not among labels is refused at its key', async () => {
  const dir = tmp();
  writeMixedLabels(dir);
  const labelMap = { Ham: 'ham', 'ham ': 'ham', '0': 'ham', '1': 'spam' };
  const r = await run(dir, { task: 'classification', path: 'a.jsonl', labels: ['ham', 'spam'], labelMap });
  assert.deepEqual([r.rowsIn, r.rowsOut, r.labels, r.warnings], [7, 7, { ham: 4, spam: 3 }, undefined]);
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => [x.text, x.label]),
    [
      ['a', 'ham'],
      ['b', 'ham'],
      ['c', 'ham'],
      ['d', 'spam'],
      ['e', 'ham'],
      ['f', 'spam'],
      ['g', 'spam'],
    ],
  );
  // A row's content hash is of the label it is given: dedupe compares it as a ham row.
  const hashes = (await readAll(join(dir, 'out.arrow'))).map((x) => x._hash);
  assert.equal(
    hashes[1],
    createHash('sha256')
      .update(JSON.stringify(['classification', 'b', 'ham']))
      .digest('hex'),
  );
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  // Without labels the targets are classes as inferred; what the map leaves (the numbers) is still warned of.
  const inferred = await run(dir, { task: 'classification', path: 'a.jsonl', labelMap: { Ham: 'ham', 'ham ': 'ham' } });
  assert.deepEqual(inferred.labels, { '0': 1, '1': 1, ham: 3, spam: 2 });
  assert.deepEqual(inferred.warnings?.length, 1);
  assert.match(inferred.warnings![0]!, /^labels mix numbers \("0" 1, "1" 1\) and words \("ham" 3, "spam" 2\)/);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  // A label neither declared nor mapped is still a bad row, whose hint names labelMap.
  await assert.rejects(
    run(dir, { task: 'classification', path: 'a.jsonl', labels: ['ham', 'spam'], labelMap: { Ham: 'ham' } }),
    (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, /a\.jsonl:3: unknown-label: label "ham " is not one of \["ham","spam"\] \(nor a key of labelMap\)/);
      assert.match(e.hint ?? '', /with labelMap/);
      return true;
    },
  );
  // Refused before reading, at the key whose target is unknown; and on a task without labels.
  await assert.rejects(
    run(dir, { task: 'classification', path: 'a.jsonl', labels: ['ham', 'spam'], labelMap: { Ham: 'ham', '0': 'Spam' } }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'labelMap.0' &&
      /maps "0" to "Spam", which is not one of labels \["ham","spam"\]/.test(e.message),
  );
  await assert.rejects(
    run(dir, { task: 'instruction', path: 'a.jsonl', labelMap: { Ham: 'ham' } }),
    (e: unknown) => e instanceof InputError && e.where === 'labelMap',
  );
  assert.deepEqual(readdirSync(dir), ['a.jsonl']);
});
test('a null label (pandas writes NaN so) is named null, not missing', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.jsonl'), [j({ text: 'a', label: 'ham' }), j({ text: 'b', label: null })].join('\n'));
  await assert.rejects(run(dir, { task: 'classification', path: 'a.jsonl' }), /a\.jsonl:2: missing-label: label field "label" is null/);
});
test("csv: a column without a name (pandas' index) is left out, and rows of delimiters alone (a spreadsheet's empty rows) are blank", async () => {
  const dir = tmp();
  // df.to_csv() without index=False, saved from a spreadsheet with empty rows below and an empty column beside the data.
  writeFileSync(join(dir, 'a.csv'), ',text,label, \r\n0,hello,ham,\r\n1,"a, b",spam,\r\n,,,\r\n ,, ,\r\n');
  const r = await run(dir, { task: 'classification', path: 'a.csv' });
  assert.equal(r.rowsIn, 2);
  assert.equal(r.linesIn, 2);
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => [x.text, x.label, x._row]),
    [
      ['hello', 'ham', 2],
      ['a, b', 'spam', 3],
    ],
  );
  // The report accounts for every line (`wc -l`: 5 = the header + 2 rows + 2 blank) and names the columns left out.
  assert.equal(r.blankLines, 2);
  assert.deepEqual(r.unnamedColumns, { 'a.csv': [1, 4] });
  const text = formatDataReport(r);
  assert.match(text, /\nblank lines: 2 skipped, not rows \(empty, or delimiters alone\)\n/);
  assert.match(text, /\nleft out: a\.csv: columns 1, 4, no name in the header \(column 1: pandas' index, as df\.to_csv\(\) writes it\)\n/);
  // JSONL: blank lines, with spaces, at the end too; a file without any has neither field.
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  writeFileSync(join(dir, 'c.jsonl'), `${j({ text: 'a', label: 'ham' })}\n\n  \n${j({ text: 'b', label: 'spam' })}\n\n`);
  const c = await run(dir, { task: 'classification', path: 'c.jsonl' });
  assert.deepEqual([c.rowsIn, c.linesIn, c.blankLines, c.unnamedColumns], [2, 2, 3, undefined]);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  writeFileSync(join(dir, 'd.csv'), 'text,label\nhello,ham\n');
  const d = await run(dir, { task: 'classification', path: 'd.csv' });
  assert.ok(!('blankLines' in d) && !('unnamedColumns' in d), JSON.stringify(d));
  assert.match(
    formatDataReport({ ...d, unnamedColumns: { 'e.csv': [1] } }),
    /\nleft out: e\.csv: column 1, no name in the header \(pandas' index, as df\.to_csv\(\) writes it\)\n/,
  );
  assert.doesNotMatch(formatDataReport(d), /blank lines|left out/);
  // A sheet's 30 empty trailing columns: 20 listed, the rest counted.
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  writeFileSync(join(dir, 'w.csv'), `a,text,label${','.repeat(30)}\n1,hello,ham${','.repeat(30)}\n`);
  const w = await run(dir, { task: 'classification', path: 'w.csv' });
  assert.deepEqual([w.unnamedColumns?.['w.csv']?.length, w.unnamedColumnsNotListed], [20, { 'w.csv': 10 }]);
  assert.match(formatDataReport(w), /\nleft out: w\.csv: columns 4, 5, .*, 23 and 10 more, no name in the header\n/);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  // A row with a field, however short, is still a row.
  writeFileSync(join(dir, 'b.csv'), 'text,label\nhello,ham\n,x\n');
  await assert.rejects(run(dir, { task: 'classification', path: 'b.csv' }), /b\.csv:3: empty-text/);
});
test('gzip-compressed text files are read through gunzip and hashed as the file; a cut-short one fails naming the file', async () => {
  const dir = tmp();
  mkdirSync(join(dir, 'd'));
  const jsonl = gzipSync([good(1), good(2)].join('\n'));
  writeFileSync(join(dir, 'd/a.jsonl.gz'), jsonl);
  writeFileSync(join(dir, 'd/b.csv.gz'), gzipSync('text,label\n"x, y",ham\n'));
  // A download saved compressed under the plain name: the magic number says gzip, not the name.
  writeFileSync(join(dir, 'd/c.csv'), gzipSync('text,label\nz,spam\n'));
  const r = await run(dir, { task: 'classification', path: 'd' });
  assert.equal(r.rowsOut, 4);
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => [x._source, x.text]),
    [
      ['d/a.jsonl.gz', 'message 1'],
      ['d/a.jsonl.gz', 'message 2'],
      ['d/b.csv.gz', 'x, y'],
      ['d/c.csv', 'z'],
    ],
  );
  assert.equal(r.sourceFiles[0].sha256, createHash('sha256').update(jsonl).digest('hex'));
  assert.equal(r.sourceFiles[0].bytes, jsonl.length);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  writeFileSync(join(dir, 'cut.jsonl.gz'), jsonl.subarray(0, jsonl.length - 12));
  await assert.rejects(run(dir, { task: 'classification', path: 'cut.jsonl.gz', onBadRow: 'quarantine' }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'cut.jsonl.gz', String(e));
    assert.match(e.message, /not a readable gzip file: unexpected end of file/);
    assert.match(e.hint ?? '', /cut short/);
    return true;
  });
  assert.deepEqual(readdirSync(dir).sort(), ['cut.jsonl.gz', 'd']);
});
test('gzip: members one after another are read whole; zero padding is warned of, hashed, and not a row; other bytes after the data fail', async () => {
  const dir = tmp();
  // `gzip -c a >> x.gz`, then what `dd conv=sync` adds: zeros up to a whole block.
  const members = Buffer.concat([gzipSync('text,label\nfirst,ham\n'), gzipSync('second,spam\n')]);
  const padded = Buffer.concat([members, Buffer.alloc(512 - (members.length % 512))]);
  writeFileSync(join(dir, 'x.csv.gz'), padded);
  const r = await run(dir, { task: 'classification', path: 'x.csv.gz' });
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => [x.text, x.label]),
    [
      ['first', 'ham'],
      ['second', 'spam'],
    ],
  );
  assert.equal(r.sourceFiles[0].sha256, createHash('sha256').update(padded).digest('hex'));
  assert.deepEqual(r.warnings, [
    `x.csv.gz: ${padded.length - members.length} zero bytes after the gzip data (padding, as tape and dd write) ignored`,
  ]);
  assert.match(formatDataReport(r), /\nwarning: x\.csv\.gz: \d+ zero bytes after the gzip data/);
  for (const f of ['out.arrow', 'quarantine.arrow']) rmSync(join(dir, f));
  writeFileSync(join(dir, 'y.csv.gz'), Buffer.concat([members, Buffer.from('<html>proxy error</html>\n')]));
  await assert.rejects(run(dir, { task: 'classification', path: 'y.csv.gz' }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'y.csv.gz', String(e));
    assert.equal(e.message, `y.csv.gz: bytes that are not gzip data follow the gzip data, at byte offset ${members.length}`);
    assert.match(e.hint ?? '', new RegExp(`head -c ${members.length} 'y\\.csv\\.gz' > trimmed\\.gz`));
    return true;
  });
  // One byte after the data was 'cut short' (zlib waits for a header's second byte), and a member whose header names
  // its file (`gzip -c a.csv`: FNAME) is walked past its name; padding past a read chunk (1 MiB) is hashed whole.
  const named = gzipSync('text,label\nfirst,ham\n');
  named[3] |= 0x08;
  const withName = Buffer.concat([named.subarray(0, 10), Buffer.from('a.csv\0'), named.subarray(10)]);
  for (const [file, data, offset] of [
    ['z.csv.gz', Buffer.concat([members, Buffer.from('x')]), members.length],
    [
      'n.csv.gz',
      Buffer.concat([withName, gzipSync('second,spam\n'), Buffer.from('x')]),
      withName.length + gzipSync('second,spam\n').length,
    ],
  ] as const) {
    writeFileSync(join(dir, file), data);
    await assert.rejects(run(dir, { task: 'classification', path: file }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === file, String(e));
      assert.equal(e.message, `${file}: bytes that are not gzip data follow the gzip data, at byte offset ${offset}`);
      return true;
    });
  }
  // Members across the walk's 1 MiB window (one runs past it) and one larger than it (hex of a hash chain, 256
  // characters a row: about 2 bytes to 1 compressed).
  let seed = createHash('sha256').update('gzip').digest();
  const hex = () => (seed = createHash('sha256').update(seed).digest()).toString('hex');
  const hexLines = (n: number) => Array.from({ length: n }, () => `${hex()}${hex()}${hex()}${hex()},ham\n`).join('');
  const parts = [
    gzipSync(`text,label\n${hexLines(400)}`),
    ...Array.from({ length: 21 }, () => gzipSync(hexLines(400))),
    gzipSync(hexLines(9000)),
  ];
  const walked = Buffer.concat(parts);
  assert.ok(parts[parts.length - 1].length > 1 << 20 && walked.length - parts[parts.length - 1].length > 1 << 20, String(walked.length));
  writeFileSync(join(dir, 'w.csv.gz'), Buffer.concat([walked, Buffer.from('x')]));
  await assert.rejects(run(dir, { task: 'classification', path: 'w.csv.gz' }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.message.endsWith(`at byte offset ${walked.length}`), String(e));
    return true;
  });
  const long = Buffer.concat([members, Buffer.alloc(3 << 20)]);
  writeFileSync(join(dir, 'l.csv.gz'), long);
  const l = await run(dir, { task: 'classification', path: 'l.csv.gz' });
  assert.equal(l.rowsOut, 2);
  assert.equal(l.sourceFiles[0].sha256, createHash('sha256').update(long).digest('hex'));
  assert.deepEqual(l.warnings, [`l.csv.gz: ${3 << 20} zero bytes after the gzip data (padding, as tape and dd write) ignored`]);
  for (const f of ['out.arrow', 'quarantine.arrow', 'l.csv.gz']) rmSync(join(dir, f), { force: true });
  assert.deepEqual(readdirSync(dir).sort(), ['n.csv.gz', 'w.csv.gz', 'x.csv.gz', 'y.csv.gz', 'z.csv.gz']);
});
test('a file of a folder removed after the folder was listed, before it was read, fails naming it, leaving nothing behind', async () => {
  const dir = tmp();
  mkdirSync(join(dir, 'd'));
  // Progress is reported every 8,192 rows: the first report comes while a.jsonl is read, b.jsonl still unopened.
  for (const gz of [false, true]) {
    const text = Array.from({ length: 9000 }, (_, i) => good(i)).join('\n');
    writeFileSync(join(dir, 'd/a.jsonl'), gz ? gzipSync(text) : text);
    writeFileSync(join(dir, 'd/b.jsonl'), good(1));
    await assert.rejects(
      run(dir, { task: 'classification', path: 'd' }, { onProgress: () => rmSync(join(dir, 'd/b.jsonl'), { force: true }) }),
      (e: unknown) => {
        assert.ok(e instanceof InputError && e.where === 'd/b.jsonl', String(e));
        assert.match(e.message, /^d\/b\.jsonl: the file was removed or renamed after "d" was listed, before it was read/);
        assert.match(e.hint ?? '', /changing the data while the stage reads it/);
        return true;
      },
    );
    assert.deepEqual(readdirSync(dir), ['d']);
  }
});
test('a folder of links to shard folders is read whole, each file once; a link that leads round is a report warning', async () => {
  const dir = tmp();
  mkdirSync(join(dir, 'store/s1'), { recursive: true });
  mkdirSync(join(dir, 'd'));
  writeFileSync(join(dir, 'store/s1/a.jsonl'), [good(1), good(2)].join('\n'));
  writeFileSync(join(dir, 'd/b.jsonl'), good(3));
  symlinkSync('../store/s1', join(dir, 'd/s1'));
  symlinkSync('../store/s1', join(dir, 'd/t1'));
  symlinkSync('.', join(dir, 'd/loop'));
  const r = await run(dir, { task: 'classification', path: 'd' });
  assert.deepEqual(
    r.sourceFiles.map((f) => f.path),
    ['d/b.jsonl', 'd/s1/a.jsonl'],
  );
  assert.equal(r.rowsOut, 3);
  assert.deepEqual(r.warnings, [
    'd/loop is a symbolic link to d, a folder the walk came through to reach it: not walked, as it would lead round for ever',
  ]);
});
test('a listed file replaced by a link that leads out before its turn to be read is refused, not read', async () => {
  const dir = tmp();
  const outside = tmp();
  writeFileSync(join(outside, 'secret.jsonl'), `${JSON.stringify({ text: 'secret', label: 'ham' })}\n`);
  mkdirSync(join(dir, 'd'));
  // Listed and confined at the start, b.jsonl is opened once a.jsonl is read: the first progress report comes between.
  writeFileSync(join(dir, 'd/a.jsonl'), Array.from({ length: 9000 }, (_, i) => good(i)).join('\n'));
  writeFileSync(join(dir, 'd/b.jsonl'), good(1));
  let swapped = false;
  await assert.rejects(
    ingest(
      { task: 'classification', path: 'd' },
      {
        baseDir: dir,
        roots: [dir],
        outPath: join(dir, 'out.arrow'),
        quarantinePath: join(dir, 'quarantine.arrow'),
        onProgress: () => {
          if (swapped) return;
          swapped = true;
          rmSync(join(dir, 'd/b.jsonl'));
          symlinkSync(join(outside, 'secret.jsonl'), join(dir, 'd/b.jsonl'));
        },
      },
    ),
    (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === 'path', String(e));
      assert.match(e.message, /^path: "d\/b\.jsonl" resolves to .*secret\.jsonl, which is outside the allowed data roots/);
      return true;
    },
  );
  assert.ok(swapped);
  assert.deepEqual(readdirSync(dir), ['d']);
});
test(
  'a listed file replaced by a named pipe before its turn to be read is refused, not opened (which waits for a writer)',
  { skip: process.platform === 'win32' && 'no mkfifo' },
  async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'd'));
    writeFileSync(join(dir, 'd/a.jsonl'), Array.from({ length: 9000 }, (_, i) => good(i)).join('\n'));
    writeFileSync(join(dir, 'd/b.jsonl'), good(1));
    const pipe = join(dir, 'd/b.jsonl');
    let swapped = false;
    // Should the pipe be opened after all, a writer that comes and goes ends the wait: the case then fails, not hangs.
    const unblock = setTimeout(() => {
      try {
        closeSync(openSync(pipe, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        /* no reader waiting */
      }
    }, 10_000).unref();
    await assert.rejects(
      ingest(
        { task: 'classification', path: 'd' },
        {
          baseDir: dir,
          outPath: join(dir, 'out.arrow'),
          quarantinePath: join(dir, 'quarantine.arrow'),
          onProgress: () => {
            if (swapped) return;
            swapped = true;
            rmSync(pipe);
            execFileSync('mkfifo', [pipe]);
          },
        },
      ),
      (e: unknown) => {
        assert.ok(e instanceof InputError && e.where === 'd/b.jsonl', String(e));
        assert.match(e.message, /^d\/b\.jsonl: the file was replaced by a named pipe, socket or device after "d" was listed/);
        return true;
      },
    );
    clearTimeout(unblock);
    assert.ok(swapped);
  },
);
/**
 * Ingest of folder `d` (a.jsonl, b.jsonl) with `swap` run on b.jsonl at the moment between its confinement check and
 * its opening, where a race would have to hit; the error it fails with, or the rows read when it does not.
 */
async function swappedAsOpened(
  swap: (dir: string, real: string) => void,
  at: 'beforeCheck' | 'beforeOpen' = 'beforeOpen',
): Promise<unknown> {
  const dir = tmp();
  mkdirSync(join(dir, 'd'));
  writeFileSync(join(dir, 'd/a.jsonl'), good(0));
  writeFileSync(join(dir, 'd/b.jsonl'), good(1));
  let swapped = false;
  confinedOpenHooks[at] = (real) => {
    if (swapped || !real.endsWith('b.jsonl')) return;
    swapped = true;
    swap(dir, real);
  };
  try {
    const r = await ingest(
      { task: 'classification', path: 'd' },
      { baseDir: dir, roots: [dir], outPath: join(dir, 'out.arrow'), quarantinePath: join(dir, 'quarantine.arrow') },
    );
    return (await readAll(join(dir, 'out.arrow'))).map((x) => x.text).concat(String(r.rowsOut));
  } catch (e) {
    // Nothing left behind: the data folders (`e` where the swap moved `d`) alone.
    assert.deepEqual(
      readdirSync(dir).filter((n) => n !== 'd' && n !== 'e'),
      [],
    );
    return e;
  } finally {
    confinedOpenHooks[at] = undefined;
    assert.ok(swapped);
  }
}
const secretFolder = () => {
  const outside = tmp();
  writeFileSync(join(outside, 'b.jsonl'), `${JSON.stringify({ text: 'secret', label: 'ham' })}\n`);
  return outside;
};
test('a listed file swapped for a link that leads out between its check and its opening is refused, not read', async () => {
  const outside = secretFolder();
  const e = await swappedAsOpened((_dir, real) => {
    rmSync(real);
    symlinkSync(join(outside, 'b.jsonl'), real);
  });
  assert.ok(e instanceof InputError && e.where === 'd/b.jsonl', String(e));
  assert.match(e.message, /^d\/b\.jsonl: the file was replaced by a symbolic link as it was opened after "d" was listed/);
  assert.match(e.hint ?? '', /changing the data while the stage reads it/);
});
test('a listed file swapped for a link the moment after its path is resolved is refused as the link it is', async () => {
  const outside = secretFolder();
  const e = await swappedAsOpened((_dir, real) => {
    rmSync(real);
    symlinkSync(join(outside, 'b.jsonl'), real);
  }, 'beforeCheck');
  // It was "replaced by a named pipe, socket or device": what lstat saw was the link.
  assert.ok(e instanceof InputError && e.where === 'd/b.jsonl', String(e));
  assert.match(e.message, /^d\/b\.jsonl: the file was replaced by a symbolic link as it was opened after "d" was listed/);
});
test('a listed file whose folder is swapped for a link that leads out between its check and its opening is refused', async () => {
  const outside = secretFolder();
  const e = await swappedAsOpened((dir) => {
    renameSync(join(dir, 'd'), join(dir, 'e'));
    symlinkSync(outside, join(dir, 'd'));
  });
  assert.ok(e instanceof InputError, String(e));
  assert.match(e.message, /^d\/b\.jsonl: the file was replaced \(or a folder on its path replaced by a link\) as it was opened/);
});
test(
  'a listed file swapped for a named pipe between its check and its opening is refused, not waited on',
  { skip: process.platform === 'win32' && 'no mkfifo' },
  async () => {
    let pipe = '';
    // Should the pipe be opened blocking after all, a writer that comes and goes ends the wait: the case fails, not hangs.
    const unblock = setTimeout(() => {
      try {
        closeSync(openSync(pipe, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        /* no reader waiting */
      }
    }, 10_000).unref();
    const e = await swappedAsOpened((_dir, real) => {
      pipe = real;
      rmSync(real);
      execFileSync('mkfifo', [real]);
    });
    clearTimeout(unblock);
    assert.ok(e instanceof InputError && e.where === 'd/b.jsonl', String(e));
    assert.match(e.message, /^d\/b\.jsonl: the file was replaced by a named pipe, socket or device after "d" was listed/);
  },
);
test('an archive (zip, tar, .tar.gz, bzip2, xz, zstd, 7z) saved under a data name fails naming what it is and how to unpack it', async () => {
  const dir = tmp();
  const inner = `${good(1)}\n`;
  // A tar member: a 512-byte header ("ustar" at 257), the file's bytes padded to 512, two empty blocks.
  const header = Buffer.alloc(512);
  header.write('inner.jsonl', 0);
  header.write('ustar\u000000', 257, 'latin1');
  const tar = Buffer.concat([header, Buffer.from(inner), Buffer.alloc(512 - inner.length + 1024)]);
  const archives: [string, Buffer, RegExp, RegExp][] = [
    ['a.jsonl', Buffer.concat([Buffer.from('PK\u0003\u0004', 'latin1'), Buffer.alloc(40)]), /a zip archive/, /unzip 'a\.jsonl'/],
    ['b.jsonl', tar, /a tar archive/, /tar xf 'b\.jsonl'/],
    ['c.jsonl.gz', gzipSync(tar), /a tar archive/, /tar xf 'c\.jsonl\.gz'/],
    ['d.csv', Buffer.from('BZh91AY&SY\u0000\u0001', 'latin1'), /a bzip2-compressed file/, /bunzip2 -k 'd\.csv'/],
    ['e.csv', Buffer.from('\u00fd7zXZ\u0000\u0000\u0004', 'latin1'), /an xz-compressed file/, /unxz -k 'e\.csv'/],
    ['f.tsv', Buffer.from('\u0028\u00b5\u002f\u00fd\u0020\u0010', 'latin1'), /a zstd-compressed file/, /unzstd 'f\.tsv'/],
    ['g.jsonl', Buffer.from('7z\u00bc\u00af\u0027\u001c\u0000\u0004', 'latin1'), /a 7z archive/, /7z x 'g\.jsonl'/],
  ];
  for (const [file, bytes, what, how] of archives) {
    writeFileSync(join(dir, file), bytes);
    await assert.rejects(run(dir, { ...cls, path: file, onBadRow: 'quarantine' }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === file, `${file}: ${String(e)}`);
      assert.match(e.message, what);
      assert.match(e.hint ?? '', how);
      return true;
    });
  }
  assert.deepEqual(readdirSync(dir).sort(), archives.map(([f]) => f).sort());
  // A workbook is a zip too, but unzipping it gives XML, no data file: the hint says to save it as CSV. Its zip's
  // first local headers, as Excel and LibreOffice write them (name at 30; the .ods's first entry is stored).
  const entry = (name: string, body: string) => {
    const h = Buffer.alloc(30);
    h.write('PK\u0003\u0004', 0, 'latin1');
    h.writeUInt32LE(body.length, 18);
    h.writeUInt32LE(body.length, 22);
    h.writeUInt16LE(name.length, 26);
    return Buffer.concat([h, Buffer.from(name), Buffer.from(body)]);
  };
  const sheets: [string, Buffer, RegExp][] = [
    [
      'x.csv',
      Buffer.concat([entry('[Content_Types].xml', '<Types/>'), entry('_rels/.rels', '<R/>'), entry('xl/workbook.xml', '<w/>')]),
      /an Excel workbook \(\.xlsx\)/,
    ],
    [
      'o.csv',
      Buffer.concat([entry('mimetype', 'application/vnd.oasis.opendocument.spreadsheet'), entry('content.xml', '<c/>')]),
      /an OpenDocument spreadsheet/,
    ],
  ];
  for (const [file, bytes, what] of sheets) {
    writeFileSync(join(dir, file), bytes);
    await assert.rejects(run(dir, { ...cls, path: file }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === file, `${file}: ${String(e)}`);
      assert.match(e.message, what);
      assert.match(e.hint ?? '', new RegExp(`save the sheet as CSV .*pandas\\.read_excel\\('${file}'\\)`));
      assert.doesNotMatch(e.hint ?? '', /unzip '/);
      return true;
    });
  }
  // Text that spells "ustar" where a tar header has it is text ("mustard" at byte 256).
  writeFileSync(join(dir, 'h.csv'), `text,label\n${'x'.repeat(245)}mustard,ham\n`);
  assert.equal((await run(dir, { ...cls, path: 'h.csv' })).rowsOut, 1);
});
test('a folder holding a file and its .gz copy reads the file once, as before .gz was read (same rows, same cache key)', async () => {
  const dir = tmp();
  mkdirSync(join(dir, 'd'));
  const text = 'text,label\nhello,ham\n';
  writeFileSync(join(dir, 'd/a.csv'), text);
  writeFileSync(join(dir, 'd/a.csv.gz'), gzipSync(text));
  writeFileSync(join(dir, 'd/b.jsonl.gz'), gzipSync(good(2)));
  const r = await run(dir, { task: 'classification', path: 'd' });
  assert.deepEqual(
    r.sourceFiles.map((f) => f.path),
    ['d/a.csv', 'd/b.jsonl.gz'],
  );
  assert.equal(r.rowsOut, 2);
});
test('a gzip bomb (a small file inflating far past its size) fails naming the file, with maxRows too, leaving nothing behind', async () => {
  const dir = tmp();
  // 32 MiB of one row inflated from ~32 KB: a ratio no real export has, but what a bomb is made of.
  const bomb = gzipSync(Buffer.from(`${good(1)}\n`.repeat((32 << 20) / (good(1).length + 1))));
  writeFileSync(join(dir, 'bomb.jsonl.gz'), bomb);
  const limits = { gzipLimits: { maxRatio: 100, minBytes: 1 << 20 } };
  for (const maxRows of [undefined, 10])
    await assert.rejects(
      run(dir, { task: 'classification', path: 'bomb.jsonl.gz', ...(maxRows ? { maxRows } : {}) }, limits),
      (e: unknown) => {
        assert.ok(e instanceof InputError && e.where === 'bomb.jsonl.gz', String(e));
        assert.match(e.message, /inflates to more than 100 times its size/);
        assert.match(e.hint ?? '', /gunzip/);
        return true;
      },
    );
  assert.deepEqual(readdirSync(dir), ['bomb.jsonl.gz']);
  // Zero padding after it (accepted, with a warning) is no compressed data: 1 MiB of it must not raise the allowance
  // to 100 times the padded file (100 MiB here, which the 32 MiB passed).
  writeFileSync(join(dir, 'padded.jsonl.gz'), Buffer.concat([bomb, Buffer.alloc(1 << 20)]));
  await assert.rejects(run(dir, { task: 'classification', path: 'padded.jsonl.gz' }, limits), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'padded.jsonl.gz', String(e));
    assert.match(e.message, /inflates to more than 100 times its size/);
    return true;
  });
  assert.deepEqual(readdirSync(dir).sort(), ['bomb.jsonl.gz', 'padded.jsonl.gz']);
  // The same limits read a real compressed file (ratio well under 100) as before.
  writeFileSync(join(dir, 'ok.jsonl.gz'), gzipSync(Array.from({ length: 2000 }, (_, i) => good(i)).join('\n')));
  const r = await run(dir, { task: 'classification', path: 'ok.jsonl.gz' }, limits);
  assert.equal(r.rowsOut, 2000);
});
test(
  'a file refused after its first chunk is closed, not left open (a long-running worker would run out of descriptors)',
  {
    skip: !existsSync('/proc/self/fd') && 'needs /proc/self/fd',
  },
  async () => {
    const dir = tmp();
    // Over one 1 MiB read, so the refusal comes while the file is still being read.
    for (const [name, gz] of [
      ['big.jsonl', false],
      ['big2.jsonl', true],
    ] as const) {
      const text = '[\n' + `${good(1)},\n`.repeat(3 << 16);
      writeFileSync(join(dir, name), gz ? gzipSync(text, { level: 0 }) : text);
      await assert.rejects(run(dir, { task: 'classification', path: name }), /one JSON array/);
    }
    const open = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
        } catch {
          return false; // closed meanwhile
        }
      });
    // Closing is asynchronous: wait for it (a leak never closes, so a slow machine only waits longer).
    for (let i = 0; i < 200 && open().length > 0; i++) await new Promise((r) => setTimeout(r, 25));
    assert.deepEqual(open(), []);
  },
);
test('a JSON array file is refused as one, with the conversion; a .json name says how to read JSON Lines', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.json'), JSON.stringify([{ text: 'a', label: 'ham' }], null, 2));
  writeFileSync(join(dir, 'b.jsonl'), JSON.stringify([{ text: 'a', label: 'ham' }]));
  await assert.rejects(run(dir, { task: 'classification', path: 'a.json' }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'path', String(e));
    assert.match(e.hint ?? '', /set format: 'jsonl'; one JSON array .* jq -c '\.\[\]'/);
    return true;
  });
  for (const [path, format] of [
    ['a.json', 'jsonl'],
    ['b.jsonl', undefined],
  ] as const)
    await assert.rejects(run(dir, { task: 'classification', path, format }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === `${path}:1`, String(e));
      assert.match(e.message, /one JSON array, not JSON Lines/);
      assert.match(e.hint ?? '', /jq -c/);
      return true;
    });
});
test("csv: Excel's sep= line before the header is skipped when it names the delimiter set, and names it when not", async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.csv'), 'sep=;\r\ntext;label\r\n"a; b";ham\r\n');
  await assert.rejects(run(dir, { task: 'classification', path: 'a.csv' }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'a.csv:1', String(e));
    assert.equal(e.hint, 'set delimiter: ";"');
    return true;
  });
  const r = await run(dir, { task: 'classification', path: 'a.csv', delimiter: ';' });
  assert.equal(r.rowsIn, 1);
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((x) => [x.text, x.label, x._row]),
    [['a; b', 'ham', 3]],
  );
});
test("encoding: utf-16 reads Excel's Unicode Text (UTF-16 with a byte-order mark, tabs, CRLF) across chunk boundaries; a file that is not UTF-16 is refused", async () => {
  const dir = tmp();
  // Over 1 MiB of UTF-16, so chunks end inside characters and surrogate pairs (the emoji).
  const rows = Array.from({ length: 12_000 }, (_, i) => [`Привет ${i} 😀 ещё`, i % 3 ? 'ham' : 'spam']);
  const text = ['text\tlabel', ...rows.map((r) => r.join('\t'))].join('\r\n') + '\r\n';
  writeFileSync(join(dir, 'le.txt'), Buffer.from('\ufeff' + text, 'utf16le'));
  writeFileSync(join(dir, 'be.tsv'), Buffer.from(text, 'utf16le').swap16());
  for (const [path, format] of [
    ['le.txt', 'tsv'],
    ['be.tsv', undefined],
  ] as const) {
    const r = await run(dir, { task: 'classification', path, format, encoding: 'utf-16' });
    assert.equal(r.rowsOut, rows.length, path);
    const got = await readAll(join(dir, 'out.arrow'));
    assert.deepEqual(
      got.map((x) => [x.text, x.label]),
      rows,
      path,
    );
  }
  // Without encoding the file is refused, the hint naming the setting; a UTF-8 file declared utf-16 is refused too.
  await assert.rejects(
    run(dir, { task: 'classification', path: 'be.tsv' }),
    (e: unknown) => e instanceof InputError && /save it as UTF-8, e.g. iconv .*; or set encoding: utf-16$/.test(e.hint ?? ''),
  );
  writeFileSync(join(dir, 'u8.tsv'), text);
  await assert.rejects(run(dir, { task: 'classification', path: 'u8.tsv', encoding: 'utf-16' }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'u8.tsv', String(e));
    assert.match(e.message, /encoding is utf-16, but the file has neither a UTF-16 byte-order mark nor the NUL bytes/);
    return true;
  });
  // A file cut after an odd byte, or one with a surrogate unpaired, says which and where, not the end of its read.
  const le = (t: string) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(t, 'utf16le')]);
  writeFileSync(join(dir, 'odd.tsv'), Buffer.concat([le('text\tlabel\r\nhi\tham\r\n'), Buffer.from([0x41])]));
  writeFileSync(join(dir, 'lone.tsv'), Buffer.concat([le('text\tlabel\r\nh'), Buffer.from([0x00, 0xd8]), le('\tham\r\n').subarray(2)]));
  for (const [path, message] of [
    ['odd.tsv', /the file ends inside a UTF-16 character \(its 43 bytes are an odd count/],
    ['lone.tsv', /not valid UTF-16 within bytes 1-42 \(a surrogate without its pair/],
  ] as const)
    await assert.rejects(run(dir, { task: 'classification', path, encoding: 'utf-16' }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === path, String(e));
      assert.match(e.message, message);
      return true;
    });
});
test('tsv without header: named columns, quotes are literal, missing tab is a column-count error', async () => {
  const cfg: Omit<IngestConfig, 'path'> = { task: 'classification', header: false, columns: ['label', 'text'] };
  await expectBad('a.tsv', 'ham\tsay "hi"\nspam\tbuy now\nham no tab here\n', cfg, 3, 'column-count', 2);
  const dir = tmp();
  writeFileSync(join(dir, 'a.tsv'), 'ham\t"quoted" start\n');
  await run(dir, { ...cfg, path: 'a.tsv' });
  assert.equal((await readAll(join(dir, 'out.arrow')))[0].text, '"quoted" start');
});
test('csv with custom delimiter and field mapping', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.txt'), 'sms;category\n"a; b";ham\n');
  const r = await run(dir, {
    task: 'classification',
    path: 'a.txt',
    format: 'csv',
    delimiter: ';',
    fields: { text: 'sms', label: 'category' },
  });
  assert.deepEqual(r.labels, { ham: 1 });
  assert.equal((await readAll(join(dir, 'out.arrow')))[0].text, 'a; b');
});

function parquetFile(texts: unknown[], labels: unknown[], rowGroupSize?: number): Uint8Array {
  return new Uint8Array(
    parquetWriteBuffer({
      ...(rowGroupSize ? { rowGroupSize } : {}),
      columnData: [
        { name: 'text', data: texts, type: 'STRING' },
        { name: 'label', data: labels, type: 'INT32' },
      ],
    }),
  );
}
test('parquet: null text is reported at its 1-based row', () =>
  expectBad('a.parquet', parquetFile(['a', 'b', null, 'd'], [0, 1, 0, 1]), cls, 3, 'missing-field', 3));
test('parquet: row numbers run across row groups', async () => {
  const texts: (string | null)[] = Array.from({ length: 25 }, (_, i) => `t${i}`);
  texts[22] = null;
  const file = parquetFile(
    texts,
    texts.map((_, i) => i % 2),
    10,
  );
  const { parquetMetadata } = await import('hyparquet');
  assert.equal(parquetMetadata(file.buffer as ArrayBuffer).row_groups.length, 3);
  await expectBad('g.parquet', file, cls, 23, 'missing-field', 24);
});
test('parquet: integer labels become strings', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.parquet'), parquetFile(['a', 'b', 'c'], [0, 1, 1]));
  const r = await run(dir, { ...cls, path: 'a.parquet' });
  assert.deepEqual(r.labels, { 0: 1, 1: 2 });
});
test('parquet: a corrupt file fails as a whole, naming it', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.parquet'), 'this is not parquet at all');
  await assert.rejects(run(dir, { ...cls, path: 'a.parquet' }), (e: unknown) => e instanceof InputError && e.where === 'a.parquet');
  assert.deepEqual(readdirSync(dir), ['a.parquet']);
  // An empty one (a write or copy cut short) says so: it was "Offset is outside the bounds of the DataView".
  for (const [file, kind] of [
    ['b.parquet', 'Parquet'],
    ['b.arrow', 'Arrow IPC'],
  ]) {
    writeFileSync(join(dir, file), '');
    await assert.rejects(run(dir, { ...cls, path: file }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === file, String(e));
      assert.equal(e.message, `${file}: the file is empty (0 bytes), which no ${kind} file is`);
      assert.match(e.hint ?? '', /cut short/);
      return true;
    });
  }
});
test('arrow source: non-string text is reported at its row', async () => {
  const dir = tmp();
  const w = new ArrowTableWriter(join(dir, 'src.arrow'), { text: 'utf8', label: 'utf8' });
  for (const t of ['one', 'two', '   ']) w.push({ text: t, label: 'x' });
  w.close();
  const content = readFileSync(join(dir, 'src.arrow'));
  await expectBad('src.arrow', content, cls, 3, 'empty-text', 2);
});
test('parquet and arrow: a column the task reads named twice in the schema fails the file, naming it (the first was read)', async () => {
  const dir = tmp();
  writeFileSync(
    join(dir, 'a.parquet'),
    new Uint8Array(
      parquetWriteBuffer({
        columnData: [
          { name: 'text', data: ['a', 'b'], type: 'STRING' },
          { name: 'text', data: ['X', 'Y'], type: 'STRING' },
          { name: 'label', data: ['ham', 'spam'], type: 'STRING' },
        ],
      }),
    ),
  );
  const fields = [new Field('text', new Utf8()), new Field('text', new Utf8()), new Field('label', new Utf8())];
  const children = [
    ['a', 'b'],
    ['X', 'Y'],
    ['ham', 'spam'],
  ].map((v) => vectorFromArray(v, new Utf8()).data[0]);
  const schema = new Schema(fields);
  const batch = new RecordBatch(schema, makeData({ type: new Struct(fields), length: 2, nullCount: 0, children }));
  writeFileSync(join(dir, 'a.arrow'), tableToIPC(new Table(schema, batch), 'file'));
  for (const [file, kind] of [
    ['a.parquet', 'Parquet'],
    ['a.arrow', 'Arrow IPC'],
  ])
    await assert.rejects(run(dir, { ...cls, path: file, onBadRow: 'quarantine' }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === file, String(e));
      assert.equal(e.message, `${file}: the ${kind} schema has a duplicate ("text") column name`);
      assert.match(e.hint ?? '', /rename or drop one/);
      return true;
    });
  assert.deepEqual(readdirSync(dir).sort(), ['a.arrow', 'a.parquet']);
  // A name the task does not read may repeat, as in a CSV header.
  writeFileSync(
    join(dir, 'b.parquet'),
    new Uint8Array(
      parquetWriteBuffer({
        columnData: [
          { name: 'text', data: ['a', 'b'], type: 'STRING' },
          { name: 'note', data: ['1', '2'], type: 'STRING' },
          { name: 'note', data: ['3', '4'], type: 'STRING' },
          { name: 'label', data: ['ham', 'spam'], type: 'STRING' },
        ],
      }),
    ),
  );
  assert.equal((await run(dir, { ...cls, path: 'b.parquet' })).rowsOut, 2);
});
test('pairs: missing text_b', () =>
  expectBad(
    'p.jsonl',
    [j({ text_a: 'a', text_b: 'b', label: 'same' }), j({ text_a: 'a', label: 'same' })].join('\n'),
    { task: 'pairs' },
    2,
    'missing-field',
    1,
  ));
test('instruction: template with optional section; a required field missing is bad', async () => {
  const cfg: Omit<IngestConfig, 'path'> = {
    task: 'instruction',
    promptTemplate: '{instruction}[[\n\nInput: {input}]]',
    fields: { response: 'output' },
  };
  const lines = [
    j({ instruction: 'Add', input: '2 and 3', output: '5' }),
    j({ instruction: 'Say hi', input: '', output: 'hi' }),
    j({ input: 'x', output: 'y' }),
  ];
  await expectBad('i.jsonl', lines.join('\n'), cfg, 3, 'missing-field', 2);
  const dir = tmp();
  writeFileSync(join(dir, 'i.jsonl'), lines.slice(0, 2).join('\n'));
  await run(dir, { ...cfg, path: 'i.jsonl' });
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((r) => r.prompt),
    ['Add\n\nInput: 2 and 3', 'Say hi'],
  );
});

test('instruction: {{ and }} are literal braces, and a malformed template fails before any row is read', async () => {
  const dir = tmp();
  writeFileSync(
    join(dir, 'i.jsonl'),
    [j({ instruction: 'Add 2 and 3', ref: 'math', output: '5' }), j({ instruction: 'Say hi', output: 'hi' })].join('\n'),
  );
  const cfg = { task: 'instruction', path: 'i.jsonl', fields: { response: 'output' } } as const;
  await run(dir, { ...cfg, promptTemplate: 'Reply as JSON like {{"answer": ...}}. {instruction}[[[{ref}]]]' });
  assert.deepEqual(
    (await readAll(join(dir, 'out.arrow'))).map((r) => r.prompt),
    ['Reply as JSON like {"answer": ...}. Add 2 and 3[math]', 'Reply as JSON like {"answer": ...}. Say hi'],
  );
  // The reviewer's template: it used to keep every row with "[[\n\nInput: " copied into each prompt.
  for (const [promptTemplate, message] of [
    ['{instruction}[[\n\nInput: {input}', /unclosed "\[\[" at character 14/],
    ['Reply as JSON like {"answer": ...}. {instruction}', /is not a \{field\}/],
  ] as const)
    await assert.rejects(run(dir, { ...cfg, promptTemplate }), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.equal(e.where, 'promptTemplate');
      assert.match(e.message, message);
      return true;
    });
  assert.deepEqual(readdirSync(dir).sort(), ['i.jsonl', 'out.arrow', 'quarantine.arrow']);
});

test('maxBadFraction names the first row of each reason, and a wrong field mapping with the fields the first row has', async () => {
  const dir = tmp();
  // Shaped like self_instruct_seed/seed_tasks.jsonl, mapped as `fields: { response: outptu }`.
  const rows = Array.from({ length: 12 }, (_, i) =>
    j({ instruction: `task ${i}`, input: '', output: `answer ${i}`, id: `seed_task_${i}` }),
  );
  writeFileSync(join(dir, 'seed.jsonl'), rows.join('\n') + '\n');
  const cfg = {
    task: 'instruction',
    path: 'seed.jsonl',
    promptTemplate: '{instruction}[[\n\nInput: {input}]]',
    onBadRow: 'quarantine',
  } as const;
  await assert.rejects(run(dir, { ...cfg, fields: { response: 'outptu' }, maxBadFraction: 0.01 }), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.where, 'maxBadFraction');
    assert.match(e.message, /12 of 12 rows are bad \(100\.0% > maxBadFraction 0\.01\): missing-field 12\n/);
    assert.match(e.message, /\n {2}missing-field 12, first: seed\.jsonl:1: field "outptu" \(response\) is missing$/);
    assert.match(
      e.hint ?? '',
      /^every row lacks field "outptu" \(fields\.response\): the mapping is probably wrong; the first row \(seed\.jsonl:1\) has fields "instruction", "input", "output", "id"; did you mean "output"\?$/,
    );
    return true;
  });
  // A misspelt template field is named as such.
  await assert.rejects(
    run(dir, { ...cfg, promptTemplate: '{instrution}', fields: { response: 'output' }, maxBadFraction: 0.5 }),
    (e: unknown) =>
      e instanceof InputError &&
      /first: seed\.jsonl:1: template field "instrution" is missing/.test(e.message) &&
      /every row lacks field "instrution" \(promptTemplate\).*did you mean "instruction"\?/.test(e.hint ?? ''),
  );

  // Several reasons: each with its first row, most common first; details and names from the data are shortened.
  const long = 'x'.repeat(5000);
  writeFileSync(
    join(dir, 'mixed.jsonl'),
    [
      j({ text: 'a', label: 'ham' }),
      j({ text: long, label: 'ham' }),
      'not json',
      j({ body: 'b', label: 'spam' }),
      j({ body: 'c', label: 'spam' }),
      j({ [long]: 1, label: 'spam' }),
      j({ text: 'd', label: long }),
    ].join('\n'),
  );
  await assert.rejects(
    run(dir, {
      task: 'classification',
      path: 'mixed.jsonl',
      labels: ['ham', 'spam'],
      maxLength: 100,
      onBadRow: 'quarantine',
      maxBadFraction: 0.2,
    }),
    (e: unknown) => {
      assert.ok(e instanceof InputError);
      const lines = e.message.split('\n');
      assert.match(lines[0]!, /6 of 7 rows are bad .*: missing-field 3, too-long 1, invalid-json 1, unknown-label 1$/);
      assert.match(lines[1]!, /^ {2}missing-field 3, first: mixed\.jsonl:4: field "text" \(text\) is missing$/);
      assert.match(lines[2]!, /^ {2}too-long 1, first: mixed\.jsonl:2: text has 5000 characters, maxLength is 100$/);
      assert.match(lines[3]!, /^ {2}invalid-json 1, first: mixed\.jsonl:3: /);
      assert.match(lines[4]!, /^ {2}unknown-label 1, first: mixed\.jsonl:7: label "x+…$/);
      assert.ok(lines[4]!.length < 250, lines[4]);
      assert.equal(lines.length, 5);
      // Not every row lacks the field: the general hint.
      assert.match(e.hint ?? '', /^the mapping is probably wrong \(fields, columns, header, delimiter\)/);
      return true;
    },
  );
  // Every row lacks the field; the first row's field names are shortened and listed up to 20.
  writeFileSync(
    join(dir, 'wide.jsonl'),
    [j(Object.fromEntries([long, ...Array.from({ length: 30 }, (_, i) => `f${i}`)].map((k) => [k, 'v']))), j({ body: 'b' })].join('\n'),
  );
  await assert.rejects(run(dir, { task: 'classification', path: 'wide.jsonl', onBadRow: 'quarantine' }), (e: unknown) => {
    assert.ok(e instanceof InputError);
    const hint = e.hint ?? '';
    assert.match(hint, /^every row lacks field "text" \(the text column's default; set fields\.text to read another field\)/);
    assert.match(hint, /has fields "x{39}…", "f0", .*"f18" and 11 more$/);
    assert.ok(hint.length < 600, hint);
    return true;
  });
});

// A field the mapping names that the data lacks made every row bad: five "missing-field" rows, then advice
// to quarantine them, which would quarantine every row. It is one error about the mapping.
test('a column the header lacks is one error at the setting that names it, with the columns there', async () => {
  const dir = tmp();
  const rows = Array.from({ length: 8 }, (_, i) => `${i},review number ${i},${i % 2 ? 'pos' : 'neg'}`);
  writeFileSync(join(dir, 'sst2-small.csv'), ['id,review,sentiment', ...rows].join('\n') + '\n');
  for (const onBadRow of ['fail', 'quarantine'] as const)
    await assert.rejects(
      run(dir, { task: 'classification', path: 'sst2-small.csv', fields: { text: 'reviw', label: 'sentiment' }, onBadRow }),
      (e: unknown) => {
        assert.ok(e instanceof InputError, String(e));
        assert.equal(e.where, 'fields.text');
        assert.equal(e.message, 'fields.text: no column "reviw" (fields.text) in sst2-small.csv; its columns: "id", "review", "sentiment"');
        assert.equal(e.hint, 'did you mean "review"? set fields.text to the column meant');
        return true;
      },
    );
  assert.deepEqual(readdirSync(dir), ['sst2-small.csv'], 'no output left after failure');
  // The label column too, and the default a task column reads when fields does not name one.
  await assert.rejects(run(dir, { task: 'classification', path: 'sst2-small.csv', fields: { text: 'review' } }), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.where, 'fields.label');
    assert.match(
      e.message,
      /^fields\.label: no column "label" \(the label column's default; set fields\.label to read another field\) in sst2-small\.csv; /,
    );
    return true;
  });
  // Names padded with spaces, or led by a second byte-order mark (a file saved twice with one), are named visibly.
  writeFileSync(join(dir, 'pad.csv'), ' text , label \na,ham\n');
  writeFileSync(join(dir, 'bom.csv'), '\ufeff\ufefftext,label\na,ham\n');
  for (const [file, guess, shown] of [
    ['pad.csv', '" text " (spaces around it)', '" text ", " label "'],
    ['bom.csv', '"\\ufefftext" (an invisible character in it)', '"\\ufefftext", "label"'],
  ])
    await assert.rejects(run(dir, { ...cls, path: file }), (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.ok(e.message.endsWith(`in ${file}; its columns: ${shown}`), e.message);
      assert.equal(e.hint, `did you mean ${guess}? set fields.text to the column meant`);
      return true;
    });
  // A parquet file's schema is its columns; a column that is there but null in a row is that row's problem only.
  writeFileSync(join(dir, 'p.parquet'), parquetFile([null, 'b', 'c'], [0, 1, 0]));
  await assert.rejects(run(dir, { ...cls, path: 'p.parquet', fields: { text: 'txt' } }), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.message, 'fields.text: no column "txt" (fields.text) in p.parquet; its columns: "text", "label"');
    assert.equal(e.hint, 'did you mean "text"? set fields.text to the column meant');
    return true;
  });
  await assert.rejects(run(dir, { ...cls, path: 'p.parquet' }), (e: unknown) => e instanceof InputError && e.where === 'p.parquet:1');
});

test('a field no row read has: one error at the setting (a template field too), without quarantine advice', async () => {
  const dir = tmp();
  const rows = Array.from({ length: 12 }, (_, i) => j({ question: `q ${i}`, answer: `a ${i}` }));
  writeFileSync(join(dir, 'qa.jsonl'), rows.join('\n') + '\n');
  const cfg = { task: 'instruction', path: 'qa.jsonl', fields: { response: 'answer' } } as const;
  await assert.rejects(run(dir, { ...cfg, promptTemplate: 'Q: {questoin}' }), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.where, 'promptTemplate');
    assert.equal(
      e.message,
      'promptTemplate: no field "questoin" (promptTemplate) in the first 5 rows of qa.jsonl (missing-field 5); the first row (qa.jsonl:1) has fields: "question", "answer"',
    );
    assert.equal(e.hint, 'did you mean "question"? write the field meant as {name} in promptTemplate');
    return true;
  });
  // Fewer rows than the list of failures: all of them.
  writeFileSync(join(dir, 'two.jsonl'), rows.slice(0, 2).join('\n') + '\n');
  await assert.rejects(
    run(dir, { ...cfg, path: 'two.jsonl', fields: { response: 'anser' }, promptTemplate: '{question}' }),
    (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.equal(e.where, 'fields.response');
      assert.match(
        e.message,
        /^fields\.response: no field "anser" \(fields\.response\) in any of the 2 rows of two\.jsonl \(missing-field 2\); /,
      );
      assert.doesNotMatch(`${e.message} ${e.hint}`, /quarantine/);
      return true;
    },
  );
  // Some rows have it: those that do not are bad rows, listed as before.
  writeFileSync(join(dir, 'some.jsonl'), [rows[0], j({ answer: 'x' }), j({ answer: 'y' })].join('\n') + '\n');
  await assert.rejects(run(dir, { ...cfg, path: 'some.jsonl', promptTemplate: '{question}' }), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /^some\.jsonl:2: 2 bad row\(s\):\n {2}some\.jsonl:2: missing-field: template field "question" is missing/);
    return true;
  });
});

test('fail mode lists the first 5 bad rows with file:line', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.jsonl'), Array.from({ length: 9 }, (_, i) => (i % 2 ? 'oops' : good(i))).join('\n'));
  await assert.rejects(run(dir, { ...cls, path: 'a.jsonl' }), (e: unknown) => {
    assert.ok(e instanceof InputError);
    const listed = e.message.match(/a\.jsonl:\d+: invalid-json/g);
    assert.deepEqual(listed, ['a.jsonl:2: invalid-json', 'a.jsonl:4: invalid-json', 'a.jsonl:6: invalid-json', 'a.jsonl:8: invalid-json']);
    return true;
  });
  writeFileSync(join(dir, 'b.jsonl'), Array.from({ length: 20 }, () => 'oops').join('\n'));
  await assert.rejects(
    run(dir, { ...cls, path: 'b.jsonl' }),
    (e: unknown) => e instanceof InputError && (e.message.match(/\n  b\.jsonl:\d+:/g) ?? []).length === 5,
  );
});

test('too many bad rows fail even in quarantine mode, leaving nothing behind', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'a.jsonl'), [good(1), good(2), good(3), 'bad', 'bad'].join('\n'));
  await assert.rejects(
    run(dir, { ...cls, path: 'a.jsonl', onBadRow: 'quarantine', maxBadFraction: 0.3 }),
    (e: unknown) => e instanceof InputError && e.where === 'maxBadFraction' && /2 of 5/.test(e.message),
  );
  assert.deepEqual(readdirSync(dir), ['a.jsonl']);
  const r = await run(dir, { ...cls, path: 'a.jsonl', onBadRow: 'quarantine', maxBadFraction: 0.4 });
  assert.equal(r.rowsIn, r.rowsOut + 2);
});

test('config errors name the field', async () => {
  const dir = tmp();
  await assert.rejects(run(dir, { ...cls, path: 'missing.jsonl' }), (e: unknown) => e instanceof InputError && e.where === 'path');
  await assert.rejects(run(dir, { ...cls, path: 'nothing/*.jsonl' }), (e: unknown) => e instanceof InputError && e.where === 'path');
  writeFileSync(join(dir, 'x.dat'), 'x');
  await assert.rejects(run(dir, { ...cls, path: 'x.dat' }), (e: unknown) => e instanceof InputError && /format/.test(e.hint ?? ''));
  await assert.rejects(
    run(dir, { ...cls, path: 'x.dat', maxBadFraction: 2 }),
    (e: unknown) => e instanceof InputError && e.where === 'maxBadFraction',
  );
  writeFileSync(join(dir, 'e.jsonl'), '\n\n');
  await assert.rejects(run(dir, { ...cls, path: 'e.jsonl' }), (e: unknown) => e instanceof InputError && /no rows/.test(e.message));
  // A delimiter or quote that is a line break splits nothing (every row a column-count bad row); one that is the quote
  // character cannot be told from it.
  writeFileSync(join(dir, 'n.csv'), 'a,ham\nb,spam\n');
  const noHeader = { ...cls, path: 'n.csv', header: false, columns: ['text', 'label'] };
  for (const [set, where, message] of [
    [{ delimiter: '\n' }, 'delimiter', /^delimiter: delimiter "\\n" is a line break/],
    [{ delimiter: '\r' }, 'delimiter', /^delimiter: delimiter "\\r" is a line break/],
    [{ quote: '\n' }, 'quote', /^quote: quote "\\n" is a line break/],
    [{ delimiter: '"' }, 'delimiter', /^delimiter: delimiter and quote are both "\\""/],
    [{ delimiter: "'", quote: "'" }, 'delimiter', /^delimiter: delimiter and quote are both "'"/],
  ] as const)
    await assert.rejects(run(dir, { ...noHeader, ...set }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === where, String(e));
      assert.match(e.message, message);
      return true;
    });
  // A TSV's tab delimiter with quote: '"' set, or a ; delimiter, are fine.
  assert.equal((await run(dir, { ...noHeader, delimiter: ',', quote: "'" })).rowsOut, 2);
  // Declared labels that are one text in two normal forms print alike: they were two classes, without a word.
  await assert.rejects(run(dir, { ...cls, path: 'n.csv', labels: ['cafe\u0301', 'tea', 'caf\u00e9'] }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'labels', String(e));
    assert.match(e.message, /labels "cafe\\u0301" and "caf\\u00e9" are one text in two Unicode normal forms/);
    assert.match(e.hint!, /labelMap: \{"cafe\\u0301": "caf\\u00e9"\}$/);
    return true;
  });
  // Two forms neither of which is NFC: the hint said the NFC spelling (in neither) is the one its labelMap keeps.
  await assert.rejects(run(dir, { ...cls, path: 'n.csv', labels: ['e\u0301\u0323', 'e\u0323\u0301'] }), (e: unknown) => {
    assert.ok(e instanceof InputError && e.where === 'labels', String(e));
    assert.equal(
      e.hint,
      'keep one (neither is NFC, "\\u1eb9\\u0301", what most tools write; either does) and map the other onto it: labelMap: {"e\\u0323\\u0301": "e\\u0301\\u0323"}',
    );
    return true;
  });
});

test('directory and glob sources are read in sorted order with provenance', async () => {
  const dir = tmp();
  mkdirSync(join(dir, 'd', 'sub'), { recursive: true });
  writeFileSync(join(dir, 'd', 'b.jsonl'), good(2));
  writeFileSync(join(dir, 'd', 'a.jsonl'), good(1));
  writeFileSync(join(dir, 'd', 'sub', 'c.csv'), 'text,label\nthird,ham\n');
  writeFileSync(join(dir, 'd', 'notes.md'), 'ignored');
  const r = await run(dir, { ...cls, path: 'd' });
  assert.deepEqual(
    r.sourceFiles.map((f) => f.path),
    ['d/a.jsonl', 'd/b.jsonl', 'd/sub/c.csv'],
  );
  const rows = await readAll(join(dir, 'out.arrow'));
  assert.deepEqual(
    rows.map((x) => `${x._source}:${x._row}`),
    ['d/a.jsonl:1', 'd/b.jsonl:1', 'd/sub/c.csv:2'],
  );
  const g = await run(dir, { ...cls, path: 'd/**/*.{jsonl,csv}' });
  assert.deepEqual(
    g.sourceFiles.map((f) => f.path),
    ['d/a.jsonl', 'd/b.jsonl', 'd/sub/c.csv'],
  );
  assert.equal(g.dataHash, r.dataHash);
  const one = await run(dir, { ...cls, path: 'd/?.jsonl' });
  assert.equal(one.rowsIn, 2);
});

test('real data: sms_spam jsonl and tsv agree row for row and are byte-identical across runs', async () => {
  const dir = tmp();
  const opts = (name: string) => ({ baseDir: DATASETS, outPath: join(dir, `${name}.arrow`), quarantinePath: join(dir, `${name}.q.arrow`) });
  const a = await ingest({ path: 'sms_spam/sms_spam.jsonl', task: 'classification' }, opts('a'));
  const b = await ingest(
    { path: 'sms_spam/SMSSpamCollection.tsv', task: 'classification', header: false, columns: ['label', 'text'] },
    opts('b'),
  );
  const a2 = await ingest({ path: 'sms_spam/sms_spam.jsonl', task: 'classification' }, opts('a2'));
  for (const r of [a, b]) {
    assert.equal(r.rowsIn, 5574);
    assert.equal(r.rowsOut, 5574);
    assert.deepEqual(r.labels, { ham: 4827, spam: 747 });
    assert.deepEqual(r.badRows, {});
  }
  assert.ok(readFileSync(join(dir, 'a.arrow')).equals(readFileSync(join(dir, 'a2.arrow'))));
  assert.deepEqual(a2, a);
  const ra = await readAll(join(dir, 'a.arrow')),
    rb = await readAll(join(dir, 'b.arrow'));
  assert.deepEqual(
    ra.map((r) => r._hash),
    rb.map((r) => r._hash),
  );
  assert.equal(new Set(ra.map((r) => r._hash)).size, 5574 - 403);
});

test('real data: sst2 train with declared labels', async () => {
  const dir = tmp();
  const r = await ingest(
    { path: 'sst2/train.jsonl', task: 'classification', labels: ['negative', 'positive'] },
    { baseDir: DATASETS, outPath: join(dir, 'o.arrow'), quarantinePath: join(dir, 'q.arrow') },
  );
  assert.equal(r.rowsOut, 6920);
  assert.deepEqual(r.labels, { negative: 3310, positive: 3610 });
  assert.deepEqual(r.schema, { text: 'Utf8', label: 'Utf8', _source: 'Utf8', _row: 'Int32', _hash: 'Utf8' });
});

test('a label named __proto__ or constructor is counted as its own label in the report', async () => {
  const dir = tmp();
  const rows = ['__proto__', 'constructor', 'ham', '__proto__'].map((label, i) => j({ text: `message ${i}`, label }));
  writeFileSync(join(dir, 'a.jsonl'), rows.join('\n'));
  const r = await run(dir, { ...cls, path: 'a.jsonl' });
  assert.deepEqual(Object.entries(r.labels).sort(), [
    ['__proto__', 2],
    ['constructor', 1],
    ['ham', 1],
  ]);
  assert.equal(Object.getPrototypeOf(r.labels), Object.prototype, 'the label never replaces the prototype');
});

// A trial run on a subset: the first good rows in file order. Rows after the cap are neither kept nor
// checked (a bad one there does not fail the run), and each file still hashes whole, so lineage names
// the data the rows came from, not a prefix no one has.
test('maxRows keeps the first good rows, checks none after them, and hashes the files whole', async () => {
  const dir = tmp();
  const a = [good(1), j({ text: 'x' }), good(3), good(4)].join('\n');
  const b = [good(5), good(6), '{broken', good(8)].join('\n');
  writeFileSync(join(dir, 'a.jsonl'), a);
  writeFileSync(join(dir, 'b.jsonl'), b);
  const cfg: IngestConfig = { ...cls, path: '*.jsonl', onBadRow: 'quarantine', maxBadFraction: 0.5, maxRows: 4 };
  const r = await run(dir, cfg);
  const rows = await readAll(join(dir, 'out.arrow'));
  assert.deepEqual(
    rows.map((x) => `${x._source}:${x._row}`),
    ['a.jsonl:1', 'a.jsonl:3', 'a.jsonl:4', 'b.jsonl:1'],
  );
  assert.equal(r.rowsOut, 4);
  assert.equal(r.rowsIn, 5, 'the bad row before the cap counts');
  assert.deepEqual(r.badRows, { 'missing-label': 1 });
  assert.equal(r.maxRows, 4);
  assert.equal(r.rowsNotTaken, 3, 'b.jsonl:2, the broken line and b.jsonl:4');
  assert.equal((await readAll(join(dir, 'quarantine.arrow'))).length, 1);
  assert.match(formatDataReport(r), /maxRows 4: the first 4 good rows in file order; 3 rows after them not read into the table/);
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  assert.deepEqual(
    r.sourceFiles.map((f) => [f.path, f.sha256, f.bytes]),
    [
      ['a.jsonl', sha(a), a.length],
      ['b.jsonl', sha(b), b.length],
    ],
  );
  // In fail mode the broken line after the cap fails nothing; without the cap it does.
  const strict = await run(dir, { ...cls, path: 'b.jsonl', maxRows: 2 });
  assert.equal(strict.rowsOut, 2);
  await assert.rejects(run(dir, { ...cls, path: 'b.jsonl' }), /b\.jsonl:3: invalid-json/);
  await assert.rejects(run(dir, { ...cls, path: 'b.jsonl', maxRows: 0 }), /maxRows must be a positive integer, got 0/);
});

// Past the cap the file is still read for its hash; the progress went quiet for the rest of it.
test('maxRows: progress goes on while the rest of the file is read', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'big.jsonl'), Array.from({ length: 20_000 }, (_, i) => good(i)).join('\n'));
  const seen: (number | undefined)[] = [];
  await ingest(
    { ...cls, path: 'big.jsonl', maxRows: 10 },
    { baseDir: dir, outPath: join(dir, 'out.arrow'), quarantinePath: join(dir, 'q.arrow'), onProgress: (p) => seen.push(p.fraction) },
  );
  assert.ok(seen.length >= 3, `progress reported ${seen.length} times`);
  assert.equal(seen.at(-1), 1);
});
