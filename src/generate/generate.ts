/**
 * Text generation with a KV cache: the prompts go through the model in one pass, then each step feeds
 * only the newest token of every row. Batches are left-padded (the attention mask hides the padding and
 * positions count from each row's first real token, as Hugging Face does), so the last position of every
 * row is a real token and a row's output does not depend on the rows beside it.
 */
import { InputError } from '../errors.ts';
import type { Decoder, KvCache } from './decoder.ts';
import { TokenSampler, checkSampling, type SamplingOptions } from './sampling.ts';
import { TextStream } from './text-stream.ts';

export type FinishReason = 'stop' | 'length' | 'cancelled';

export interface TokenEvent {
  /** Which prompt of the batch. */
  row: number;
  token: number;
  /** Text that became safe to show with this token ('' while a character or a possible stop string is incomplete). */
  text: string;
  /** Set on a row's last event: why it ended. */
  finishReason?: FinishReason;
}

export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens per row. */
  maxNewTokens: number;
  /** Generation of a row ends when its text contains one of these; the text is cut before it. Needs a tokenizer. */
  stop?: string[];
  /** Token ids that end a row (not part of its text). Default: the model's EOS ids. */
  eosTokenIds?: number[];
  /** Called for every generated token of every row, in order; awaited, so a slow consumer slows generation instead of piling up. */
  onToken?: (e: TokenEvent) => void | Promise<void>;
  /** Aborting ends every unfinished row with finish reason 'cancelled' after the current step. */
  signal?: AbortSignal;
  /**
   * One row only: the KV cache of an earlier call (a conversation's previous turn), which this call
   * reads and then replaces with its own. The prompt's tokens it shares with the earlier call's are
   * not computed again.
   */
  prefixCache?: PrefixCache;
  /**
   * Most prompt positions one forward pass computes (default: PREFILL_CHUNK_TOKENS, fewer where the pass's attention
   * scores would pass PREFILL_SCORE_BYTES). A longer prompt goes through in chunks, each reading the cache of those
   * before it.
   */
  prefillChunkTokens?: number;
}

/**
 * What one prompt pass may spend on attention scores, [rows, heads, chunk, past + chunk] float32, which the graph
 * writes out (about three times: scores, masked, softmax). A pass over a whole 8,191-token prompt at n = 8 would
 * hold 8 × 9 × 8,191² × 4 bytes three times, 58 GB, for SmolLM2; in chunks it stays near this however long the prompt.
 * A prompt of up to about 790 tokens (SmolLM2, one row) would fit in one pass; PREFILL_CHUNK_TOKENS cuts it finer.
 */
export const PREFILL_SCORE_BYTES = 64 * 2 ** 20;

/**
 * Most prompt positions a pass computes, however little memory more would take: the attention scores of a chunk
 * of 256 stay near the CPU's caches, and the pass is faster for it. SmolLM2-135M, 2 threads, one row, ms for the
 * prompt pass, `nice node --import tsx bench/prefill-chunks.bench.ts` (each variant its own process, 3 rounds, 6 Dec):
 * 1,200 tokens (`--prompt 1200 --chunks 512`) 1753–2007 in chunks of 256, 1924–2102 of 512, 2775–2992 in one pass;
 * 2,000 tokens (`--chunks 932`) 3317–3966 against 4360–4817 of 932 and 5914–6258 in one pass; 2,000 tokens again
 * (`--chunks 128,384`, 10:13, a slower hour) 3802–4439 against 3730–4305 of 128 (within noise) and 3896–4406 of 384.
 */
export const PREFILL_CHUNK_TOKENS = 256;

/**
 * A row's KV cache kept between generate calls, and the tokens it holds. A chat's next prompt is the
 * last prompt, the answer and a new turn: only the new turn costs a forward pass over its tokens.
 * On CPU the logits are the same bits as the decoder's own pass over the whole prompt (generate.test.ts), so
 * what is generated does not depend on whether a cache was kept.
 */
export class PrefixCache {
  tokens: number[] = [];
  cache: KvCache | null = null;

  clear(): void {
    this.tokens = [];
    this.cache = null;
  }
}

