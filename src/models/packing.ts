/**
 * Sequence packing: short examples placed together into fixed-length rows, so a batch is not mostly padding.
 * Each row carries, per token, its example's number (`segments`, 1-based; 0 = padding) and its position within
 * that example (`positionIds`); the packed LLaMA graph (llama.ts, `packed`) uses them so attention and RoPE never
 * cross an example boundary. Placement is first-fit decreasing by length (ties by input order): deterministic.
 */
import { InputError } from '../errors.ts';
import { IGNORE_INDEX, type CausalEncoding } from './tokenizer.ts';

export interface PackedRows {
  rows: number;
  seqLen: number;
  /** Row-major [rows, seqLen]. */
  inputIds: Int32Array;
  segments: Int32Array;
  positionIds: Int32Array;
  labels: Int32Array;
  /** For each row, the indices of the examples it holds, in order. */
  members: number[][];
}

export function packSequences(examples: CausalEncoding[], seqLen: number, padId: number): PackedRows {
  examples.forEach((e, i) => {
    if (e.inputIds.length > seqLen)
      throw new InputError(`example ${i} has ${e.inputIds.length} tokens, more than the packed row length ${seqLen}`, {
        where: `examples[${i}]`,
        hint: 'truncate examples to the row length before packing',
      });
  });
  const order = examples
    .map((e, i) => i)
    .filter((i) => examples[i]!.inputIds.length > 0)
    .sort((a, b) => examples[b]!.inputIds.length - examples[a]!.inputIds.length || a - b);
  const members: number[][] = [];
  const free: number[] = [];
  for (const i of order) {
    const n = examples[i]!.inputIds.length;
    let r = free.findIndex((f) => f >= n);
    if (r < 0) {
      r = members.length;
      members.push([]);
      free.push(seqLen);
    }
    members[r]!.push(i);
    free[r] = free[r]! - n;
  }
  const rows = members.length;
  const inputIds = new Int32Array(rows * seqLen).fill(padId);
  const segments = new Int32Array(rows * seqLen);
  const positionIds = new Int32Array(rows * seqLen);
  const labels = new Int32Array(rows * seqLen).fill(IGNORE_INDEX);
  members.forEach((m, r) => {
    let at = r * seqLen;
    m.forEach((i, k) => {
      const e = examples[i]!;
      inputIds.set(e.inputIds, at);
      labels.set(e.labels, at);
      // The loss at a row's last token of one example would otherwise predict the next example's first token.
      labels[at] = IGNORE_INDEX;
      for (let p = 0; p < e.inputIds.length; p++) {
        segments[at + p] = k + 1;
        positionIds[at + p] = p;
      }
      at += e.inputIds.length;
    });
  });
  return { rows, seqLen, inputIds, segments, positionIds, labels, members };
}
