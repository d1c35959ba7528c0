/**
 * safetensors: the checkpoint format of Hugging Face models and of tempered's own checkpoints.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON header
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { k: v } }`, then the data
 * buffer; offsets are relative to the start of the data buffer.
 *
 * Files we write are deterministic: tensors sorted by name, data laid out in that order, the header
 * padded with spaces to a multiple of 8 (so every tensor stays 8-byte aligned for readers that map
 * the file), metadata keys sorted. Writes are atomic (temp file + fsync + rename).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { AtomicFile } from '../data/atomic.ts';
import { InputError } from '../errors.ts';

export type SafetensorsDType = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/** F16 and BF16 stay raw 16-bit words (Uint16Array) until `toFloat32` converts them. */
export type SafetensorsArray =
  | Float64Array
  | Float32Array
  | Uint16Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | BigUint64Array
  | Uint32Array
  | Uint8Array;

export interface SafeTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: SafetensorsArray;
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

const BYTES: Record<SafetensorsDType, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** Headers larger than this are not model headers but corrupt length fields; refuse before allocating. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/**
 * JSON values and keys a header may hold, counted before parsing as the `{`, `[`, `,` and `:` outside strings. The
 * byte limit alone does not bound memory: JSON.parse makes ~160 bytes of objects of each `"k":{},` (17 MB of them take
 * 220 MB), so 100 MiB of them would take gigabytes. A tensor
 * entry of rank r takes 10 + r, so this is room for 250,000 tensors of rank 6, where real files hold a few hundred to
 * a few thousand (checkpoints are sharded at a few GB) and even an unsharded mixture of experts (48 layers × 128
 * experts × 3 projections) about 19,000. Parsing at most this many takes at most ~220 MB (measured on 1.3 M empty
 * objects, the costliest per value; 250,000 real tensor entries take 120 MB).
 */
const MAX_HEADER_VALUES = 4_000_000;

export function isSafetensorsDType(d: unknown): d is SafetensorsDType {
  return typeof d === 'string' && Object.prototype.hasOwnProperty.call(BYTES, d);
}

