/**
 * Garbage collection of the artifact store: deletes the objects nothing keeps, once they are old.
 *
 * Every stage output stays in the store under its hash, so a team that retrains on a schedule fills
 * its bucket (or its one machine's folder) without end. What keeps an object:
 *
 * - the registry: every version of every model, with the files of the trees it names and the card its register stage
 *   stored (the caller's roots name it: src/registry/card.ts modelCardSha256);
 * - a stage-cache record written, or used by a hit, after the horizon (older ones are dropped with
 *   what only they keep: the next run of that work computes it again); a hit on an old record marks
 *   its outputs and the record before it hands them out (StageCache.get);
 * - a shared training checkpoint's pointer, and a finished training's `COMPLETE` mark in this host's checkpoints
 *   (`checkpointsDir`): the record of outputs a retry whose completion was lost returns (train-finished.ts);
 * - anything a kept JSON object names (a tree manifest names its files, a report its model), read
 *   for every kept object that starts like JSON, whatever its size;
 * - its age: an object written, or stored again by a put (`touched/` marks, artifact-store.ts
 *   `freshen`), after the horizon. A run in flight is kept by this, since its outputs are new and
 *   a put of old bytes marks them; the horizon must be longer than a run takes (at least two days).
 *
 * The dashboard's live training points of stages that wrote none since the horizon go too (a finished stage's curves
 * are also in its history artifact, kept or collected like any other), and so does the working state
 * of trainings abandoned before it: a shared checkpoint (pointer and files) and its lease that nothing
 * has written since. A training that runs refreshes its lease every few seconds, so it is never one. Uploads in parts
 * begun before the horizon and never finished (a worker killed mid-upload) are aborted: S3 keeps their parts otherwise.
 * This host's own checkpoint folders (`checkpointsDir`) go by local-checkpoints.ts's rules: of work
 * whose stage-cache record stays and came after their last write (done elsewhere), finished, or
 * unwritten since the horizon, and never while a running training holds their lock. Its baseline memos
 * (`baselinesDir`) go once unused since the horizon (baseline-memos.ts).
 *
 * A dry run (the default of `tempered store gc`) reports and deletes nothing. Collecting drops each
 * expired record only if it is still the one judged, then looks at each object (and its mark) again
 * just before deleting it: one stored again, or handed out by a hit, meanwhile stays. Anything that
 * cannot be read while marking stops the collection before it deletes.
 */
import type { Readable } from 'node:stream';
import { objectKey, touchedKey, type ArtifactStore } from './artifact-store.ts';
import { FolderBackend } from './folder-backend.ts';
import { readText, type ObjectBackend, type StoredObject, type UnfinishedUpload } from './object-backend.ts';
import { checkpointLeaseOf } from './shared-checkpoints.ts';
import { leasePrefix } from './shared-lease.ts';
import type { ProgressPoints } from './progress-points.ts';
import { lastUse, type StageCache } from './stage-cache.ts';
import { collectLocalCheckpoints, finishedMarks, LocalCheckpointsIncomplete, type LocalCheckpointsReport } from './local-checkpoints.ts';
import { collectBaselineMemos, type BaselineMemosReport } from './baseline-memos.ts';
import { forEachInFlight } from '../util/in-flight.ts';
import { STORE_PREFIXES } from './key-layout.ts';

/** `store gc --older-than`'s default, and the horizon a worker collects its own baseline memos at. */
export const DEFAULT_HORIZON_DAYS = 30;

/** The shortest horizon: a put marks an old object only once it is a day old (FRESHEN_AFTER_MS). */
export const MIN_HORIZON_MS = 2 * 24 * 60 * 60 * 1000;

const HEX64 = /^[0-9a-f]{64}$/;
/**
 * Requests at once while marking and sweeping: the reads of records and of kept objects, the record
 * drops and the object deletes (each two HEADs and a DELETE). bench/store-gc.bench.ts, README figures.
 */
export const REQUESTS_IN_FLIGHT = 8;
const NAMED = /[0-9a-f]{64}/g;

