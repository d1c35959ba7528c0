/**
 * A lease on a name in the shared store: dir-lock.ts's exclusive lock, for writers on different
 * hosts that share nothing but the object store. The train stage holds one on its checkpoint name,
 * so that a retry whose earlier attempt still runs on another worker, or a second run of the same
 * work, waits instead of moving the same checkpoint pointer and deleting the other's files.
 *
 * S3 has create-only puts (`If-None-Match: *`) but no atomic rename or compare-and-swap on an
 * existing key, so a lease is a sequence of generations, `leases/<name>/<generation>.json`, each
 * created only by the one writer whose create-only put wins it. The newest generation is the lease.
 * Its holder rewrites it every `refreshMs`; a generation left unwritten for `staleMs` (by the store's
 * clock against this host's, or by the holder's time in the lease where the store gives none, so
 * hosts' clocks must agree within a fraction of it) is taken over by creating the next one. A holder learns on its next refresh that a newer generation exists, or that
 * its own is gone or another's, and its `signal` aborts. A released lease is deleted, so a prefix
 * holds at most one object once its writers stopped.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { holderGone, LockBusyError, parseOwner, type LockOwner } from '../util/dir-lock.ts';
import { readText, type ObjectBackend } from './object-backend.ts';

export interface SharedLease {
  /** Aborted when another writer took the lease over (this one was presumed dead). */
  readonly signal: AbortSignal;
  /** Stops refreshing and deletes the lease if it is still this holder's. Never throws. */
  release(): Promise<void>;
}

export interface SharedLeaseOptions {
  /** Who holds it, for the busy message another writer gets: `run r stage train attempt 2`. */
  what: string;
  /** How long a lease may go unrefreshed before its holder is presumed dead (default 60 s). */
  staleMs?: number;
  refreshMs?: number;
  now?: () => number;
  /** Told when a refresh could not reach the store (the lease is then checked again next time). */
  log?: (message: string) => void;
  /**
   * How long to keep trying while another writer holds the lease (default 0: refuse at once). A
   * holder that died is taken over once its lease is stale, so waiting a little over `staleMs`
   * spares a retry that was started before then.
   */
  waitMs?: number;
  /** Told each time the lease is found held while waiting. */
  onWait?: (busy: LockBusyError) => void;
  /** Stops the wait (the busy error is thrown). */
  signal?: AbortSignal;
}

const GENERATION = /^(\d{12})\.json$/;
/** A lease object is a line of JSON; anything larger is not one of ours. */
const MAX_LEASE_BYTES = 64 * 1024;

/** Where the lease on `name` lives: `leases/<name>/`, a name that is not a plain key segment by its hash. */
export function leasePrefix(name: string): string {
  const segment =
    /^[A-Za-z0-9._-]{1,128}$/.test(name) && name !== '.' && name !== '..' ? name : createHash('sha256').update(name).digest('hex');
  return `leases/${segment}/`;
}

function generationKey(prefix: string, gen: number): string {
  return `${prefix}${String(gen).padStart(12, '0')}.json`;
}

interface Generation {
  gen: number;
  key: string;
  modified?: Date;
}

/** The lease's generations under `prefix`, oldest first; keys that are not generations are left alone. */
async function generations(remote: ObjectBackend, prefix: string): Promise<Generation[]> {
  const out: Generation[] = [];
  for await (const o of remote.listObjects(prefix)) {
    // A server that ignores the prefix lists other keys: they are neither leases nor ours to delete.
    const m = o.key.startsWith(prefix) ? GENERATION.exec(o.key.slice(prefix.length)) : null;
    if (m) out.push({ gen: Number(m[1]), key: o.key, modified: o.modified });
  }
  return out.sort((a, b) => a.gen - b.gen);
}

interface Held {
  present: boolean;
  owner?: LockOwner;
  /** When its holder last wrote it, by the holder's clock: the age of a lease the store gives no time for. */
  refreshedAt?: number;
}

async function readHeld(remote: ObjectBackend, key: string): Promise<Held> {
  const text = await readText(remote, key, MAX_LEASE_BYTES).catch((e: Error) => {
    // Too large to be a lease: present, but nobody's.
    if (/larger than/.test(e.message)) return '';
    throw e;
  });
  if (text === undefined) return { present: false };
  let refreshedAt: number | undefined;
  try {
    const t = Date.parse((JSON.parse(text) as { refreshedAt?: unknown } | null)?.refreshedAt as string);
    if (Number.isFinite(t)) refreshedAt = t;
  } catch {
    /* a damaged lease: no time */
  }
  return { present: true, owner: parseOwner(text), refreshedAt };
}

