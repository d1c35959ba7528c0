/**
 * Text generation off the server's event loop: each worker thread holds the decoder (its own
 * onnxruntime session) and runs one generation at a time, so /health, /metrics and the other routes
 * answer while a long generation runs. Tokenization and chat rendering stay on the server's thread
 * (they are cheap and synchronous, and the routes validate prompt lengths with them before admission).
 *
 * Admission (the bounded queue, 429) is openai.ts's GenerationGate; its `maxConcurrent` should equal
 * `workers` here (the CLI does that). Requests beyond the idle threads wait here in order of arrival.
 *
 * Generations of different requests are not batched together: a row's logits in a batch differ from
 * its logits alone by ~1e-6 (padding changes onnxruntime's summation), so a request's tokens would
 * depend on its neighbours. Rows of one request (`n`, a list of prompts) are batched as before.
 *
 * Each thread keeps the KV cache of its last one-prompt generation (`promptCache`), and a request goes to the
 * idle thread whose cache shares the longest start with its prompt: a chat client sends the whole conversation
 * every turn, and then only the new turn is computed. On CPU the logits are the same bits either way
 * (generate.test.ts), so a request's tokens still do not depend on which request came before it.
 *
 * A request cancelled while it waited for a thread ends there, with no tokens: no thread computes its prompt.
 *
 * Streaming keeps its back-pressure: the thread sends token events and waits when `TOKEN_WINDOW`
 * events are unacknowledged; the server acknowledges each after its `onToken` resolved (the socket
 * drained), so a slow reader still slows its generation, and tokens never pile up without bound.
 */
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors.ts';
import { sharedPrefix, type GenerateOptions, type GenerateResult, type TokenEvent } from '../generate/generate.ts';
import type { TextGeneratorOptions } from '../generate/text-generator.ts';
import type { ChatMessage, TextGenerator } from './types.ts';
import { EncoderThread } from './encoder-thread.ts';
import { fromWire, replaceOnExit, startReadyThread, type WireError } from './worker-pool.ts';

export interface GenerationPoolOptions extends TextGeneratorOptions {
  /** Worker threads, each with its own decoder; at most this many generations run at once. Default 1. */
  workers?: number;
  /**
   * Each thread keeps the KV cache of its last one-prompt generation for the next prompt that starts the same
   * way (default true). Off, a thread holds no memory for it between generations.
   */
  promptCache?: boolean;
  /**
   * Test-only: every generation waits in its thread until `hold[0]` is non-zero (Atomics.notify), so a
   * test can keep a generation in flight for as long as it likes without timing anything.
   */
  hold?: Int32Array;
}

export interface GenerationPoolStats {
  workers: number;
  /** Generations running in a thread now. */
  running: number;
  /** Generations waiting for a free thread. */
  waiting: number;
  generations: number;
  /** Prompt tokens taken from a thread's kept cache instead of computed, since start. */
  cachedPromptTokens: number;
}

export interface PooledTextGenerator extends TextGenerator {
  /** Tokenized in a thread of its own (encoder-thread.ts): a slow prompt holds no other request. */
  encode(text: string, signal?: AbortSignal): Promise<number[]>;
  encodeChat(messages: ChatMessage[], signal?: AbortSignal): Promise<number[]>;
  stats(): GenerationPoolStats;
}

/** Token events a thread may send ahead of the server's acknowledgements. */
export const TOKEN_WINDOW = 16;

/** @internal the messages between the pool and its threads */
export interface GenerationThreadSetup {
  main: string;
  dir: string;
  options: { id?: string; threads?: number; device?: TextGeneratorOptions['device']; memArena?: boolean; chatTemplate?: string };
  promptCache: boolean;
  hold?: Int32Array;
}
export type WireOptions = Omit<GenerateOptions, 'onToken' | 'signal'>;
export type GenerationRequest =
  | {
      type: 'generate';
      job: number;
      prompts: number[][];
      options: WireOptions;
      stream: boolean;
      aborted: boolean;
      /** False: the thread's kept cache belongs to another scope, and is dropped before this generation. */
      keepCache: boolean;
    }
  | { type: 'ack'; job: number }
  | { type: 'cancel'; job: number }
  | { type: 'close' };
export type GenerationReply =
  | { type: 'ready'; contextLength: number; vocabSize: number }
  | ({ type: 'failed' } & WireError)
  | { type: 'token'; job: number; event: TokenEvent }
  | { type: 'done'; job: number; results: GenerateResult[] }
  | ({ type: 'error'; job: number } & WireError);

interface Job {
  id: number;
  prompts: number[][];
  opts: GenerateOptions;
  /** Whose prompt cache it may read (TextGenerator.generate's cacheScope; '' for none given). */
  scope: string;
  resolve(r: GenerateResult[]): void;
  reject(e: Error): void;
  /** The server's onToken calls, in order; each acknowledges its event when it resolved. */
  chain: Promise<void>;
  /** Set when onToken threw: the caller has its error, the thread is told to stop. */
  failed?: Error;
  slot?: Slot;
  onAbort?: () => void;
  /** Ends the job where it waits when its signal aborts before a thread takes it. */
  onQueuedAbort?: () => void;
}

