/**
 * Runs a classifier's inference off the server's event loop: worker threads that each hold the
 * model, a bounded queue in front of them, and dynamic batching (requests that arrive within a short
 * window, or while every thread is busy, go to onnxruntime together). /health and /metrics keep
 * answering while the model works, and a full queue is refused at once (OverloadedError → 429)
 * instead of growing latency without bound.
 */
import { Worker } from 'node:worker_threads';
import type { Device } from '../engine/runtime.ts';
import { InputError, type InputErrorCode } from '../errors.ts';
import type { UnfitText } from '../finetune/predictor.ts';
import { UnfitTextError } from '../finetune/token-ids.ts';

export { UnfitTextError };
import type { Prediction, Predictor } from './types.ts';

export interface PoolOptions {
  /** Worker threads, each with its own onnxruntime session. Default 1. */
  workers?: number;
  /** onnxruntime intra-op threads per worker. Default: onnxruntime's. */
  threads?: number;
  device?: Device;
  /**
   * onnxruntime's CPU memory arena in each thread's session. Default off (SERVE_MEM_ARENA): with it, one large
   * request leaves the thread holding that request's peak for as long as the server runs.
   */
  memArena?: boolean;
  /** Texts waiting for a thread beyond which requests are refused (an empty queue takes any request). Default 256. */
  maxQueue?: number;
  /** How long an idle pool waits for more requests to join a batch. Default 2 ms. */
  batchWindowMs?: number;
  /** Most texts in one batch. Default 64. */
  maxBatchTexts?: number;
  /**
   * Test-only: every batch waits in its thread until `hold[0]` is non-zero (Atomics.notify), so a
   * test can keep an inference in flight for as long as it likes without timing anything. A non-zero
   * `hold[1]` (when present) is an exit code the next released batch's thread dies with, once.
   */
  hold?: Int32Array;
}

export interface PoolStats {
  workers: number;
  /** Texts waiting for a thread. */
  queued: number;
  /** Batches running now. */
  inflight: number;
  batches: number;
  requests: number;
  rejected: number;
}

/** The queue is full: the server answers 429 with Retry-After, as it does for generations. */
export class OverloadedError extends Error {
  override name = 'OverloadedError';
  readonly code = 'overloaded';
  readonly statusCode = 429;
}

/**
 * Whether the classifier threads' sessions use onnxruntime's CPU memory arena unless told: off, unless
 * TEMPERED_SERVE_MEM_ARENA=1. The arena never returns what it took: one request of 64 texts of 256 tokens left a
 * MiniLM server 424 MiB larger for as long as it ran, 46 MiB without it (glibc's defaults). The cost: page faults,
 * about 1.5× the CPU time of such a batch; one-text requests the same within noise (bench/serve-memory.bench.ts).
 * Generation threads keep it: after a 2,000-token prompt SmolLM2's server held the same with and without it
 * (+159 / +157 MiB), its prompt pass being in chunks; what it holds is not the arena's.
 */
export const SERVE_MEM_ARENA = process.env.TEMPERED_SERVE_MEM_ARENA === '1';

/** @internal the messages between the pool and its threads */
export interface ThreadSetup {
  /** The thread's module (ts-thread.mjs imports it). */
  main: string;
  folder: string;
  threads?: number;
  device?: Device;
  memArena: boolean;
  hold?: Int32Array;
}
export type ThreadRequest = { type: 'predict'; batch: number; texts: string[] } | { type: 'close' };
export type ThreadReply =
  | { type: 'ready'; id: string; labels: string[] }
  | ({ type: 'failed' } & WireError)
  | { type: 'result'; batch: number; predictions: (Prediction | UnfitText)[] }
  | ({ type: 'error'; batch: number } & WireError);

/** An error as a thread reports it to its pool. */
export interface WireError {
  message: string;
  /** Set when the thread threw an InputError: it stays one (a 400, not a 500). */
  input?: { where?: string; hint?: string; code?: InputErrorCode };
}

/** An error the thread reported, rebuilt on this side (InputError keeps its class, `where`, `hint` and `code`). */
export function fromWire(e: WireError): Error {
  if (!e.input) return new Error(e.message);
  // The message already starts with `where: `; InputError would prefix it again.
  const prefix = e.input.where ? `${e.input.where}: ` : '';
  const bare = e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
  return new InputError(bare, { where: e.input.where, hint: e.input.hint, code: e.input.code });
}

export function toWire(e: unknown): WireError {
  const err = e instanceof Error ? e : new Error(String(e));
  return err instanceof InputError
    ? { message: err.message, input: { where: err.where, hint: err.hint, code: err.code } }
    : { message: err.message };
}

