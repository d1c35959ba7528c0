/**
 * GGUF: llama.cpp's single-file model format (metadata key/values + tensor infos + aligned tensor data).
 *
 * Layout (little-endian; spec: ggml/docs/gguf.md): magic `GGUF`, u32 version (2 or 3), u64 tensor count,
 * u64 key/value count; the key/values (string key, u32 value type, value; arrays are u32 element type +
 * u64 count + elements); the tensor infos (string name, u32 n_dims, u64 dims innermost first, u32 ggml type,
 * u64 offset relative to the data section); padding to `general.alignment` (default 32); the data section.
 *
 * The file is hostile until checked: every count is bounded by the bytes left before anything is allocated,
 * every offset and size is checked against the data section, tensors may not overlap, and a malformed
 * file is an InputError naming the file, the byte offset and the field — never a RangeError or a huge
 * allocation. Dequantization follows ggml's reference kernels (ggml-quants.c) in float32 arithmetic, so the
 * values equal the Python `gguf` package's `dequantize` bit for bit.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { InputError } from '../errors.ts';

export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** ggml tensor types: id → name, block size (elements) and block bytes (ggml's GGML_QUANT_SIZES). */
const TYPES: Record<number, { name: string; block: number; bytes: number }> = {
  0: { name: 'F32', block: 1, bytes: 4 },
  1: { name: 'F16', block: 1, bytes: 2 },
  2: { name: 'Q4_0', block: 32, bytes: 18 },
  3: { name: 'Q4_1', block: 32, bytes: 20 },
  6: { name: 'Q5_0', block: 32, bytes: 22 },
  7: { name: 'Q5_1', block: 32, bytes: 24 },
  8: { name: 'Q8_0', block: 32, bytes: 34 },
  9: { name: 'Q8_1', block: 32, bytes: 40 },
  10: { name: 'Q2_K', block: 256, bytes: 84 },
  11: { name: 'Q3_K', block: 256, bytes: 110 },
  12: { name: 'Q4_K', block: 256, bytes: 144 },
  13: { name: 'Q5_K', block: 256, bytes: 176 },
  14: { name: 'Q6_K', block: 256, bytes: 210 },
  15: { name: 'Q8_K', block: 256, bytes: 292 },
  16: { name: 'IQ2_XXS', block: 256, bytes: 66 },
  17: { name: 'IQ2_XS', block: 256, bytes: 74 },
  18: { name: 'IQ3_XXS', block: 256, bytes: 98 },
  19: { name: 'IQ1_S', block: 256, bytes: 50 },
  20: { name: 'IQ4_NL', block: 32, bytes: 18 },
  21: { name: 'IQ3_S', block: 256, bytes: 110 },
  22: { name: 'IQ2_S', block: 256, bytes: 82 },
  23: { name: 'IQ4_XS', block: 256, bytes: 136 },
  24: { name: 'I8', block: 1, bytes: 1 },
  25: { name: 'I16', block: 1, bytes: 2 },
  26: { name: 'I32', block: 1, bytes: 4 },
  27: { name: 'I64', block: 1, bytes: 8 },
  28: { name: 'F64', block: 1, bytes: 8 },
  29: { name: 'IQ1_M', block: 256, bytes: 56 },
  30: { name: 'BF16', block: 1, bytes: 2 },
  34: { name: 'TQ1_0', block: 256, bytes: 54 },
  35: { name: 'TQ2_0', block: 256, bytes: 66 },
  39: { name: 'MXFP4', block: 32, bytes: 17 },
};

