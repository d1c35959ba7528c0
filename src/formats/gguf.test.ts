import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { dequantize, parseGguf, readGguf, type GgufFile } from './gguf.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const QUANTS = join(FIXTURES, 'quants.gguf');

test('metadata values of every type read as the Python gguf package writes them', () => {
  const g = readGguf(QUANTS);
  assert.equal(g.version, 3);
  assert.equal(g.alignment, 32);
  const m = Object.fromEntries([...g.metadata].filter(([k]) => k.startsWith('test.')));
  assert.deepEqual(m, {
    'test.u8': 200,
    'test.i8': -100,
    'test.u16': 60000,
    'test.i16': -30000,
    'test.u32': 4000000000,
    'test.i32': -2000000000,
    'test.f32': Math.fround(0.1),
    'test.u64': 2n ** 53n + 2n,
    'test.i64': -(2 ** 40),
    'test.f64': 0.1,
    'test.bool': true,
    'test.string': 'héllo ✓ 世界',
    'test.array_i32': [1, -2, 3],
    'test.array_str': ['a', 'bc', ''],
    'test.array_f32': [0.5, -1.25],
    'test.array_nested': [[1, 2], [3]],
  });
  assert.equal(g.metadata.get('general.architecture'), 'test');
  const counts = g.tensors.find((t) => t.name === 'i32.counts')!;
  assert.deepEqual([counts.type, counts.dims, counts.shape], ['I32', [3, 2], [2, 3]]);
});

test('dequantization of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K equals gguf.quants.dequantize bit for bit', () => {
  const g = readGguf(QUANTS);
  const expected = JSON.parse(readFileSync(join(FIXTURES, 'quants.expected.json'), 'utf8')) as Record<
    string,
    { type: string; shape: number[]; f32_base64: string }
  >;
  assert.equal(Object.keys(expected).length, 11);
  for (const [name, e] of Object.entries(expected)) {
    const t = g.tensors.find((x) => x.name === name)!;
    assert.equal(t.type, e.type);
    assert.deepEqual(t.dims, e.shape);
    const want = new Float32Array(new Uint8Array(Buffer.from(e.f32_base64, 'base64')).buffer);
    const got = dequantize(g, t);
    assert.equal(got.length, want.length, name);
    let bad = 0;
    for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) bad++;
    assert.equal(bad, 0, `${name}: ${bad} of ${want.length} values differ (first: ${got[0]} vs ${want[0]})`);
    assert.ok(
      want.some((v) => v !== 0),
      `${name} reference is not all zeros`,
    );
  }
});

test('a type tempered cannot dequantize is a clear error naming the tensor and the supported types', () => {
  const g = readGguf(QUANTS);
  const t = { ...g.tensors.find((x) => x.name === 'q4_0.weight')!, type: 'Q2_K', typeId: 10 };
  assert.throws(
    () => dequantize(g, t),
    (e: unknown) => e instanceof InputError && /"q4_0.weight" has type Q2_K.*supported: F32/.test(e.message),
  );
});

// ---------------------------------------------------------------------------------------------
// Malformed-file corpus, built with a tiny writer so each case breaks exactly one thing.

type Kv = [key: string, type: number, value: Buffer];
interface Ti {
  name: string;
  dims: (number | bigint)[];
  type: number;
  offset: number | bigint;
  nDims?: number;
}

const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
};
const u64 = (v: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const gstr = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);

function build(
  o: {
    magic?: string;
    version?: number;
    kvs?: Kv[];
    tensors?: Ti[];
    data?: Buffer;
    tensorCount?: bigint;
    kvCount?: bigint;
    align?: number;
  } = {},
): Uint8Array {
  const kvs = o.kvs ?? [['general.architecture', 8, gstr('llama')]];
  const tensors = o.tensors ?? [
    { name: 'a', dims: [8], type: 0, offset: 0 },
    { name: 'b', dims: [32], type: 8, offset: 32 },
  ];
  const head = Buffer.concat([
    Buffer.from(o.magic ?? 'GGUF'),
    u32(o.version ?? 3),
    u64(o.tensorCount ?? BigInt(tensors.length)),
    u64(o.kvCount ?? BigInt(kvs.length)),
    ...kvs.flatMap(([k, t, v]) => [gstr(k), u32(t), v]),
    ...tensors.flatMap((t) => [gstr(t.name), u32(t.nDims ?? t.dims.length), ...t.dims.map(u64), u32(t.type), u64(t.offset)]),
  ]);
  const align = o.align ?? 32;
  const pad = Buffer.alloc((align - (head.length % align)) % align);
  return new Uint8Array(Buffer.concat([head, pad, o.data ?? Buffer.alloc(32 + 34)]));
}

