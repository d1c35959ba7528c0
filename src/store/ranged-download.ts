/**
 * Downloads one object as byte ranges fetched in parallel, straight into a file: each part's chunks
 * are written at the part's own offset as they arrive (positional writes, one at a time for the
 * file), so parts may finish in any order and nothing is reassembled in memory. `onPrefix` reports
 * how much of the file is written from its start without a hole, which is what lets the sha256
 * follow the download in another thread (src/util/hash-follower.ts) instead of waiting for the end
 * or holding parts back in order.
 *
 * A part whose body breaks off (or ends early) is asked again for the bytes it still lacks, up to
 * `attempts` times; a part that fails for good stops the others (their requests are aborted), and
 * the promise settles only once no write is in flight, so the caller may close and delete the file
 * at once. Backend-neutral: the S3 backend supplies `fetch`.
 */
import { setMaxListeners } from 'node:events';
import type { FileHandle } from 'node:fs/promises';

export type RangeBody = AsyncIterable<Uint8Array>;

export interface RangedDownload {
  /** Open for writing; the download writes the bytes [0, total) and nothing else. */
  file: FileHandle;
  /** The object's size in bytes. */
  total: number;
  partSize: number;
  /** Parts in flight at once. */
  concurrency: number;
  /** The bytes [start, end) of the object as a stream; `signal` aborts the request. */
  fetch(start: number, end: number, signal: AbortSignal): Promise<RangeBody>;
  /** The body of the first part, [0, min(partSize, total)), when the caller already holds it. */
  first?: RangeBody;
  /** Called with a growing n whenever bytes [0, n) of the file are written. */
  onPrefix?(n: number): void;
  /** Errors that asking again cannot cure (a refused request, an object replaced meanwhile): not retried. */
  fatal?(e: unknown): boolean;
  /** Tries per part (default 3). */
  attempts?: number;
  /** Wait before retry k is k × this (default 200 ms). */
  retryDelayMs?: number;
}

/**
 * Chunks are gathered to about this much before one `writev`: fewer system calls and thread-pool
 * hand-offs than one per socket read (measured: 1 MiB beat 4 MiB, which holds more in memory per part
 * and lets the hash fall further behind, and 256-512 KiB).
 */
const BATCH_BYTES = 1 << 20;
/** …and to at most this many buffers, well under the kernel's iovec limit. */
const BATCH_BUFFERS = 256;

/** A local write that failed (disk full, file closed): it stops the download, as retrying the network side would not help. */
class WriteFailed extends Error {
  constructor(cause: unknown) {
    super(`writing the download failed: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

export async function downloadRanges(d: RangedDownload): Promise<void> {
  const { total, partSize } = d;
  if (!(partSize > 0) || !Number.isSafeInteger(partSize)) throw new Error(`bad part size ${partSize}`);
  if (total === 0) return;
  const parts = Math.ceil(total / partSize);
  const attempts = d.attempts ?? 3;
  const retryDelayMs = d.retryDelayMs ?? 200;
  const partLength = (i: number) => Math.min(total, (i + 1) * partSize) - i * partSize;
  // Bytes of each part already on disk: a part's writes are awaited one after another, so each part
  // is written from its start without holes and this is also where a retry resumes.
  const written = new Array<number>(parts).fill(0);
  const ac = new AbortController();
  // Every request in flight listens on this signal (and a retried one again): more than Node's
  // default of 10 is expected, not a leak.
  setMaxListeners(4 * d.concurrency + 10, ac.signal);
  let failed = false;
  let failure: unknown;
  let firstBody = d.first;
  // One write at a time for the whole file: a buffered write holds the file's lock in the kernel
  // (ext4's inode rwsem), so parallel writes to one file are not faster, and the waiting threads
  // spin on that lock, burning CPU the download and the hash need (README, Store throughput).
  // A failed write stops the download at once, so the writes queued behind it are dropped.
  let lastWrite: Promise<unknown> = Promise.resolve();
  const write = (buffers: Uint8Array[], position: number) => {
    const w = lastWrite.then(async () => {
      if (failed) throw failure;
      try {
        await d.file.writev(buffers, position);
      } catch (e) {
        stop(new WriteFailed(e));
        throw failure;
      }
    });
    lastWrite = w.catch(() => undefined);
    return w;
  };
  const stop = (e: unknown) => {
    if (failed) return;
    failed = true;
    failure = e;
    ac.abort();
  };

  let donePrefix = 0; // parts [0, donePrefix) complete
  let reported = 0;
  const advance = () => {
    while (donePrefix < parts && written[donePrefix] === partLength(donePrefix)) donePrefix++;
    const n = donePrefix * partSize + (donePrefix < parts ? written[donePrefix]! : 0);
    const prefix = Math.min(total, n);
    if (prefix > reported) {
      reported = prefix;
      d.onPrefix?.(prefix);
    }
  };

  const writeBody = async (i: number, body: RangeBody) => {
    const start = i * partSize;
    const length = partLength(i);
    let batch: Uint8Array[] = [];
    let batched = 0;
    const flush = async () => {
      if (batched === 0) return;
      if (written[i]! + batched > length)
        throw new Error(`the range ${start}-${start + length - 1} came back with more than the ${length} bytes asked for`);
      await write(batch, start + written[i]!);
      written[i] = written[i]! + batched;
      batch = [];
      batched = 0;
      advance();
    };
    try {
      for await (const chunk of body) {
        if (failed) return; // leaving the loop destroys the body (and its connection)
        batch.push(chunk);
        batched += chunk.length;
        if (batched >= BATCH_BYTES || batch.length >= BATCH_BUFFERS) await flush();
      }
    } finally {
      // What arrived before a break-off is kept, so a retry asks only for the rest.
      if (!failed) await flush();
    }
  };

  const runPart = async (i: number) => {
    const start = i * partSize;
    const end = start + partLength(i);
    for (let attempt = 1; ; attempt++) {
      try {
        const body = i === 0 && firstBody ? firstBody : await d.fetch(start + written[i]!, end, ac.signal);
        if (i === 0) firstBody = undefined;
        await writeBody(i, body);
        if (failed) return;
        if (written[i]! < end - start) throw new Error(`the range ${start}-${end - 1} ended after ${written[i]} of ${end - start} bytes`);
        return;
      } catch (e) {
        // A failed write has stopped the download already (`write`), so only fetch errors get here.
        if (failed) return;
        if (d.fatal?.(e) || attempt >= attempts) throw e;
        await new Promise((r) => setTimeout(r, retryDelayMs * attempt));
      }
    }
  };

  let next = 0;
  const runner = async () => {
    while (!failed && next < parts) {
      const i = next++;
      try {
        await runPart(i);
      } catch (e) {
        stop(e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(d.concurrency, parts) }, runner));
  if (firstBody) await destroyBody(firstBody);
  if (failed) throw failure;
}

/** Releases a body nobody read (its connection goes back or is closed). */
async function destroyBody(body: RangeBody): Promise<void> {
  const it = body[Symbol.asyncIterator]();
  await it.return?.().catch(() => undefined);
}