export interface GarbageOptions {
  store: ArtifactStore;
  cache: StageCache;
  /** Texts naming objects to keep whatever their age: the registry's versions as JSON, schedules' spec file URIs. */
  roots: AsyncIterable<string> | Iterable<string>;
  /** Objects and records older than this (and unreferenced, for objects) are garbage. */
  olderThanMs: number;
  /** Delete; otherwise only report what would go. */
  collect: boolean;
  now?: number;
  log?: (line: string) => void;
  /** The live training points of the dashboard; those of stages that wrote none since the horizon go too. */
  points?: ProgressPoints;
  /** Requests at once; default REQUESTS_IN_FLIGHT (bench/store-gc.bench.ts compares it with one). */
  inFlight?: number;
  /**
   * This host's training checkpoints (`TEMPERED_HOME/checkpoints`): folders of finished, completed
   * or abandoned trainings go too (local-checkpoints.ts). Left out, they are not looked at.
   */
  checkpointsDir?: string;
  /** This host's baseline memos (`TEMPERED_HOME/baselines`): those unused since the horizon go too. Left out, not looked at. */
  baselinesDir?: string;
  /** How long a checkpoint lock of a holder on another machine goes unrefreshed before it is taken over; default the horizon's length. */
  lockStaleMs?: number;
  /** Runs after an abandoned checkpoint was judged again, just before its pointer is deleted: where a test pauses gc. */
  beforePointerDelete?: (name: string) => Promise<void>;
}

export interface GarbageReport {
  /** Where the store is: the bucket (`s3://…`) or the folder. */
  store: string;
  horizon: string;
  collected: boolean;
  /** `dropped`: of the expired ones, those deleted (one written again or used meanwhile stays). */
  records: { kept: number; expired: number; dropped: number };
  objects: {
    kept: number;
    keptBytes: number;
    /** Unreferenced but written or stored again after the horizon (or of unknown age). */
    recent: number;
    recentBytes: number;
    garbage: number;
    garbageBytes: number;
    /** Deleted; fewer than `garbage` when some were stored again while collecting. */
    deleted: number;
    deletedBytes: number;
  };
  /** Damaged objects moved aside (`quarantine/`) before the horizon. */
  quarantine: { garbage: number; garbageBytes: number; deleted: number };
  /** Stages whose newest live training point is before the horizon: files on one machine, rows in a shared database. */
  points: { old: number; deleted: number };
  /**
   * Shared checkpoints (`checkpoints/`, `checkpoint-files/`) and leases (`leases/`) of trainings
   * that stopped before the horizon and never ran again: `abandoned` names, their bytes, `deleted`
   * (fewer when one was written again meanwhile).
   */
  checkpoints: { abandoned: number; abandonedBytes: number; deleted: number };
  /**
   * Leases alone (a finished training's released lease, or one of no checkpoint) unwritten since the
   * horizon, by name: `deleted` fewer when one was taken again meanwhile.
   */
  leases: { old: number; deleted: number };
  /**
   * Uploads in parts begun before the horizon and never finished (a worker killed while it uploaded a checkpoint file
   * or an artifact): their parts, which S3 keeps unlisted and billed until aborted. `aborted` once collected.
   */
  uploads: { abandoned: number; aborted: number };
  /** This host's checkpoint folders (when GarbageOptions.checkpointsDir was given). */
  localCheckpoints?: LocalCheckpointsReport;
  /** This host's baseline memos (when GarbageOptions.baselinesDir was given). */
  baselines?: BaselineMemosReport;
}

/** A training's working state in the store, abandoned: the keys of its pointer, files and lease. */
interface Abandoned {
  name: string;
  /** Its lease's prefix (`leases/<name>/`), looked at again before the delete. */
  lease: string;
  keys: string[];
  bytes: number;
}

/** Whether abandoned work holds a checkpoint (a pointer or files), not just a lease. */
function isCheckpoint(work: Abandoned): boolean {
  return work.keys.some((k) => !k.startsWith('leases/'));
}

interface Found {
  bytes: number;
  /** Milliseconds since the epoch; undefined when the store did not say. */
  modifiedMs: number | undefined;
}

