/**
 * Arrow IPC file I/O for tempered's tables: a streaming writer that appends record batches of a
 * fixed column set and commits atomically, a batch reader, and a cheap describe for artifact refs.
 *
 * Output is byte-identical for identical input: no timestamps, no dictionary encoding, every batch
 * laid out by the same builder code, and no metadata but a column's prompt template
 * (PROMPT_TEMPLATE_METADATA), which is part of what the table says.
 */
import { open } from 'node:fs/promises';
import {
  Bool,
  DataType,
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  List,
  RecordBatch,
  RecordBatchFileWriter,
  RecordBatchReader,
  Schema,
  Struct,
  Utf8,
  makeBuilder,
  makeData,
  type Data,
  type Vector,
} from 'apache-arrow';
import { AtomicFile } from './atomic.ts';

export type NumericKind = 'int32' | 'int64' | 'float32' | 'float64';
/** Column types a tempered table may hold: scalars, and lists of numbers (token ids, embeddings). */
export type ColumnType = 'utf8' | 'bool' | NumericKind | `list<${NumericKind}>` | { fixedSizeList: NumericKind; size: number };
/** Ordered column set: insertion order is column order. */
export type ColumnSpec = Record<string, ColumnType>;

/**
 * Field metadata naming the prompt template a text column was rendered with (ingest's `promptTemplate`, on `prompt`):
 * near-duplicate detection leaves the template's own text out (src/data/template-shingles.ts). The one metadata a
 * written table keeps from a schema it is given, so it follows the rows through dedupe and split.
 */
export const PROMPT_TEMPLATE_METADATA = 'tempered.promptTemplate';

/** A field as the writer keeps it: name, type, nullability, and its prompt template if it has one. */
function keptField(f: Field): Field {
  const template = f.metadata.get(PROMPT_TEMPLATE_METADATA);
  return new Field(f.name, f.type, f.nullable, template === undefined ? null : new Map([[PROMPT_TEMPLATE_METADATA, template]]));
}

/** Default rows per record batch: large enough for throughput, small enough to bound memory. */
export const BATCH_ROWS = 8192;

function numericType(kind: NumericKind): DataType {
  switch (kind) {
    case 'int32':
      return new Int32();
    case 'int64':
      return new Int64();
    case 'float32':
      return new Float32();
    case 'float64':
      return new Float64();
  }
}

export function arrowType(t: ColumnType): DataType {
  if (typeof t === 'object') {
    if (!Number.isInteger(t.size) || t.size <= 0) throw new Error(`fixedSizeList size must be a positive integer, got ${t.size}`);
    return new FixedSizeList(t.size, new Field('item', numericType(t.fixedSizeList), false));
  }
  switch (t) {
    case 'utf8':
      return new Utf8();
    case 'bool':
      return new Bool();
    case 'int32':
    case 'int64':
    case 'float32':
    case 'float64':
      return numericType(t);
  }
  const m = /^list<(int32|int64|float32|float64)>$/.exec(t);
  if (!m) throw new Error(`unknown column type ${JSON.stringify(t)}`);
  return new List(new Field('item', numericType(m[1] as NumericKind), false));
}

export function arrowSchema(spec: ColumnSpec): Schema {
  return new Schema(Object.entries(spec).map(([name, t]) => new Field(name, arrowType(t), false)));
}

/** One batch's values, column name → values (plain arrays or typed arrays). */
export type ColumnValues = Record<string, ArrayLike<unknown>>;

/** Deserialized types are generic `Int_` instances, so test the width rather than the class. */
function isInt64(type: DataType): boolean {
  return DataType.isInt(type) && type.bitWidth === 64;
}