interface Pending {
  texts: string[];
  /** Each text's own verdict (predictEach); else a request holding an unfit text is refused with UnfitTextError. */
  each: boolean;
  resolve(p: (Prediction | UnfitText)[]): void;
  reject(e: Error): void;
}

interface Slot {
  worker: Worker;
  busy?: { batch: number; requests: Pending[] };
}

/** Entry of every tempered worker thread: registers tsx, then imports `workerData.main`. */
export const TS_THREAD = new URL('./ts-thread.mjs', import.meta.url);

/**
 * What both serve pools do when one of their threads exits: `onExit` fails the work it held, the slot
 * leaves the pool and, unless the pool is closed, a fresh thread takes its place and picks up queued work.
 */
export function replaceOnExit<S extends { worker: Worker }>(
  slot: S,
  pool: { slots: S[]; isClosed(): boolean; start(): Promise<{ worker: Worker }>; attach(s: S): void; dispatch(): void },
  onExit: (code: number) => void,
): void {
  slot.worker.once('exit', (code) => {
    // Out of the pool before onExit, which may dispatch waiting work: never to the thread that just exited.
    const i = pool.slots.indexOf(slot);
    if (i >= 0) pool.slots.splice(i, 1);
    onExit(code);
    if (pool.isClosed()) return;
    pool.start().then(
      (t) => {
        const fresh = { worker: t.worker } as S;
        pool.slots.push(fresh);
        pool.attach(fresh);
        pool.dispatch();
      },
      () => undefined,
    );
  });
}
const THREAD_MAIN = new URL('./inference-thread-main.ts', import.meta.url).href;

async function startThread(setup: ThreadSetup): Promise<{ worker: Worker; id: string; labels: string[] }> {
  const { worker, ready } = await startReadyThread<ThreadReply>(setup, (m) =>
    m.type === 'failed' ? fromWire(m) : new Error(`unexpected first message ${m.type}`),
  );
  return { worker, id: ready.id, labels: ready.labels };
}

/**
 * A thread running `setup.main` (a TypeScript module, through ts-thread.mjs) once its first message says
 * `ready`, with that message. A first message of any other type ends the thread and rejects with `failure(m)`;
 * so does an error before it.
 */
export function startReadyThread<R extends { type: string }>(
  setup: { main: string },
  failure: (m: R) => Error,
): Promise<{ worker: Worker; ready: Extract<R, { type: 'ready' }> }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(TS_THREAD, { workerData: setup });
    const onError = (e: Error) => reject(e);
    worker.once('error', onError);
    worker.once('message', (m: R) => {
      worker.off('error', onError);
      if (m.type === 'ready') resolve({ worker, ready: m as Extract<R, { type: 'ready' }> });
      else {
        void worker.terminate();
        reject(failure(m));
      }
    });
  });
}

export interface PooledPredictor extends Predictor {
  /**
   * As predict, but a text the model cannot take gets why (`{unfit}`) in place of its prediction, and the others are
   * predicted in the same batch: what `tempered predict` asks, to make just those rows bad rows.
   */
  predictEach(texts: string[]): Promise<(Prediction | UnfitText)[]>;
  stats(): PoolStats;
}