/**
 * Takes the lease on `name` in `remote`, or throws LockBusyError (transient: the caller's retry
 * waits for the holder) naming the live holder.
 */
export async function acquireSharedLease(remote: ObjectBackend, name: string, opts: SharedLeaseOptions): Promise<SharedLease> {
  const deadline = Date.now() + (opts.waitMs ?? 0);
  for (;;) {
    try {
      return await tryAcquire(remote, name, opts);
    } catch (e) {
      if (!(e instanceof LockBusyError) || Date.now() >= deadline || opts.signal?.aborted) throw e;
      opts.onWait?.(e);
      await new Promise((r) => setTimeout(r, Math.min(2000, Math.max(20, deadline - Date.now()))));
    }
  }
}

async function tryAcquire(remote: ObjectBackend, name: string, opts: SharedLeaseOptions): Promise<SharedLease> {
  const staleMs = opts.staleMs ?? 60_000;
  const now = opts.now ?? Date.now;
  const prefix = leasePrefix(name);
  const owner: LockOwner = {
    token: randomBytes(8).toString('hex'),
    pid: process.pid,
    host: hostname(),
    what: opts.what,
    since: new Date(now()).toISOString(),
  };
  const where = (key: string) => `${remote.url}/${key}`;
  const existing = await generations(remote, prefix);
  const newest = existing.at(-1);
  let gen = 0;
  if (newest) {
    const held = await readHeld(remote, newest.key);
    // A generation deleted since the listing was released: the next one is free.
    if (held.present) {
      // The store's time of the last write; a store that gives none, the holder's own; neither: stale.
      const written = newest.modified?.getTime() ?? held.refreshedAt;
      const age = written === undefined ? Infinity : now() - written;
      if (age < staleMs && !holderGone(held.owner)) throw new LockBusyError(where(newest.key), held.owner);
    }
    gen = newest.gen + 1;
  }
  const key = generationKey(prefix, gen);
  const body = () => Buffer.from(JSON.stringify({ ...owner, refreshedAt: new Date(now()).toISOString() }) + '\n');
  if ((await remote.putBytes(key, body(), { ifAbsent: true })) === 'exists')
    throw new LockBusyError(where(key), (await readHeld(remote, key).catch(() => ({ owner: undefined }))).owner);
  // The older generations' holders are dead or gone; deleting them keeps the prefix to one object,
  // and a zombie holder that finds its own generation gone stops.
  for (const g of existing) await remote.delete(g.key).catch(() => {});

  const ac = new AbortController();
  /** Whether the lease is still this holder's: no newer generation, and its own one names it. */
  const stillOurs = async (): Promise<boolean> => {
    const top = (await generations(remote, prefix)).at(-1);
    if (!top || top.gen !== gen) return false;
    return (await readHeld(remote, key)).owner?.token === owner.token;
  };
  let refreshing: Promise<void> | undefined;
  let stopped = false;
  const refreshMs = opts.refreshMs ?? Math.max(50, Math.floor(staleMs / 4));
  const refresh = async () => {
    try {
      if (!(await stillOurs())) {
        if (!stopped) ac.abort(`lost the lease ${where(key)} to another writer`);
        stopped = true;
        return;
      }
      if (!stopped) await remote.putBytes(key, body(), { ifAbsent: false });
    } catch (e) {
      opts.log?.(`could not refresh the lease ${where(key)} (tried again in ${Math.round(refreshMs / 1000)} s): ${(e as Error).message}`);
    }
  };
  const timer = setInterval(() => {
    // One refresh at a time: a slow store must not pile up requests.
    refreshing ??= refresh().finally(() => (refreshing = undefined));
  }, refreshMs);
  timer.unref();
  return {
    signal: ac.signal,
    async release() {
      clearInterval(timer);
      stopped = true;
      await refreshing;
      try {
        // Never delete a lease another writer took over.
        if (await stillOurs()) await remote.delete(key);
      } catch (e) {
        opts.log?.(`could not release the lease ${where(key)} (it goes stale in ${Math.round(staleMs / 1000)} s): ${(e as Error).message}`);
      }
    },
  };
}
