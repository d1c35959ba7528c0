import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { InputError } from '../errors.ts';
import {
  bf16ToFloat,
  floatToBf16,
  floatToHalf,
  fromFloat32,
  halfToFloat,
  readSafetensors,
  readSafetensorsHeader,
  toFloat32,
  writeSafetensors,
  type SafeTensor,
} from './safetensors.ts';
import { readModelWeights, readShardedSafetensors, writeShardedSafetensors } from './safetensors-index.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'st-'));

/** Builds a file from a literal header and data buffer, for malformed-file tests. */
function rawFile(dir: string, header: unknown, data: Uint8Array = new Uint8Array(0), lenOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(json.length));
  const p = join(dir, `raw-${Math.random().toString(36).slice(2)}.safetensors`);
  writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

function sample(): Map<string, SafeTensor> {
  return new Map<string, SafeTensor>([
    ['z.weight', { dtype: 'F32', shape: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, 1e-8, -7]) }],
    ['a.ids', { dtype: 'I64', shape: [3], data: BigInt64Array.from([1n, -5n, 2n ** 40n]) }],
    ['m.half', fromFloat32(Float32Array.from([0.1, -65504, 1e-7, 3]), [4], 'F16')],
    ['m.bf', fromFloat32(Float32Array.from([0.1, -3e38, 1e-30, 3]), [2, 2], 'BF16')],
    ['b.mask', { dtype: 'BOOL', shape: [2], data: Uint8Array.from([1, 0]) }],
    ['c.i32', { dtype: 'I32', shape: [1, 1], data: Int32Array.from([-3]) }],
    ['d.f64', { dtype: 'F64', shape: [], data: Float64Array.from([Math.PI]) }],
    ['e.empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }],
  ]);
}

test('round-trip keeps dtype, shape and bytes of every tensor, plus metadata', () => {
  const dir = tmp();
  const p = join(dir, 'm.safetensors');
  const src = sample();
  writeSafetensors(p, src, { format: 'pt', step: '12' });
  const back = readSafetensors(p);
  assert.deepEqual(back.metadata, { format: 'pt', step: '12' });
  assert.deepEqual([...back.tensors.keys()], [...src.keys()].sort());
  for (const [k, t] of src) {
    const b = back.tensors.get(k)!;
    assert.equal(b.dtype, t.dtype, k);
    assert.deepEqual(b.shape, t.shape, k);
    assert.deepEqual(
      Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength),
      Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      k,
    );
  }
  // No temp file is left beside the output.
  assert.deepEqual(readdirSync(dir), ['m.safetensors']);
  rmSync(dir, { recursive: true });
});

test('bytes are deterministic: sorted keys, header padded with spaces to 8, independent of insertion order', () => {
  const dir = tmp();
  const a = join(dir, 'a.safetensors');
  const b = join(dir, 'b.safetensors');
  writeSafetensors(a, sample(), { y: '1', x: '2' });
  writeSafetensors(b, new Map([...sample()].reverse()), { x: '2', y: '1' });
  const ba = readFileSync(a);
  assert.deepEqual(ba, readFileSync(b));
  const n = Number(ba.readBigUInt64LE(0));
  assert.equal(n % 8, 0);
  const header = ba.subarray(8, 8 + n).toString('utf8');
  assert.match(header, /^\{"__metadata__":\{"x":"2","y":"1"\},"a\.ids":/);
  assert.equal(header.trimEnd().length <= header.length, true);
  assert.match(header, /\} *$/);
  rmSync(dir, { recursive: true });
});

test('half conversions match IEEE values and round to nearest even', () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.equal(floatToHalf(1), 0x3c00);
  assert.equal(floatToHalf(65504), 0x7bff);
  assert.equal(floatToHalf(70000), 0x7c00);
  assert.equal(floatToHalf(2 ** -24), 0x0001);
  // 1 + 2^-11 is exactly halfway between 1 and the next half; ties go to the even mantissa (1).
  assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00);
  assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02);
  // Every half bit pattern survives half → float → half (except NaN payloads).
  for (let h = 0; h < 0x10000; h++) {
    const f = halfToFloat(h);
    if (Number.isNaN(f)) continue;
    assert.equal(floatToHalf(f), h, `half 0x${h.toString(16)}`);
  }
  assert.equal(bf16ToFloat(0x3f80), 1);
  assert.equal(floatToBf16(1), 0x3f80);
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1+2^-7: ties to even.
  assert.equal(floatToBf16(1 + 2 ** -8), 0x3f80);
  assert.equal(floatToBf16(1 + 3 * 2 ** -8), 0x3f82);
  const t = toFloat32(fromFloat32(Float32Array.from([0.1, 2]), [2], 'BF16'));
  assert.ok(Math.abs(t[0]! - 0.1) < 1e-3 && t[1] === 2);
});