export async function collectGarbage(opts: GarbageOptions): Promise<GarbageReport> {
  if (!(opts.olderThanMs >= MIN_HORIZON_MS))
    throw new RangeError(`the horizon must be at least ${MIN_HORIZON_MS} ms, not ${opts.olderThanMs}`);
  const now = opts.now ?? Date.now();
  const horizon = now - opts.olderThanMs;
  const log = opts.log ?? (() => {});
  const space = new Space(opts.store);
  const inFlight = opts.inFlight ?? REQUESTS_IN_FLIGHT;

  const marked = new Set<string>();
  const unread: string[] = [];
  const mark = (text: string) => {
    for (const [hex] of text.matchAll(NAMED))
      if (!marked.has(hex)) {
        marked.add(hex);
        unread.push(hex);
      }
  };

  const expired: { key: string; text: string }[] = [];
  let keptRecords = 0;
  // The work done whose records stay, by key, with when it was done: local checkpoints written
  // before that are read by no run again (local-checkpoints.ts).
  const completed = new Map<string, number>();
  for await (const { key, text } of opts.cache.records(inFlight)) {
    const { used, created } = recordTimes(text);
    if (used >= horizon) {
      keptRecords++;
      completed.set(key, created);
      mark(text);
    } else expired.push({ key, text });
  }
  for await (const text of opts.roots) mark(text);
  for await (const text of space.pointers()) mark(text);
  if (opts.checkpointsDir) for (const text of finishedMarks(opts.checkpointsDir)) mark(text);

  const objects = await space.objects();
  // What kept objects name is kept too, transitively: a tree's files, a report's model. Read whole,
  // however large (a manifest of many files), and a read that fails stops the collection before it
  // deletes anything: a manifest that could not be read would otherwise leave its files unkept.
  // By generations, a few reads at once: what one generation names is the next.
  while (unread.length)
    await forEachInFlight(unread.splice(0), inFlight, async (hex) => {
      if (!objects.has(hex)) return;
      const stream = await space.open(hex);
      if (stream) await scanNames(stream, mark);
    });

  const report: GarbageReport = {
    store: space.where,
    horizon: new Date(horizon).toISOString(),
    collected: opts.collect,
    records: { kept: keptRecords, expired: expired.length, dropped: 0 },
    objects: { kept: 0, keptBytes: 0, recent: 0, recentBytes: 0, garbage: 0, garbageBytes: 0, deleted: 0, deletedBytes: 0 },
    quarantine: { garbage: 0, garbageBytes: 0, deleted: 0 },
    points: { old: (await opts.points?.prune(horizon, true)) ?? 0, deleted: 0 },
    checkpoints: { abandoned: 0, abandonedBytes: 0, deleted: 0 },
    leases: { old: 0, deleted: 0 },
    uploads: { abandoned: 0, aborted: 0 },
  };
  const r = report.objects;
  const touched = await space.touched();
  const garbage: string[] = [];
  for (const [hex, o] of objects) {
    const used = Math.max(o.modifiedMs ?? Infinity, touched.get(hex) ?? -Infinity);
    if (marked.has(hex)) {
      r.kept++;
      r.keptBytes += o.bytes;
    } else if (used >= horizon) {
      r.recent++;
      r.recentBytes += o.bytes;
    } else {
      r.garbage++;
      r.garbageBytes += o.bytes;
      garbage.push(hex);
    }
  }
  const abandoned = await space.abandonedWork(horizon);
  const checkpoints = abandoned.filter(isCheckpoint);
  report.checkpoints.abandoned = checkpoints.length;
  report.checkpoints.abandonedBytes = checkpoints.reduce((n, a) => n + a.bytes, 0);
  report.leases.old = abandoned.length - checkpoints.length;
  const uploads = await space.unfinishedUploads(horizon);
  report.uploads.abandoned = uploads.length;
  const quarantined = await space.quarantined(horizon);
  report.quarantine.garbage = quarantined.length;
  report.quarantine.garbageBytes = quarantined.reduce((n, q) => n + q.bytes, 0);
  const localCheckpoints = (collect: boolean) =>
    collectLocalCheckpoints({ dir: opts.checkpointsDir!, horizon, completed, collect, staleMs: opts.lockStaleMs });
  const baselines = (collect: boolean) => collectBaselineMemos({ dir: opts.baselinesDir!, horizon, collect });
  if (!opts.collect) {
    if (opts.checkpointsDir) report.localCheckpoints = localCheckpoints(false);
    if (opts.baselinesDir) report.baselines = baselines(false);
    return report;
  }
  try {
    // First: this host's disk, whatever becomes of the store's sweep.
    if (opts.checkpointsDir) {
      try {
        report.localCheckpoints = localCheckpoints(true);
      } catch (e) {
        if (e instanceof LocalCheckpointsIncomplete) report.localCheckpoints = e.report;
        throw e;
      }
      const c = report.localCheckpoints;
      if (c.deleted) log(`deleted ${c.deleted} local checkpoint folders (${c.deletedBytes} bytes) from ${c.dir}`);
    }
    if (opts.baselinesDir) {
      const b = (report.baselines = baselines(true));
      if (b.deleted) log(`deleted ${b.deleted} baseline memos (${b.deletedBytes} bytes) from ${b.dir}`);
    }
    await sweep();
  } catch (e) {
    // What was deleted before the failure is reported with it, for the audit trail.
    throw new GarbageIncomplete(e, report);
  }
  log(`deleted ${r.deleted} objects (${r.deletedBytes} bytes) from ${space.where}`);
  return report;

  async function sweep(): Promise<void> {
    await forEachInFlight(expired, inFlight, async ({ key, text }) => {
      if (await opts.cache.evictIfUnchanged(key, text)) report.records.dropped++;
    });
    if (report.records.dropped) log(`dropped ${report.records.dropped} stage-cache records last used before ${report.horizon}`);
    await forEachInFlight(garbage, inFlight, async (hex) => {
      // Looked at again just before it goes: a put may have stored it again since the listing.
      const bytes = await space.deleteIfUnused(hex, horizon);
      if (bytes === undefined) return;
      // Counted as soon as it left the store, so a failure in the clean-up after is reported right.
      r.deleted++;
      r.deletedBytes += bytes;
      await space.forgetLocal(hex);
      if (touched.has(hex)) await space.dropMark(hex);
    });
    for (const q of quarantined) {
      await space.deleteQuarantined(q.name);
      report.quarantine.deleted++;
    }
    if (opts.points) report.points.deleted = await opts.points.prune(horizon, false);
    for (const work of abandoned)
      if (await space.deleteAbandoned(work, horizon, opts.beforePointerDelete))
        isCheckpoint(work) ? report.checkpoints.deleted++ : report.leases.deleted++;
    for (const u of uploads) {
      await space.abortUpload(u);
      report.uploads.aborted++;
    }
    if (report.uploads.aborted) log(`aborted ${report.uploads.aborted} uploads begun before ${report.horizon} and never finished`);
    // A mark whose object was already gone is litter. (A live object's mark stays: dropping it could
    // race a put that is marking the object now.)
    for (const [hex, at] of touched) if (!objects.has(hex) && at < horizon) await space.dropMark(hex);
  }
}