/** What a request cancelled before any thread took it gets: no tokens. */
function cancelledUnrun(job: Job): GenerateResult[] {
  return job.prompts.map((p) => ({ tokens: [], text: '', finishReason: 'cancelled' as const, promptTokens: p.length, cachedTokens: 0 }));
}

interface Slot {
  worker: Worker;
  job?: Job;
  /** What the thread's kept cache holds, as far as this side knows: its last prompt (`prompt` tokens long) and what it generated. */
  cached?: { tokens: number[]; prompt: number; scope: string };
  /** When it was last given a generation (a count of generations), for picking the thread used longest ago. */
  lastUsed?: number;
}

/** Tokens at the end of a thread's last prompt that a continuation of it may tokenize otherwise (see `pick`). */
const SEAM_TOKENS = 4;

const THREAD_MAIN = new URL('./generation-thread-main.ts', import.meta.url).href;

async function startThread(setup: GenerationThreadSetup): Promise<{ worker: Worker; contextLength: number; vocabSize: number }> {
  const { worker, ready } = await startReadyThread<GenerationReply>(setup, (m) =>
    m.type === 'failed' ? fromWire(m) : new Error(`unexpected first message ${m.type}`),
  );
  return { worker, contextLength: ready.contextLength, vocabSize: ready.vocabSize };
}