function fails(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(
    () => parseGguf(bytes, 'bad.gguf'),
    (e: unknown) => {
      assert.ok(e instanceof InputError, `expected an InputError, got ${String(e)}`);
      assert.match(e.message, /^bad\.gguf: /);
      assert.match(e.message, pattern);
      return true;
    },
  );
}

test('the corpus writer makes a valid file (so each malformed case below fails for its own reason)', () => {
  const g: GgufFile = parseGguf(build(), 'ok.gguf');
  assert.deepEqual(
    g.tensors.map((t) => [t.name, t.type, t.nbytes]),
    [
      ['a', 'F32', 32],
      ['b', 'Q8_0', 34],
    ],
  );
  assert.equal(parseGguf(build({ version: 2 })).version, 2);
});

test('general.alignment moves the data section and constrains tensor offsets', () => {
  const data = Buffer.alloc(128);
  data.writeFloatLE(1.5, 0);
  data.writeFloatLE(-2.25, 64);
  // The string's length puts the header's end where 32- and 64-byte rounding differ.
  const kvs: Kv[] = [
    ['general.alignment', 4, u32(64)],
    ['pad.to.shift.header', 8, gstr('x'.repeat(41))],
  ];
  const g = parseGguf(
    build({
      align: 64,
      kvs,
      tensors: [
        { name: 'a', dims: [4], type: 0, offset: 0 },
        { name: 'b', dims: [4], type: 0, offset: 64 },
      ],
      data,
    }),
  );
  assert.equal(g.alignment, 64);
  assert.equal(g.dataOffset % 64, 0);
  assert.deepEqual(Array.from(dequantize(g, g.tensors[0]!)), [1.5, 0, 0, 0]);
  assert.deepEqual(Array.from(dequantize(g, g.tensors[1]!)), [-2.25, 0, 0, 0]);
  fails(
    build({ align: 64, kvs, tensors: [{ name: 'a', dims: [4], type: 0, offset: 32 }], data }),
    /offset 32 is not a multiple of the alignment 64/,
  );
});