/** A collection that failed after it had deleted something: `report` says what. */
export class GarbageIncomplete extends Error {
  override name = 'GarbageIncomplete';
  constructor(
    override readonly cause: unknown,
    readonly report: GarbageReport,
  ) {
    super(`the collection stopped part-way (${report.objects.deleted} objects deleted): ${(cause as Error)?.message ?? cause}`);
  }
}

/**
 * A record's times, in ms, from one parse: `used`, when it was last written or used by a hit (`usedAt`), and `created`,
 * when its work was done (its `createdAt`; NaN when unknown). A record without a valid time counts as expired
 * (`used` -Infinity): dropping it costs one rerun of its stage.
 */
function recordTimes(text: string): { used: number; created: number } {
  try {
    const rec = JSON.parse(text) as { createdAt?: unknown; usedAt?: unknown };
    return { used: lastUse(rec), created: typeof rec.createdAt === 'string' ? Date.parse(rec.createdAt) : NaN };
  } catch {
    return { used: -Infinity, created: NaN };
  }
}

/** Bytes of an object looked at to tell JSON from a table or weights. */
const SNIFF_BYTES = 1024;

/**
 * Whether an object's first bytes are those of JSON: after white space, `{` or `[`, and no control
 * byte but tab and line ends. Binary files can start with `{` (a safetensors header length whose
 * low byte is 0x7B), but their first kilobyte holds NUL bytes.
 */
function sniffsJson(head: Buffer): boolean {
  let i = 0;
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x09 || head[i] === 0x0a || head[i] === 0x0d)) i++;
  if (head[i] !== 0x7b && head[i] !== 0x5b) return false;
  for (const b of head) if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return false;
  return true;
}

/**
 * Marks the object names (64 hex digits) in a stream that starts like JSON (sniffsJson on its first
 * kilobyte); other objects (Arrow tables, weights) are closed after that. Chunks are scanned with
 * the last 63 characters of the one before, so a name split between two is found.
 */