test('toFloat32 refuses integer tensors with the tensor name', () => {
  assert.throws(() => toFloat32({ dtype: 'I64', shape: [1], data: new BigInt64Array(1) }, 'ids'), /tensor ids has dtype I64/);
});

test('header-only read reports absolute offsets', () => {
  const dir = tmp();
  const p = join(dir, 'h.safetensors');
  writeSafetensors(p, { w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
  const h = readSafetensorsHeader(p);
  const w = h.tensors.get('w')!;
  const buf = readFileSync(p);
  assert.deepEqual(
    new Float32Array(buf.buffer.slice(buf.byteOffset + w.byteOffset, buf.byteOffset + w.byteOffset + w.byteLength)),
    Float32Array.from([1, 2]),
  );
  rmSync(dir, { recursive: true });
});

test('malformed files fail with InputError naming the file and the problem', () => {
  const dir = tmp();
  const f4 = new Uint8Array(8);
  const cases: [string, RegExp][] = [
    [rawFile(dir, { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f4, 10_000n), /runs past the end/],
    [rawFile(dir, { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f4, 2n ** 60n), /larger than the/],
    [rawFile(dir, '{"w": nope}', f4), /not valid JSON/],
    [rawFile(dir, { w: { dtype: 'F12', shape: [2], data_offsets: [0, 8] } }, f4), /unknown dtype "F12"/],
    [rawFile(dir, { w: { dtype: 'F32', shape: [2], data_offsets: [0, 16] } }, f4), /past the end of the data/],
    [rawFile(dir, { w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f4), /needs 12/],
    [
      rawFile(dir, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f4),
      /overlaps/,
    ],
    [rawFile(dir, { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f4), /hole/],
    [rawFile(dir, { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f4), /trailing bytes/],
    [rawFile(dir, { a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f4), /shape must be/],
    [rawFile(dir, { a: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, f4), /end before begin/],
    [rawFile(dir, { __metadata__: { a: 1 } }), /must be a string/],
    [rawFile(dir, [1, 2]), /must be a JSON object/],
  ];
  for (const [p, re] of cases) {
    assert.throws(
      () => readSafetensors(p),
      (e: unknown) => {
        assert.ok(e instanceof InputError, `${p}: ${String(e)}`);
        assert.match(e.message, re);
        assert.ok(e.message.includes(p), 'names the file');
        return true;
      },
    );
  }
  const short = join(dir, 'short.safetensors');
  writeFileSync(short, Buffer.from([1, 2, 3]));
  assert.throws(() => readSafetensors(short), /too short/);
  assert.throws(() => readSafetensors(join(dir, 'missing.safetensors')), InputError);
  rmSync(dir, { recursive: true });
});

test('writing refuses mismatched dtype/array and leaves nothing behind', () => {
  const dir = tmp();
  const p = join(dir, 'bad.safetensors');
  assert.throws(() => writeSafetensors(p, { w: { dtype: 'F16', shape: [2], data: Float32Array.from([1, 2]) } }), /needs a Uint16Array/);
  assert.throws(() => writeSafetensors(p, { w: { dtype: 'F32', shape: [3], data: Float32Array.from([1, 2]) } }), /do not fill/);
  assert.deepEqual(readdirSync(dir), []);
  rmSync(dir, { recursive: true });
});

test('sharded checkpoints: write shards + index, read back merged, detect missing shard', () => {
  const dir = tmp();
  const src = sample();
  const { index, shards } = writeShardedSafetensors(dir, src, { maxShardBytes: 32 });
  assert.ok(shards.length > 1);
  assert.match(shards[0]!, /^model-00001-of-000\d\d\.safetensors$/);
  const back = readShardedSafetensors(index);
  assert.deepEqual([...back.tensors.keys()], [...src.keys()].sort());
  for (const [k, t] of src) assert.deepEqual(back.tensors.get(k)!.data, t.data, k);
  const viaDir = readModelWeights(dir);
  assert.equal(viaDir.tensors.size, src.size);
  // Same tensors → same shard bytes.
  const dir2 = tmp();
  writeShardedSafetensors(dir2, src, { maxShardBytes: 32 });
  for (const s of shards) {
    const h = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
    assert.equal(h(join(dir, s)), h(join(dir2, s)));
  }
  rmSync(join(dir, shards[1]!));
  assert.throws(() => readShardedSafetensors(index), /missing/);
  writeFileSync(index, JSON.stringify({ weight_map: { w: '../evil.safetensors' } }));
  assert.throws(() => readShardedSafetensors(index), /plain file name/);
  assert.throws(() => readModelWeights(tmp()), /no model.safetensors/);
  rmSync(dir, { recursive: true });
  rmSync(dir2, { recursive: true });
});

test('reads a file written by the reference Python safetensors library', () => {
  const fx = new URL('./fixtures/', import.meta.url);
  const expected = JSON.parse(readFileSync(new URL('python.safetensors.json', fx), 'utf8')) as {
    metadata: Record<string, string>;
    tensors: Record<string, { shape: number[]; values: (number | string)[] }>;
  };
  const got = readSafetensors(new URL('python.safetensors', fx).pathname);
  assert.deepEqual(got.metadata, expected.metadata);
  assert.deepEqual([...got.tensors.keys()].sort(), Object.keys(expected.tensors).sort());
  for (const [name, want] of Object.entries(expected.tensors)) {
    const t = got.tensors.get(name)!;
    assert.deepEqual(t.shape, want.shape, name);
    const vals =
      t.dtype === 'F16'
        ? Array.from(toFloat32(t))
        : Array.from(t.data as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? String(v) : Number(v)));
    if (t.dtype === 'F32')
      assert.deepEqual(
        vals,
        want.values.map((v) => Math.fround(v as number)),
        name,
      );
    else assert.deepEqual(vals, want.values, name);
  }
  assert.equal(got.tensors.get('mask')!.dtype, 'BOOL');
});

test('a header of millions of tiny JSON values is refused before JSON.parse inflates it; 50,000 real tensors still load', () => {
  const dir = tmp();
  try {
    const refused = (p: string) =>
      assert.throws(
        () => readSafetensorsHeader(p),
        (e: unknown) =>
          e instanceof InputError &&
          e.message.startsWith(`${p}: header holds more than 4000000 JSON values and keys (room for 250,000 tensors)`) &&
          /re-download/.test(e.hint ?? ''),
      );
    // Zero-length tensors tile an empty data buffer, so every entry is valid: 11 values and keys each (rank 1), and
    // 363,636 of them fit the limit exactly. One more was accepted before (135 MB of objects from 21 MB of JSON).
    const zeroLength = (n: number) =>
      `{${Array.from({ length: n }, (_, i) => `"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`).join(',')}}`;
    const over = rawFile(dir, zeroLength(363_637));
    refused(over);
    assert.throws(
      () => readSafetensors(over),
      (e: unknown) => e instanceof InputError && /more than 4000000 JSON values/.test(e.message),
    );
    assert.equal(readSafetensorsHeader(rawFile(dir, zeroLength(363_636))).tensors.size, 363_636);
    // The costliest values per byte: empty objects, and arrays nested a million deep.
    refused(rawFile(dir, `{${Array.from({ length: 1_400_000 }, (_, i) => `"a${i}":{}`).join(',')}}`));
    refused(rawFile(dir, `{"a":${'['.repeat(4_000_001)}${']'.repeat(4_000_001)}}`));
    // Inside strings (escaped quotes included) the same characters are text, not values.
    const text = rawFile(dir, { __metadata__: { notes: '{[,:\\"'.repeat(1_000_000) } });
    assert.equal(readSafetensorsHeader(text).metadata.notes!.length, 6_000_000);
    // A realistic large header: 50,000 tensors named as in a mixture of experts.
    const big = new Map<string, SafeTensor>();
    for (let i = 0; i < 50_000; i++)
      big.set(`model.layers.${i >> 9}.mlp.experts.${i & 511}.down_proj.weight`, { dtype: 'BF16', shape: [2, 2], data: new Uint16Array(4) });
    const p = join(dir, 'big.safetensors');
    writeSafetensors(p, big);
    const h = readSafetensorsHeader(p);
    assert.equal(h.tensors.size, 50_000);
    assert.deepEqual(h.tensors.get('model.layers.97.mlp.experts.335.down_proj.weight')?.shape, [2, 2]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('error messages show a hostile header value cut short: a shape nested a million deep, a 5 MB dtype or tensor name', () => {
  const dir = tmp();
  try {
    const deep = `{"t":{"dtype":"F32","shape":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)},"data_offsets":[0,0]}}`;
    const cases: [string, RegExp][] = [
      // JSON.stringify(shape) in the message recursed a million deep: a bare RangeError, no file named.
      [rawFile(dir, deep), /shape must be an array of non-negative integers, got \[\[…\]\]/],
      [rawFile(dir, { t: { dtype: 'X'.repeat(5_000_000), shape: [0], data_offsets: [0, 0] } }), /unknown dtype "X{80}…"/],
      [rawFile(dir, { ['n'.repeat(5_000_000)]: { dtype: 'F12', shape: [0], data_offsets: [0, 0] } }), /tensor "n{80}…"/],
      [
        rawFile(dir, { t: { dtype: 'F32', shape: Array(100_000).fill(1).concat([-1]), data_offsets: [0, 4] } }),
        /got \[1, 1, 1, 1, 1, 1, 1, 1, … \(100001\)\]/,
      ],
    ];
    for (const [file, message] of cases) {
      let err: unknown;
      try {
        readSafetensorsHeader(file);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof InputError, String(err).slice(0, 200));
      assert.match(err.message, message);
      assert.ok(err.message.length + String(err.where).length < 1000, `message of ${err.message.length} characters`);
      assert.match(String(err.where), new RegExp(file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
