/**
 * A lease on a name in the shared store: dir-lock.ts's exclusive lock, for writers on different
 * hosts that share nothing but the object store. The train stage holds one on its checkpoint name,
 * so that a retry whose earlier attempt still runs on another worker, or a second run of the same
 * work, waits instead of moving the same checkpoint pointer and deleting the other's files.
 *
 * S3 has create-only puts (`If-None-Match: *`) but no atomic rename or compare-and-swap on an
 * existing key, so a lease is a sequence of generations, `leases/<name>/<generation>.json`, and every
 * change of it is the create-only put of the next generation: whoever creates generation N+1 first
 * owns that change, and nobody else can make it. The newest generation is the lease. Its holder
 * refreshes it by creating the next one (then deleting its previous one); a taker takes over a
 * newest generation that went unwritten for `staleMs` (by the store's clock against this host's, or
 * by the holder's time in the lease where the store gives none, so hosts' clocks must agree within a
 * fraction of it), or that is released, by creating the next one too. A holder whose next generation
 * someone else created has lost the lease: its `signal` aborts. A release creates a tombstone
 * generation, which stays as the newest, so generation numbers only go up.
 *
 * The refreshes run in a thread of their own (lease-keeper-thread.ts) where the backend can be opened
 * again there: the train stage's process blocks its own thread in onnxruntime runs of minutes. That
 * thread is started, and ready, before the lease is written: its start (seconds on a busy machine)
 * does not count against the time the new lease may go unrefreshed.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import { holderGone, LockBusyError, newOwner, parseOwner, type LockOwner } from '../util/dir-lock.ts';
import { readText, type ObjectBackend } from './object-backend.ts';
import { KEY_PREFIXES } from './key-layout.ts';

export interface SharedLease {
  /**
   * Aborted when the lease is lost: another writer took it over (this one was presumed dead), or it
   * could not be refreshed for so long that another writer may have.
   */
  readonly signal: AbortSignal;
  /**
   * Throws the signal's reason once the lease is lost, at once: also when its keeper thread knows and
   * this thread, busy since, has not yet taken its message. Call it before each write the lease guards.
   */
  assertHeld(): void;
  /** Stops refreshing and releases the lease if it is still this holder's. Never throws. */
  release(): Promise<void>;
}

export interface SharedLeaseOptions {
  /** Who holds it, for the busy message another writer gets: `run r stage train attempt 2`. */
  what: string;
  /** How long a lease may go unrefreshed before its holder is presumed dead (default 60 s). */
  staleMs?: number;
  refreshMs?: number;
  now?: () => number;
  /** Told when a refresh could not reach the store (tried again next period, until the lease must be given up). */
  log?: (message: string) => void;
  /**
   * How long to keep trying while another writer holds the lease (default 0: refuse at once). A
   * holder that died is taken over once its lease is stale, so waiting a little over `staleMs`
   * spares a retry that was started before then.
   */
  waitMs?: number;
  /**
   * Holders waited for past `waitMs`, for as long as `signal` allows: another run's training of the same work, which
   * holds the lease for its whole training (a retry cannot outlast it: each attempt that found it held spent one).
   */
  waitFor?: (owner: LockOwner | undefined) => boolean;
  /** Told each time the lease is found held while waiting. */
  onWait?: (busy: LockBusyError) => void;
  /** Stops the wait (the busy error is thrown). */
  signal?: AbortSignal;
  /**
   * Refresh from this thread, not a thread of its own: tests of the lease's own rules, and a hold of a few requests
   * whose thread only waits on them (train.ts replacing a shared checkpoint with an earlier attempt's record).
   */
  inProcess?: boolean;
}

/** Twelve digits as written; more are read, so a hostile or very old lease cannot hide the next generation. */
const GENERATION = /^(\d{12,15})\.json$/;
/** A lease object is a line of JSON; anything larger is not one of ours. */
const MAX_LEASE_BYTES = 64 * 1024;
/** How long a release may take on a store that does not answer, before the lease is left to go stale. */
const RELEASE_TIMEOUT_MS = 20_000;

