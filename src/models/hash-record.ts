/**
 * The sha256 of a local model file, remembered by what the file system says of it, so an unchanged file is not read
 * again: a local model folder or GGUF file was hashed whole on every resolve (about 0.46 s per 256 MiB), which every
 * stage, every `serve` load and every cache lookup of a train or evaluate stage paid.
 *
 * A record (`<cacheDir>/hashes/<sha256 of the path>.json`, this host's, beside the model cache) holds the path, device,
 * inode, size, and modification and change times in nanoseconds. Any of them different is a changed file, hashed
 * again: a file replaced by a rename (another inode), rewritten in place (mtime and ctime), or with its mtime set back
 * after a rewrite (`touch -r`, a copy keeping times: ctime, which only the kernel sets, still moved). A record that
 * does not parse, is of another version or another host (a state folder copied over) is a miss, never an error.
 *
 * The limit is the one git and make share: a rewrite to the same size within one tick of the file system's clock, seen
 * as unchanged. It is closed here as git closes "racy" index entries: a file changed less than RACY_MS before it was
 * looked at is hashed but not recorded (a later write in that same tick would leave every field as recorded), so a
 * record is only of a file whose times had already settled. Not seen: bytes changed with no write through the file
 * system (a failing disk, a write to the block device), a network file system whose server clock lags this host's by
 * more than RACY_MS. The file is stat'ed through an open descriptor, not by path: on NFS a stat by path may answer from
 * the client's attribute cache (acregmax, 60 s by default), so a rewrite by another client could match its old record
 * for that long, where an open revalidates the attributes with the server (close-to-open consistency; not on a mount
 * with `nocto`, which turns that off).
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, type BigIntStats } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../data/atomic.ts';
import { sha256File } from '../util/hash-file.ts';

const VERSION = 1;
/** Longer than the coarsest timestamp a local file system keeps (FAT's 2 s mtime); ext4, XFS and btrfs keep ns. */
export const RACY_MS = 2_000;

/** What a record holds of a file: every field the same is the same file, unchanged. */
interface Seen {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
}

interface HashRecord extends Seen {
  v: number;
  host: string;
  path: string;
  sha256: string;
}

export interface RecordedHash {
  sha256: string;
  bytes: number;
  /** Bytes read to hash it now: 0 when the record said the file is as hashed before. */
  hashedBytes: number;
}

function seen(st: BigIntStats): Seen {
  return { dev: String(st.dev), ino: String(st.ino), size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) };
}

const same = (a: Seen, b: Seen) =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;

/** The file's attributes as the server has them now (see the NFS note above): read through an open descriptor. */
function statOpened(path: string): BigIntStats {
  const fd = openSync(path, 'r');
  try {
    return fstatSync(fd, { bigint: true });
  } finally {
    closeSync(fd);
  }
}

function readRecord(path: string): HashRecord | undefined {
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as HashRecord;
    return r && typeof r === 'object' && typeof r.sha256 === 'string' && /^[0-9a-f]{64}$/.test(r.sha256) ? r : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The sha256 and size of the file at `path` (absolute), from its record in `recordsDir` when the file is unchanged
 * since, else read whole and recorded. A record that cannot be written costs the next resolve a read, nothing more.
 */
export async function hashFileRecorded(path: string, recordsDir: string): Promise<RecordedHash> {
  const recordPath = join(recordsDir, `${createHash('sha256').update(path).digest('hex')}.json`);
  const before = statOpened(path);
  const now = seen(before);
  const host = hostname();
  const rec = readRecord(recordPath);
  if (rec && rec.v === VERSION && rec.host === host && rec.path === path && same(rec, now))
    return { sha256: rec.sha256, bytes: Number(before.size), hashedBytes: 0 };
  const startedMs = Date.now();
  // sha256 alone: download.ts's hashFile also computes a git SHA-1 no caller of this one reads, about half its time.
  const { sha256, bytes } = await sha256File(path);
  const after = seen(statOpened(path));
  // Changed while read (the hash may be of neither version), or changed too recently for its times to tell the next
  // write in the same tick from this one: hashed, not recorded.
  const settled = Number(before.ctimeNs / 1_000_000n) < startedMs - RACY_MS && Number(before.mtimeNs / 1_000_000n) < startedMs - RACY_MS;
  if (same(now, after) && settled) {
    const record: HashRecord = { v: VERSION, host, path, ...now, sha256 };
    try {
      writeFileAtomic(recordPath, JSON.stringify(record) + '\n');
    } catch {
      // a read-only or full cache folder: the file is read again next time
    }
  }
  return { sha256, bytes, hashedBytes: bytes };
}