/** Types `dequantize` turns into float32. */
export const DEQUANTIZABLE = ['F32', 'F16', 'BF16', 'F64', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q5_K', 'Q6_K'] as const;

export interface GgufTensorInfo {
  name: string;
  /** ggml order, innermost (contiguous) first, as stored. */
  dims: number[];
  /** Row-major (numpy / PyTorch) order: dims reversed. */
  shape: number[];
  type: string;
  typeId: number;
  /** Absolute byte offset of the data in the file. */
  offset: number;
  nbytes: number;
  numel: number;
}

export interface GgufFile {
  path: string;
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute offset of the data section. */
  dataOffset: number;
  /** File size in bytes. */
  size: number;
  /** Bytes [offset, offset + length) of the file (already checked to lie inside it). */
  read(offset: number, length: number): Uint8Array;
}

const VALUE_TYPES = [
  'UINT8',
  'INT8',
  'UINT16',
  'INT16',
  'UINT32',
  'INT32',
  'FLOAT32',
  'BOOL',
  'STRING',
  'ARRAY',
  'UINT64',
  'INT64',
  'FLOAT64',
];
/** Smallest encoding of one value of each type (strings: the u64 length; arrays: type + count). */
const MIN_VALUE_BYTES = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];
const MAX_DIMS = 4;
const MAX_ARRAY_DEPTH = 8;
/**
 * Most elements of one metadata array and bytes of one string. The largest real ones are vocabularies
 * (about 10^5 to 10^6 tokens) and chat templates (kilobytes); the count check alone bounds them by the
 * file's size, and a large sparse file of zeros then filled the heap (8+ bytes of JS value a byte on disk).
 */
const MAX_ARRAY_ELEMENTS = 1 << 24;
const MAX_STRING_BYTES = 16 << 20;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Thrown when the header runs past the prefix read so far (but not past the file): read more and parse again. */
class NeedMoreBytes extends Error {}

/**
 * Reads the header's fields with checks; every failure names the file, the byte offset and the field.
 * `bytes` is a prefix of a file of `size` bytes: counts are bounded by the file's size, reads by the prefix.
 */