/** Where the lease on `name` lives: `leases/<name>/`, a name that is not a plain key segment by its hash. */
export function leasePrefix(name: string): string {
  const segment =
    /^[A-Za-z0-9._-]{1,128}$/.test(name) && name !== '.' && name !== '..' ? name : createHash('sha256').update(name).digest('hex');
  return `${KEY_PREFIXES.leases}${segment}/`;
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

/** What a generation says. */
interface Held {
  present: boolean;
  owner?: LockOwner;
  released?: boolean;
  /** When its holder wrote it, by the holder's clock: the age of a lease the store gives no time for. */
  refreshedAt?: number;
}

async function readHeld(remote: ObjectBackend, key: string): Promise<Held> {
  const text = await readText(remote, key, MAX_LEASE_BYTES).catch((e: Error) => {
    // Too large to be a lease: present, but nobody's.
    if (/larger than/.test(e.message)) return '';
    throw e;
  });
  if (text === undefined) return { present: false };
  const held: Held = { present: true, owner: parseOwner(text) };
  try {
    const o = JSON.parse(text) as { refreshedAt?: unknown; released?: unknown } | null;
    const t = Date.parse(o?.refreshedAt as string);
    if (Number.isFinite(t)) held.refreshedAt = t;
    if (o?.released === true) held.released = true;
  } catch {
    /* a damaged lease: nobody's, no time */
  }
  return held;
}

/** A lease's body: its holder, and when it wrote this generation. */
export interface LeaseBody extends LockOwner {
  refreshedAt: string;
  released?: true;
}

/**
 * Creates generation `gen` (create-only). 'exists' means another writer made this change first. A
 * create whose answer was lost and retried by the SDK answers 412 too: a generation that carries this
 * writer's own token is its own.
 */
async function create(remote: ObjectBackend, prefix: string, gen: number, body: LeaseBody): Promise<'stored' | 'exists'> {
  const key = generationKey(prefix, gen);
  if ((await remote.putBytes(key, Buffer.from(JSON.stringify(body) + '\n'), { ifAbsent: true })) === 'stored') return 'stored';
  const held = await readHeld(remote, key).catch(() => undefined);
  return held?.owner?.token === body.token ? 'stored' : 'exists';
}

/**
 * One step of a holder at generation `gen`: a refresh (or, with `released`, the release) creates
 * generation gen+1 and deletes gen. 'lost' when a newer generation is another writer's (the lease
 * was taken over), or when its own generation is gone (collected by gc after it was cut off from the
 * store for the horizon: a new holder may have begun at 0 since); its own generation, no longer the
 * lease, is then deleted as litter. A newer generation of its own (a create whose answer was lost as
 * an error) is taken up. Used by the keeper thread and, where there is none, in-process.
 */
export async function advanceLease(
  remote: ObjectBackend,
  prefix: string,
  gen: number,
  owner: LockOwner,
  opts: { now?: () => number; released?: boolean } = {},
): Promise<{ held: true; gen: number } | { held: false }> {
  const now = opts.now ?? Date.now;
  const newest = (await generations(remote, prefix)).at(-1);
  const lost = async () => {
    await remote.delete(generationKey(prefix, gen)).catch(() => {});
    return { held: false as const };
  };
  if (newest && newest.gen > gen) {
    const held = await readHeld(remote, newest.key);
    // Not its own, or its own release: either way no longer its lease.
    if (held.owner?.token !== owner.token || held.released) return lost();
    await remote.delete(generationKey(prefix, gen)).catch(() => {});
    gen = newest.gen;
  } else if (!newest || newest.gen !== gen) return lost();
  const body: LeaseBody = { ...owner, refreshedAt: new Date(now()).toISOString(), ...(opts.released ? { released: true as const } : {}) };
  if ((await create(remote, prefix, gen + 1, body)) === 'exists') return lost();
  await remote.delete(generationKey(prefix, gen)).catch(() => {});
  return { held: true, gen: gen + 1 };
}

/**
 * Takes the lease on `name` in `remote`, or throws LockBusyError (transient: the caller's retry
 * waits for the holder) naming the live holder.
 */
export async function acquireSharedLease(remote: ObjectBackend, name: string, opts: SharedLeaseOptions): Promise<SharedLease> {
  const deadline = Date.now() + (opts.waitMs ?? 0);
  const staleMs = opts.staleMs ?? 60_000;
  const prefix = leasePrefix(name);
  const owner = newOwner(opts.what, (opts.now ?? Date.now)());
  // Eight refreshes a stale period: a holder that must give the lease up after all but two of them
  // has had five tries (a refresh that fails is tried again only at the next period).
  const timing = { refreshMs: opts.refreshMs ?? Math.max(50, Math.floor(staleMs / 8)), staleMs, now: opts.now };
  const where = (key: string) => `${remote.url}/${key}`;
  const inProcess = (gen: number, writtenAt: number) => keptInProcess(remote, prefix, gen, writtenAt, owner, timing, where, opts.log);
  const reopen = opts.inProcess ? undefined : remote.reopen?.();
  // The keeper thread is started once a lease is to be taken, and the lease is written only once the
  // thread can refresh it: a thread that takes seconds to start (its modules loaded on a busy
  // machine) must not eat into the time the new lease may go unrefreshed.
  let keeper: Promise<Keeper | undefined> | undefined;
  const keeperReady = () =>
    (keeper ??= reopen ? startKeeper(reopen, prefix, owner, timing, where, inProcess, opts.log) : Promise.resolve(undefined));
  try {
    for (;;) {
      opts.signal?.throwIfAborted();
      try {
        const { gen, writtenAt, older } = await tryAcquire(remote, prefix, owner, staleMs, opts, keeperReady);
        const k = await keeper;
        const lease = k ? k.keep(gen, writtenAt) : inProcess(gen, writtenAt);
        // The older generations' holders are dead, gone or released: their keys go, so the prefix holds
        // one object, and a holder that still ran finds a newer generation than its own on its next refresh.
        for (const g of older) await remote.delete(g.key).catch(() => {});
        return lease;
      } catch (e) {
        if (!(e instanceof LockBusyError)) throw e;
        const past = Date.now() >= deadline;
        if (past && !opts.waitFor?.(e.owner)) throw e;
        opts.onWait?.(e);
        await sleep(past ? 2000 : Math.min(2000, Math.max(20, deadline - Date.now())), undefined, { signal: opts.signal }).catch(() => {
          throw e;
        });
      }
    }
  } catch (e) {
    // No lease to keep: a keeper thread started for it ends.
    await (await keeper)?.stop();
    throw e;
  }
}

/**
 * Writes the lease's next generation if it is free (absent, released, stale or its holder gone), or
 * throws LockBusyError naming the live holder. `beforeWrite` runs between the look and the write.
 */
async function tryAcquire(
  remote: ObjectBackend,
  prefix: string,
  owner: LockOwner,
  staleMs: number,
  opts: SharedLeaseOptions,
  beforeWrite: () => Promise<unknown>,
): Promise<{ gen: number; writtenAt: number; older: Generation[] }> {
  const now = opts.now ?? Date.now;
  const where = (key: string) => `${remote.url}/${key}`;
  let existing = await generations(remote, prefix);
  let newest = existing.at(-1);
  let held = newest ? await readHeld(remote, newest.key) : undefined;
  // Gone between the listing and the read: its holder moved on to the next generation. Look again.
  for (let i = 0; held && !held.present && i < 3; i++) {
    existing = await generations(remote, prefix);
    newest = existing.at(-1);
    held = newest ? await readHeld(remote, newest.key) : undefined;
  }
  if (newest && held?.present && !held.released) {
    // The store's time of the last write; a store that gives none, the holder's own (a time far in
    // the future is not one: it would never go stale); neither: stale.
    const claimed = held.refreshedAt !== undefined && held.refreshedAt <= now() + staleMs ? held.refreshedAt : undefined;
    const written = newest.modified?.getTime() ?? claimed;
    const age = written === undefined ? Infinity : now() - written;
    if (age < staleMs && !holderGone(held.owner)) throw new LockBusyError(where(newest.key), held.owner);
  } else if (newest && held && !held.present) throw new LockBusyError(where(newest.key), undefined);
  const gen = newest ? newest.gen + 1 : 0;
  // (A holder that refreshed meanwhile, or another taker, wrote generation `gen` first: the create
  // below finds it.)
  await beforeWrite();
  // Taken before the put: the store's time of the write is no earlier.
  const writtenAt = Date.now();
  const body: LeaseBody = { ...owner, refreshedAt: new Date(now()).toISOString() };
  if ((await create(remote, prefix, gen, body)) === 'exists')
    throw new LockBusyError(
      where(generationKey(prefix, gen)),
      (await readHeld(remote, generationKey(prefix, gen)).catch(() => undefined))?.owner,
    );
  // A look taken while the holder moved on can miss its generations altogether (a folder store lists
  // names, then looks each up: the old one is gone by then, the new one was not yet listed), so the
  // lease looked free, and generation `gen` is below the holder's. A generation above it means that:
  // this writer withdraws its own and gives way. (Names only: that listing drops none.)
  const above = await newestAbove(remote, prefix, gen);
  if (above !== undefined) {
    await remote.delete(generationKey(prefix, gen)).catch(() => {});
    throw new LockBusyError(where(above), (await readHeld(remote, above).catch(() => undefined))?.owner);
  }
  return { gen, writtenAt, older: existing };
}

/** The key of the newest generation above `gen` under `prefix`, by its listed names alone. */
async function newestAbove(remote: ObjectBackend, prefix: string, gen: number): Promise<string | undefined> {
  let newest: { gen: number; key: string } | undefined;
  for await (const key of remote.list(prefix)) {
    const m = key.startsWith(prefix) ? GENERATION.exec(key.slice(prefix.length)) : null;
    if (m && Number(m[1]) > gen && Number(m[1]) > (newest?.gen ?? -1)) newest = { gen: Number(m[1]), key };
  }
  return newest?.key;
}

/**
 * Whether a holder whose last refresh began `silentMs` ago must give the lease up: after all but two
 * refresh periods of the stale time. A holder refreshing less than three times a stale period (a
 * test's stand-in for a dead one) has no time to give it up in: it never does.
 */
function mustGiveUp(silentMs: number, timing: { refreshMs: number; staleMs: number }): boolean {
  const limit = timing.staleMs - 2 * timing.refreshMs;
  return limit > timing.refreshMs && silentMs >= limit;
}

/**
 * Refreshes a held lease every `refreshMs`, one request chain at a time. It gives the lease up
 * (`lost`) when a refresh finds it taken over, and also when no refresh has succeeded for `staleMs`
 * less two refresh periods: by then another writer may find it stale and take it, and a holder that
 * cannot reach the store must stop before that, not learn it later. Used by the keeper thread, and
 * in-process where there is none.
 */
export class LeaseRefresher {
  private gen: number | undefined;
  private lastOk: number;
  private refreshing: Promise<void> | undefined;
  /** Whether the first refresh has settled (succeeded or failed). */
  private settled = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly remote: ObjectBackend,
    private readonly prefix: string,
    gen: number,
    private readonly owner: LockOwner,
    private readonly timing: { refreshMs: number; staleMs: number; now?: () => number },
    private readonly on: { lost(reason: string): void; advanced?(gen: number, at: number): void; log?(message: string): void },
    /** When generation `gen` was written (Date.now()): a thread that took long to start may be late already. */
    writtenAt = Date.now(),
  ) {
    this.gen = gen;
    this.lastOk = writtenAt;
    this.timer = setInterval(() => this.tick(), timing.refreshMs);
    this.timer.unref();
  }

  /**
   * Gives the lease up if no refresh has succeeded for too long; whether it is still held. Called by
   * each tick, and by an in-process holder before a write: a thread just out of a long run has run
   * no tick meanwhile.
   */
  check(): boolean {
    if (this.gen === undefined) return false;
    const silentMs = Date.now() - this.lastOk;
    if (!mustGiveUp(silentMs, this.timing)) return true;
    this.lose(
      `could not refresh the lease ${this.remote.url}/${this.prefix} for ${Math.round(silentMs / 1000)} s: another writer may take it over now`,
    );
    return false;
  }

  private tick(): void {
    // No judgement before the first refresh has settled: a keeper that started late (its lease
    // already older than it may go unrefreshed) tries once, and gives the lease up only if that fails,
    // not while that refresh is still under way. (assertHeld still judges before every write.)
    if (this.settled && !this.check()) return;
    // One refresh at a time: a slow store must not pile up requests.
    this.refreshing ??= this.step(false).then(() => {
      this.refreshing = undefined;
      this.settled = true;
    });
  }

  private lose(reason: string): void {
    this.gen = undefined;
    clearInterval(this.timer);
    this.on.lost(reason);
  }

  /** A refresh or the release; whether the lease was still this holder's. */
  private async step(released: boolean): Promise<boolean> {
    const gen = this.gen;
    if (gen === undefined) return false;
    const started = Date.now();
    try {
      const r = await advanceLease(this.remote, this.prefix, gen, this.owner, { now: this.timing.now, released });
      if (this.gen !== gen) return false; // given up meanwhile
      if (!r.held) {
        this.lose(`lost the lease ${this.remote.url}/${this.prefix} to another writer`);
        return false;
      }
      this.lastOk = started;
      this.gen = released ? undefined : r.gen;
      if (!released) this.on.advanced?.(r.gen, started);
      return true;
    } catch (e) {
      this.on.log?.(`could not ${released ? 'release' : 'refresh'} the lease ${this.remote.url}/${this.prefix}: ${(e as Error).message}`);
      return false;
    }
  }

  /** Stops refreshing and writes the release; whether the lease was still this holder's. */
  async release(): Promise<boolean> {
    clearInterval(this.timer);
    await this.refreshing;
    return this.step(true);
  }
}

