/** Element types tempered handles, with their ONNX enum codes and JS storage. */

/**
 * `uint4`: 4-bit unsigned integers packed two to a byte, the first element in the low nibble (ONNX's layout);
 * stored as a Uint8Array of ceil(n / 2) bytes. Used for frozen quantized weights (QLoRA), never as a graph I/O.
 */
export type DType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool' | 'uint4';

export type TypedArray = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Int8Array | Uint8Array;

const ONNX_CODE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
  uint4: 21,
};
const FROM_CODE = new Map<number, DType>(Object.entries(ONNX_CODE).map(([k, v]) => [v, k as DType]));

export function onnxCode(d: DType): number {
  return ONNX_CODE[d];
}

/** The dtype of an ONNX element type code, or undefined for one tempered does not handle. */
export function dtypeOfCode(code: number): DType | undefined {
  return FROM_CODE.get(code);
}

export function dtypeFromCode(code: number, where: string): DType {
  const d = FROM_CODE.get(code);
  if (!d) throw new Error(`${where}: ONNX element type ${code} is not supported (supported: ${Object.keys(ONNX_CODE).join(', ')})`);
  return d;
}

export const BYTES: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  int64: 8,
  int32: 4,
  int8: 1,
  uint8: 1,
  bool: 1,
  uint4: 0.5,
};

/** Allocates a zeroed typed array of the element type's storage class. */
export function allocate(d: DType, n: number): TypedArray {
  switch (d) {
    case 'float32':
      return new Float32Array(n);
    case 'float64':
      return new Float64Array(n);
    case 'float16':
      return new Uint16Array(n);
    case 'int64':
      return new BigInt64Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'int8':
      return new Int8Array(n);
    case 'uint8':
    case 'bool':
      return new Uint8Array(n);
    case 'uint4':
      return new Uint8Array(Math.ceil(n / 2));
  }
}

/** Views little-endian raw bytes as a typed array (copies so alignment is always valid). */
export function fromBytes(d: DType, bytes: Uint8Array): TypedArray {
  const n = bytes.byteLength / BYTES[d];
  const out = allocate(d, n);
  new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(bytes);
  return out;
}

/** Bytes holding n elements (uint4 packs two to a byte). */
export function byteSize(d: DType, n: number): number {
  return Math.ceil(n * BYTES[d]);
}

/** Storage elements (typed-array length) holding n elements. */
export function storageLength(d: DType, n: number): number {
  return d === 'uint4' ? Math.ceil(n / 2) : n;
}

export function toBytes(a: TypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The dtype a typed array stores, for arrays whose class is unambiguous. */
export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint16Array) return 'float16';
  return 'uint8';
}

export function isFloat(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'float16';
}