/** Int64 columns take JS numbers; Arrow wants bigint. */
function toBuilderValue(type: DataType, v: unknown, col: string): unknown {
  // The builders coerce silently (a string becomes an empty list), so check shapes here.
  if (v === null || v === undefined) return v;
  if (DataType.isUtf8(type)) {
    if (typeof v !== 'string') throw new Error(`column ${col}: expected string, got ${typeof v}`);
    return v;
  }
  if (DataType.isBool(type)) {
    if (typeof v !== 'boolean') throw new Error(`column ${col}: expected boolean, got ${typeof v}`);
    return v;
  }
  if (DataType.isList(type) || DataType.isFixedSizeList(type)) {
    if (!Array.isArray(v) && !ArrayBuffer.isView(v)) throw new Error(`column ${col}: expected a list of numbers, got ${typeof v}`);
    const len = (v as ArrayLike<unknown>).length;
    if (DataType.isFixedSizeList(type) && len !== type.listSize)
      throw new Error(`column ${col}: expected ${type.listSize} values, got ${len}`);
  } else if (typeof v !== 'number' && typeof v !== 'bigint') {
    throw new Error(`column ${col}: expected a number, got ${typeof v}`);
  }
  if (isInt64(type)) return typeof v === 'bigint' ? v : BigInt(v as number);
  if ((DataType.isList(type) || DataType.isFixedSizeList(type)) && isInt64(type.children[0].type)) {
    return Array.from(v as ArrayLike<number | bigint>, (x) => (typeof x === 'bigint' ? x : BigInt(x)));
  }
  return v;
}

export function makeBatch(schema: Schema, cols: ColumnValues): RecordBatch {
  let length = -1;
  const children = schema.fields.map((f) => {
    const values = cols[f.name];
    if (values === undefined) throw new Error(`batch is missing column ${f.name}`);
    if (length === -1) length = values.length;
    else if (values.length !== length) throw new Error(`column ${f.name} has ${values.length} values, expected ${length}`);
    const b = makeBuilder({ type: f.type, nullValues: [null, undefined] });
    for (let i = 0; i < values.length; i++) b.append(toBuilderValue(f.type, values[i], f.name));
    const data = b.finish().flush();
    if (data.nullCount > 0) throw new Error(`column ${f.name} has null values; tempered tables are non-null`);
    return data;
  });
  for (const k of Object.keys(cols)) if (!schema.fields.some((f) => f.name === k)) throw new Error(`batch has unknown column ${k}`);
  return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: Math.max(length, 0), nullCount: 0, children }));
}

/** RecordBatchFileWriter that writes straight to our atomic file instead of an in-memory queue. */
class SinkFileWriter extends RecordBatchFileWriter {
  constructor(private readonly out: AtomicFile) {
    super();
  }
  protected override _write(chunk: ArrayBufferView | ArrayBuffer): this {
    if (this._started) {
      const buf =
        chunk instanceof Uint8Array
          ? chunk
          : ArrayBuffer.isView(chunk)
            ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
            : new Uint8Array(chunk as ArrayBuffer);
      if (buf.byteLength > 0) {
        this.out.write(buf);
        this._position += buf.byteLength;
      }
    }
    return this;
  }
}

/**
 * Streaming Arrow IPC file writer. Either append whole column batches with `writeBatch`, or push
 * rows one by one with `push` (flushed every `batchRows`). Nothing is visible at `path` until
 * `close()`; `abort()` removes every trace.
 */
export class ArrowTableWriter {
  readonly schema: Schema;
  readonly path: string;
  rows = 0;
  private readonly file: AtomicFile;
  private readonly writer: SinkFileWriter;
  private readonly names: string[];
  private buffer: Record<string, unknown[]>;
  private buffered = 0;
  private done = false;

  constructor(
    path: string,
    spec: ColumnSpec | Schema,
    readonly batchRows = BATCH_ROWS,
  ) {
    this.path = path;
    // Re-create fields so a schema read from another file cannot carry other metadata in.
    this.schema = spec instanceof Schema ? new Schema(spec.fields.map(keptField)) : arrowSchema(spec);
    this.names = this.schema.fields.map((f) => f.name);
    this.buffer = this.emptyBuffer();
    this.file = new AtomicFile(path);
    this.writer = new SinkFileWriter(this.file);
    // The schema goes out now so that a zero-row table is still a valid file with its columns.
    this.writer.reset(undefined, this.schema);
  }

  private emptyBuffer(): Record<string, unknown[]> {
    return Object.fromEntries(this.names.map((n) => [n, []]));
  }

  writeBatch(cols: ColumnValues): void {
    this.flushRows();
    this.writeRecordBatch(makeBatch(this.schema, cols));
  }