/**
 * What a keeper thread and the holder's thread share, readable by either at any moment (the holder's
 * thread reads it in assertHeld even while its event loop is busy, and falls back to it if the thread
 * dies): whether the lease is lost, its current generation, and when its last successful write began.
 */
export class KeeperState {
  private readonly lostFlag: Int32Array;
  private readonly numbers: BigInt64Array;

  constructor(readonly buffer = new SharedArrayBuffer(24)) {
    this.lostFlag = new Int32Array(buffer, 0, 1);
    this.numbers = new BigInt64Array(buffer, 8, 2);
  }

  get lost(): boolean {
    return Atomics.load(this.lostFlag, 0) !== 0;
  }
  get gen(): number {
    return Number(Atomics.load(this.numbers, 0));
  }
  /** Date.now() when the write of the current generation began. */
  get writtenAt(): number {
    return Number(Atomics.load(this.numbers, 1));
  }

  lose(): void {
    Atomics.store(this.lostFlag, 0, 1);
  }
  advanced(gen: number, writtenAt: number): void {
    Atomics.store(this.numbers, 0, BigInt(gen));
    Atomics.store(this.numbers, 1, BigInt(writtenAt));
  }
}

/** What a keeper thread needs to open the backend and refresh the lease. */
export interface KeeperSetup {
  backend: { url: string; env?: Record<string, string | undefined> };
  prefix: string;
  owner: LockOwner;
  refreshMs: number;
  staleMs: number;
  /** KeeperState's buffer: the generation to start from, once `keep` says it is written. */
  state: SharedArrayBuffer;
}

