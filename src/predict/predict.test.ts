// predictFile reading users' files as ingest does: encodings, gzip. The scorer here echoes each row's text, so the
// output shows exactly what was read; the reading, not the scorer, is what is under test.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { InputError } from '../errors.ts';
import { predictFile, type RowScorer } from './predict.ts';

const dir = mkdtempSync(join(tmpdir(), 'tempered-predict-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const echo: RowScorer = {
  batchSize: 4,
  columns: ['text'],
  keys: ['text'],
  async score(inputs) {
    return inputs.map((t) => ({ values: { text: t } }));
  },
  csvCells: (v) => [String(v.text)],
};

const texts = ['Félicitations, vous avez gagné 1000 €', 'Je t’appelle après le café', '“Ça va” – très bien'];
const csv = `text,label\r\n${texts.map((t, i) => `"${t}",${i % 2 ? 'ham' : 'spam'}`).join('\r\n')}\r\n`;

let n = 0;
async function run(name: string, bytes: Buffer, extra: Partial<Parameters<typeof predictFile>[0]> = {}) {
  const input = join(dir, `${++n}-${name}`);
  writeFileSync(input, bytes);
  const output = join(dir, `${n}-out.jsonl`);
  const report = await predictFile({ input, output, scorer: echo, textField: 'text', ...extra });
  return {
    report,
    texts: readFileSync(output, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { text: string }).text),
  };
}

test('a Windows-1252 file is refused naming its first bad byte and --encoding, and read right with encoding', async () => {
  // Only the € ’ “ ” – (0x80-0x9F) are not Latin-1: written byte by byte as Windows-1252 has them.
  const bytes = Buffer.from([...csv].map((c) => ({ '€': 0x80, '’': 0x92, '“': 0x93, '”': 0x94, '–': 0x96 })[c] ?? c.charCodeAt(0)));
  await assert.rejects(run('win.csv', bytes), (e) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /invalid-utf8: record is not valid UTF-8: byte 0xE9 \("é" in Windows-1252\) at byte 3/);
    assert.match(e.where ?? '', /win\.csv:2$/);
    assert.match(e.hint ?? '', /give --encoding windows-1252/);
    return true;
  });
  assert.deepEqual((await run('win.csv', bytes, { encoding: 'windows-1252' })).texts, texts);
  // The same names as an ingest stage's encoding: latin1 reads 0x80-0x9F as Windows-1252 does.
  assert.deepEqual((await run('win.csv', bytes, { encoding: 'latin1' })).texts, texts);
});

test('a UTF-16 file names --encoding utf-16, and is read with it, gzipped too', async () => {
  const u16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(csv, 'utf16le')]);
  await assert.rejects(run('u16.csv', u16), (e) => e instanceof InputError && /give --encoding utf-16$/.test(e.hint ?? ''));
  assert.deepEqual((await run('u16.csv', u16, { encoding: 'utf-16' })).texts, texts);
  assert.deepEqual((await run('u16.csv.gz', gzipSync(u16), { encoding: 'utf-16' })).texts, texts);
  // A UTF-8 file given an encoding: the hints name the flag, not the stage setting.
  const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(csv)]);
  await assert.rejects(run('bom.csv', bom, { encoding: 'windows-1252' }), (e) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /UTF-8 byte-order mark, but --encoding is windows-1252$/);
    assert.equal(e.hint, 'it is UTF-8: remove --encoding');
    return true;
  });
  await assert.rejects(run('utf8.csv', Buffer.from(csv), { encoding: 'utf-16' }), (e) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /--encoding is utf-16, but the file has neither/);
    assert.match(e.hint ?? '', /^remove --encoding/);
    return true;
  });
});