  /** Appends an existing batch; its schema must match column names and types. */
  writeRecordBatch(batch: RecordBatch): void {
    if (this.done) throw new Error(`writer for ${this.path} is closed`);
    if (batch.numRows === 0) return;
    const same =
      batch.schema.fields.length === this.schema.fields.length &&
      batch.schema.fields.every((f, i) => f.name === this.schema.fields[i].name && String(f.type) === String(this.schema.fields[i].type));
    if (!same) throw new Error(`batch schema ${describeSchema(batch.schema)} does not match ${describeSchema(this.schema)}`);
    // Re-wrap under our schema so nullability flags are identical in every batch.
    this.writer.write(batch.schema === this.schema ? batch : new RecordBatch(this.schema, batch.data));
    this.rows += batch.numRows;
  }

  push(row: Record<string, unknown>): void {
    for (const n of this.names) {
      const v = row[n];
      if (v === undefined || v === null) throw new Error(`row is missing column ${n}`);
      this.buffer[n].push(v);
    }
    if (++this.buffered >= this.batchRows) this.flushRows();
  }

  private flushRows(): void {
    if (this.buffered === 0) return;
    const cols = this.buffer;
    this.buffer = this.emptyBuffer();
    this.buffered = 0;
    this.writeRecordBatch(makeBatch(this.schema, cols));
  }

  /** Writes the footer and atomically publishes the file. */
  close(): { path: string; rows: number; bytes: number } {
    if (this.done) throw new Error(`writer for ${this.path} is closed`);
    try {
      this.flushRows();
      this.writer.finish();
      this.done = true;
      this.file.commit();
    } catch (e) {
      this.abort();
      throw e;
    }
    return { path: this.path, rows: this.rows, bytes: this.file.bytes };
  }

  abort(): void {
    this.done = true;
    this.file.abort();
  }
}

/** Iterates an Arrow IPC file (or stream) batch by batch without loading it whole. */
export async function* readArrowBatches(path: string): AsyncGenerator<RecordBatch> {
  const fh = await open(path, 'r');
  try {
    const reader = await RecordBatchReader.from(fh);
    for await (const batch of reader) yield batch;
  } finally {
    await fh.close();
  }
}

export async function readArrowSchema(path: string): Promise<Schema> {
  const fh = await open(path, 'r');
  try {
    const reader = await RecordBatchReader.from(fh);
    await reader.open();
    return reader.schema;
  } finally {
    await fh.close();
  }
}

export function describeSchema(schema: Schema): Record<string, string> {
  return Object.fromEntries(schema.fields.map((f) => [f.name, String(f.type)]));
}

export async function describeArrowFile(path: string): Promise<{ rows: number; schema: Record<string, string> }> {
  let rows = 0;
  let schema: Schema | null = null;
  const fh = await open(path, 'r');
  try {
    const reader = await RecordBatchReader.from(fh);
    await reader.open();
    schema = reader.schema;
    for await (const batch of reader) rows += batch.numRows;
  } finally {
    await fh.close();
  }
  return { rows, schema: describeSchema(schema) };
}

/** A column of a batch as plain JS values (numbers for int64, arrays for lists). */
export function columnValues(batch: RecordBatch, name: string): unknown[] {
  const vec = batch.getChild(name) as Vector | null;
  if (!vec) throw new Error(`column ${name} not found`);
  const out = new Array<unknown>(vec.length);
  const int64 = isInt64(vec.type);
  for (let i = 0; i < vec.length; i++) {
    const v = vec.get(i);
    out[i] = int64 && typeof v === 'bigint' ? Number(v) : v;
  }
  return out;
}

export function stringColumn(batch: RecordBatch, name: string): string[] {
  const vec = batch.getChild(name);
  if (!vec) throw new Error(`column ${name} not found`);
  if (!DataType.isUtf8(vec.type) && !DataType.isLargeUtf8(vec.type)) throw new Error(`column ${name} is ${vec.type}, expected Utf8`);
  const out = new Array<string>(vec.length);
  for (let i = 0; i < vec.length; i++) out[i] = vec.get(i) as string;
  return out;
}

/** Values of the given rows of a batch, column by column, ready for `writeBatch` (lists as arrays). */
export function selectRows(batch: RecordBatch, indices: ArrayLike<number>): ColumnValues {
  const out: ColumnValues = {};
  for (const f of batch.schema.fields) {
    const vec = batch.getChild(f.name)!;
    const vals = new Array<unknown>(indices.length);
    for (let i = 0; i < indices.length; i++) {
      const v = vec.get(indices[i]);
      vals[i] =
        v !== null && typeof v === 'object' && typeof (v as { toArray?: unknown }).toArray === 'function'
          ? Array.from((v as Vector).toArray() as ArrayLike<unknown>)
          : v;
    }
    out[f.name] = vals;
  }
  return out;
}