export async function scanNames(stream: Readable, mark: (text: string) => void): Promise<void> {
  let head: Buffer[] = [];
  let headBytes = 0;
  let tail = '';
  let sniffed = false;
  const scan = (buf: Buffer) => {
    const text = tail + buf.toString('latin1');
    mark(text);
    tail = text.slice(-63);
  };
  try {
    for await (const chunk of stream) {
      if (sniffed) {
        scan(chunk as Buffer);
        continue;
      }
      head.push(chunk as Buffer);
      headBytes += (chunk as Buffer).length;
      if (headBytes < SNIFF_BYTES) continue;
      const first = Buffer.concat(head);
      head = [];
      if (!sniffsJson(first.subarray(0, SNIFF_BYTES))) return;
      sniffed = true;
      scan(first);
    }
    // An object shorter than the sniff window.
    if (!sniffed && headBytes > 0) {
      const first = Buffer.concat(head);
      if (sniffsJson(first)) scan(first);
    }
  } finally {
    stream.destroy();
  }
}

/** The prefixes whose unfinished uploads gc aborts: every kind of key the store writes (key-layout.ts). */
export const UPLOAD_PREFIXES = STORE_PREFIXES;

/**
 * The objects gc looks at, through the one ObjectBackend interface: the bucket behind a worker's
 * cache, or, without TEMPERED_STORE, the local folder that is the store itself (the same
 * `sha256/<ab>/<hex>` layout, read as a FolderBackend: objects age by mtime, which a put of stored
 * bytes and a hit on an old record set).
 */
class Space {
  readonly where: string;
  private readonly backend: ObjectBackend;
  constructor(private readonly store: ArtifactStore) {
    this.backend = store.remote ?? new FolderBackend(store.root);
    this.where = this.backend.url;
  }

  async objects(): Promise<Map<string, Found>> {
    const found = new Map<string, Found>();
    for await (const o of this.backend.listObjects('sha256/')) {
      const hex = o.key.slice(o.key.lastIndexOf('/') + 1);
      if (HEX64.test(hex) && o.key === objectKey(hex)) found.set(hex, { bytes: o.bytes, modifiedMs: o.modified?.getTime() });
    }
    return found;
  }

  /** Each `touched/` mark's time, by object (none on the local folder, where puts set the mtime). */
  async touched(): Promise<Map<string, number>> {
    const marks = new Map<string, number>();
    for await (const o of this.backend.listObjects('touched/')) {
      const hex = o.key.slice(o.key.lastIndexOf('/') + 1);
      // A mark of unknown time counts as new: it keeps its object.
      if (HEX64.test(hex) && o.key === touchedKey(hex)) marks.set(hex, o.modified?.getTime() ?? Infinity);
    }
    return marks;
  }

  /** The texts of shared checkpoint pointers (an old-form one names a tree). */
  async *pointers(): AsyncIterable<string> {
    // A pointer that cannot be read fails the collection: it may name an old-form checkpoint tree.
    for await (const key of this.backend.list('checkpoints/')) {
      const text = await readText(this.backend, key);
      if (text !== undefined) yield text;
    }
  }

  /** The object's bytes, or undefined when it is gone. */
  open(hex: string): Promise<Readable | undefined> {
    return this.backend.read(objectKey(hex));
  }

  /** Deletes the object unless it was written or marked since the horizon; its size, or undefined if kept. */
  async deleteIfUnused(hex: string, horizon: number): Promise<number | undefined> {
    const [o, mark] = await Promise.all([this.backend.head(objectKey(hex)), this.backend.head(touchedKey(hex))]);
    if (!o) return undefined;
    const used = Math.max(o.modified?.getTime() ?? Infinity, mark ? (mark.modified?.getTime() ?? Infinity) : -Infinity);
    if (used >= horizon) return undefined;
    await this.backend.delete(objectKey(hex));
    return o.bytes;
  }

  /** After a delete from the bucket: this host's cached copy goes too (other workers' as their caches are pruned). */
  async forgetLocal(hex: string): Promise<void> {
    if (this.store.remote) await this.store.dropLocalCopy(hex);
  }

  async dropMark(hex: string): Promise<void> {
    await this.backend.delete(touchedKey(hex));
  }

