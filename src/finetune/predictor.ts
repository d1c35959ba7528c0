/**
 * Predictor over an exported classifier folder (model.onnx + tokenizer + tempered-model.json): what
 * evaluation and the HTTP server call. Texts are tokenized, grouped into batches padded to a bucket
 * length, run through onnxruntime, and turned into per-label probabilities (softmax in float64).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import { createSession, toOrt, type Device } from '../engine/runtime.ts';
import { loadTokenizer } from '../models/tokenizer.ts';
import { bucketLength } from './batches.ts';
import { MODEL_MANIFEST, type ModelManifest } from './export.ts';
import { KEEP_BYTES, KeptEncodings, type TextTokens } from './kept-encodings.ts';
import { checkPaddingFitsModel, firstUnfit, unfitMessage, unfitRow, UnfitTextError, type ModelRows, type Unfit } from './token-ids.ts';

export interface Prediction {
  label: string;
  scores: Record<string, number>;
}

export interface Predictor {
  /** sha256 of model.onnx: identifies exactly which weights answered. */
  id: string;
  labels: string[];
  manifest: ModelManifest;
  /**
   * Refuses every text when one of them is a text the model cannot take (UnfitTextError, naming the first such text's
   * place), found before onnxruntime runs any of them; see predictEach.
   */
  predict(texts: string[]): Promise<Prediction[]>;
  /**
   * As predict, but a text the model cannot take (token ids, types or length it has no row for) gets why in place of
   * its prediction, and the others are predicted without it: found before onnxruntime runs, so nothing runs twice.
   */
  predictEach(texts: string[]): Promise<(Prediction | UnfitText)[]>;
  /** Raw logits [texts.length × labels.length], row-major; refuses as predict does. */
  logits(texts: string[]): Promise<Float32Array>;
  /** Pooled sentence embeddings [texts.length × hidden], row-major; refuses as predict does. */
  embed(texts: string[]): Promise<{ dim: number; data: Float32Array }>;
  /** onnxruntime runs so far (a batch each). */
  readonly runs: number;
  /** Texts tokenized so far (once a text, unless past keepBytes). */
  readonly tokenized: number;
  close(): Promise<void>;
}

/** A text the model cannot take, and why in words that name no path ("the text holds token id 5889, but …"). */
export interface UnfitText {
  unfit: string;
}

export interface PredictorOptions {
  device?: Device;
  threads?: number;
  /** Texts per onnxruntime run (default 32). */
  batchSize?: number;
  /** Padding multiple (default 8). */
  bucket?: number;
  /** onnxruntime's CPU memory arena (SessionOptions.memArena in src/engine/runtime.ts); the server's pool turns it off. */
  memArena?: boolean;
  /**
   * Bytes of tokens that predict, logits and embed keep from their up-front check for their batches (default
   * KEEP_BYTES, 32 MiB); the texts past them are tokenized again in their batch.
   */
  keepBytes?: number;
}

export function readManifest(folder: string): ModelManifest {
  const path = join(folder, MODEL_MANIFEST);
  if (!existsSync(path))
    throw new InputError(`${MODEL_MANIFEST} not found`, { where: folder, hint: 'pass a folder written by trainClassifier (outDir)' });
  const m = JSON.parse(readFileSync(path, 'utf8')) as ModelManifest;
  if (m.format !== 'tempered-model/1' || m.task !== 'classification')
    throw new InputError(`unsupported model format ${JSON.stringify(m.format)} / task ${JSON.stringify(m.task)}`, { where: path });
  return m;
}

/** Texts already tokenized, padded to one bucket length of at most `width`. */
export function padEncodings(
  tok: { padId: number; padTypeId: number },
  enc: readonly TextTokens[],
  width: number,
  bucket: number,
): Record<string, ort.Tensor> {
  const longest = enc.reduce((m, e) => Math.max(m, e.inputIds.length), 1);
  const L = bucketLength(longest, bucket, width);
  const n = enc.length;
  const ids = new BigInt64Array(n * L).fill(BigInt(tok.padId));
  const mask = new BigInt64Array(n * L);
  const types = new BigInt64Array(n * L).fill(BigInt(tok.padTypeId));
  enc.forEach((e, i) => {
    for (let j = 0; j < e.inputIds.length; j++) {
      ids[i * L + j] = BigInt(e.inputIds[j]!);
      mask[i * L + j] = BigInt(e.attentionMask[j]!);
      types[i * L + j] = BigInt(e.tokenTypeIds[j]!);
    }
  });
  return {
    input_ids: toOrt('int64', ids, [n, L]),
    attention_mask: toOrt('int64', mask, [n, L]),
    token_type_ids: toOrt('int64', types, [n, L]),
  };
}

