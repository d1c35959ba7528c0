/**
 * json-keys' scanKeys against a slow reference (fixed seed): a recursive-descent JSON parser that keeps every key with
 * its place, on rows written every way JSON allows (whitespace of all four kinds anywhere, any character escaped, short
 * escapes, surrogate pairs, lone surrogates and a BOM, numbers with signs, fractions and exponents, deep nesting), and
 * the JSONL reader's exact labels against the reference's exact digits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { scanKeys, type KeyQuery, type KeyScan } from './json-keys.ts';
import { readJsonl, type SourceRecord } from './read-records.ts';
import { mulberry32 } from '../util/mulberry32.testing.ts';

const SEED = 20261208;

// ---- The reference: a plain recursive-descent parser of JSON text, keeping each key's decoded name and closing quote.

type Node =
  | { kind: 'object'; entries: { key: string; keyEnd: number; value: Node }[] }
  | { kind: 'array'; items: Node[] }
  | { kind: 'number'; text: string }
  | { kind: 'other' };

function parseReference(text: string): Node {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const expect = (c: string) => {
    if (text[i] !== c) throw new Error(`reference: expected ${c} at ${i}`);
    i++;
  };
  const str = (): string => {
    expect('"');
    let out = '';
    for (;;) {
      const c = text[i++];
      if (c === undefined) throw new Error('reference: cut string');
      if (c === '"') return out;
      if (c !== '\\') {
        out += c;
        continue;
      }
      const e = text[i++]!;
      const short: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
      if (e === 'u') {
        out += String.fromCharCode(parseInt(text.slice(i, i + 4), 16));
        i += 4;
      } else out += short[e]!;
    }
  };
  const value = (): Node => {
    ws();
    const c = text[i];
    let node: Node;
    if (c === '{') {
      i++;
      const entries: { key: string; keyEnd: number; value: Node }[] = [];
      ws();
      if (text[i] === '}') i++;
      else
        for (;;) {
          ws();
          const key = str();
          const keyEnd = i - 1;
          ws();
          expect(':');
          entries.push({ key, keyEnd, value: value() });
          ws();
          if (text[i] === ',') i++;
          else {
            expect('}');
            break;
          }
        }
      node = { kind: 'object', entries };
    } else if (c === '[') {
      i++;
      const items: Node[] = [];
      ws();
      if (text[i] === ']') i++;
      else
        for (;;) {
          items.push(value());
          ws();
          if (text[i] === ',') i++;
          else {
            expect(']');
            break;
          }
        }
      node = { kind: 'array', items };
    } else if (c === '"') {
      str();
      node = { kind: 'other' };
    } else {
      const m = /-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null/y;
      m.lastIndex = i;
      const t = m.exec(text)?.[0];
      if (t === undefined) throw new Error(`reference: no value at ${i}`);
      i += t.length;
      node = /^[-0-9]/.test(t) ? { kind: 'number', text: t } : { kind: 'other' };
    }
    ws();
    return node;
  };
  // A BOM is no JSON whitespace, but the reader hands the scan a line that may begin with one.
  if (text.charCodeAt(0) === 0xfeff) i = 1;
  const root = value();
  if (i !== text.length) throw new Error(`reference: text after the value at ${i}`);
  return root;
}

/** The first key named twice in `keys` (by its second naming), or undefined. */
function firstRepeat(keys: readonly string[], among: (k: string) => boolean = () => true): string | undefined {
  const seen = new Set<string>();
  for (const k of keys) {
    if (!among(k)) continue;
    if (seen.has(k)) return k;
    seen.add(k);
  }
  return undefined;
}

function referenceScan(text: string, q: KeyQuery): KeyScan {
  const root = parseReference(text);
  const out: KeyScan = {};
  const entries = root.kind === 'object' ? root.entries : [];
  const field = firstRepeat(
    entries.map((e) => e.key),
    (k) => (q.fields ?? []).includes(k),
  );
  if (field !== undefined) out.repeatedField = field;
  const lists =
    q.messages === true
      ? root.kind === 'array'
        ? [root]
        : []
      : entries.filter((e) => e.key === q.messages && e.value.kind === 'array').map((e) => e.value as Node & { kind: 'array' });
  for (const list of lists) {
    const index = list.items.findIndex((m) => m.kind === 'object' && firstRepeat(m.entries.map((e) => e.key)) !== undefined);
    if (index === -1) continue;
    const m = list.items[index] as Node & { kind: 'object' };
    out.repeatedMessageKey = { index, key: firstRepeat(m.entries.map((e) => e.key))! };
    break;
  }
  const last = entries.findLast((e) => e.key === q.valueKey);
  if (q.valueKey !== undefined && last) out.valueFrom = last.keyEnd + 1;
  return out;
}