/** How many first tokens two sequences share. */
export function sharedPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let k = 0;
  while (k < n && a[k] === b[k]) k++;
  return k;
}

/** The options generate refuses before it touches the model, so a caller can refuse them first (a chat before its first message). */
export function checkGenerateOptions(o: Pick<GenerateOptions, 'maxNewTokens'> & SamplingOptions): void {
  checkSampling(o);
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 1)
    throw new InputError(`must be a positive integer, got ${o.maxNewTokens}`, { where: 'generate.maxNewTokens' });
}

export interface GenerateResult {
  /** Generated ids (EOS not included; a row stopped by a stop string keeps the tokens that formed it). */
  tokens: number[];
  /** Decoded output, cut before a stop string ('' without a tokenizer). */
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  /** Of the prompt's tokens, those a kept cache (`prefixCache`) held, which were not computed again. */
  cachedTokens: number;
}

/** Generates a continuation for each prompt (token ids). Rows share forward passes; each row samples with its own seeded generator. */
export async function generate(decoder: Decoder, prompts: number[][], o: GenerateOptions): Promise<GenerateResult[]> {
  checkGenerateOptions(o);
  if (prompts.length === 0) throw new InputError('no prompts', { where: 'generate.prompts' });
  const vocab = decoder.config.vocabSize;
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new InputError('a prompt must have at least one token', { where: `generate.prompts[${i}]` });
    const bad = p.find((t) => !Number.isInteger(t) || t < 0 || t >= vocab);
    if (bad !== undefined)
      throw new InputError(
        `token id ${bad} is outside the vocabulary (0..${vocab - 1}, config.json's vocab_size): a tokenizer that gives it is not the model's`,
        {
          where: `generate.prompts[${i}]`,
          hint: 'use the tokenizer files saved with these weights (tokenizer.json, tokenizer_config.json)',
        },
      );
  });
  const stops = (o.stop ?? []).filter((s) => s.length > 0);
  const tok = decoder.tokenizer;
  if (stops.length > 0 && !tok)
    throw new InputError('stop strings need a tokenizer to decode text; this model folder has no tokenizer.json', {
      where: 'generate.stop',
    });

  const B = prompts.length;
  const pc = o.prefixCache;
  if (pc && B !== 1) throw new InputError('a prefix cache holds one row; got a batch of ' + B, { where: 'generate.prefixCache' });
  const P = Math.max(...prompts.map((p) => p.length));
  if (P >= decoder.maxPositions)
    throw new InputError(`the prompt has ${P} tokens; the model's context is ${decoder.maxPositions} (max_position_embeddings)`, {
      where: 'generate.prompts',
    });
  const maxNew = Math.min(o.maxNewTokens, decoder.maxPositions - P);
  const eos = new Set(o.eosTokenIds ?? decoder.eosTokenIds);
  const padId = tok?.padId ?? [...eos][0] ?? 0;
  const decode = (ids: number[]) => (tok ? tok.decode(ids, true) : '');

  // Prefill: left-padded ids, mask, and positions counted from each row's first token (padding gets 1, as in HF).
  const ids = new BigInt64Array(B * P).fill(BigInt(padId));
  const pos = new BigInt64Array(B * P).fill(1n);
  let mask = new BigInt64Array(B * P);
  prompts.forEach((p, b) => {
    const off = P - p.length;
    p.forEach((t, j) => {
      ids[b * P + off + j] = BigInt(t);
      pos[b * P + off + j] = BigInt(j);
      mask[b * P + off + j] = 1n;
    });
  });
  const rows = prompts.map((p, b) => ({
    seen: [...p],
    out: [] as number[],
    sampler: new TokenSampler(o, b),
    text: new TextStream(decode, stops),
    done: null as FinishReason | null,
  }));

  // With a kept cache, only the prompt's tokens past what it holds go through the model. The cache is taken out
  // of `pc` while this call grows it in place, so a call that fails leaves `pc` empty, never out of step.
  // At least the last prompt token is computed, for its logits.
  const reused = pc?.cache ? Math.min(sharedPrefix(pc.tokens, prompts[0]!), prompts[0]!.length - 1) : 0;
  const kept = reused > 0 ? pc!.cache! : null;
  pc?.clear();
  // Room for the prompt and the answer at once, so no step copies the cache to grow it; but not for a long
  // max_tokens most answers never reach (a thread keeps its cache between requests): doubling covers the rest.
  const room = Math.min(P + maxNew - 1, 2 * P + 256);
  kept?.truncate(reused, room);
  let cache = kept ?? decoder.emptyCache(B, room);
  let logits: Float32Array = new Float32Array(0);
  const chunk =
    o.prefillChunkTokens ??
    Math.min(PREFILL_CHUNK_TOKENS, Math.max(32, Math.floor(PREFILL_SCORE_BYTES / (12 * B * decoder.config.heads * P))));
  if (!(Number.isInteger(chunk) && chunk >= 1))
    throw new InputError(`must be a positive integer, got ${chunk}`, { where: 'generate.prefillChunkTokens' });
  // Positions [from, to) of every row: the columns of the [B, P] arrays, the mask up to `to`.
  const columns = (a: BigInt64Array, from: number, to: number) => {
    if (B === 1) return a.slice(from, to);
    const out = new BigInt64Array(B * (to - from));
    for (let b = 0; b < B; b++) out.set(a.subarray(b * P + from, b * P + to), b * (to - from));
    return out;
  };
  let fed = reused;
  while (fed < P) {
    // Stopped while the prompt was read: no token is sampled, and a kept cache holds what was read.
    if (o.signal?.aborted) break;
    const to = Math.min(P, fed + chunk);
    ({ logits, cache } = await decoder.run(columns(ids, fed, to), columns(pos, fed, to), to === P ? mask : columns(mask, 0, to), B, cache));
    fed = to;
  }
  // A request stopped during its prompt pass, even its last chunk, ends with nothing sampled: its answer has no first character yet.
  if (o.signal?.aborted) {
    if (pc) {
      pc.tokens = prompts[0]!.slice(0, fed);
      pc.cache = cache;
    }
    return prompts.map((p) => ({ tokens: [], text: '', finishReason: 'cancelled' as const, promptTokens: p.length, cachedTokens: reused }));
  }
  // The last token sampled is never fed back: the cache holds the prompt and the tokens fed after it.
  for (let step = 0; ; step++) {
    const next = new BigInt64Array(B).fill(BigInt(padId));
    for (let b = 0; b < B; b++) {
      const r = rows[b]!;
      if (r.done) continue;
      const t = r.sampler.next(logits.slice(b * vocab, (b + 1) * vocab), r.seen);
      next[b] = BigInt(t);
      if (eos.has(t)) {
        r.done = 'stop';
        const rest = r.text.flush(r.out);
        await o.onToken?.({ row: b, token: t, text: rest, finishReason: 'stop' });
        continue;
      }
      r.out.push(t);
      r.seen.push(t);
      let text = r.text.push(r.out);
      if (r.text.stoppedText !== null) r.done = 'stop';
      else if (r.out.length >= maxNew) {
        r.done = 'length';
        text += r.text.flush(r.out);
      }
      await o.onToken?.({ row: b, token: t, text, ...(r.done ? { finishReason: r.done } : {}) });
    }
    if (o.signal?.aborted) for (const r of rows) r.done ??= 'cancelled';
    if (rows.every((r) => r.done)) break;
    // One new position per row; finished rows ride along (their outputs are ignored).
    const total = P + step + 1;
    const grown = new BigInt64Array(B * total);
    for (let b = 0; b < B; b++) {
      grown.set(mask.subarray(b * (total - 1), (b + 1) * (total - 1)), b * total);
      grown[b * total + total - 1] = 1n;
    }
    mask = grown;
    const stepPos = BigInt64Array.from(prompts, (p) => BigInt(p.length + step));
    ({ logits, cache } = await decoder.run(next, stepPos, mask, B, cache));
    fed++;
  }
  if (pc) {
    pc.tokens = rows[0]!.seen.slice(0, fed);
    pc.cache = cache;
  }
  return rows.map((r, b) => ({
    tokens: r.out,
    text: r.text.final(r.out),
    finishReason: r.done!,
    promptTokens: prompts[b]!.length,
    cachedTokens: reused,
  }));
}