export function softmax(row: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]!);
  const e = Array.from(row, (v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export async function loadPredictor(modelFolder: string, opts: PredictorOptions = {}): Promise<Predictor> {
  const manifest = readManifest(modelFolder);
  const onnxPath = join(modelFolder, 'model.onnx');
  if (!existsSync(onnxPath)) throw new InputError('model.onnx not found', { where: modelFolder });
  const bytes = readFileSync(onnxPath);
  const id = createHash('sha256').update(bytes).digest('hex');
  const tok = loadTokenizer(modelFolder);
  const cfgPath = join(modelFolder, 'config.json');
  const cfg = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>) : {};
  const rows: ModelRows = {
    vocab: typeof cfg.vocab_size === 'number' && Number.isInteger(cfg.vocab_size) ? cfg.vocab_size : undefined,
    types: typeof cfg.type_vocab_size === 'number' ? cfg.type_vocab_size : 2,
    positions: typeof cfg.max_position_embeddings === 'number' ? cfg.max_position_embeddings : 512,
  };
  checkPaddingFitsModel(modelFolder, rows, tok);
  const session = await createSession(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), {
    device: opts.device ?? 'cpu',
    threads: opts.threads,
    memArena: opts.memArena,
  });
  // A batch is never padded past the positions the model has: the texts longer than them are left out as unfit.
  const width = Math.min(manifest.maxLength, rows.positions);
  // Each text's ids are checked before onnxruntime sees them: the model answers every text but the ones that reach
  // ids, types or positions it has no row for, and those get an UnfitTextError naming the first of them (predict,
  // logits, embed: before any batch runs) or why in place of their prediction (predictEach), not a Gather's failure.
  let tokenized = 0;
  const encode = (text: string) => (tokenized++, tok.encode(text, null, { maxLength: manifest.maxLength }));
  const refuseAny = async (texts: string[], kept: KeptEncodings) => {
    const found = await firstUnfit(texts, encode, rows, (e) => kept.add(e));
    if (!found) return;
    const { index, unfit } = found;
    const hint =
      unfit.what === 'id'
        ? "its token ids exceed the model's vocabulary, so the tokenizer files in this folder are not the ones the model was trained with: put back the ones trainClassifier wrote, or train again with the base model's own tokenizer"
        : unfit.what === 'type'
          ? 'use the tokenizer files saved with these weights (tokenizer.json, tokenizer_config.json)'
          : `${MODEL_MANIFEST}'s maxLength ${manifest.maxLength} is more than the model's ${rows.positions} positions: train it again with maxLength at most ${rows.positions}`;
    throw new UnfitTextError([{ index, reason: unfitMessage(unfit, 'the text') }], modelFolder, hint);
  };
  const batchSize = opts.batchSize ?? 32;
  const bucket = opts.bucket ?? 8;
  const labels = manifest.labels;
  const C = labels.length;
  let closed = false;
  let runs = 0;

  // One run per batch; onnxruntime sessions are not re-entrant, so runs are chained.
  let queue: Promise<unknown> = Promise.resolve();
  const run = (feeds: Record<string, ort.Tensor>) => {
    const p = queue.then(() => (runs++, session.run(feeds)));
    queue = p.catch(() => undefined);
    return p;
  };
  /** `output` for every text the model can take; `unfit` says which it cannot (their rows of `data` stay 0). */
  const forAll = async (
    texts: string[],
    output: string,
    each: boolean,
  ): Promise<{ dim: number; data: Float32Array; unfit: (Unfit | undefined)[] }> => {
    if (closed) throw new Error('predictor is closed');
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string'))
      throw new InputError('texts must be an array of strings', { where: 'texts' });
    // What the check tokenized is kept for the batches up to keepBytes; a text past them is tokenized again in its batch.
    const kept = each ? undefined : new KeptEncodings(opts.keepBytes ?? KEEP_BYTES);
    if (kept) await refuseAny(texts, kept);
    const unfit: (Unfit | undefined)[] = texts.map(() => undefined);
    let data = new Float32Array(0),
      dim = 0;
    // Texts of similar length share a batch (less padding); results return to input order. A batch tokenizes the texts
    // not kept, so a large table never holds every text's tokens at once.
    const order = texts.map((t, i) => i).sort((a, b) => texts[a]!.length - texts[b]!.length || a - b);
    for (let start = 0; start < order.length; start += batchSize) {
      const idx = order.slice(start, start + batchSize);
      const enc = idx.map((i) => kept?.get(i) ?? encode(texts[i]!));
      enc.forEach((e, k) => (unfit[idx[k]!] = unfitRow(rows, e.inputIds, e.tokenTypeIds)));
      // The batch without the texts the model cannot take: they are never run.
      const keep = idx.flatMap((i, k) => (unfit[i] === undefined ? [k] : []));
      if (keep.length === 0) continue;
      const feeds = padEncodings(
        tok,
        keep.map((k) => enc[k]!),
        width,
        bucket,
      );
      const out = (await run(feeds))[output]!;
      dim = out.dims[1]!;
      if (data.length === 0) data = new Float32Array(texts.length * dim);
      const d = out.data as Float32Array;
      keep.forEach((k, j) => data.set(d.subarray(j * dim, (j + 1) * dim), idx[k]! * dim));
    }
    return { dim, data, unfit };
  };
  const prediction = (data: Float32Array, i: number): Prediction => {
    const p = softmax(data.subarray(i * C, (i + 1) * C));
    let arg = 0;
    for (let k = 1; k < C; k++) if (p[k]! > p[arg]!) arg = k;
    return { label: labels[arg]!, scores: Object.fromEntries(labels.map((l, k) => [l, p[k]!])) };
  };

  return {
    id,
    labels,
    manifest,
    get runs() {
      return runs;
    },
    get tokenized() {
      return tokenized;
    },
    async logits(texts) {
      return (await forAll(texts, manifest.outputs.logits, false)).data;
    },
    async predict(texts) {
      const { data } = await forAll(texts, manifest.outputs.logits, false);
      return texts.map((_, i) => prediction(data, i));
    },
    async predictEach(texts) {
      const { data, unfit } = await forAll(texts, manifest.outputs.logits, true);
      return texts.map((_, i) => {
        const u = unfit[i];
        return u ? { unfit: unfitMessage(u, 'the text') } : prediction(data, i);
      });
    },
    async embed(texts) {
      const { dim, data } = await forAll(texts, manifest.outputs.embeddings, false);
      return { dim, data };
    },
    async close() {
      if (closed) return;
      closed = true;
      await queue;
      await session.release();
    },
  };
}