export function bytesPerElement(d: SafetensorsDType): number {
  return BYTES[d];
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Copies little-endian bytes into a fresh, aligned typed array of the dtype's storage class. */
export function arrayFromBytes(dtype: SafetensorsDType, bytes: Uint8Array): SafetensorsArray {
  const n = bytes.byteLength / BYTES[dtype];
  const out = allocate(dtype, n);
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
  return out;
}

function allocate(dtype: SafetensorsDType, n: number): SafetensorsArray {
  switch (dtype) {
    case 'F64':
      return new Float64Array(n);
    case 'F32':
      return new Float32Array(n);
    case 'F16':
    case 'BF16':
    case 'U16':
      return new Uint16Array(n);
    case 'I64':
      return new BigInt64Array(n);
    case 'I32':
      return new Int32Array(n);
    case 'I16':
      return new Int16Array(n);
    case 'I8':
      return new Int8Array(n);
    case 'U64':
      return new BigUint64Array(n);
    case 'U32':
      return new Uint32Array(n);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(n);
  }
}

function expectedArrayClass(dtype: SafetensorsDType): string {
  return allocate(dtype, 0).constructor.name;
}

// ---------------------------------------------------------------------------------------------
// Half-precision conversions

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 → float32 (exact: every half is representable as a float). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 → binary16 bits, round to nearest even (as numpy and PyTorch do). */
export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    // Subnormal half: shift the implicit 1 in and round the dropped bits to nearest even.
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mant & ((1 << shift) - 1);
    let m = mant >>> shift;
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  const rest = mant & 0x1fff;
  let m = mant >>> 13;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

/** bfloat16 bits → float32: the upper half of a float32. */
export function bf16ToFloat(b: number): number {
  u32[0] = b << 16;
  return f32[0]!;
}

/** float32 → bfloat16 bits, round to nearest even; NaN stays NaN. */
export function floatToBf16(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return (x >>> 16) | 0x40;
  const lsb = (x >>> 16) & 1;
  return ((x + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** Any floating tensor as float32 values (F16/BF16 widened, F64 narrowed). Integer tensors are refused. */
export function toFloat32(t: SafeTensor, name = 'tensor'): Float32Array {
  switch (t.dtype) {
    case 'F32':
      return t.data as Float32Array;
    case 'F64':
      return Float32Array.from(t.data as Float64Array);
    case 'F16': {
      const src = t.data as Uint16Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]!);
      return out;
    }
    case 'BF16': {
      const src = t.data as Uint16Array;
      const out = new Float32Array(src.length);
      const o32 = new Uint32Array(out.buffer);
      for (let i = 0; i < src.length; i++) o32[i] = src[i]! << 16;
      return out;
    }
    default:
      throw new InputError(`tensor ${name} has dtype ${t.dtype}, expected a floating type (F32, F16, BF16, F64)`);
  }
}

/** float32 values as a tensor of the given floating dtype. */
export function fromFloat32(values: Float32Array, shape: number[], dtype: 'F32' | 'F16' | 'BF16' | 'F64' = 'F32'): SafeTensor {
  let data: SafetensorsArray;
  if (dtype === 'F32') data = values;
  else if (dtype === 'F64') data = Float64Array.from(values);
  else {
    const out = new Uint16Array(values.length);
    const conv = dtype === 'F16' ? floatToHalf : floatToBf16;
    for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
    data = out;
  }
  return { dtype, shape: [...shape], data };
}

// ---------------------------------------------------------------------------------------------
// Reading

interface HeaderEntry {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * A header value as an error message shows it: strings cut to 80 characters and arrays to their first 8 elements,
 * nested values elided. The header is hostile: echoing a 50 MB dtype or a shape nested a million deep whole
 * (JSON.stringify recursing) made a 50 MB message or a stack overflow instead of an error naming the file.
 */
function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
  if (Array.isArray(v))
    return `[${v
      .slice(0, 8)
      .map((x) => (Array.isArray(x) ? '[…]' : typeof x === 'object' && x !== null ? '{…}' : shown(x)))
      .join(', ')}${v.length > 8 ? `, … (${v.length})` : ''}]`;
  if (typeof v === 'object' && v !== null) return '{…}';
  return String(v);
}
function parseHeader(path: string, json: string, dataBytes: number): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch (e) {
    throw new InputError(`safetensors header is not valid JSON (${(e as Error).message})`, {
      where: path,
      hint: 'the file is corrupt or not a safetensors file; re-download or re-export it',
    });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new InputError('safetensors header must be a JSON object', { where: path });
  }
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    const where = `${path}: tensor ${shown(name)}`;
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
        throw new InputError('__metadata__ must be an object of strings', { where: path });
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw new InputError(`__metadata__.${shown(k)} must be a string, got ${typeof v}`, { where: path });
        metadata[k] = v;
      }
      continue;
    }
    if (typeof raw !== 'object' || raw === null) throw new InputError('entry must be an object with dtype, shape, data_offsets', { where });
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (!isSafetensorsDType(dtype)) {
      throw new InputError(`unknown dtype ${shown(dtype)}`, { where, hint: `supported dtypes: ${Object.keys(BYTES).join(', ')}` });
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new InputError(`shape must be an array of non-negative integers, got ${shown(shape)}`, { where });
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new InputError(`data_offsets must be [begin, end] non-negative integers, got ${shown(offsets)}`, { where });
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw new InputError(`data_offsets [${begin}, ${end}] end before begin`, { where });
    if (end > dataBytes)
      throw new InputError(
        `data_offsets [${begin}, ${end}] run past the end of the data (${dataBytes} bytes); the file is truncated or corrupt`,
        { where },
      );
    const want = numel(shape as number[]) * BYTES[dtype];
    if (end - begin !== want)
      throw new InputError(`data_offsets span ${end - begin} bytes but shape ${shown(shape)} of ${dtype} needs ${want}`, { where });
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  // Tensors must tile the data buffer exactly: overlaps mean two tensors alias the same bytes, holes
  // mean the header and data disagree. Both are corruption.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin < pos)
      throw new InputError(`tensor ${shown(e.name)} at [${e.begin}, ${e.end}] overlaps the previous tensor (ends at ${pos})`, {
        where: path,
      });
    if (e.begin > pos)
      throw new InputError(`data buffer has a hole at bytes [${pos}, ${e.begin}) before tensor ${shown(e.name)}`, { where: path });
    pos = e.end;
  }
  if (pos !== dataBytes)
    throw new InputError(`data buffer is ${dataBytes} bytes but tensors cover ${pos}; the file has trailing bytes`, { where: path });
  return { entries, metadata };
}

/** The header's JSON values and keys (see MAX_HEADER_VALUES), counting stopped just past `limit`. */
function countJsonValues(bytes: Uint8Array, limit: number): number {
  let n = 0;
  let inString = false;
  // UTF-8 continuation bytes are all >= 0x80, so the ASCII structure can be read byte by byte.
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if ((b === 0x7b || b === 0x5b || b === 0x2c || b === 0x3a) && ++n > limit) return n;
  }
  return n;
}

function readExact(fd: number, length: number, position: number, path: string): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const n = readSync(fd, buf, got, length - got, position + got);
    if (n === 0) throw new InputError(`unexpected end of file at byte ${position + got}`, { where: path });
    got += n;
  }
  return buf;
}

export interface HeaderInfo {
  metadata: Record<string, string>;
  tensors: Map<string, { dtype: SafetensorsDType; shape: number[]; byteOffset: number; byteLength: number }>;
}