test('malformed GGUF corpus: each case is an InputError naming what is wrong, never a crash or a huge allocation', () => {
  const good = build();
  fails(good.subarray(0, 3), /not a GGUF file/);
  fails(build({ magic: 'GGML' }), /not a GGUF file \(magic bytes are \[47 47 4d 4c\]/);
  fails(build({ version: 1 }), /version 1/);
  fails(build({ version: 7 }), /unsupported GGUF version 7/);
  fails(build({ version: 0x03000000 }), /big-endian/);
  for (const cut of [10, 30, 60, 100, good.length - 40, good.length - 1])
    fails(good.subarray(0, cut), /truncated|past the end|only \d+ bytes/);
  fails(build({ tensorCount: 2n ** 60n }), /tensor count is \d+, beyond any real file/);
  fails(build({ tensorCount: 1000000n }), /tensor count is 1000000, but only \d+ bytes follow/);
  fails(build({ kvCount: 2n ** 40n }), /metadata key\/value count is \d+, but only/);
  fails(build({ kvs: [['k', 8, u64(2n ** 50n)]] }), /length of metadata "k" is \d+, but only/);
  fails(build({ kvs: [['k', 9, Buffer.concat([u32(4), u64(2n ** 40n)])]] }), /element count of metadata "k" is \d+, but only/);
  fails(build({ kvs: [['k', 9, Buffer.concat([u32(99), u64(1)])]] }), /unknown array element type 99/);
  // Counts the file could hold (zeros, as a sparse file has) but no model has: refused before anything is allocated.
  const zeros = (n: number) => Buffer.alloc(n);
  fails(
    build({ kvs: [['k', 9, Buffer.concat([u32(0), u64(2 ** 24 + 1), zeros(2 ** 24 + 1)])]] }),
    /metadata "k" has 16777217 elements, more than the 16777216 a GGUF array of a model has/,
  );
  fails(
    build({ kvs: [['k', 8, Buffer.concat([u64(2 ** 24 + 1), zeros(2 ** 24 + 1)])]] }),
    /metadata "k" is 16777217 bytes long, more than the 16777216 a GGUF string of a model has/,
  );
  fails(build({ kvs: [['k', 42, Buffer.alloc(0)]] }), /"k" has unknown value type 42/);
  fails(build({ kvs: [['k', 7, Buffer.from([5])]] }), /bool byte is 5/);
  fails(
    build({
      kvs: [
        ['k', 8, gstr('x')],
        ['k', 8, gstr('y')],
      ],
    }),
    /key "k" appears twice/,
  );
  fails(build({ kvs: [['k', 8, Buffer.concat([u64(2), Buffer.from([0xff, 0xfe])])]] }), /not valid UTF-8/);
  const deep = Buffer.concat([...Array.from({ length: 10 }, () => Buffer.concat([u32(9), u64(1)])), u32(4), u64(0)]);
  fails(build({ kvs: [['k', 9, deep]] }), /nested deeper/);
  assert.throws(() => parseGguf(build({ kvs: [['general.alignment', 4, u32(48)]] })), /alignment must be a positive power of two/);
  fails(
    build({ tensors: [{ name: 'a', dims: [8], type: 0, offset: 4096 }] }),
    /"a" \(F32 \[8\], 32 bytes at data offset 4096\) ends past the end of the file/,
  );
  fails(
    build({
      tensors: [
        { name: 'a', dims: [8], type: 0, offset: 0 },
        { name: 'b', dims: [8], type: 0, offset: 0 },
      ],
    }),
    /tensors "a" and "b" overlap/,
  );
  fails(
    build({
      tensors: [
        { name: 'a', dims: [8], type: 0, offset: 0 },
        { name: 'a', dims: [8], type: 0, offset: 32 },
      ],
    }),
    /tensor "a" appears twice/,
  );
  fails(build({ tensors: [{ name: 'a', dims: [8], type: 77, offset: 0 }] }), /unknown ggml type 77/);
  fails(build({ tensors: [{ name: 'a', dims: [8], type: 0, offset: 8 }] }), /offset 8 is not a multiple of the alignment 32/);
  fails(build({ tensors: [{ name: 'a', dims: [20], type: 8, offset: 0 }] }), /20 columns, not a multiple of the block size 32/);
  fails(build({ tensors: [{ name: 'a', dims: [8], type: 0, offset: 0, nDims: 9 }] }), /has 9 dimensions/);
  fails(build({ tensors: [{ name: 'a', dims: [2n ** 40n, 2n ** 40n], type: 0, offset: 0 }] }), /more than the file can hold/);
  fails(build({ tensors: [{ name: 'a', dims: [8], type: 0, offset: 2n ** 63n }] }), /offset of tensor a is \d+, beyond any real file/);
});

test('readGguf reads a header larger than its first read (grows the prefix) and reads tensor data from the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gguf-'));
  try {
    const big = 'é'.repeat(3 << 20); // 6 MiB of UTF-8: past the 4 MiB first read
    const data = Buffer.alloc(32 + 34);
    data.writeFloatLE(3.5, 4);
    const bytes = build({ kvs: [['big', 8, gstr(big)]], data });
    const path = join(dir, 'big.gguf');
    writeFileSync(path, bytes);
    const g = readGguf(path);
    assert.equal(g.metadata.get('big'), big);
    assert.equal(g.size, bytes.length);
    assert.deepEqual(Array.from(dequantize(g, g.tensors[0]!)), [0, 3.5, 0, 0, 0, 0, 0, 0]);
    // Cut inside the big string: the header can never complete, which is a truncation error, not an endless retry.
    writeFileSync(path, bytes.subarray(0, 5 << 20));
    assert.throws(
      () => readGguf(path),
      (e: unknown) => e instanceof InputError && /length of metadata "big" is \d+, but only \d+ bytes follow/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readGguf names a missing file', () => {
  assert.throws(
    () => readGguf(join(FIXTURES, 'nope.gguf')),
    (e: unknown) => e instanceof InputError && /nope\.gguf: cannot open GGUF file/.test(e.message),
  );
});

test('seeded fuzz: 3000 corrupted copies of a real file either parse and dequantize or fail with an InputError', () => {
  const good = new Uint8Array(readFileSync(QUANTS));
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  let parsed = 0;
  let refused = 0;
  for (let i = 0; i < 3000; i++) {
    const b = good.slice(0, i % 7 === 0 ? rand(good.length) : good.length);
    // Corrupt mostly the header region, where counts, lengths, types and offsets live.
    for (let k = 0, n = 1 + rand(4); k < n && b.length > 0; k++) b[rand(Math.min(b.length, 1300))] = rand(256);
    try {
      const g = parseGguf(b, 'fuzz.gguf');
      for (const t of g.tensors) {
        try {
          dequantize(g, t);
        } catch (e) {
          if (!(e instanceof InputError)) throw e;
        }
      }
      parsed++;
    } catch (e) {
      if (!(e instanceof InputError)) throw new Error(`case ${i}: ${String(e)}`);
      refused++;
    }
  }
  assert.ok(parsed > 100 && refused > 100, `parsed ${parsed}, refused ${refused}`);
});