/**
 * The given rows of a batch as a new batch, copying bytes directly for non-null Utf8 and
 * fixed-width numeric columns (no decode/encode); other columns go through the builders.
 * `extra` appends columns (already-built Data) after the batch's own.
 */
export function takeRows(batch: RecordBatch, indices: ArrayLike<number>, schema: Schema = batch.schema, extra: Data[] = []): RecordBatch {
  const n = indices.length;
  const children: Data[] = [];
  const own = schema.fields.length - extra.length;
  for (let c = 0; c < own; c++) {
    const f = schema.fields[c];
    const src = batch.getChild(f.name);
    if (!src) throw new Error(`batch is missing column ${f.name}`);
    children.push(takeColumn(src, indices, f));
  }
  children.push(...extra);
  for (const d of children) if (d.length !== n) throw new Error(`column length ${d.length} does not match ${n} rows`);
  return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: n, nullCount: 0, children }));
}

function takeColumn(vec: Vector, indices: ArrayLike<number>, field: Field): Data {
  const n = indices.length;
  if (vec.nullCount === 0 && DataType.isUtf8(vec.type)) {
    // Gather byte ranges chunk by chunk (a column may span several Data chunks).
    let bytes = 0;
    const loc = locate(vec, indices);
    for (let i = 0; i < n; i++) {
      const d = vec.data[loc.chunk[i]];
      const o = d.valueOffsets as Int32Array;
      bytes += o[loc.row[i] + 1] - o[loc.row[i]];
    }
    const offsets = new Int32Array(n + 1);
    const values = new Uint8Array(bytes);
    let pos = 0;
    for (let i = 0; i < n; i++) {
      const d = vec.data[loc.chunk[i]];
      const o = d.valueOffsets as Int32Array,
        r = loc.row[i];
      const start = o[r],
        end = o[r + 1];
      values.set((d.values as Uint8Array).subarray(start, end), pos);
      pos += end - start;
      offsets[i + 1] = pos;
    }
    return makeData({ type: field.type as Utf8, length: n, nullCount: 0, valueOffsets: offsets, data: values });
  }
  if (vec.nullCount === 0 && (DataType.isInt(vec.type) || DataType.isFloat(vec.type))) {
    const loc = locate(vec, indices);
    const first = vec.data[0].values as Int32Array;
    const Ctor = first.constructor as new (n: number) => Int32Array;
    const out = new Ctor(n);
    for (let i = 0; i < n; i++) out[i] = (vec.data[loc.chunk[i]].values as Int32Array)[loc.row[i]];
    return makeData({ type: field.type as Int32, length: n, nullCount: 0, data: out });
  }
  const b = makeBuilder({ type: field.type, nullValues: [null, undefined] });
  for (let i = 0; i < n; i++) {
    const v = vec.get(indices[i]);
    b.append(
      v !== null && typeof v === 'object' && typeof (v as { toArray?: unknown }).toArray === 'function'
        ? Array.from((v as Vector).toArray() as ArrayLike<unknown>)
        : v,
    );
  }
  return b.finish().flush();
}

/** Chunk and in-chunk row of each index (indices ascending or not). */
function locate(vec: Vector, indices: ArrayLike<number>): { chunk: Int32Array; row: Int32Array } {
  const n = indices.length,
    chunk = new Int32Array(n),
    row = new Int32Array(n);
  // Sliced Data has its offset and value buffers already cut to the slice, so rows index them directly.
  if (vec.data.length === 1) {
    for (let i = 0; i < n; i++) row[i] = indices[i];
    return { chunk, row };
  }
  const starts: number[] = [];
  let s = 0;
  for (const d of vec.data) {
    starts.push(s);
    s += d.length;
  }
  for (let i = 0; i < n; i++) {
    let c = starts.length - 1;
    while (starts[c] > indices[i]) c--;
    chunk[i] = c;
    row[i] = indices[i] - starts[c];
  }
  return { chunk, row };
}