/** Loads `folder` (an exported classifier) into `workers` threads and returns a batching Predictor over them. */
export async function loadPooledPredictor(folder: string, opts: PoolOptions = {}): Promise<PooledPredictor> {
  const positive = (v: number | undefined, dflt: number, field: string, min = 1) => {
    if (v === undefined) return dflt;
    if (!Number.isSafeInteger(v) || v < min)
      throw new InputError(`must be a whole number >= ${min}, got ${v}`, { where: `serve.${field}` });
    return v;
  };
  const n = positive(opts.workers, 1, 'workers');
  const maxQueue = positive(opts.maxQueue, 256, 'maxQueue');
  const windowMs = positive(opts.batchWindowMs, 2, 'batchWindowMs', 0);
  const maxBatch = positive(opts.maxBatchTexts, 64, 'maxBatchTexts');
  const setup: ThreadSetup = {
    main: THREAD_MAIN,
    folder,
    threads: positive(opts.threads, 0, 'threads') || undefined,
    device: opts.device,
    memArena: opts.memArena ?? SERVE_MEM_ARENA,
    hold: opts.hold,
  };
  const started = await Promise.all(Array.from({ length: n }, () => startThread(setup)));
  const { id, labels } = started[0]!;
  const slots: Slot[] = [];
  const queue: Pending[] = [];
  let queuedTexts = 0;
  let nextBatch = 0;
  /** Cancels the pending dispatch (a batching window or the next turn of the loop). */
  let scheduled: (() => void) | undefined;
  let closed = false;
  const counts = { batches: 0, requests: 0, rejected: 0 };

  const attach = (slot: Slot) => {
    slot.worker.on('message', (m: ThreadReply) => {
      const busy = slot.busy;
      if (!busy || (m.type !== 'result' && m.type !== 'error') || m.batch !== busy.batch) return;
      slot.busy = undefined;
      if (m.type === 'result') {
        let at = 0;
        for (const r of busy.requests) {
          const mine = m.predictions.slice(at, at + r.texts.length);
          at += r.texts.length;
          // The thread left out the texts the model cannot take, so the batch's other requests were answered in it.
          const unfit = r.each ? [] : mine.flatMap((p, index) => ('unfit' in p ? [{ index, reason: p.unfit }] : []));
          if (unfit.length > 0) r.reject(new UnfitTextError(unfit, folder));
          else r.resolve(mine);
        }
      } else {
        // What the thread refuses as a whole (every text checked first) is the model's problem, every request's alike.
        const e = fromWire(m);
        for (const r of busy.requests) r.reject(e instanceof InputError ? e : new Error(`inference failed: ${e.message}`));
      }
      dispatch();
    });
    // A thread that dies fails only its own batch; a fresh one takes its place.
    replaceOnExit(slot, pool, (code) => {
      const busy = slot.busy;
      slot.busy = undefined;
      for (const r of busy?.requests ?? []) r.reject(new Error(`inference thread exited with code ${code}`));
    });
  };
  const pool = { slots, isClosed: () => closed, start: () => startThread(setup), attach, dispatch };
  for (const t of started) {
    const slot: Slot = { worker: t.worker };
    slots.push(slot);
    attach(slot);
  }

  /** Sends queued requests, whole, up to maxBatch texts, to each idle thread. */
  function dispatch(): void {
    scheduled?.();
    scheduled = undefined;
    for (const slot of slots) {
      if (slot.busy || queue.length === 0) continue;
      const requests: Pending[] = [];
      let size = 0;
      while (queue.length > 0 && (requests.length === 0 || size + queue[0]!.texts.length <= maxBatch)) {
        const r = queue.shift()!;
        requests.push(r);
        size += r.texts.length;
      }
      queuedTexts -= size;
      const batch = nextBatch++;
      slot.busy = { batch, requests };
      counts.batches++;
      slot.worker.postMessage({ type: 'predict', batch, texts: requests.flatMap((r) => r.texts) } satisfies ThreadRequest);
    }
  }

  function enqueue(texts: string[], each: boolean): Promise<(Prediction | UnfitText)[]> {
    if (closed) return Promise.reject(new Error('predictor is closed'));
    // Refused here, not in the thread, where it would fail the requests batched with this one.
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string'))
      return Promise.reject(new InputError('texts must be an array of strings', { where: 'texts' }));
    // An empty queue takes any request, so one larger than the limit is not refused forever.
    if (queuedTexts > 0 && queuedTexts + texts.length > maxQueue) {
      counts.rejected++;
      return Promise.reject(
        new OverloadedError(`the inference queue is full (${queuedTexts} texts waiting, limit ${maxQueue}); retry shortly`),
      );
    }
    counts.requests++;
    return new Promise((resolve, reject) => {
      queue.push({ texts, each, resolve, reject });
      queuedTexts += texts.length;
      if (scheduled !== undefined || !slots.some((s) => !s.busy)) return;
      // A busy pool batches whatever queued meanwhile. A pool with nothing in flight and nothing else
      // queued sends the request on the next turn of the loop (requests that arrived in the same I/O
      // phase still join it): a lone client never waits for company that is not coming. A pool with
      // some threads busy gives an idle one a short window to gather a batch.
      const quiet = queue.length === 1 && slots.every((s) => !s.busy);
      if (quiet) {
        const t = setImmediate(dispatch);
        scheduled = () => clearImmediate(t);
      } else {
        const t = setTimeout(dispatch, windowMs);
        scheduled = () => clearTimeout(t);
      }
    });
  }

  return {
    id,
    labels,
    predict: (texts) => enqueue(texts, false) as Promise<Prediction[]>,
    predictEach: (texts) => enqueue(texts, true),
    stats: () => ({ workers: slots.length, queued: queuedTexts, inflight: slots.filter((s) => s.busy).length, ...counts }),
    async close() {
      if (closed) return;
      closed = true;
      scheduled?.();
      for (const r of queue.splice(0)) r.reject(new Error('predictor is closed'));
      await Promise.all(
        slots.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.worker.once('exit', () => resolve());
              s.worker.postMessage({ type: 'close' } satisfies ThreadRequest);
            }),
        ),
      );
    },
  };
}
