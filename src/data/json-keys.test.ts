// The one key scanner behind the JSONL reader's duplicate-field and exact-label checks and the chat duplicate-key check:
// keys spelled with escapes, nested objects, strings full of brackets and quotes, and which fault a row reports first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { mayRepeat, scanKeys } from './json-keys.ts';
import { readJsonl, type SourceRecord } from './read-records.ts';

const root = mkdtempSync(join(tmpdir(), 'json-keys-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

test('a key spelled with escapes is the key it spells, at the root and in a message', () => {
  assert.equal(scanKeys('{"\\u0074ext":"a","text":"b"}', { fields: ['text'] }).repeatedField, 'text');
  assert.equal(scanKeys('{"te\\u0078t":"a","\\u0074\\u0065xt":"b"}', { fields: ['text'] }).repeatedField, 'text');
  assert.deepEqual(scanKeys('{"messages":[{"role":"user","\\u0072ole":"x","content":"c"}]}', { messages: 'messages' }).repeatedMessageKey, {
    index: 0,
    key: 'role',
  });
  // The messages field itself spelled with an escape is still the conversation.
  assert.deepEqual(
    scanKeys('{"m\\u0065ssages":[{"role":"a","content":"b"},{"content":"c","\\u0063ontent":"d"}]}', { messages: 'messages' })
      .repeatedMessageKey,
    { index: 1, key: 'content' },
  );
  // An escaped quote or backslash in a key is part of the key.
  assert.deepEqual(scanKeys('[{"a\\"b":1,"a\\\\b":2,"a\\u0022b":3}]', { messages: true }).repeatedMessageKey, { index: 0, key: 'a"b' });
});

test('nested objects are values: their keys may repeat, and a messages list nested elsewhere is not the conversation', () => {
  const fields = ['text', 'messages'];
  assert.deepEqual(scanKeys('{"meta":{"text":1,"text":2},"text":"a"}', { fields }), {});
  assert.deepEqual(scanKeys('{"text":"a","list":[{"text":1},{"text":2}]}', { fields }), {});
  assert.deepEqual(
    scanKeys('{"meta":{"messages":[{"role":1,"role":2}]},"messages":[{"role":"user"}]}', { fields, messages: 'messages' }),
    {},
  );
  assert.deepEqual(scanKeys('{"messages":[{"role":"user","content":{"a":1,"a":2}}]}', { messages: 'messages' }), {});
  assert.deepEqual(scanKeys('{"messages":[[{"role":1,"role":2}]]}', { messages: 'messages' }), {});
  // A key of the root named as the messages field, once, in an object that is not the root, changes nothing.
  assert.deepEqual(scanKeys('{"x":{"messages":1},"y":[{"role":1,"role":2}]}', { messages: 'messages' }), {});
});

test('strings holding brackets, commas, colons, quotes and trailing backslashes are passed over whole', () => {
  const tricky = JSON.stringify({ role: 'user', content: '}],{"role":1,"role":2},[{"x": "\\", \\\\' });
  const row = (...ms: string[]) => `{"messages":[${ms.join(',')}],"text":"}{\\\\"}`;
  assert.deepEqual(
    scanKeys(row(tricky, '{"role":"assistant","content":"ok"}'), { fields: ['text', 'messages'], messages: 'messages' }),
    {},
  );
  assert.deepEqual(
    scanKeys(row(tricky, '{"role":"assistant","content":"a\\\\","content":"b"}'), { messages: 'messages' }).repeatedMessageKey,
    {
      index: 1,
      key: 'content',
    },
  );
  assert.deepEqual(scanKeys('{"text":"{\\"text\\":1}","label":"a"}', { fields: ['text', 'label'] }), {});
});

test('a repeated read field is reported before a message key repeated earlier in the row', () => {
  const text = '{"messages":[{"role":"a","role":"b"}],"messages":[{"role":"user"}]}';
  assert.equal(scanKeys(text, { fields: ['messages'], messages: 'messages' }).repeatedField, 'messages');
  // Without that field read, the message's repeat is the row's fault.
  assert.deepEqual(scanKeys(text, { messages: 'messages' }).repeatedMessageKey, { index: 0, key: 'role' });
});

test("valueFrom is the root's last key of that name, not a nested one", () => {
  const text = '{"label":1,"meta":{"label":2},"lab\\u0065l" : 9007199254740993}';
  const at = scanKeys(text, { valueKey: 'label' }).valueFrom!;
  assert.equal(text.slice(at), ' : 9007199254740993}');
  assert.equal(scanKeys('{"meta":{"label":2}}', { valueKey: 'label' }).valueFrom, undefined);
});

test('mayRepeat: only a text with a backslash or a read field written twice can repeat one', () => {
  assert.equal(mayRepeat('{"text":"a","label":"b"}', ['text', 'label']), false);
  assert.equal(mayRepeat('{"text":"a","x":{"text":1}}', ['text']), true);
  assert.equal(mayRepeat('{"text":"a\\n"}', ['text']), true);
  assert.equal(mayRepeat('{"text":"a","text":"b"}', []), false);
});

test('a row nested two million deep is scanned in bounded memory, as JSON.parse reads it', () => {
  // A frame for every open bracket was about 85 bytes of heap a level: a 64 MiB line (the reader's limit) of brackets in
  // a row with a backslash (so scanned for escaped keys) held 2.2 GB beside JSON.parse's value. Only the root, the list
  // of messages and a message have keys read; deeper containers are counted. A child with a 64 MiB heap shows it.
  const child = join(mkdtempSync(join(root, 'deep-')), 'child.mts');
  const scanner = new URL('./json-keys.ts', import.meta.url).href;
  writeFileSync(
    child,
    `import { scanKeys, type KeyQuery } from ${JSON.stringify(scanner)};
const n = 2_000_000;
const deep = (open: string, inner: string, close: string) => open.repeat(n) + inner + close.repeat(n);
// One row at a time: the heap holds one text (at most 12 MB) and what the scan keeps.
const rows: (() => [string, KeyQuery])[] = [
  () => ['{"text":"\\n","x":' + deep('[', '', ']') + ',"text":1}', { fields: ['text'] }],
  () => ['{"messages":[' + deep('{"a":', '1', '}') + ']}', { fields: ['messages'], messages: 'messages' }],
  () => ['[{"role":1,"x":' + deep('[', '', ']') + ',"role":2}]', { messages: true }],
];
for (const row of rows) console.log(JSON.stringify(scanKeys(...row())));
`,
  );
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--max-old-space-size=64', child], { encoding: 'utf8', cwd: process.cwd() });
  assert.equal(r.status, 0, r.stderr.slice(-2000));
  assert.deepEqual(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
    [{ repeatedField: 'text' }, {}, { repeatedMessageKey: { index: 0, key: 'role' } }],
  );
});

async function readAll(lines: string[], opts: Parameters<typeof readJsonl>[1]): Promise<SourceRecord[]> {
  const abs = join(mkdtempSync(join(root, 'r-')), 'a.jsonl');
  writeFileSync(abs, lines.join('\n') + '\n');
  const out: SourceRecord[] = [];
  for await (const recs of readJsonl({ abs, display: 'a.jsonl', format: 'jsonl' } as never, opts)) out.push(...recs);
  return out;
}

test('the JSONL reader: one scan answers the chat checks and the exact label, with the details as before', async () => {
  const chat = await readAll(
    [
      '{"messages":[{"role":"user","content":"{\\"role\\":1,\\"role\\":2}"},{"role":"assistant","content":"ok"}]}',
      '{"messages":[{"role":"user","\\u0072ole":"system","content":"x"}]}',
      '{"messages":[{"role":"user","content":"x"}],"\\u006dessages":[]}',
    ],
    { readsColumns: ['messages'], conversationField: 'messages' },
  );
  assert.ok(chat[0]!.values);
  assert.deepEqual(chat[1]!.bad, {
    reason: 'duplicate-field',
    detail: '"messages"[0] names "role" more than once, so which value is meant cannot be told (JSON.parse would keep the last): keep one',
  });
  assert.deepEqual(chat[2]!.bad, {
    reason: 'duplicate-field',
    detail:
      'field "messages" is named more than once in the object, so which value is meant cannot be told (JSON.parse would keep the last): keep one',
  });
  const labels = await readAll(
    [
      '{"text":"a","meta":{"label":1},"lab\\u0065l":9007199254740993}',
      '{"text":"b\\n","label":9007199254740993.5}',
      '{"text":"c","label":12}',
    ],
    { readsColumns: ['text', 'label'], labelField: 'label' },
  );
  assert.equal(labels[0]!.values!.label, 9007199254740993n);
  assert.deepEqual(labels[1]!.bad, {
    reason: 'invalid-label',
    detail: 'label field "label" is 9007199254740993.5, a non-integer number; use strings or integers',
  });
  assert.equal(labels[2]!.values!.label, 12);
});

test('a non-integer label that JSON.parse rounded is named by its first digits, not all of them', async () => {
  // 9007199254740993.111… parses as 9007199254740992; the detail is in the error and the report, so a label of a
  // million digits must not be.
  const [rec] = await readAll([`{"text":"a","label":9007199254740993.${'1'.repeat(1_000_000)}}`], {
    readsColumns: ['text', 'label'],
    labelField: 'label',
  });
  assert.equal(
    rec!.bad?.detail,
    'label field "label" is 9007199254740993.11111111111111111111111… (1000017 characters), a non-integer number; use strings or integers',
  );
});

// Random rows against what they were built from: keys drawn from a few names (some with quotes and backslashes),
// written with random \u escapes; values strings full of JSON's own characters, numbers, and nested objects and lists.
type Pairs = [string, Value][];
type Value = string | number | { obj: Pairs } | Value[];
const KEYS = ['role', 'content', 'weight', 'a"b', 'x\\y', '{', 'messages', 'text'];
const key = fc.constantFrom(...KEYS);
const str = fc.string({ unit: fc.constantFrom('a', '{', '}', '[', ']', ',', ':', '"', '\\', ' ', 'é', '\n'), maxLength: 8 });
const { value } = fc.letrec<{ value: Value; pairs: Pairs }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    str,
    fc.integer(),
    fc.record({ obj: tie('pairs') }),
    fc.array(tie('value'), { maxLength: 3 }),
  ),
  pairs: fc.array(fc.tuple(key, tie('value')), { maxLength: 4 }) as fc.Arbitrary<Pairs>,
}));
const pairs = fc.array(fc.tuple(key, value), { maxLength: 5 });