function openHeader(fd: number, path: string): { entries: HeaderEntry[]; metadata: Record<string, string>; dataStart: number } {
  const size = fstatSync(fd).size;
  if (size < 8) throw new InputError(`file is ${size} bytes, too short for a safetensors header`, { where: path });
  const lenBytes = readExact(fd, 8, 0, path);
  const n = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES))
    throw new InputError(`header length ${n} is larger than the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt or not safetensors`, {
      where: path,
    });
  const headerLen = Number(n);
  if (8 + headerLen > size) throw new InputError(`header length ${headerLen} runs past the end of the ${size}-byte file`, { where: path });
  const bytes = readExact(fd, headerLen, 8, path);
  if (countJsonValues(bytes, MAX_HEADER_VALUES) > MAX_HEADER_VALUES)
    throw new InputError(
      `header holds more than ${MAX_HEADER_VALUES} JSON values and keys (room for 250,000 tensors); the file is corrupt or not a model's weights`,
      { where: path, hint: 're-download or re-export it' },
    );
  const json = bytes.toString('utf8');
  const { entries, metadata } = parseHeader(path, json, size - 8 - headerLen);
  return { entries, metadata, dataStart: 8 + headerLen };
}

/** Header only: names, dtypes, shapes and where each tensor lies in the file (absolute byte offsets). */
export function readSafetensorsHeader(path: string): HeaderInfo {
  const fd = openForRead(path);
  try {
    const { entries, metadata, dataStart } = openHeader(fd, path);
    const tensors = new Map<string, { dtype: SafetensorsDType; shape: number[]; byteOffset: number; byteLength: number }>();
    for (const e of entries)
      tensors.set(e.name, { dtype: e.dtype, shape: e.shape, byteOffset: dataStart + e.begin, byteLength: e.end - e.begin });
    return { metadata, tensors };
  } finally {
    closeSync(fd);
  }
}

function openForRead(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new InputError('safetensors file not found', { where: path, cause: e });
    throw e;
  }
}

/**
 * Reads a safetensors file. `names` limits which tensors are loaded (all by default); each tensor is
 * read straight into its own aligned array, so a multi-GB file never needs one multi-GB buffer.
 */
export function readSafetensors(path: string, opts: { names?: Iterable<string> } = {}): SafetensorsFile {
  const fd = openForRead(path);
  try {
    const { entries, metadata, dataStart } = openHeader(fd, path);
    const wanted = opts.names ? new Set(opts.names) : null;
    if (wanted) {
      const have = new Set(entries.map((e) => e.name));
      for (const w of wanted) if (!have.has(w)) throw new InputError(`tensor ${JSON.stringify(w)} is not in the file`, { where: path });
    }
    const tensors = new Map<string, SafeTensor>();
    // Sorted by name so iteration order does not depend on how the writer ordered its header.
    for (const e of [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (wanted && !wanted.has(e.name)) continue;
      const data = allocate(e.dtype, numel(e.shape));
      const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      let got = 0;
      while (got < view.byteLength) {
        const n = readSync(fd, view, got, view.byteLength - got, dataStart + e.begin + got);
        if (n === 0) throw new InputError(`unexpected end of file reading tensor ${shown(e.name)}`, { where: path });
        got += n;
      }
      tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

function validateForWrite(name: string, t: SafeTensor): void {
  if (!isSafetensorsDType(t.dtype)) throw new Error(`tensor ${name}: unknown dtype ${JSON.stringify(t.dtype)}`);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`tensor ${name}: bad shape [${t.shape}]`);
  if (t.data.constructor.name !== expectedArrayClass(t.dtype)) {
    throw new Error(`tensor ${name}: dtype ${t.dtype} needs a ${expectedArrayClass(t.dtype)}, got ${t.data.constructor.name}`);
  }
  if (t.data.length !== numel(t.shape)) throw new Error(`tensor ${name}: ${t.data.length} values do not fill shape [${t.shape}]`);
  if (name === '__metadata__') throw new Error('a tensor may not be named __metadata__');
}

/** The exact bytes of a safetensors file (header + data) as a list of chunks, in deterministic order. */
export function encodeSafetensors(
  tensors: Map<string, SafeTensor> | Record<string, SafeTensor>,
  metadata: Record<string, string> = {},
): Uint8Array[] {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  const names = [...map.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  const metaKeys = Object.keys(metadata).sort();
  if (metaKeys.length > 0) {
    const m: Record<string, string> = {};
    for (const k of metaKeys) {
      if (typeof metadata[k] !== 'string') throw new Error(`metadata ${k} must be a string`);
      m[k] = metadata[k]!;
    }
    header.__metadata__ = m;
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = map.get(name)!;
    validateForWrite(name, t);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json, 'utf8') % 8)) % 8;
  json += ' '.repeat(pad);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  return [len, headerBytes, ...chunks];
}

/** Writes a safetensors file atomically (temp + fsync + rename); same input → same bytes. */
export function writeSafetensors(
  path: string,
  tensors: Map<string, SafeTensor> | Record<string, SafeTensor>,
  metadata: Record<string, string> = {},
): { path: string; bytes: number } {
  const chunks = encodeSafetensors(tensors, metadata);
  const f = new AtomicFile(path);
  try {
    for (const c of chunks) f.write(c);
  } catch (e) {
    f.abort();
    throw e;
  }
  f.commit();
  return { path, bytes: f.bytes };
}