/** Messages from the keeper thread. */
export type KeeperMessage =
  /** Its modules are loaded and the backend opened: it can refresh a lease at once. */
  | { type: 'ready' }
  | { type: 'lost'; reason: string }
  | { type: 'log'; message: string }
  /** The answer to `release`: whether the lease was still this holder's. */
  | { type: 'released'; held: boolean };

/** Messages to the keeper thread: `keep` the generation KeeperState holds (just written), `release` it. */
export type KeeperCommand = { type: 'keep' } | { type: 'release' };

const TS_THREAD = new URL('../serve/ts-thread.mjs', import.meta.url);
/** How long a keeper thread may take to start before the holder's own thread keeps the lease instead. */
const KEEPER_START_TIMEOUT_MS = 60_000;

/** `work`, or undefined once `ms` have passed: a store that does not answer must not hold a release. */
function bounded<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([work, sleep(ms, undefined, { ref: false })]);
}

/** A keeper thread that is ready to refresh: it keeps the generation just written, or is stopped unused. */
interface Keeper {
  keep(gen: number, writtenAt: number): SharedLease;
  stop(): Promise<void>;
}

/**
 * Starts a keeper thread and resolves once it is ready to refresh, or (logged) with undefined where it
 * could not start: the lease is then kept from this thread. Should the thread die after that, this
 * thread refreshes from the last generation the thread wrote (while it is not blocked itself).
 */