/** `k` as a JSON string, each character whose bit is set in `escapes` written as \uXXXX. */
function writeKey(k: string, escapes: number): string {
  const u = (ch: string) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`;
  return `"${[...k].map((ch, i) => ((escapes >> i) & 1 ? u(ch) : JSON.stringify(ch).slice(1, -1))).join('')}"`;
}
function write(v: Value, escapes: number): string {
  if (typeof v === 'string' || typeof v === 'number') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x) => write(x, escapes)).join(',')}]`;
  return writeObject(v.obj, escapes);
}
const writeObject = (ps: Pairs, escapes: number) => `{${ps.map(([k, v]) => `${writeKey(k, escapes)} : ${write(v, escapes)}`).join(',')}}`;
const firstRepeat = (ps: readonly [string, unknown][], among: (k: string) => boolean) =>
  ps.find(([k], j) => among(k) && ps.slice(0, j).some(([e]) => e === k))?.[0];

test('random rows: the scan finds exactly the repeats the row was built with', () => {
  const fields = ['messages', 'text'];
  fc.assert(
    fc.property(pairs, fc.array(pairs, { maxLength: 4 }), fc.nat(255), (rootPairs, messages, escapes) => {
      const row: Pairs = [...rootPairs.filter(([k]) => k !== 'messages'), ['messages', messages.map((m) => ({ obj: m }))]];
      const text = writeObject(row, escapes);
      JSON.parse(text);
      const got = scanKeys(text, { fields, messages: 'messages', valueKey: 'text' });
      const index = messages.findIndex((m) => firstRepeat(m, () => true) !== undefined);
      const inMessage = index === -1 ? undefined : { index, key: firstRepeat(messages[index]!, () => true) };
      // The JSON text of a conversation alone (a CSV cell): the same message repeat.
      const list = `[${messages.map((m) => writeObject(m, escapes)).join(',')}]`;
      assert.deepEqual(scanKeys(list, { messages: true }).repeatedMessageKey, inMessage, list);
      const field = firstRepeat(row, (k) => fields.includes(k));
      assert.equal(got.repeatedField, field, text);
      if (field !== undefined) return;
      assert.deepEqual(got.repeatedMessageKey, inMessage, text);
      if (inMessage) return;
      const labelled = row.find(([k]) => k === 'text');
      const at = got.valueFrom;
      assert.ok(labelled ? at !== undefined && text.startsWith(` : ${write(labelled[1], escapes)}`, at) : at === undefined, text);
    }),
    { seed: 20261207, numRuns: 2000 },
  );
});