/** What a caller reads of a scan: a repeated field first, else a repeated message key, else where the value is. */
function reads(s: KeyScan): unknown {
  if (s.repeatedField !== undefined) return { repeatedField: s.repeatedField };
  if (s.repeatedMessageKey !== undefined) return { repeatedMessageKey: s.repeatedMessageKey };
  return { valueFrom: s.valueFrom };
}

// ---- Rows: an abstract value, written by a seeded choice of spellings.

type Value = { s: string } | { n: string } | { lit: 'true' | 'false' | 'null' } | { obj: [string, Value][] } | { arr: Value[] };

const CHARS = ['a', '{', '}', '[', ']', ',', ':', '"', '\\', '/', ' ', 'é', '\n', '\u2028', '😀', '\ud800', '\udc00', '\ufeff', '\u0000'];
const KEYS = ['label', 'text', 'messages', 'role', 'content', 'a"b', 'x\\y', '', '\ud800', '__proto__', 'label\\', '{'];
const NUMBERS = [
  '0',
  '-0',
  '12',
  '-7',
  '1.5',
  '-0.0',
  '1e3',
  '2E-2',
  '9007199254740993',
  '-9007199254740993',
  '1.5e20',
  '12345678901234567890123',
  '9007199254740993.5',
  '1E+20',
  '-1e21',
  '100000000000000000000e-2',
];

const chars = fc.array(fc.constantFrom(...CHARS), { maxLength: 6 }).map((cs) => cs.join(''));
const { value: anyValue } = fc.letrec<{ value: Value; entries: [string, Value][] }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    chars.map((s) => ({ s })),
    fc.constantFrom(...NUMBERS).map((n) => ({ n })),
    fc.constantFrom('true', 'false', 'null').map((lit) => ({ lit }) as Value),
    tie('entries').map((obj) => ({ obj })),
    fc.array(tie('value'), { maxLength: 3 }).map((arr) => ({ arr })),
  ),
  entries: fc.array(fc.tuple(fc.constantFrom(...KEYS), tie('value')), { maxLength: 4 }) as fc.Arbitrary<[string, Value][]>,
}));
const message = fc.array(fc.tuple(fc.constantFrom('role', 'content', 'weight', 'x\\y'), anyValue), { maxLength: 4 });
const messages: fc.Arbitrary<Value> = fc
  .array(fc.oneof({ weight: 4, arbitrary: message.map((obj) => ({ obj }) as Value) }, { weight: 1, arbitrary: anyValue }), {
    maxLength: 4,
  })
  .map((arr) => ({ arr }));
/** A root object: random entries, with a messages list and a label among them more often than chance would put them. */
const rootEntries = fc
  .tuple(
    fc.array(fc.tuple(fc.constantFrom(...KEYS), anyValue), { maxLength: 5 }),
    fc.array(
      fc.tuple(
        fc.constantFrom('messages', 'label'),
        fc.oneof(
          messages,
          fc.constantFrom(...NUMBERS).map((n) => ({ n }) as Value),
        ),
      ),
      {
        maxLength: 2,
      },
    ),
    fc.nat(),
  )
  .map(([a, b, at]) => {
    const out = [...a];
    for (const e of b) out.splice(at % (out.length + 1), 0, e);
    return out;
  });

function writer(seed: number, space: readonly string[]) {
  const r = mulberry32(seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)]!;
  const ws = () => (r() < 0.6 ? '' : Array.from({ length: 1 + Math.floor(r() * 3) }, () => pick(space)).join(''));
  const SHORT: Record<string, string> = {
    '"': '\\"',
    '\\': '\\\\',
    '/': '\\/',
    '\b': '\\b',
    '\f': '\\f',
    '\n': '\\n',
    '\r': '\\r',
    '\t': '\\t',
  };
  const unit = (c: string) => {
    const hex = c.charCodeAt(0).toString(16).padStart(4, '0');
    const u = `\\u${r() < 0.5 ? hex : hex.toUpperCase()}`;
    const raw = c !== '"' && c !== '\\' && c.charCodeAt(0) >= 0x20 && !(c === '\n' || c === '\r');
    const choices = [u, ...(SHORT[c] ? [SHORT[c]] : []), ...(raw ? [c, c, c] : [])];
    return pick(choices);
  };
  // Code units, so a surrogate pair may be written half escaped and half raw.
  const str = (s: string) => `"${Array.from({ length: s.length }, (_, k) => unit(s[k]!)).join('')}"`;
  const write = (v: Value): string => {
    let t: string;
    if ('s' in v) t = str(v.s);
    else if ('n' in v) t = v.n;
    else if ('lit' in v) t = v.lit;
    else if ('arr' in v) t = `[${ws()}${v.arr.map(write).join(`,`)}]`;
    else t = `{${ws()}${v.obj.map(([k, x]) => `${ws()}${str(k)}${ws()}:${write(x)}`).join(',')}}`;
    return `${ws()}${t}${ws()}`;
  };
  return write;
}