async function startKeeper(
  backend: KeeperSetup['backend'],
  prefix: string,
  owner: LockOwner,
  timing: { refreshMs: number; staleMs: number },
  where: (key: string) => string,
  fallback: (gen: number, writtenAt: number) => SharedLease,
  log: ((m: string) => void) | undefined,
): Promise<Keeper | undefined> {
  const fellBack = `the lease keeper thread of ${where(prefix)} stopped; refreshing the lease from this thread`;
  const ac = new AbortController();
  const state = new KeeperState();
  const setup: KeeperSetup = { backend, prefix, owner, refreshMs: timing.refreshMs, staleMs: timing.staleMs, state: state.buffer };
  let worker: Worker;
  try {
    worker = new Worker(TS_THREAD, { workerData: { main: new URL('./lease-keeper-thread.ts', import.meta.url).href, setup } });
  } catch (e) {
    log?.(`could not start the lease keeper thread of ${where(prefix)} (${(e as Error).message}); refreshing the lease from this thread`);
    return undefined;
  }
  let kept = false;
  let stopping = false;
  let gone = false;
  let inProcess: SharedLease | undefined;
  let ready: ((ok: boolean) => void) | undefined;
  let released: ((held: boolean) => void) | undefined;
  worker.on('message', (m: KeeperMessage) => {
    if (m.type === 'ready') ready?.(true);
    else if (m.type === 'lost') ac.abort(m.reason);
    else if (m.type === 'log') log?.(m.message);
    else released?.(m.held);
  });
  const exited = new Promise<void>((resolve) =>
    worker.once('exit', () => {
      gone = true;
      ready?.(false);
      if (kept && !stopping && !ac.signal.aborted && !state.lost) {
        log?.(fellBack);
        inProcess = fallback(state.gen, state.writtenAt);
        inProcess.signal.addEventListener('abort', () => ac.abort(inProcess!.signal.reason), { once: true });
      }
      resolve();
    }),
  );
  worker.on('error', (e) => log?.(`the lease keeper thread of ${where(prefix)} failed: ${e.message}`));
  // (The worker stays referenced until it is ready: a process with nothing else to do waits for it.)
  const started = await bounded(new Promise<boolean>((resolve) => (ready = resolve)), KEEPER_START_TIMEOUT_MS);
  ready = undefined;
  if (!started) {
    if (started === undefined)
      log?.(`the lease keeper thread of ${where(prefix)} did not start within ${KEEPER_START_TIMEOUT_MS / 1000} s`);
    log?.(fellBack);
    stopping = true;
    await worker.terminate();
    return undefined;
  }
  // The lease never keeps a process alive: one that exits without releasing leaves it to go stale.
  // (After the listeners: adding a 'message' listener refs the worker's port again.)
  worker.unref();

  const lease: SharedLease = {
    signal: ac.signal,
    assertHeld() {
      if (inProcess) return inProcess.assertHeld();
      if (!ac.signal.aborted) {
        // What the keeper knows, without waiting for its message; and its silence, judged here too.
        const silentMs = Date.now() - state.writtenAt;
        if (state.lost) ac.abort(`lost the lease ${where(prefix)} (the keeper thread's log says why)`);
        else if (mustGiveUp(silentMs, timing))
          ac.abort(
            `could not refresh the lease ${where(prefix)} for ${Math.round(silentMs / 1000)} s: another writer may take it over now`,
          );
      }
      ac.signal.throwIfAborted();
    },
    async release() {
      stopping = true;
      if (inProcess) return inProcess.release();
      const answered = new Promise<boolean>((resolve) => (released = resolve));
      // A process with nothing else to do still waits for its release.
      worker.ref();
      worker.postMessage({ type: 'release' } satisfies KeeperCommand);
      if ((await bounded(Promise.race([answered, exited]), RELEASE_TIMEOUT_MS)) === undefined)
        log?.(`could not release the lease ${where(prefix)} within ${RELEASE_TIMEOUT_MS / 1000} s; it goes stale`);
      await worker.terminate();
    },
  };
  return {
    keep(gen, writtenAt) {
      kept = true;
      state.advanced(gen, writtenAt);
      if (gone) {
        // Died between its start and now: nothing refreshes this generation yet.
        log?.(fellBack);
        inProcess = fallback(gen, writtenAt);
        inProcess.signal.addEventListener('abort', () => ac.abort(inProcess!.signal.reason), { once: true });
      } else worker.postMessage({ type: 'keep' } satisfies KeeperCommand);
      return lease;
    },
    async stop() {
      stopping = true;
      await worker.terminate();
    },
  };
}

function keptInProcess(
  remote: ObjectBackend,
  prefix: string,
  gen: number,
  writtenAt: number,
  owner: LockOwner,
  timing: { refreshMs: number; staleMs: number; now?: () => number },
  where: (key: string) => string,
  log: ((m: string) => void) | undefined,
): SharedLease {
  const ac = new AbortController();
  const refresher = new LeaseRefresher(remote, prefix, gen, owner, timing, { lost: (reason) => ac.abort(reason), log }, writtenAt);
  return {
    signal: ac.signal,
    assertHeld() {
      refresher.check();
      ac.signal.throwIfAborted();
    },
    async release() {
      if ((await bounded(refresher.release(), RELEASE_TIMEOUT_MS)) === undefined)
        log?.(`could not release the lease ${where(prefix)} within ${RELEASE_TIMEOUT_MS / 1000} s; it goes stale`);
    },
  };
}
