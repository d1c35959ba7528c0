/**
 * Tokenizing off the server's thread. A prompt within the server's limits can still take seconds to
 * tokenize: one word of 262,000 characters (spaces, one repeated letter) is one pre-token that BPE
 * merges at 10–20 µs a character, so on the server's thread it held /health and every other request.
 * One thread per served model tokenizes and renders chats; requests queue there, one at a time.
 */
import { Worker } from 'node:worker_threads';
import type { ChatMessage } from './types.ts';
import { fromWire, type WireError } from './generation-pool.ts';

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

const TS_THREAD = new URL('./ts-thread.mjs', import.meta.url);
const MAIN = new URL('./encoder-thread-main.ts', import.meta.url).href;

export class EncoderThread {
  private readonly pending = new Map<number, { resolve: (ids: number[]) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private closed = false;
  /** Undefined once the thread ended unasked: the next request starts another. */
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

  encode(text: string): Promise<number[]> {
    return this.ask((id) => ({ id, op: 'encode', text }));
  }

  encodeChat(messages: ChatMessage[]): Promise<number[]> {
    return this.ask((id) => ({ id, op: 'encodeChat', messages }));
  }

  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.worker = undefined;
    for (const p of this.pending.values()) p.reject(new Error('the prompt encoder is closed'));
    this.pending.clear();
    await w?.terminate();
  }

  private async ask(request: (id: number) => EncoderRequest): Promise<number[]> {
    if (this.closed) throw new Error('the prompt encoder is closed');
    // A thread that died (out of memory on a hostile prompt) is replaced, so later requests are served.
    // (Requests sent before it is ready wait in its port.)
    const worker = this.worker ?? this.watch(new Worker(TS_THREAD, { workerData: this.setup }));
    const id = this.nextId++;
    const answer = new Promise<number[]>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    worker.postMessage(request(id));
    return answer;
  }

  private rejectAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
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
      if (m.type !== 'ids' && m.type !== 'error') return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.type === 'ids') p?.resolve(Array.from(m.ids));
      else p?.reject(fromWire(m));
    });
    worker.on('error', (e) => this.rejectAll(new Error(`the prompt encoder thread failed: ${e.message}`)));
    worker.once('exit', (code) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.rejectAll(new Error(`the prompt encoder thread ended (exit code ${code}) before it answered`));
    });
    return worker;
  }
}

function startWorker(setup: EncoderThreadSetup): Promise<Worker> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(TS_THREAD, { workerData: setup });
    const onError = (e: Error) => reject(e);
    worker.once('error', onError);
    worker.once('message', (m: EncoderReply) => {
      worker.off('error', onError);
      if (m.type === 'ready') resolve(worker);
      else {
        void worker.terminate();
        reject(m.type === 'failed' ? fromWire(m) : new Error(`unexpected first message ${m.type}`));
      }
    });
  });
}