  /**
   * Training state nothing has written since the horizon, by checkpoint: its pointer, its files and
   * its lease, all older than the horizon (a store that gives no time makes a key new). Leases of
   * other names, equally old, each on their own.
   */
  async abandonedWork(horizon: number): Promise<Abandoned[]> {
    const groups = new Map<string, Abandoned & { newest: number }>();
    const add = (name: string, lease: string, o: StoredObject & { key: string }) => {
      const g = groups.get(name) ?? { name, lease, keys: [], bytes: 0, newest: -Infinity };
      g.keys.push(o.key);
      g.bytes += o.bytes;
      g.newest = Math.max(g.newest, o.modified?.getTime() ?? Infinity);
      groups.set(name, g);
    };
    // A checkpoint's pointer, files and lease are one piece of work, named by the pointer's segment.
    const byLease = new Map<string, string>();
    const checkpoint = (segment: string, o: StoredObject & { key: string }) => {
      const lease = leasePrefix(checkpointLeaseOf(segment));
      byLease.set(lease, segment);
      add(`checkpoint ${segment}`, lease, o);
    };
    for await (const o of this.backend.listObjects('checkpoints/')) {
      const m = /^checkpoints\/([^/]+)\.json$/.exec(o.key);
      if (m) checkpoint(m[1]!, o);
    }
    for await (const o of this.backend.listObjects('checkpoint-files/')) {
      const m = /^checkpoint-files\/([^/]+)\/./.exec(o.key);
      if (m) checkpoint(m[1]!, o);
    }
    for await (const o of this.backend.listObjects('leases/')) {
      const m = /^(leases\/[^/]+\/)[^/]+$/.exec(o.key);
      if (!m) continue;
      const segment = byLease.get(m[1]!);
      add(segment === undefined ? `lease ${m[1]}` : `checkpoint ${segment}`, m[1]!, o);
    }
    return [...groups.values()].filter((g) => g.newest < horizon).map(({ newest: _, ...g }) => g);
  }

  /**
   * Deletes an abandoned checkpoint unless something of it was written since it was judged (a run of
   * the same work took its lease and resumed from it): the pointer first, so none names deleted
   * files, then the files, then the lease. Whether it was deleted. The pointer goes only if it is still the version
   * read before the judgement (ObjectBackend.deleteTagged): a claim that lands after the judgement (a training that
   * resumes from it) keeps it all, where an unconditional delete took the claim with it and failed that attempt.
   */
  async deleteAbandoned(work: Abandoned, horizon: number, beforePointerDelete?: (name: string) => Promise<void>): Promise<boolean> {
    const recent = (o: StoredObject | undefined) => !!o && (o.modified?.getTime() ?? Infinity) >= horizon;
    const pointer = work.keys.find((k) => k.startsWith('checkpoints/'));
    // Read before the heads: a write after this read makes the pointer's head recent, or its tag stale at the delete.
    const version = pointer === undefined ? undefined : await this.backend.readTagged(pointer);
    const heads = await Promise.all(work.keys.filter((k) => !k.startsWith(work.lease)).map((k) => this.backend.head(k)));
    if (heads.some(recent)) return false;
    // The lease by one listing: a generation written since the horizon (one taken since the judgement
    // is: a training that runs now, or is about to resume) keeps it all.
    for await (const o of this.backend.listObjects(work.lease)) if (recent(o)) return false;
    await beforePointerDelete?.(work.name);
    // (A pointer gone since the listing: another collection's delete; the rest goes as it would have.)
    if (version && (await this.backend.deleteTagged(pointer!, version.etag)) === 'conflict') return false;
    const rest = work.keys.filter((k) => k !== pointer);
    const order = (k: string) => (k.startsWith('checkpoint-files/') ? 0 : 1);
    for (const key of rest.sort((a, b) => order(a) - order(b))) await this.backend.delete(key);
    return true;
  }

  /**
   * Uploads in parts begun before the horizon and never finished: their writer was killed, since no upload runs for the
   * horizon (two days at least). One whose start the store does not say is kept. Only under the prefixes tempered writes
   * (UPLOAD_PREFIXES), as everything else gc deletes: a bucket without a prefix may hold another program's uploads.
   */
  async unfinishedUploads(horizon: number): Promise<UnfinishedUpload[]> {
    const old: UnfinishedUpload[] = [];
    if (this.backend.unfinishedUploads)
      for (const prefix of UPLOAD_PREFIXES)
        for await (const u of this.backend.unfinishedUploads(prefix)) if (u.started && u.started.getTime() < horizon) old.push(u);
    return old;
  }

  async abortUpload(upload: UnfinishedUpload): Promise<void> {
    await this.backend.abortUpload?.(upload);
  }

  /** Damaged objects moved aside before the horizon (a quarantine counts from its move: both stores set the time then). */
  async quarantined(horizon: number): Promise<{ name: string; bytes: number }[]> {
    const old: { name: string; bytes: number }[] = [];
    for await (const o of this.backend.listObjects('quarantine/'))
      if (o.modified && o.modified.getTime() < horizon) old.push({ name: o.key, bytes: o.bytes });
    return old;
  }

  async deleteQuarantined(name: string): Promise<void> {
    await this.backend.delete(name);
  }
}