/** Loads the causal LM in `dir` into `workers` threads and returns a TextGenerator whose generations run there. */
export async function loadPooledTextGenerator(dir: string, opts: GenerationPoolOptions = {}): Promise<PooledTextGenerator> {
  const n = opts.workers ?? 1;
  if (!Number.isSafeInteger(n) || n < 1) throw new InputError(`must be a whole number >= 1, got ${n}`, { where: 'serve.workers' });
  const setup: GenerationThreadSetup = {
    main: THREAD_MAIN,
    dir,
    options: {
      id: opts.id,
      threads: opts.threads,
      device: opts.device,
      memArena: opts.memArena,
      chatTemplate: opts.chatTemplate,
    },
    promptCache: opts.promptCache ?? true,
    hold: opts.hold,
  };
  // The encoder thread loads the tokenizer and chat template beside the generation threads (a bad template fails
  // its start, and the generation threads are ended); this thread keeps no copy (140 ms and 28 MiB for SmolLM2's).
  // Settled at once: a rejection while the generation threads load must not go unhandled (it would end the process).
  const encoderThread = Promise.allSettled([EncoderThread.start(dir, opts.chatTemplate)]);
  const started = await Promise.allSettled(Array.from({ length: n }, () => startThread(setup)));
  const encoding = await encoderThread;
  const failed = [...started, ...encoding].find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.worker.terminate() : undefined)));
    if (encoding[0].status === 'fulfilled') await encoding[0].value.close();
    throw (failed as PromiseRejectedResult).reason;
  }
  const encoder = (encoding[0] as PromiseFulfilledResult<EncoderThread>).value;
  const ok = started.map((s) => (s as PromiseFulfilledResult<Awaited<ReturnType<typeof startThread>>>).value);
  const slots: Slot[] = [];
  const waiting: Job[] = [];
  let nextJob = 0;
  let generations = 0;
  let cachedPromptTokens = 0;
  let closed = false;

  const post = (slot: Slot, m: GenerationRequest) => slot.worker.postMessage(m);

  /** The thread is done with its job: the caller gets the outcome once every onToken before it has run. */
  const finish = (slot: Slot, job: Job, outcome: { results: GenerateResult[] } | { error: Error }) => {
    slot.job = undefined;
    job.opts.signal?.removeEventListener('abort', job.onAbort!);
    void job.chain.then(() => {
      if (job.failed) return;
      if ('results' in outcome) job.resolve(outcome.results);
      else job.reject(outcome.error);
    });
    dispatch();
  };

  const attach = (slot: Slot) => {
    slot.worker.on('message', (m: GenerationReply) => {
      const job = slot.job;
      if (!job || !('job' in m) || m.job !== job.id) return;
      if (m.type === 'token') {
        job.chain = job.chain
          .then(async () => {
            if (job.failed) return;
            await job.opts.onToken!(m.event);
            if (slot.job === job) post(slot, { type: 'ack', job: job.id });
          })
          .catch((e: Error) => {
            if (job.failed) return;
            // As in-thread: an onToken that throws ends the generation with its error.
            job.failed = e;
            job.reject(e);
            if (slot.job === job) post(slot, { type: 'cancel', job: job.id });
          });
      } else if (m.type === 'done') {
        if (setup.promptCache && job.prompts.length === 1)
          slot.cached = { tokens: [...job.prompts[0]!, ...m.results[0]!.tokens], prompt: job.prompts[0]!.length, scope: job.scope };
        cachedPromptTokens += m.results.reduce((n, r) => n + r.cachedTokens, 0);
        finish(slot, job, { results: m.results });
      } else if (m.type === 'error') {
        // A generation that failed leaves its thread's kept cache empty (generate.ts).
        slot.cached = undefined;
        finish(slot, job, { error: fromWire(m) });
      }
    });
    // A thread that dies fails only its own generation; a fresh one takes its place.
    replaceOnExit(slot, pool, (code) => {
      const job = slot.job;
      if (job) finish(slot, job, { error: new Error(`generation thread exited with code ${code}`) });
    });
  };
  const pool = { slots, isClosed: () => closed, start: () => startThread(setup), attach, dispatch };
  for (const t of ok) {
    const slot: Slot = { worker: t.worker };
    slots.push(slot);
    attach(slot);
  }

  /**
   * The idle thread for `job`: one whose kept cache the prompt continues, the longest such. A continuation (the
   * conversation's next turn, or the same prompt again) holds the whole prompt that thread last saw, but for a
   * few tokens where a re-rendered template may split the seam otherwise. Any other prompt goes to the thread
   * used longest ago, so that a conversation whose cache merely shares a system message with it is not thrown
   * away while an older one could go.
   */
  const pick = (job: Job): Slot | undefined => {
    const idle = slots.filter((s) => !s.job);
    const prompt = job.prompts.length === 1 ? job.prompts[0]! : undefined;
    let best: Slot | undefined;
    let bestShared = 0;
    for (const s of idle) {
      if (!prompt || !s.cached || s.cached.scope !== job.scope) continue;
      const shared = sharedPrefix(s.cached.tokens, prompt);
      if (shared > bestShared && shared >= s.cached.prompt - Math.min(SEAM_TOKENS, s.cached.prompt >> 1)) [best, bestShared] = [s, shared];
    }
    return (
      best ??
      idle.reduce<Slot | undefined>((old, s) => (old === undefined || (s.lastUsed ?? -1) < (old.lastUsed ?? -1) ? s : old), undefined)
    );
  };

  function dispatch(): void {
    while (waiting.length > 0) {
      const slot = pick(waiting[0]!);
      if (!slot) return;
      const job = waiting.shift()!;
      if (job.onQueuedAbort) job.opts.signal?.removeEventListener('abort', job.onQueuedAbort);
      slot.job = job;
      job.slot = slot;
      slot.lastUsed = generations++;
      const { onToken, signal, ...options } = job.opts;
      job.onAbort = () => {
        if (slot.job === job) post(slot, { type: 'cancel', job: job.id });
      };
      signal?.addEventListener('abort', job.onAbort, { once: true });
      post(slot, {
        type: 'generate',
        job: job.id,
        prompts: job.prompts,
        options,
        stream: onToken !== undefined,
        aborted: signal?.aborted ?? false,
        keepCache: slot.cached?.scope === job.scope,
      });
    }
  }

  return {
    kind: 'text-generation',
    id: opts.id ?? dir,
    contextLength: ok[0]!.contextLength,
    vocabSize: ok[0]!.vocabSize,
    encode: (text, signal) => encoder.encode(text, signal),
    encodeChat: (messages, signal) => encoder.encodeChat(messages, signal),
    generate(prompts, o) {
      if (closed) return Promise.reject(new Error('generator is closed'));
      return new Promise<GenerateResult[]>((resolve, reject) => {
        const { cacheScope, ...generateOpts } = o;
        const job: Job = { id: nextJob++, prompts, opts: generateOpts, scope: cacheScope ?? '', resolve, reject, chain: Promise.resolve() };
        // A client that gave up before or while the request waits: no thread computes its prompt (seconds for a
        // long conversation) for nobody. The gate counts a waiting request until then.
        if (o.signal?.aborted) return resolve(cancelledUnrun(job));
        waiting.push(job);
        job.onQueuedAbort = () => {
          const i = waiting.indexOf(job);
          if (i < 0) return;
          waiting.splice(i, 1);
          job.resolve(cancelledUnrun(job));
        };
        o.signal?.addEventListener('abort', job.onQueuedAbort, { once: true });
        dispatch();
      });
    },
    stats: () => ({
      workers: slots.length,
      running: slots.filter((s) => s.job).length,
      waiting: waiting.length,
      generations,
      cachedPromptTokens,
    }),
    async close() {
      if (closed) return;
      closed = true;
      for (const j of waiting.splice(0)) j.reject(new Error('generator is closed'));
      await encoder.close();
      await Promise.all(
        slots.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.worker.once('exit', () => resolve());
              post(s, { type: 'close' });
            }),
        ),
      );
    },
  };
}
