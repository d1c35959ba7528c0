// The chat task's ingest: OpenAI-format conversations become one canonical JSON `messages` cell per row; every way a
// row can be malformed is a bad row naming file:line and what to fix, under --on-bad-row fail and quarantine alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { Field, Int8, List, Struct, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { columnValues, readArrowBatches } from './arrow-io.ts';
import { gsm8kConversations, writeJsonl } from './conversations.testing.ts';
import { ingest } from './ingest.ts';
import { dedupe } from './dedupe.ts';
import { formatDataReport } from './report.ts';
import type { IngestConfig } from './config.ts';
import { repeatedMessageKey } from './conversation.ts';

const root = mkdtempSync(join(tmpdir(), 'ingest-chat-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

async function column(path: string, name: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const b of readArrowBatches(path)) out.push(...columnValues(b, name));
  return out;
}

const run = (dir: string, cfg: Omit<IngestConfig, 'task'>) =>
  ingest({ task: 'chat', ...cfg }, { baseDir: dir, outPath: join(dir, 'out.arrow'), quarantinePath: join(dir, 'q.arrow') });

test('GSM8K conversations ingest as canonical JSON: weight 1 is implied, _hash ignores how a row spelled it, length counts the text', async () => {
  const dir = mkdtempSync(join(root, 'good-'));
  const rows = gsm8kConversations(24);
  // The same conversation as row 0 with weight: 1 spelled out on its last reply: the same row.
  const spelled = { messages: rows[1]!.messages.map((m, i, a) => (i === a.length - 1 ? { ...m, weight: 1 } : m)) };
  writeJsonl(join(dir, 'chat.jsonl'), [...rows, spelled]);
  const r = await run(dir, { path: 'chat.jsonl' });
  assert.deepEqual([r.rowsIn, r.rowsOut, r.task], [25, 25, 'chat']);
  assert.deepEqual(Object.keys(r.schema), ['messages', '_source', '_row', '_hash']);
  const cells = (await column(join(dir, 'out.arrow'), 'messages')) as string[];
  assert.deepEqual(JSON.parse(cells[0]!), rows[0]!.messages);
  assert.equal(cells[24], cells[1]);
  const hashes = await column(join(dir, 'out.arrow'), '_hash');
  assert.equal(hashes[24], hashes[1]);
  // Text length: the contents' characters, not the JSON's.
  const chars = rows[0]!.messages.reduce((n, m) => n + [...m.content].length, 0);
  assert.ok(r.textLength.max < cells.reduce((n, c) => Math.max(n, c.length), 0));
  assert.ok(r.textLength.p50 > 0 && chars > 0);
  // dedupe compares the conversations' text: the repeated row is an exact duplicate, the rest are kept.
  const d = await dedupe(join(dir, 'out.arrow'), {}, { outPath: join(dir, 'dd.arrow'), clustersPath: join(dir, 'cl.arrow') });
  assert.deepEqual([d.rowsOut, d.exactRemoved, d.nearRemoved], [24, 1, 0]);
});

test("the README's example file, tests/fixtures/chat.jsonl, ingests whole", async () => {
  const dir = mkdtempSync(join(root, 'fixture-'));
  copyFileSync(new URL('../../tests/fixtures/chat.jsonl', import.meta.url), join(dir, 'chat.jsonl'));
  const r = await run(dir, { path: 'chat.jsonl' });
  assert.deepEqual([r.rowsIn, r.rowsOut], [4, 4]);
  const cells = (await column(join(dir, 'out.arrow'), 'messages')) as string[];
  // weight 0 is kept, weight 1 (the default) is not spelled out.
  assert.match(cells[1]!, /"weight":0/);
  assert.doesNotMatch(cells[2]!, /weight/);
});

test('weight null is weight absent, as a Parquet list of structs gives it for a user message', async () => {
  const dir = mkdtempSync(join(root, 'null-'));
  const plain = [u('hi'), a('ok')];
  writeJsonl(join(dir, 'c.jsonl'), [{ messages: [{ ...u('hi'), weight: null }, a('ok', null)] }, { messages: plain }]);
  const r = await run(dir, { path: 'c.jsonl' });
  assert.equal(r.rowsOut, 2);
  const cells = await column(join(dir, 'out.arrow'), 'messages');
  assert.deepEqual(cells, [JSON.stringify(plain), JSON.stringify(plain)]);
});

test('an Arrow file of list<struct> messages (weight null where unset) ingests as the same conversations in JSONL do', async () => {
  const dir = mkdtempSync(join(root, 'arrow-'));
  const rows = gsm8kConversations(4);
  const type = new List(
    new Field(
      'item',
      new Struct([new Field('role', new Utf8()), new Field('content', new Utf8()), new Field('weight', new Int8(), true)]),
      true,
    ),
  );
  const messages = vectorFromArray(
    rows.map((r) => r.messages.map((m) => ({ role: m.role, content: m.content, weight: m.weight ?? null }))),
    type,
  );
  writeFileSync(join(dir, 'c.arrow'), tableToIPC(new Table({ messages }), 'file'));
  writeJsonl(join(dir, 'c.jsonl'), rows);
  const r = await run(dir, { path: 'c.arrow' });
  assert.equal(r.rowsOut, 4);
  const fromArrow = await column(join(dir, 'out.arrow'), 'messages');
  await run(dir, { path: 'c.jsonl' });
  assert.deepEqual(fromArrow, await column(join(dir, 'out.arrow'), 'messages'));
});

test('a Parquet file whose message structs have a name field, null in every message, ingests as the JSONL rows do', async () => {
  const dir = mkdtempSync(join(root, 'parquet-'));
  const rows = gsm8kConversations(4);
  const text = (name: string) => ({ name, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' }) as const;
  const buf = parquetWriteBuffer({
    columnData: [{ name: 'messages', data: rows.map((r) => r.messages.map((m) => ({ ...m, weight: m.weight ?? null, name: null }))) }],
    schema: [
      { name: 'root', num_children: 1 },
      { name: 'messages', repetition_type: 'OPTIONAL', num_children: 1, converted_type: 'LIST' },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      { name: 'element', repetition_type: 'OPTIONAL', num_children: 4 },
      text('role'),
      text('content'),
      { name: 'weight', type: 'INT32', repetition_type: 'OPTIONAL' },
      text('name'),
    ],
  });
  writeFileSync(join(dir, 'c.parquet'), new Uint8Array(buf));
  writeJsonl(join(dir, 'c.jsonl'), rows);
  const r = await run(dir, { path: 'c.parquet' });
  assert.equal(r.rowsOut, 4);
  const fromParquet = await column(join(dir, 'out.arrow'), 'messages');
  await run(dir, { path: 'c.jsonl' });
  assert.deepEqual(fromParquet, await column(join(dir, 'out.arrow'), 'messages'));
});

test('a field name other than messages is read through fields.messages', async () => {
  const dir = mkdtempSync(join(root, 'field-'));
  writeJsonl(
    join(dir, 'c.jsonl'),
    gsm8kConversations(2).map((r) => ({ conversation: r.messages })),
  );
  const r = await run(dir, { path: 'c.jsonl', fields: { messages: 'conversation' } });
  assert.equal(r.rowsOut, 2);
});

const u = (content: string) => ({ role: 'user', content });
const a = (content: string, weight?: unknown) => ({ role: 'assistant', content, ...(weight !== undefined ? { weight } : {}) });
const deep = '['.repeat(100_000) + ']'.repeat(100_000);
const BAD: [unknown, RegExp][] = [
  ['hello', /text that is not JSON/],
  [{ role: 'user' }, /is object, expected a list/],
  [[], /empty list/],
  [[u('hi'), 'ok'], /messages"\[1\] is string, expected \{role, content\}/],
  [[{ role: 'tool', content: 'x' }, a('ok')], /role is "tool"; use system, user or assistant/],
  [[u('hi'), { role: 'system', content: 's' }, a('ok')], /system message after the first/],
  [
    [u('hi'), { role: 'assistant', content: [{ type: 'text', text: 'ok' }] }],
    /content is a list of content parts, which are not supported; give the message's text as one string/,
  ],
  [[u('hi'), { role: 'assistant', content: null }], /content is null/],
  [[u('hi')], /last message .* is a user message/],
  [[u('hi'), a('ok'), u('more?')], /last message .* is a user message/],
  [[u('hi'), a('ok', 0)], /every assistant message .* has weight 0/],
  [[u('hi'), a('ok', 0.5)], /weight is 0\.5; use 0 .* or 1/],
  [[{ ...u('hi'), weight: 1 }, a('ok')], /user message with a weight/],
  [[u('hi'), { ...a('ok'), tool_calls: [] }], /field "tool_calls"; only role, content and weight/],
  [[u('   '), a('ok')], /content is empty/],
  // JSON text (as a CSV cell holds it) with a role or weight nested 100,000 deep: parsed fine, but a detail quoting it
  // with JSON.stringify overflowed the stack, a RangeError out of ingest instead of a bad row.
  [`[{"role":"user","content":"hi"},{"role":"assistant","content":"ok","weight":${deep}}]`, /weight is a list; use 0/],
  [`[{"role":${deep},"content":"hi"},{"role":"assistant","content":"ok"}]`, /role is a list; use system/],
  // JSON.parse makes __proto__ an own field, not the prototype: refused as a field, its weight never read.
  ['[{"role":"user","content":"hi"},{"role":"assistant","content":"ok","__proto__":{"weight":0}}]', /has field "__proto__"; only role/],
];

test('each malformed conversation fails ingest naming file:line and the fix; quarantined, the good rows stay', async () => {
  const dir = mkdtempSync(join(root, 'bad-'));
  const good = gsm8kConversations(2);
  for (const [k, [messages, want]] of BAD.entries()) {
    writeJsonl(join(dir, 'c.jsonl'), [...good, { messages }]);
    await assert.rejects(run(dir, { path: 'c.jsonl' }), (e: unknown) => {
      assert.ok(e instanceof InputError, `case ${k}: ${String(e)}`);
      assert.equal(e.where, 'c.jsonl:3', `case ${k}`);
      assert.match(e.message, /c\.jsonl:3: invalid-conversation: /, `case ${k}`);
      assert.match(e.message, want, `case ${k}`);
      return true;
    });
    const q = await run(dir, { path: 'c.jsonl', onBadRow: 'quarantine', maxBadFraction: 1 });
    assert.deepEqual([q.rowsOut, q.badRows], [2, { 'invalid-conversation': 1 }], `case ${k}`);
    assert.deepEqual(await column(join(dir, 'q.arrow'), '_row'), [3]);
  }
});

test('a message naming role or content twice is a duplicate-field bad row, as a row naming a field twice is', async () => {
  const dir = mkdtempSync(join(root, 'twice-'));
  const good = gsm8kConversations(2).map((r) => JSON.stringify(r));
  const msgs = (m0: string, m1: string) => `[${m0},${m1}]`;
  const user = '{"role":"user","content":"hi"}';
  const reply = '{"role":"assistant","content":"ok"}';
  const cases: [string, string, RegExp, Omit<IngestConfig, 'task' | 'path'>?][] = [
    [
      'content twice',
      `{"messages":${msgs(user, '{"role":"assistant","content":"ok","content":"not this"}')}}`,
      /"messages"\[1\] names "content" more than once/,
    ],
    [
      'role twice',
      `{"messages":${msgs('{"role":"user","role":"system","content":"hi"}', reply)}}`,
      /"messages"\[0\] names "role" more than once/,
    ],
    [
      'spelled with an escape',
      `{"messages":${msgs('{"role":"user","content":"hi","\\u0063ontent":"x"}', reply)}}`,
      /"messages"\[0\] names "content"/,
    ],
    // JSON text of a conversation (as a CSV cell, or a JSONL string, holds it): JSON.parse of it kept the last too.
    [
      'in JSON text',
      `{"messages":${JSON.stringify(msgs(user, '{"role":"assistant","role":"user","content":"ok"}'))}}`,
      /"messages"\[1\] names "role"/,
    ],
    [
      'under fields.messages',
      `{"messages":"not read","conversation":${msgs(user, '{"role":"assistant","content":"a","content":"b"}')}}`,
      /"conversation"\[1\] names "content"/,
      { fields: { messages: 'conversation' } },
    ],
  ];
  for (const [what, line, want, more] of cases) {
    const rows = more ? good.map((g) => g.replace('{"messages":', '{"conversation":')) : good;
    writeFileSync(join(dir, 'c.jsonl'), [...rows, line].join('\n') + '\n');
    await assert.rejects(run(dir, { path: 'c.jsonl', ...more }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === 'c.jsonl:3', `${what}: ${String(e)}`);
      assert.match(e.message, /c\.jsonl:3: duplicate-field: /, what);
      assert.match(e.message, want, what);
      assert.match(e.message, /which value is meant cannot be told/, what);
      return true;
    });
    const q = await run(dir, { path: 'c.jsonl', onBadRow: 'quarantine', maxBadFraction: 1, ...more });
    assert.deepEqual([q.rowsOut, q.badRows], [2, { 'duplicate-field': 1 }], what);
  }
  // A key repeated outside the messages (a field not read, nested), or a key's name inside a content, is no duplicate.
  writeFileSync(
    join(dir, 'c.jsonl'),
    `{"meta":{"role":1,"role":2},"messages":${msgs('{"role":"user","content":"\\"role\\": \\"a\\", \\"role\\": \\"b\\""}', reply)}}\n`,
  );
  assert.equal((await run(dir, { path: 'c.jsonl' })).rowsOut, 1);
});

test('the repeated-key scan passes over escapes in strings exactly, and over millions of them', () => {
  const row = (...messages: string[]) => `{"messages":[${messages.join(',')}]}`;
  // Escaped quotes and backslashes in a content, a content that ends in a backslash, a key that holds an escaped quote:
  // the closing quote is found after each, so what follows is read as keys again.
  const noisy = JSON.stringify({ role: 'user', content: 'say "hi" \\ {"role": "x", "role": "y"} \\' });
  assert.equal(repeatedMessageKey(row(noisy, '{"role":"assistant","content":"a\\\\"}'), 'messages'), undefined);
  assert.deepEqual(repeatedMessageKey(row(noisy, '{"role":"assistant","content":"a\\\\","content":"b"}'), 'messages'), {
    index: 1,
    key: 'content',
  });
  assert.deepEqual(repeatedMessageKey(row('{"role":"user","a\\"b":1,"content":"x","a\\"b":2}'), 'messages'), { index: 0, key: 'a"b' });
  // A content of 16 million escaped quotes (32M characters, a line within LINE_LIMIT_BYTES), then a repeated key: found,
  // where a regex step without a bound overflowed V8's backtrack stack (a RangeError).
  const huge = JSON.stringify({ role: 'user', content: '"'.repeat(16_000_000) });
  assert.deepEqual(repeatedMessageKey(row(huge, '{"role":"assistant","role":"user","content":"ok"}'), 'messages'), {
    index: 1,
    key: 'role',
  });
  assert.deepEqual(repeatedMessageKey(`[${huge},{"role":"a","content":"b","content":"c"}]`), { index: 1, key: 'content' });
});

test('maxLength bounds each message, and a missing messages field is the mapping error it is', async () => {
  const dir = mkdtempSync(join(root, 'len-'));
  writeJsonl(join(dir, 'c.jsonl'), [{ messages: [u('hi'), a('x'.repeat(11))] }, { messages: [u('hi'), a('short')] }]);
  await assert.rejects(
    run(dir, { path: 'c.jsonl', maxLength: 10 }),
    /c\.jsonl:1: too-long: "messages"\[1\]\.content has 11 characters, maxLength is 10/,
  );
  writeJsonl(join(dir, 'c.jsonl'), [{ conversation: [u('hi'), a('ok')] }]);
  await assert.rejects(
    run(dir, { path: 'c.jsonl' }),
    (e: unknown) => e instanceof InputError && /no field "messages"/.test(e.message) && e.where === 'fields.messages',
  );
});

test('the ingest report names the first quarantined conversations by file:line and what to fix, as the status prints it', async () => {
  // Before, a quarantined run's status gave counts by reason only: which rows to fix meant reading the quarantine table.
  const dir = mkdtempSync(join(root, 'quarantined-'));
  const [good] = gsm8kConversations(1);
  const user = { role: 'user', content: 'thanks!' };
  writeJsonl(join(dir, 'c.jsonl'), [
    good,
    { messages: [...good!.messages, { role: 'tool', content: '{}' }] },
    ...Array.from({ length: 11 }, () => ({ messages: [...good!.messages, user] })),
  ]);
  const r = await run(dir, { path: 'c.jsonl', onBadRow: 'quarantine', maxBadFraction: 1 });
  const last = 'the last message of "messages" is a user message; a conversation ends with the assistant\'s reply';
  assert.deepEqual(r.firstQuarantined, [
    `c.jsonl:2: invalid-conversation: "messages"[${good!.messages.length}].role is "tool"; use system, user or assistant`,
    ...Array.from({ length: 9 }, (_, i) => `c.jsonl:${i + 3}: invalid-conversation: ${last}`),
  ]);
  const text = formatDataReport(r);
  assert.match(
    text,
    /\nquarantined rows \(the first 10; `tempered status <run> --quarantine` prints all, each with its raw text\):\n {2}c\.jsonl:2: invalid-conversation: /,
  );
  assert.match(text, /\n {2}c\.jsonl:11: invalid-conversation: the last message .*\nlabels: /);
});