test('gzip input: concatenated members are read whole, zero padding with a warning, other trailing bytes refused', async () => {
  const half = csv.indexOf('\r\n"Je');
  const members = Buffer.concat([gzipSync(csv.slice(0, half + 2)), gzipSync(csv.slice(half + 2))]);
  const whole = await run('cat.csv.gz', members);
  assert.deepEqual(whole.texts, texts);
  assert.equal(whole.report.warnings, undefined);

  const padded = await run('pad.csv.gz', Buffer.concat([members, Buffer.alloc(10240)]));
  assert.deepEqual(padded.texts, texts);
  assert.deepEqual(padded.report.warnings, [
    `${join(dir, `${n}-pad.csv.gz`)}: 10240 zero bytes after the gzip data (padding, as tape and dd write) ignored`,
  ]);

  await assert.rejects(run('junk.csv.gz', Buffer.concat([members, Buffer.from('junk after it\n')])), (e) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, new RegExp(`bytes that are not gzip data follow the gzip data, at byte offset ${members.length}$`));
    assert.match(e.hint ?? '', new RegExp(`head -c ${members.length} `));
    return true;
  });
  // Zeros, then more data (a second member): it would go unread, so it is refused as well, at the data's offset.
  await assert.rejects(
    run('zm.csv.gz', Buffer.concat([members, Buffer.alloc(100), gzipSync('"lost",ham\n')])),
    (e) => e instanceof InputError && e.message.endsWith(`and 100 zero bytes of padding, at byte offset ${members.length + 100}`),
  );
});

test('a JSONL row naming the text or id field twice is a duplicate-field bad row, as ingest has it', async () => {
  const jsonl = Buffer.from(
    [
      '{"id":1,"text":"a"}',
      '{"id":2,"text":"b","text":"c"}',
      '{"id":3,"id":4,"text":"d"}',
      '{"id":5,"note":1,"note":2,"text":"e"}',
      '',
    ].join('\n'),
  );
  // Before: read as JSON.parse has it, the last value kept without a word ("c", id 4).
  await assert.rejects(
    run('dup.jsonl', jsonl),
    (e) =>
      e instanceof InputError &&
      /dup\.jsonl:2$/.test(e.where ?? '') &&
      /^.*duplicate-field: field "text" is named more than once/.test(e.message),
  );
  const skipped = await run('dup.jsonl', jsonl, { onBadRow: 'skip' });
  // A field not read here may repeat.
  assert.deepEqual(skipped.texts, ['a', 'e']);
  assert.deepEqual(skipped.report.badReasons, { 'duplicate-field': 2 });
  assert.deepEqual(
    skipped.report.firstBadRows.map((b) => b.line),
    [2, 3],
  );
});

test('a conversation whose message names a key twice is a duplicate-field bad row, as ingest has it', async () => {
  // Echoes the messages asked, so the output shows which content was read.
  const chat: RowScorer = { ...echo, conversations: true };
  const jsonl = Buffer.from(
    [
      '{"id":1,"messages":[{"role":"user","content":"a"}]}',
      '{"id":2,"messages":[{"role":"user","content":"a","content":"b"}]}',
      '{"id":3,"conversation":[{"role":"user","content":"c","role":"user"}]}',
      '{"id":4,"messages":[{"role":"user","content":"d"}]}',
      '',
    ].join('\n'),
  );
  // Before: row 2 was answered on "b", JSON.parse's last value, without a word.
  await assert.rejects(
    predictFile({ input: writeInput('dup-msg.jsonl', jsonl), output: join(dir, 'dup-msg-out.jsonl'), scorer: chat, textField: 'text' }),
    (e) =>
      e instanceof InputError &&
      /dup-msg\.jsonl:2$/.test(e.where ?? '') &&
      /duplicate-field: "messages"\[0\] names "content" more than once/.test(e.message),
  );
  const out = join(dir, 'dup-msg-skip.jsonl');
  const report = await predictFile({
    input: writeInput('dup-msg.jsonl', jsonl),
    output: out,
    scorer: chat,
    textField: 'conversation',
    onBadRow: 'skip',
  });
  // The text field holding the list is checked too (row 3); rows 1 and 4 are answered.
  assert.deepEqual(report.badReasons, { 'duplicate-field': 2 });
  assert.deepEqual(
    report.firstBadRows.map((b) => [b.line, b.detail.split(' more than')[0]]),
    [
      [2, '"messages"[0] names "content"'],
      [3, '"conversation"[0] names "role"'],
    ],
  );
  assert.deepEqual(
    readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { text: { content: string }[] }).text.map((m) => m.content)),
    [['a'], ['d']],
  );
});

