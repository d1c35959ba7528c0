/**
 * Tokenizing off the server's thread. A prompt within the server's limits can still take seconds to
 * tokenize: one word of 262,000 characters (spaces, one repeated letter) is one pre-token that BPE
 * merges at 10–20 µs a character, so on the server's thread it held /health and every other request.
 * One thread per served model tokenizes and renders chats; requests queue there, one at a time.
 */
import { Worker } from 'node:worker_threads';
import type { ChatMessage } from './types.ts';
import { fromWire, OverloadedError, startReadyThread, TS_THREAD, type WireError } from './worker-pool.ts';

/** To the thread. */
export type EncoderRequest = { id: number; op: 'encode'; text: string } | { id: number; op: 'encodeChat'; messages: ChatMessage[] };

/** From the thread: `ready` once its tokenizer is loaded, `failed` when it could not be. */
export type EncoderReply =
  | { type: 'ready' }
  | ({ type: 'failed' } & WireError)
  | { type: 'ids'; id: number; ids: Int32Array }
  | ({ type: 'error'; id: number } & WireError);

export interface EncoderThreadSetup {
  main: string;
  dir: string;
  chatTemplate?: string;
}

const MAIN = new URL('./encoder-thread-main.ts', import.meta.url).href;

/** Prompts waiting for the thread beyond which a request is refused (429): each holds its text in memory meanwhile. */
export const ENCODES_WAITING = 64;

interface Ask {
  request: EncoderRequest;
  resolve: (ids: number[]) => void;
  reject: (e: Error) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class EncoderThread {
  /** Asked, not yet sent: the thread is given one prompt at a time, so one whose client left is dropped here. */
  private readonly waiting: Ask[] = [];
  private running: Ask | undefined;
  private nextId = 0;
  private closed = false;
  /** Undefined once the thread ended unasked: the next prompt starts another. */
  private worker: Worker | undefined;

  private constructor(
    worker: Worker,
    private readonly setup: EncoderThreadSetup,
  ) {
    this.watch(worker);
  }

  /** Starts the thread and resolves once its tokenizer is loaded (or rejects with why it could not be). */
  static async start(dir: string, chatTemplate?: string): Promise<EncoderThread> {
    const setup: EncoderThreadSetup = { main: MAIN, dir, ...(chatTemplate !== undefined ? { chatTemplate } : {}) };
    return new EncoderThread(await startWorker(setup), setup);
  }

  /** `signal`: the request's client left; a prompt still waiting is dropped (rejects with the signal's reason). */
  encode(text: string, signal?: AbortSignal): Promise<number[]> {
    return this.ask({ id: this.nextId++, op: 'encode', text }, signal);
  }

  encodeChat(messages: ChatMessage[], signal?: AbortSignal): Promise<number[]> {
    return this.ask({ id: this.nextId++, op: 'encodeChat', messages }, signal);
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    this.rejectAll(new Error('the prompt encoder is closed'));
    await w?.terminate();
  }

  private ask(request: EncoderRequest, signal?: AbortSignal): Promise<number[]> {
    if (this.closed) return Promise.reject(new Error('the prompt encoder is closed'));
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.waiting.length >= ENCODES_WAITING)
      return Promise.reject(
        new OverloadedError(`${ENCODES_WAITING} prompts are waiting to be tokenized, which is the limit; retry shortly`),
      );
    return new Promise<number[]>((resolve, reject) => {
      const ask: Ask = { request, resolve, reject, signal };
      if (signal) {
        ask.onAbort = () => {
          const i = this.waiting.indexOf(ask);
          if (i < 0) return; // sent already: its answer is awaited, then dropped by the caller
          this.waiting.splice(i, 1);
          reject(signal.reason as Error);
        };
        signal.addEventListener('abort', ask.onAbort, { once: true });
      }
      this.waiting.push(ask);
      this.pump();
    });
  }

  /** Sends the next waiting prompt when the thread is free. */
  private pump(): void {
    if (this.running || this.closed) return;
    const next = this.waiting.shift();
    if (!next) return;
    if (next.onAbort) next.signal!.removeEventListener('abort', next.onAbort);
    this.running = next;
    // A thread that died (out of memory on a hostile prompt) is replaced, so later prompts are served.
    const worker = this.worker ?? this.watch(new Worker(TS_THREAD, { workerData: this.setup }));
    worker.postMessage(next.request);
  }

  /** The prompt sent ends with `outcome`; the next one goes. */
  private settle(outcome: { ids: number[] } | { error: Error }): void {
    const done = this.running;
    this.running = undefined;
    if (done) {
      if ('ids' in outcome) done.resolve(outcome.ids);
      else done.reject(outcome.error);
    }
    this.pump();
  }

  private rejectAll(e: Error): void {
    const all = [...(this.running ? [this.running] : []), ...this.waiting.splice(0)];
    this.running = undefined;
    for (const a of all) {
      if (a.onAbort) a.signal!.removeEventListener('abort', a.onAbort);
      a.reject(e);
    }
  }

  private watch(worker: Worker): Worker {
    this.worker = worker;
    // The server's own work keeps it running; this thread must not.
    worker.unref();
    worker.on('message', (m: EncoderReply) => {
      if (m.type === 'failed') {
        // A replacement that could not load the tokenizer (the model folder changed under the server).
        this.rejectAll(fromWire(m));
        void worker.terminate();
        return;
      }
      if ((m.type !== 'ids' && m.type !== 'error') || m.id !== this.running?.request.id) return;
      this.settle(m.type === 'ids' ? { ids: Array.from(m.ids) } : { error: fromWire(m) });
    });
    // An uncaught error ends the thread: 'exit' follows, and says it.
    let failure = '';
    worker.on('error', (e) => (failure = `: ${e.message}`));
    worker.once('exit', (code) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      // The prompt it was on fails (it may be what killed it); those waiting go to its replacement.
      this.settle({ error: new Error(`the prompt encoder thread ended (exit code ${code}) before it answered${failure}`) });
    });
    return worker;
  }
}

async function startWorker(setup: EncoderThreadSetup): Promise<Worker> {
  const { worker } = await startReadyThread<EncoderReply>(setup, (m) =>
    m.type === 'failed' ? fromWire(m) : new Error(`unexpected first message ${m.type}`),
  );
  return worker;
}
