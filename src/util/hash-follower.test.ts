/**
 * followHash on real files written step by step: the digest equals a plain sha256 of the bytes,
 * several files hash at once in the one thread, a file shorter than announced is an error at
 * `finish`, and a cancelled job (also one cancelled mid-read) closes its file and leaves the thread
 * serving others.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from '../data/rng.ts';
import { followHash } from './hash-follower.ts';

/** n seeded pseudo-random bytes (sha256 in counter mode: fast enough for tens of MB). */
function bytes(n: number, seed: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; i * 32 < n; i++) blocks.push(createHash('sha256').update(`${seed}:${i}`).digest());
  return Buffer.concat(blocks).subarray(0, n);
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const root = mkdtempSync(join(tmpdir(), 'follow-'));
after(() => rmSync(root, { recursive: true, force: true }));
const fresh = () => {
  const path = join(mkdtempSync(join(root, 'f-')), 'f');
  writeFileSync(path, '');
  return path;
};

describe('followHash', () => {
  it('hashes a file as it grows, several files at once', async () => {
    // Larger than the step at which the thread is told about growth (8 MiB), so it hashes while writes go on.
    const datas = [bytes(30_000_000, 1), bytes(123_457, 2), bytes(0, 3)];
    const jobs = datas.map((data) => ({ data, path: fresh(), written: 0 }));
    const hashes = jobs.map((j) => followHash(j.path));
    const rng = new Rng(4);
    while (jobs.some((j) => j.written < j.data.length)) {
      for (const [k, j] of jobs.entries()) {
        if (j.written >= j.data.length) continue;
        const n = Math.min(j.data.length - j.written, 1 + rng.int(12_000_000));
        appendFileSync(j.path, j.data.subarray(j.written, j.written + n));
        j.written += n;
        hashes[k]!.advance(j.written);
      }
    }
    const got = await Promise.all(hashes.map((h, k) => h.finish(jobs[k]!.data.length)));
    assert.deepEqual(
      got,
      datas.map((d) => sha(d)),
    );
  });

  it('a file shorter than announced fails at finish; a cancelled job does not disturb the next', async () => {
    const short = fresh();
    writeFileSync(short, 'only this');
    const h = followHash(short);
    h.advance(9);
    await assert.rejects(h.finish(100), /hashing failed: the file ends at byte 9, expected at least 100/);

    const dropped = followHash(fresh());
    dropped.cancel();
    dropped.cancel();
    await assert.rejects(dropped.finish(0), /cancelled/);

    const ok = fresh();
    writeFileSync(ok, 'all of it');
    assert.equal(await followHash(ok).finish(9), sha(Buffer.from('all of it')));
  });

  it('a job cancelled while its reads are in flight closes its file once they land, and the thread goes on', async () => {
    const path = fresh();
    // This process's open files that are `path` (the thread's too: it is a thread of this process).
    const opened = () =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === path;
        } catch {
          return false; // closed meanwhile
        }
      }).length;
    // Large enough that the thread is still reading when the cancel reaches it (about 0.2 s of hashing).
    const data = Buffer.alloc(256 << 20, 'tempered');
    writeFileSync(path, data);
    const until = async (done: () => boolean) => {
      for (let waited = 0; !done() && waited < 5000; waited += 5) await new Promise((r) => setTimeout(r, 5));
    };
    const h = followHash(path);
    h.advance(data.length);
    await until(() => opened() > 0); // the thread has the file open and is reading it
    h.cancel();
    await until(() => opened() === 0);
    assert.equal(opened(), 0, 'the cancelled job closed its file');
    assert.equal(await followHash(path).finish(data.length), sha(data));
  });
});