function writeInput(name: string, bytes: Buffer): string {
  const input = join(dir, `${++n}-${name}`);
  writeFileSync(input, bytes);
  return input;
}

test('the output names the id column as the input does (--id-field), in CSV and JSONL alike; one named like an output column is refused', async () => {
  const input = join(dir, 'tickets.csv');
  writeFileSync(input, 'ticket_id,text\nT-1,hello\n,no id\nT-3,bye\n');
  // Before: the CSV header said `id` and the JSONL key was `id` whatever the input called it, so a join back on
  // ticket_id found no such column.
  const csvOut = join(dir, 'tickets-out.csv');
  await predictFile({ input, output: csvOut, scorer: echo, textField: 'text', idField: 'ticket_id' });
  assert.equal(readFileSync(csvOut, 'utf8'), 'ticket_id,row,text\nT-1,2,hello\n,3,no id\nT-3,4,bye\n');
  const jsonlOut = join(dir, 'tickets-out.jsonl');
  await predictFile({ input, output: jsonlOut, scorer: echo, textField: 'text', idField: 'ticket_id' });
  assert.deepEqual(
    readFileSync(jsonlOut, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
    [
      { ticket_id: 'T-1', row: 2, text: 'hello' },
      { ticket_id: '', row: 3, text: 'no id' },
      { ticket_id: 'T-3', row: 4, text: 'bye' },
    ],
  );
  for (const idField of ['row', 'text'])
    await assert.rejects(
      predictFile({ input, output: join(dir, `clash-${idField}.csv`), scorer: echo, textField: 'text', idField }),
      (e) =>
        e instanceof InputError &&
        e.where === '--id-field' &&
        e.message.endsWith(`the id field "${idField}" would be named like the output's own column "${idField}"`) &&
        e.hint === "the output's columns are row, text beside the id: rename that column in the input, or name another --id-field",
    );
  // `Text` beside the output's `text` is one column to SQL and spreadsheets; an empty name wrote a headerless column.
  await assert.rejects(
    predictFile({ input, output: join(dir, 'clash-case.csv'), scorer: echo, textField: 'text', idField: 'Text' }),
    (e) =>
      e instanceof InputError &&
      e.where === '--id-field' &&
      e.message.endsWith(`the id field "Text" would be named like the output's own column "text"`),
  );
  await assert.rejects(
    predictFile({ input, output: join(dir, 'clash-empty.csv'), scorer: echo, textField: 'text', idField: '' }),
    (e) => e instanceof InputError && e.where === '--id-field' && /the id field is empty/.test(e.message),
  );
  // A JSONL line's keys are not the CSV's columns (a classifier's `scores` is p_<label> columns there): `--id-field
  // scores` went through, and the id was lost under the scores in every JSONL line.
  const scoresIn = join(dir, 'scores-in.csv');
  writeFileSync(scoresIn, 'scores,text\nS-1,hello\n');
  const scored: RowScorer = {
    ...echo,
    keys: ['text', 'scores'],
    score: async (ts) => ts.map((t) => ({ values: { text: t, scores: { a: 1 } } })),
  };
  await assert.rejects(
    predictFile({ input: scoresIn, output: join(dir, 'clash-scores.jsonl'), scorer: scored, textField: 'text', idField: 'scores' }),
    (e) => e instanceof InputError && e.where === '--id-field' && /the id field "scores" would be named like/.test(e.message),
  );
  await predictFile({ input: scoresIn, output: join(dir, 'scores.csv'), scorer: scored, textField: 'text', idField: 'scores' });
  assert.equal(readFileSync(join(dir, 'scores.csv'), 'utf8'), 'scores,row,text\nS-1,2,hello\n');
});
