/**
 * downloadRanges against in-memory sources into real files: parts that complete in any order land at
 * their offsets, the reported prefix never runs ahead of a hole, a body that breaks off is resumed
 * from where it stopped, a part that fails for good stops the rest and settles with no write in
 * flight, and the file sees one write at a time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../data/rng.ts';
import { downloadRanges, type RangeBody } from './ranged-download.ts';

function source(bytes: number, seed: number): Buffer {
  const rng = new Rng(seed);
  const b = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) b[i] = rng.int(256);
  return b;
}

/** `data` as chunks of seeded random sizes (1 byte to 40 KiB). */
async function* chunks(data: Buffer, rng: Rng): RangeBody {
  for (let o = 0; o < data.length; ) {
    const n = Math.min(data.length - o, 1 + rng.int(40 * 1024));
    yield data.subarray(o, o + n);
    o += n;
  }
}

async function openFresh(): Promise<{ path: string; fh: fsp.FileHandle }> {
  const path = join(mkdtempSync(join(tmpdir(), 'ranged-')), 'out');
  return { path, fh: await fsp.open(path, 'wx') };
}

function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

describe('downloadRanges', () => {
  it('parts finishing in a shuffled order land at their offsets; the prefix waits for the first part', async () => {
    const partSize = 100_000;
    const data = source(6 * partSize + 777, 1);
    const parts = Math.ceil(data.length / partSize);
    const rng = new Rng(2);
    // Every part sends its first chunk, then waits for its gate; the gates open in a seeded order
    // with part 0 last, each once the previous part has been sent whole.
    const gates = Array.from({ length: parts }, gate);
    const sent = Array.from({ length: parts }, gate);
    const order = rng.shuffle([...Array(parts - 1).keys()].map((i) => i + 1)) as number[];
    order.push(0);
    const { path, fh } = await openFresh();
    const prefixes: number[] = [];
    const body = async function* (i: number, start: number, end: number): RangeBody {
      const part = data.subarray(start, end);
      yield part.subarray(0, 1000);
      await gates[i]!.wait;
      yield* chunks(part.subarray(1000), rng);
      sent[i]!.open();
    };
    const done = downloadRanges({
      file: fh,
      total: data.length,
      partSize,
      concurrency: parts,
      fetch: async (start, end) => body(start / partSize, start, end),
      onPrefix: (n) => {
        // Whatever is reported as written is on disk, right.
        assert.ok(readFileSync(path).subarray(0, n).equals(data.subarray(0, n)));
        prefixes.push(n);
      },
    });
    for (const i of order) {
      gates[i]!.open();
      await sent[i]!.wait;
      if (i !== 0) assert.ok((prefixes.at(-1) ?? 0) <= 1000, 'no prefix beyond part 0 while part 0 is incomplete');
    }
    await done;
    await fh.close();
    assert.ok(readFileSync(path).equals(data));
    assert.deepEqual(
      prefixes,
      [...prefixes].sort((a, b) => a - b),
      'the prefix only grows',
    );
    assert.equal(prefixes.at(-1), data.length);
  });

  it('takes the first part from a body the caller already holds', async () => {
    const data = source(250_000, 3);
    const { path, fh } = await openFresh();
    const asked: number[] = [];
    await downloadRanges({
      file: fh,
      total: data.length,
      partSize: 100_000,
      concurrency: 2,
      first: chunks(data.subarray(0, 100_000), new Rng(4)),
      fetch: async (start, end) => (asked.push(start), chunks(data.subarray(start, end), new Rng(start))),
    });
    await fh.close();
    assert.ok(readFileSync(path).equals(data));
    assert.deepEqual(
      asked.sort((a, b) => a - b),
      [100_000, 200_000],
      'part 0 is not asked for again',
    );
  });

  it('a body that breaks off is asked again for the missing bytes only', async () => {
    const data = source(300_000, 5);
    const { path, fh } = await openFresh();
    const asked: string[] = [];
    let broke = false;
    await downloadRanges({
      file: fh,
      total: data.length,
      partSize: 100_000,
      concurrency: 3,
      retryDelayMs: 1,
      fetch: async (start, end) => {
        asked.push(`${start}-${end}`);
        if (start === 100_000 && !broke) {
          broke = true;
          return (async function* () {
            yield data.subarray(start, start + 30_000);
            throw new Error('connection reset');
          })();
        }
        return chunks(data.subarray(start, end), new Rng(start));
      },
    });
    await fh.close();
    assert.ok(readFileSync(path).equals(data));
    assert.ok(asked.includes('130000-200000'), `resumed at byte 130000 (asked: ${asked.join(', ')})`);
  });

  it('a range that keeps coming back short fails after its attempts, stops the others, and leaves no write in flight', async () => {
    const data = source(500_000, 6);
    const { fh } = await openFresh();
    let tries = 0;
    await assert.rejects(
      downloadRanges({
        file: fh,
        total: data.length,
        partSize: 100_000,
        concurrency: 2,
        attempts: 3,
        retryDelayMs: 1,
        fetch: async (start, end) => {
          if (start >= 200_000 && start < 300_000) {
            tries++;
            return chunks(data.subarray(start, end - 10), new Rng(tries));
          }
          return chunks(data.subarray(start, end), new Rng(start));
        },
      }),
      /the range 200000-299999 ended after 99990 of 100000 bytes/,
    );
    assert.equal(tries, 3);
    // Settled means no write is pending: closing now cannot race one.
    await fh.close();
  });

  it('a fatal error is not retried', async () => {
    const { fh } = await openFresh();
    let calls = 0;
    const refused = new Error('precondition failed');
    await assert.rejects(
      downloadRanges({
        file: fh,
        total: 300,
        partSize: 100,
        concurrency: 1,
        fetch: async () => {
          calls++;
          throw refused;
        },
        fatal: (e) => e === refused,
      }),
      /precondition failed/,
    );
    await fh.close();
    assert.equal(calls, 1);
  });

  it('a range that sends more than asked for is an error', async () => {
    const data = source(200, 7);
    const { fh } = await openFresh();
    await assert.rejects(
      downloadRanges({
        file: fh,
        total: 200,
        partSize: 100,
        concurrency: 2,
        attempts: 1,
        fetch: async (start) => chunks(data.subarray(start, start + 150), new Rng(start)),
      }),
      /more than the 100 bytes asked for/,
    );
    await fh.close();
  });

  it('writes to the file one at a time while parts download in parallel; a failed write stops the rest', async () => {
    const data = source(8 * 100_000, 8);
    // The real file handle, its writes held back a little so that parts finishing together would overlap.
    const watch = (fh: fsp.FileHandle, failAt = Infinity) => {
      const seen = { inFlight: 0, most: 0, writes: 0 };
      const file = new Proxy(fh, {
        get(target, prop) {
          if (prop !== 'writev') return Reflect.get(target, prop, target);
          return async (buffers: Uint8Array[], position: number) => {
            seen.most = Math.max(seen.most, ++seen.inFlight);
            try {
              await new Promise((r) => setTimeout(r, 5));
              if (++seen.writes === failAt) throw Object.assign(new Error('no space left on device'), { code: 'ENOSPC' });
              return await target.writev(buffers, position);
            } finally {
              seen.inFlight--;
            }
          };
        },
      });
      return { file, seen };
    };
    const options = (file: fsp.FileHandle) => ({
      file,
      total: data.length,
      partSize: 100_000,
      concurrency: 8,
      fetch: async (start: number, end: number) => chunks(data.subarray(start, end), new Rng(start)),
    });

    const ok = await openFresh();
    const a = watch(ok.fh);
    await downloadRanges(options(a.file));
    await ok.fh.close();
    assert.ok(readFileSync(ok.path).equals(data));
    assert.equal(a.seen.most, 1, 'never two writes in flight');

    const full = await openFresh();
    const b = watch(full.fh, 3);
    await assert.rejects(downloadRanges(options(b.file)), /writing the download failed: no space left on device/);
    assert.equal(b.seen.inFlight, 0, 'settled with no write in flight');
    assert.equal(b.seen.writes, 3, 'the writes queued behind the failed one were dropped');
    await full.fh.close();
  });
});