test('scanKeys reads of a row what a slow reference parser does: repeated field, repeated message key, value place', () => {
  const fields = ['text', 'label', 'messages'];
  fc.assert(
    fc.property(rootEntries, fc.integer(), fc.boolean(), (entries, seed, bom) => {
      const text = (bom ? '\ufeff' : '') + writer(seed, [' ', '\t', '\n', '\r'])({ obj: entries });
      JSON.parse(bom ? text.slice(1) : text);
      for (const q of [
        { fields, messages: 'messages', valueKey: 'label' },
        { messages: 'messages', valueKey: 'label' },
        { fields: ['label'], valueKey: 'label' },
        { fields: ['x\\y', '', '\ud800', '__proto__'] },
      ] as KeyQuery[])
        assert.deepEqual(reads(scanKeys(text, q)), reads(referenceScan(text, q)), JSON.stringify({ text, q }));
      // The JSON text of a conversation alone, as a CSV cell holds it.
      const list = entries.find(([k, v]) => k === 'messages' && 'arr' in v)?.[1];
      if (list) {
        const cell = writer(seed + 1, [' ', '\t', '\n', '\r'])(list);
        assert.deepEqual(reads(scanKeys(cell, { messages: true })), reads(referenceScan(cell, { messages: true })), cell);
      }
    }),
    { seed: SEED, numRuns: 3000 },
  );
});

/** The integer a JSON number's text stands for, by BigInt arithmetic alone, or undefined when it is none. */
function referenceInteger(t: string): bigint | undefined {
  const m = /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/.exec(t)!;
  const n = BigInt(m[2]! + (m[3] ?? '')) * (m[1] ? -1n : 1n);
  const e = BigInt(m[4] ?? 0) - BigInt((m[3] ?? '').length);
  if (e >= 0n) return n * 10n ** e;
  const d = 10n ** -e;
  return n % d === 0n ? n / d : undefined;
}

test('the JSONL reader: a label JSON.parse rounded is read exactly from its own text, wherever and however it is written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'json-keys-prop-'));
  try {
    const rows = fc.sample(fc.tuple(rootEntries, fc.integer(), fc.boolean()), { seed: SEED, numRuns: 1500 });
    // JSON Lines: no raw line breaks, so the whitespace is spaces and tabs; a raw lone surrogate is U+FFFD in UTF-8.
    const lines = rows.map(([entries, seed, bom], k) =>
      Buffer.from((bom && k > 0 ? '\ufeff' : '') + writer(seed, [' ', '\t'])({ obj: entries })).toString(),
    );
    const abs = join(dir, 'a.jsonl');
    writeFileSync(abs, lines.join('\n') + '\n');
    const got: SourceRecord[] = [];
    const opts = { readsColumns: ['text', 'label'], labelField: 'label' };
    for await (const recs of readJsonl({ abs, display: 'a.jsonl', format: 'jsonl' } as never, opts)) got.push(...recs);
    assert.equal(got.length, lines.length);
    let exact = 0;
    for (const [k, text] of lines.entries()) {
      const rec = got[k]!;
      const root = parseReference(text) as Node & { kind: 'object' };
      const at = JSON.stringify({ text, rec: { ...rec, values: undefined } });
      if (
        firstRepeat(
          root.entries.map((e) => e.key),
          (x) => opts.readsColumns.includes(x),
        ) !== undefined
      ) {
        assert.equal(rec.bad?.reason, 'duplicate-field', at);
        continue;
      }
      const last = root.entries.findLast((e) => e.key === 'label')?.value;
      const parsed = (JSON.parse(text.replace(/^\ufeff/, '')) as Record<string, unknown>).label;
      if (last?.kind !== 'number' || Number.isSafeInteger(parsed) || !Number.isInteger(parsed)) {
        assert.equal(rec.bad, undefined, at);
        assert.deepEqual(rec.values!.label, parsed, at);
        continue;
      }
      const want = referenceInteger(last.text);
      if (want === undefined)
        assert.equal(rec.bad?.detail, `label field "label" is ${last.text}, a non-integer number; use strings or integers`, at);
      else {
        assert.equal(rec.values?.label, want, at);
        exact++;
      }
    }
    // The rows hold exact labels enough to mean something.
    assert.ok(exact > 50, `${exact} exact labels`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
