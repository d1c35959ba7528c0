/**
 * The encodings the up-front check (firstUnfit) made, kept for the batches that run after it, so that a text is not
 * tokenized twice, within a byte budget, so that a large table's texts are never all held as tokens: the first texts
 * in input order are kept until the next would pass the budget, and every text after them is tokenized again in its
 * batch, as before.
 */
import type { Encoding } from '../models/tokenizer.ts';

/** What a batch pads: a text's ids, mask and types (an Encoding, or the views of one kept here). */
export interface TextTokens {
  inputIds: Int32Array | readonly number[];
  attentionMask: Uint8Array | readonly number[];
  tokenTypeIds: Uint8Array | readonly number[];
}

/**
 * Bytes of tokens the predictor and the frozen baseline keep from their check for their batches. Packed, a token is
 * 5 bytes (an Int32 id, a Uint8 type), a text 8 more: 32 MiB holds about 6.5 million tokens (50,000 texts of 128),
 * where the encodings as number[]s held 40,000 texts in about 150 MiB. Its arrays grow by doubling, so for the moment
 * of the last growth the old ones are held beside the new: at most 1.5 times the budget.
 */
export const KEEP_BYTES = 32 * 1024 * 1024;

const TOKEN_BYTES = 5;
const TEXT_BYTES = 8;

export class KeptEncodings {
  private ids = new Int32Array(0);
  private types = new Uint8Array(0);
  private ones = new Uint8Array(0);
  /** Where text i's tokens end in ids and types (they start where text i - 1's end). */
  private ends: number[] = [];
  private tokens = 0;
  private full = false;

  constructor(private readonly budget: number) {
    // NaN would pass every comparison with it and keep every text, unbounded.
    if (!(budget >= 0))
      throw new RangeError(`keepBytes ${budget}: give a number of bytes of at least 0 (0 keeps no text, Infinity every text)`);
  }

  /** How many texts are kept: texts 0 to count - 1. */
  get count(): number {
    return this.ends.length;
  }

  get bytes(): number {
    return this.tokens * TOKEN_BYTES + this.count * TEXT_BYTES;
  }

  /** Bytes its token arrays take (what they can hold, not what is kept). */
  get arrayBytes(): number {
    return this.ids.byteLength + this.types.byteLength;
  }

  /**
   * Keeps the next text's encoding (text `count`). Once one is not kept (past the budget, or one that the packing cannot
   * hold exactly: an id outside int32, a type outside a byte, a mask not all 1), none after it is, so that text i is
   * kept exactly when i < count.
   */
  add(e: Encoding): boolean {
    if (this.full) return false;
    const n = e.inputIds.length;
    if ((this.tokens + n) * TOKEN_BYTES + (this.count + 1) * TEXT_BYTES > this.budget || !packable(e)) {
      this.full = true;
      return false;
    }
    if (this.tokens + n > this.ids.length) this.grow(this.tokens + n);
    this.ids.set(e.inputIds, this.tokens);
    this.types.set(e.tokenTypeIds, this.tokens);
    if (n > this.ones.length) this.ones = new Uint8Array(n).fill(1);
    this.tokens += n;
    this.ends.push(this.tokens);
    return true;
  }

  /** Text `index`'s tokens as its encoding held them (views, valid while this lives), or undefined where not kept. */
  get(index: number): TextTokens | undefined {
    if (index >= this.count) return undefined;
    const start = index === 0 ? 0 : this.ends[index - 1]!;
    const end = this.ends[index]!;
    return {
      inputIds: this.ids.subarray(start, end),
      attentionMask: this.ones.subarray(0, end - start),
      tokenTypeIds: this.types.subarray(start, end),
    };
  }

  /**
   * Doubling, never past what the budget can hold; a doubling that would pass half of that goes to all of it, so the
   * arrays a growth replaces are never more than half the budget (doubling to the budget from 5/8 of it held 1.625 times
   * it, from just past half nearly twice). `need` is never past the budget: add checked it.
   */
  private grow(need: number): void {
    const most = Math.floor(this.budget / TOKEN_BYTES);
    const doubled = Math.max(need, this.ids.length * 2, 1 << 16);
    const cap = doubled > most / 2 ? most : doubled;
    const ids = new Int32Array(cap);
    ids.set(this.ids.subarray(0, this.tokens));
    const types = new Uint8Array(cap);
    types.set(this.types.subarray(0, this.tokens));
    this.ids = ids;
    this.types = types;
  }
}

function packable(e: Encoding): boolean {
  for (const id of e.inputIds) if (!Number.isInteger(id) || id < -0x80000000 || id > 0x7fffffff) return false;
  for (const t of e.tokenTypeIds) if (!Number.isInteger(t) || t < 0 || t > 255) return false;
  for (const m of e.attentionMask) if (m !== 1) return false;
  return e.tokenTypeIds.length === e.inputIds.length && e.attentionMask.length === e.inputIds.length;
}
