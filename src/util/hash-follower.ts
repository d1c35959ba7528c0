/**
 * The sha256 of a file that is still being written, computed in a worker thread that reads what is
 * already written (from the page cache) while the writer goes on. A download (ranged-download.ts)
 * says how far the file is complete from its start; the worker hashes up to there and waits for
 * more. On 2 cores, hashing on the main thread serialised with the socket reads and halved the
 * cold-cache download speed; in a thread the hash overlaps the transfer and nothing has to be held
 * in memory in order.
 *
 * One worker per process, started on first use and shared by concurrent jobs; it keeps the process
 * alive only while a job is open. Its code is plain CommonJS (no TypeScript loader in the thread).
 */
import { Worker } from 'node:worker_threads';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const READ = 4 << 20;
const jobs = new Map();
const readAt = (job, pos) =>
  new Promise((resolve, reject) => {
    const buf = job.bufs[(job.which ^= 1)];
    fs.read(job.fd, buf, 0, Math.min(READ, job.upTo - pos), pos, (e, n) => (e ? reject(e) : resolve({ pos, n, buf })));
  });
const close = (id, job) => {
  jobs.delete(id);
  try { fs.closeSync(job.fd); } catch {}
};
// Hashes up to job.upTo, the next read (on libuv's pool) in flight while this thread hashes the last:
// a lone thread that read and then hashed ran at 1 / (read + hash) of the CPU's hash speed.
async function pump(id, job) {
  if (job.pumping) return;
  job.pumping = true;
  try {
    let next;
    for (;;) {
      if (job.cancelled) return close(id, job);
      if (!next) {
        if (job.pos >= job.upTo) break;
        next = readAt(job, job.pos);
      }
      const { pos, n, buf } = await next;
      if (job.cancelled) return close(id, job);
      if (n <= 0) throw new Error('the file ends at byte ' + pos + ', expected at least ' + job.upTo);
      const after = pos + n;
      next = after < job.upTo ? readAt(job, after) : undefined;
      job.h.update(buf.subarray(0, n));
      job.pos = after;
    }
    if (job.end >= 0) {
      close(id, job);
      parentPort.postMessage({ id, hex: job.h.digest('hex') });
    }
  } catch (e) {
    close(id, job);
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  } finally {
    job.pumping = false;
  }
}
parentPort.on('message', (m) => {
  let job = jobs.get(m.id);
  try {
    if (m.path !== undefined) {
      job = { h: createHash('sha256'), fd: fs.openSync(m.path, 'r'), pos: 0, upTo: 0, end: -1, which: 0,
              bufs: [Buffer.allocUnsafe(READ), Buffer.allocUnsafe(READ)], pumping: false, cancelled: false };
      jobs.set(m.id, job);
    }
    if (!job) return;
    if (m.cancel) {
      job.cancelled = true;
      if (!job.pumping) close(m.id, job);
      return;
    }
    if (m.upTo !== undefined && m.upTo > job.upTo) job.upTo = m.upTo;
    if (m.end !== undefined) job.end = job.upTo = m.end;
    pump(m.id, job);
  } catch (e) {
    if (job) close(m.id, job);
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});
`;

interface Pending {
  resolve(hex: string): void;
  reject(e: Error): void;
  failed?: Error;
}

let shared: { worker: Worker; jobs: Map<number, Pending> } | undefined;
let nextId = 1;

function pool(): { worker: Worker; jobs: Map<number, Pending> } {
  if (shared) return shared;
  // No execArgv: the thread needs no TypeScript loader and no inspector flags.
  const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
  const jobs = new Map<number, Pending>();
  const me = { worker, jobs };
  worker.unref();
  worker.on('message', (m: { id: number; hex?: string; error?: string }) => {
    const job = jobs.get(m.id);
    if (!job) return;
    if (m.error !== undefined) {
      // Reported at `finish`: the writer may still be running and must not get an unhandled rejection.
      job.failed = new Error(`hashing failed: ${m.error}`);
      if (job.resolve === noop) return;
    }
    jobs.delete(m.id);
    if (jobs.size === 0) worker.unref();
    if (job.failed) job.reject(job.failed);
    else job.resolve(m.hex!);
  });
  const die = (e: Error) => {
    if (shared === me) shared = undefined;
    for (const job of jobs.values()) {
      job.failed ??= new Error(`the hashing thread stopped: ${e.message}`);
      job.reject(job.failed);
    }
    jobs.clear();
  };
  worker.on('error', die);
  worker.on('exit', (code) => die(new Error(`exit code ${code}`)));
  return (shared = me);
}

function noop(): void {}

/**
 * The worker is told about growth in steps of at least this much (the end always): each message
 * wakes the thread, and on 2 cores a wake-up per 1 MiB written cost more than it saved (measured
 * with bench/store.bench.ts-sized downloads: about 10 % of the cold-cache throughput).
 */
const ADVANCE_STEP = 8 * 1024 * 1024;

export interface FollowingHash {
  /** Bytes [0, n) of the file are written and may be hashed. */
  advance(n: number): void;
  /** The file is complete at `bytes`: resolves with the sha256 (lower-case hex) of exactly those bytes. */
  finish(bytes: number): Promise<string>;
  /** Stops hashing and closes the file (idempotent; also after `finish`). */
  cancel(): void;
}

/** Starts hashing `path` (which must exist) as it is written. */
export function followHash(path: string): FollowingHash {
  const { worker, jobs } = pool();
  const id = nextId++;
  const job: Pending = { resolve: noop, reject: noop };
  jobs.set(id, job);
  worker.ref();
  worker.postMessage({ id, path });
  let open = true;
  let posted = 0;
  return {
    advance(n) {
      if (!open || n - posted < ADVANCE_STEP) return;
      posted = n;
      worker.postMessage({ id, upTo: n });
    },
    finish(bytes) {
      if (!open) return Promise.reject(new Error('this hash was cancelled'));
      open = false;
      if (job.failed) {
        jobs.delete(id);
        if (jobs.size === 0) worker.unref();
        return Promise.reject(job.failed);
      }
      return new Promise<string>((resolve, reject) => {
        job.resolve = resolve;
        job.reject = reject;
        worker.postMessage({ id, end: bytes });
      });
    },
    cancel() {
      if (!open) return;
      open = false;
      if (jobs.delete(id)) {
        worker.postMessage({ id, cancel: true });
        if (jobs.size === 0) worker.unref();
      }
    },
  };
}
