/**
 * Tokenized tables in memory, cut into length-bucketed batches: each batch is padded only to its
 * longest row rounded up to a bucket multiple, so short texts (SMS, tweets) cost short sequences.
 * Padding is masked everywhere in the model, so bucketing changes speed, not results.
 */
import { readArrowBatches } from '../data/arrow-io.ts';
import type { RecordBatch } from 'apache-arrow';

export interface TokenTable {
  rows: number;
  /** Padded width of the stored rows. */
  width: number;
  inputIds: Int32Array;
  attentionMask: Int32Array;
  tokenTypeIds: Int32Array;
  /** Real (unpadded) length of each row. */
  lengths: Int32Array;
  /** Class index per row, when the table had labels. */
  labels?: Int32Array;
}

export interface BatchTensors {
  rows: number;
  seq: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  tokenTypeIds: BigInt64Array;
  labels?: BigInt64Array;
}

function listValues(batch: RecordBatch, name: string): Int32Array {
  const vec = batch.getChild(name);
  if (!vec) throw new Error(`tokenized table has no column '${name}'`);
  const parts: Int32Array[] = [];
  for (const d of vec.data) {
    const child = d.children[0]!;
    const v = child.values as Int32Array;
    parts.push(v.subarray(child.offset, child.offset + child.length));
  }
  return concat(parts);
}

function concat(parts: Int32Array[]): Int32Array {
  if (parts.length === 1) return parts[0]!.slice();
  const out = new Int32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Reads a file written by the models package's tokenizeToArrow (classification task). */
export async function readTokenTable(path: string): Promise<TokenTable> {
  const ids: Int32Array[] = [],
    mask: Int32Array[] = [],
    types: Int32Array[] = [],
    labels: Int32Array[] = [];
  let rows = 0,
    hasLabels = false;
  for await (const b of readArrowBatches(path)) {
    rows += b.numRows;
    ids.push(listValues(b, 'input_ids'));
    mask.push(listValues(b, 'attention_mask'));
    types.push(listValues(b, 'token_type_ids'));
    const lv = b.getChild('labels');
    if (lv) {
      hasLabels = true;
      labels.push(Int32Array.from(lv.toArray() as ArrayLike<number>));
    }
  }
  const inputIds = concat(ids.length ? ids : [new Int32Array(0)]);
  const width = rows ? inputIds.length / rows : 0;
  const attentionMask = concat(mask.length ? mask : [new Int32Array(0)]);
  const lengths = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let n = 0;
    for (let j = 0; j < width; j++) n += attentionMask[r * width + j]!;
    lengths[r] = n;
  }
  return {
    rows,
    width,
    inputIds,
    attentionMask,
    tokenTypeIds: concat(types.length ? types : [new Int32Array(0)]),
    lengths,
    labels: hasLabels ? concat(labels) : undefined,
  };
}

/** Sequence length for a batch: longest row rounded up to `bucket`, never beyond the table width. */
export function bucketLength(longest: number, bucket: number, width: number): number {
  return Math.min(width, Math.max(bucket, Math.ceil(Math.max(1, longest) / bucket) * bucket));
}

/** The rows `idx` (in that order) as int64 tensors padded to a bucket length. */
export function makeBatch(t: TokenTable, idx: ArrayLike<number>, bucket: number): BatchTensors {
  let longest = 1;
  for (let i = 0; i < idx.length; i++) longest = Math.max(longest, t.lengths[idx[i]!]!);
  const seq = bucketLength(longest, bucket, t.width);
  const n = idx.length;
  const inputIds = new BigInt64Array(n * seq),
    attentionMask = new BigInt64Array(n * seq),
    tokenTypeIds = new BigInt64Array(n * seq);
  for (let i = 0; i < n; i++) {
    const src = idx[i]! * t.width;
    for (let j = 0; j < seq; j++) {
      inputIds[i * seq + j] = BigInt(t.inputIds[src + j]!);
      attentionMask[i * seq + j] = BigInt(t.attentionMask[src + j]!);
      tokenTypeIds[i * seq + j] = BigInt(t.tokenTypeIds[src + j]!);
    }
  }
  const labels = t.labels ? BigInt64Array.from(Array.from({ length: n }, (_, i) => BigInt(t.labels![idx[i]!]!))) : undefined;
  return { rows: n, seq, inputIds, attentionMask, tokenTypeIds, labels };
}