class Cursor {
  pos = 0;
  private readonly view: DataView;
  constructor(
    readonly bytes: Uint8Array,
    readonly size: number,
    readonly where: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  fail(what: string, at = this.pos): never {
    throw new InputError(`malformed GGUF at byte ${at}: ${what}`, {
      where: this.where,
      hint: 'the file is truncated or not a GGUF model; download it again or convert it with llama.cpp',
    });
  }
  get left(): number {
    return this.size - this.pos;
  }
  need(n: number, what: string): void {
    if (n > this.left) this.fail(`${what} needs ${n} bytes, only ${this.left} left (truncated file?)`);
    if (this.pos + n > this.bytes.byteLength) throw new NeedMoreBytes();
  }
  u8(what: string): number {
    this.need(1, what);
    return this.view.getUint8(this.pos++);
  }
  i8(what: string): number {
    this.need(1, what);
    return this.view.getInt8(this.pos++);
  }
  u16(what: string): number {
    this.need(2, what);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  i16(what: string): number {
    this.need(2, what);
    const v = this.view.getInt16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(what: string): number {
    this.need(4, what);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f32(what: string): number {
    this.need(4, what);
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }
  f64(what: string): number {
    this.need(8, what);
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }
  u64big(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }
  i64big(what: string): bigint {
    this.need(8, what);
    const v = this.view.getBigInt64(this.pos, true);
    this.pos += 8;
    return v;
  }
  /** A u64 that must fit a JS number (counts, sizes, offsets). */
  u64(what: string): number {
    const at = this.pos;
    const v = this.u64big(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} is ${v}, beyond any real file`, at);
    return Number(v);
  }
  /** A count of items each taking at least `minBytes`: larger than the bytes left means a corrupt count. */
  count(what: string, minBytes: number): number {
    const at = this.pos;
    const n = this.u64(what);
    if (n * minBytes > this.left) this.fail(`${what} is ${n}, but only ${this.left} bytes follow`, at);
    return n;
  }
  str(what: string): string {
    const at = this.pos;
    const n = this.count(`length of ${what}`, 1);
    if (n > MAX_STRING_BYTES) this.fail(`${what} is ${n} bytes long, more than the ${MAX_STRING_BYTES} a GGUF string of a model has`, at);
    this.need(n, what);
    const b = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return utf8.decode(b);
    } catch {
      return this.fail(`${what} is not valid UTF-8`, at);
    }
  }
}

function readValue(c: Cursor, type: number, what: string, depth = 0): GgufValue {
  switch (type) {
    case 0:
      return c.u8(what);
    case 1:
      return c.i8(what);
    case 2:
      return c.u16(what);
    case 3:
      return c.i16(what);
    case 4:
      return c.u32(what);
    case 5:
      return c.i32(what);
    case 6:
      return c.f32(what);
    case 7: {
      const at = c.pos;
      const b = c.u8(what);
      if (b > 1) c.fail(`${what}: bool byte is ${b}, not 0 or 1`, at);
      return b === 1;
    }
    case 8:
      return c.str(what);
    case 9: {
      if (depth >= MAX_ARRAY_DEPTH) c.fail(`${what}: arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
      const at = c.pos;
      const elType = c.u32(`element type of ${what}`);
      if (elType >= VALUE_TYPES.length) c.fail(`${what}: unknown array element type ${elType}`, at);
      const countAt = c.pos;
      const n = c.count(`element count of ${what}`, MIN_VALUE_BYTES[elType]!);
      if (n > MAX_ARRAY_ELEMENTS)
        c.fail(`${what} has ${n} elements, more than the ${MAX_ARRAY_ELEMENTS} a GGUF array of a model has`, countAt);
      const out: GgufValue[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = readValue(c, elType, what, depth + 1);
      return out;
    }
    case 10: {
      const v = c.u64big(what);
      return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
    }
    case 11: {
      const v = c.i64big(what);
      return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
    }
    case 12:
      return c.f64(what);
    default:
      return c.fail(`${what}: unknown value type ${type}`);
  }
}

/** Parses a GGUF image held in memory. `where` names it in errors. */
export function parseGguf(bytes: Uint8Array, where = 'GGUF'): GgufFile {
  return { ...parseHeader(bytes, bytes.byteLength, where), read: (offset, length) => bytes.subarray(offset, offset + length) };
}

/** The header of a file of `size` bytes from a prefix of it (NeedMoreBytes when the prefix is too short). */
function parseHeader(bytes: Uint8Array, size: number, where: string): Omit<GgufFile, 'read'> {
  const c = new Cursor(bytes, size, where);
  if (bytes.byteLength < 4 && size > bytes.byteLength) throw new NeedMoreBytes();
  if (bytes.byteLength < 4 || bytes[0] !== 0x47 || bytes[1] !== 0x47 || bytes[2] !== 0x55 || bytes[3] !== 0x46) {
    const got = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new InputError(`not a GGUF file (magic bytes are [${got}], expected "GGUF")`, {
      where,
      hint: 'pass a .gguf model file (llama.cpp format)',
    });
  }
  c.pos = 4;
  const version = c.u32('version');
  if (version === 1) c.fail('GGUF version 1 (32-bit counts) is not supported; re-convert the model with a current llama.cpp', 4);
  if (version !== 2 && version !== 3) {
    const swapped = (((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24)) >>> 0;
    c.fail(
      swapped === 2 || swapped === 3 ? 'big-endian GGUF files are not supported' : `unsupported GGUF version ${version} (supported: 2, 3)`,
      4,
    );
  }
  // Each tensor info takes at least 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset) bytes; each KV at least 8 + 4 + 1.
  const tensorCount = c.count('tensor count', 24);
  const kvCount = c.count('metadata key/value count', 13);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const at = c.pos;
    const key = c.str(`key of metadata entry ${i}`);
    if (metadata.has(key)) c.fail(`metadata key ${JSON.stringify(key)} appears twice`, at);
    const typeAt = c.pos;
    const type = c.u32(`value type of ${key}`);
    if (type >= VALUE_TYPES.length) c.fail(`metadata ${JSON.stringify(key)} has unknown value type ${type}`, typeAt);
    metadata.set(key, readValue(c, type, `metadata ${JSON.stringify(key)}`));
  }

  let alignment = 32;
  const align = metadata.get('general.alignment');
  if (align !== undefined) {
    if (typeof align !== 'number' || !Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0 || align > 1 << 30) {
      throw new InputError(`general.alignment must be a positive power of two, got ${String(align)}`, { where });
    }
    alignment = align;
  }

  const infos: Array<Omit<GgufTensorInfo, 'offset'> & { rel: number; at: number }> = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const at = c.pos;
    const name = c.str(`name of tensor ${i}`);
    if (names.has(name)) c.fail(`tensor ${JSON.stringify(name)} appears twice`, at);
    names.add(name);
    const nDimsAt = c.pos;
    const nDims = c.u32(`n_dims of tensor ${name}`);
    if (nDims < 1 || nDims > MAX_DIMS) c.fail(`tensor ${JSON.stringify(name)} has ${nDims} dimensions (1 to ${MAX_DIMS} allowed)`, nDimsAt);
    const dims: number[] = [];
    let numel = 1;
    for (let d = 0; d < nDims; d++) {
      const dimAt = c.pos;
      const n = c.u64(`dimension ${d} of tensor ${name}`);
      numel *= n;
      if (!Number.isSafeInteger(numel) || numel > size * 8)
        c.fail(`tensor ${JSON.stringify(name)} has ${numel} elements, more than the file can hold`, dimAt);
      dims.push(n);
    }
    const typeAt = c.pos;
    const typeId = c.u32(`type of tensor ${name}`);
    const t = TYPES[typeId];
    if (!t) c.fail(`tensor ${JSON.stringify(name)} has unknown ggml type ${typeId}`, typeAt);
    if (dims[0]! % t.block !== 0)
      c.fail(`tensor ${JSON.stringify(name)} (${t.name}) has ${dims[0]} columns, not a multiple of the block size ${t.block}`, nDimsAt);
    const relAt = c.pos;
    const rel = c.u64(`offset of tensor ${name}`);
    if (rel % alignment !== 0)
      c.fail(`tensor ${JSON.stringify(name)} offset ${rel} is not a multiple of the alignment ${alignment}`, relAt);
    infos.push({ name, dims, shape: [...dims].reverse(), type: t.name, typeId, numel, nbytes: (numel / t.block) * t.bytes, rel, at });
  }
  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  if (tensorCount > 0 && dataOffset > size)
    c.fail(`the data section would start at byte ${dataOffset}, past the end of the file (${size} bytes)`, c.pos);
  const dataBytes = size - dataOffset;

  const tensors: GgufTensorInfo[] = infos.map(({ rel, at, ...t }) => {
    if (rel + t.nbytes > dataBytes) {
      c.fail(
        `tensor ${JSON.stringify(t.name)} (${t.type} [${t.shape}], ${t.nbytes} bytes at data offset ${rel}) ends past the end of the file (data section is ${dataBytes} bytes; truncated download?)`,
        at,
      );
    }
    return { ...t, offset: dataOffset + rel };
  });
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur.offset < prev.offset + prev.nbytes && cur.nbytes > 0 && prev.nbytes > 0) {
      throw new InputError(
        `malformed GGUF: tensors ${JSON.stringify(prev.name)} and ${JSON.stringify(cur.name)} overlap (bytes ${prev.offset}-${prev.offset + prev.nbytes} and ${cur.offset}-${cur.offset + cur.nbytes})`,
        { where },
      );
    }
  }
  return { path: where, version, alignment, metadata, tensors, dataOffset, size };
}

/**
 * Reads and parses a GGUF file. Only the header is held in memory (read in growing prefixes until it
 * parses); tensor data are read from the file when asked for, so a file larger than memory can be opened.
 */
export function readGguf(path: string): GgufFile {
  const readAt = (fd: number, offset: number, length: number): Uint8Array => {
    if (length > bufferConstants.MAX_LENGTH)
      throw new InputError(`a read of ${length} bytes is more than this Node.js can hold in one buffer`, { where: path });
    const out = Buffer.allocUnsafe(length);
    let off = 0;
    while (off < length) {
      const n = readSync(fd, out, off, Math.min(length - off, 1 << 30), offset + off);
      if (n === 0)
        throw new InputError(`file ended at byte ${offset + off} while reading ${length} bytes at ${offset} (changed while open?)`, {
          where: path,
        });
      off += n;
    }
    return out;
  };
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new InputError(`cannot open GGUF file: ${(e as Error).message}`, { where: path, cause: e });
  }
  let header: Omit<GgufFile, 'read'>;
  try {
    const size = fstatSync(fd).size;
    for (let n = Math.min(size, 4 << 20); ; n = Math.min(size, n * 4)) {
      try {
        header = parseHeader(readAt(fd, 0, n), size, path);
        break;
      } catch (e) {
        if (!(e instanceof NeedMoreBytes) || n === size) throw e;
      }
    }
  } finally {
    closeSync(fd);
  }
  return {
    ...header,
    path,
    read(offset, length) {
      const f = openSync(path, 'r');
      try {
        return readAt(f, offset, length);
      } finally {
        closeSync(f);
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Metadata access with errors that name the key

export function metaValue(g: GgufFile, key: string): GgufValue | undefined {
  return g.metadata.get(key);
}

export function metaString(g: GgufFile, key: string, dflt?: string): string {
  const v = g.metadata.get(key);
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'string')
    throw new InputError(`metadata ${key} ${v === undefined ? 'is missing' : `must be a string, got ${typeof v}`}`, { where: g.path });
  return v;
}

export function metaNumber(g: GgufFile, key: string, dflt?: number): number {
  const v = g.metadata.get(key);
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new InputError(`metadata ${key} ${v === undefined ? 'is missing' : `must be a number, got ${String(v)}`}`, { where: g.path });
  return v;
}

export function metaInt(g: GgufFile, key: string, dflt?: number): number {
  const v = metaNumber(g, key, dflt);
  if (!Number.isInteger(v) || v < 0) throw new InputError(`metadata ${key} must be a non-negative integer, got ${v}`, { where: g.path });
  return v;
}

export function metaBool(g: GgufFile, key: string, dflt: boolean): boolean {
  const v = g.metadata.get(key);
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new InputError(`metadata ${key} must be a bool, got ${String(v)}`, { where: g.path });
  return v;
}

export function metaArray<T extends GgufValue>(g: GgufFile, key: string, check: (v: GgufValue) => v is T, what: string): T[] | undefined {
  const v = g.metadata.get(key);
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new InputError(`metadata ${key} must be an array of ${what}`, { where: g.path });
  for (let i = 0; i < v.length; i++)
    if (!check(v[i]!)) throw new InputError(`metadata ${key}[${i}] must be ${what}, got ${String(v[i])}`, { where: g.path });
  return v as T[];
}

// ---------------------------------------------------------------------------------------------
// Dequantization (ggml-quants.c dequantize_row_*; float32 arithmetic via Math.fround at each step)

const HALF = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    t[h] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
})();

const f = Math.fround;

/** The float value of IEEE half-precision bits. */
export function halfToFloat(bits: number): number {
  return HALF[bits & 0xffff]!;
}

/** The tensor's raw bytes. */
export function tensorBytes(g: GgufFile, t: GgufTensorInfo): Uint8Array {
  return g.read(t.offset, t.nbytes);
}

export function findTensor(g: GgufFile, name: string): GgufTensorInfo | undefined {
  return g.tensors.find((t) => t.name === name);
}

/** Float32 values of a tensor in row-major order of `shape` (= ggml's memory order). */
export function dequantize(g: GgufFile, t: GgufTensorInfo): Float32Array {
  const src = tensorBytes(g, t);
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const out = new Float32Array(t.numel);
  const h = (o: number) => HALF[dv.getUint16(o, true)]!;
  const nb = t.numel / TYPES[t.typeId]!.block;
  switch (t.type) {
    case 'F32':
      for (let i = 0; i < t.numel; i++) out[i] = dv.getFloat32(i * 4, true);
      break;
    case 'F64':
      for (let i = 0; i < t.numel; i++) out[i] = dv.getFloat64(i * 8, true);
      break;
    case 'F16':
      for (let i = 0; i < t.numel; i++) out[i] = h(i * 2);
      break;
    case 'BF16': {
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < t.numel; i++) u[i] = dv.getUint16(i * 2, true) << 16;
      break;
    }
    case 'Q8_0':
      for (let b = 0; b < nb; b++) {
        const o = b * 34;
        const d = h(o);
        const y = b * 32;
        for (let j = 0; j < 32; j++) out[y + j] = f(dv.getInt8(o + 2 + j) * d);
      }
      break;
    case 'Q4_0':
      for (let b = 0; b < nb; b++) {
        const o = b * 18;
        const d = h(o);
        const y = b * 32;
        for (let j = 0; j < 16; j++) {
          const q = src[o + 2 + j]!;
          out[y + j] = f(((q & 15) - 8) * d);
          out[y + j + 16] = f(((q >> 4) - 8) * d);
        }
      }
      break;
    case 'Q4_1':
      for (let b = 0; b < nb; b++) {
        const o = b * 20;
        const d = h(o);
        const m = h(o + 2);
        const y = b * 32;
        for (let j = 0; j < 16; j++) {
          const q = src[o + 4 + j]!;
          out[y + j] = f(f((q & 15) * d) + m);
          out[y + j + 16] = f(f((q >> 4) * d) + m);
        }
      }
      break;
    case 'Q5_0':
      for (let b = 0; b < nb; b++) {
        const o = b * 22;
        const d = h(o);
        const qh = dv.getUint32(o + 2, true);
        const y = b * 32;
        for (let j = 0; j < 16; j++) {
          const q = src[o + 6 + j]!;
          out[y + j] = f((((q & 15) | (((qh >>> j) & 1) << 4)) - 16) * d);
          out[y + j + 16] = f((((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d);
        }
      }
      break;
    case 'Q5_1':
      for (let b = 0; b < nb; b++) {
        const o = b * 24;
        const d = h(o);
        const m = h(o + 2);
        const qh = dv.getUint32(o + 4, true);
        const y = b * 32;
        for (let j = 0; j < 16; j++) {
          const q = src[o + 8 + j]!;
          out[y + j] = f(f(((q & 15) | (((qh >>> j) & 1) << 4)) * d) + m);
          out[y + j + 16] = f(f(((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) * d) + m);
        }
      }
      break;
    case 'Q4_K':
    case 'Q5_K': {
      const five = t.type === 'Q5_K';
      const size = five ? 176 : 144;
      for (let b = 0; b < nb; b++) {
        const o = b * size;
        const d = h(o);
        const dmin = h(o + 2);
        const sc = o + 4;
        const qh = o + 16;
        const qs = five ? o + 48 : o + 16;
        const y0 = b * 256;
        for (let j = 0; j < 8; j++) {
          // 6-bit scale and min of sub-block j (get_scale_min_k4).
          const s = j < 4 ? src[sc + j]! & 63 : (src[sc + j + 4]! & 15) | ((src[sc + j - 4]! >> 6) << 4);
          const mn = j < 4 ? src[sc + j + 4]! & 63 : (src[sc + j + 4]! >> 4) | ((src[sc + j]! >> 6) << 4);
          const d1 = f(d * s);
          const m1 = f(dmin * mn);
          const shift = (j & 1) * 4;
          const qOff = qs + (j >> 1) * 32;
          const y = y0 + j * 32;
          for (let l = 0; l < 32; l++) {
            let q = (src[qOff + l]! >> shift) & 15;
            if (five) q |= ((src[qh + l]! >> j) & 1) << 4;
            out[y + l] = f(f(d1 * q) - m1);
          }
        }
      }
      break;
    }
    case 'Q6_K':
      for (let b = 0; b < nb; b++) {
        const o = b * 210;
        const d = h(o + 208);
        const y0 = b * 256;
        for (let n = 0; n < 2; n++) {
          const ql = o + n * 64;
          const qh = o + 128 + n * 32;
          const sc = o + 192 + n * 8;
          const y = y0 + n * 128;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const q1 = ((src[ql + l]! & 15) | (((src[qh + l]! >> 0) & 3) << 4)) - 32;
            const q2 = ((src[ql + l + 32]! & 15) | (((src[qh + l]! >> 2) & 3) << 4)) - 32;
            const q3 = ((src[ql + l]! >> 4) | (((src[qh + l]! >> 4) & 3) << 4)) - 32;
            const q4 = ((src[ql + l + 32]! >> 4) | (((src[qh + l]! >> 6) & 3) << 4)) - 32;
            out[y + l] = f(f(d * dv.getInt8(sc + is)) * q1);
            out[y + l + 32] = f(f(d * dv.getInt8(sc + is + 2)) * q2);
            out[y + l + 64] = f(f(d * dv.getInt8(sc + is + 4)) * q3);
            out[y + l + 96] = f(f(d * dv.getInt8(sc + is + 6)) * q4);
          }
        }
      }
      break;
    default:
      throw new InputError(
        `tensor ${JSON.stringify(t.name)} has type ${t.type}, which tempered cannot dequantize (supported: ${DEQUANTIZABLE.join(', ')})`,
        {
          where: g.path,
          hint: 're-quantize the model with llama.cpp to one of the supported types (e.g. Q8_0, Q4_K_M)',
        },
      );
  }
  return out;
}
