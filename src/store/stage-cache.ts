/**
 * Stage cache: maps a cache key to the outputs a stage produced for it. A key hashes everything that
 * determines the output: the stage kind and its code version, the resolved config (upstream
 * artifact references inside it carry their sha256) and the hashes of external inputs such as
 * source files. A hit is only served when every artifact it names (and every file of a tree) is
 * still in the store and still hashes to its name; otherwise the record is evicted and the damaged
 * object quarantined, so the stage runs again and stores its output afresh.
 *
 * With a shared store the records are shared too (shared-records.ts: `cache/<ab>/<key>.json` in the
 * store, or the database's `stage_cache` table when there is one), so a stage done on one worker is a
 * hit on every other; the local folder keeps a copy of the records this worker saw.
 */
import { existsSync, promises as fsp, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { IntegrityError, InputError } from '../errors.ts';
import { diskFullError, isDiskFull } from '../util/disk-full.ts';
import { hashJson } from '../util/canonical-json.ts';
import { isArtifactRef, type ArtifactRef, type StageOutputs } from '../types.ts';
import type { ArtifactStore } from './artifact-store.ts';
import { ObjectStoreRecords, type SharedRecords } from './shared-records.ts';

export interface CacheKeyParts {
  kind: string;
  codeVersion: string;
  config: unknown;
  externalInputs?: string[];
}

export interface CacheRecord {
  key: string;
  kind: string;
  outputs: StageOutputs;
  /** The run and stage that produced it, for lineage; the workflow execution too (records written since 4 Dec). */
  producedBy: { runId: string; stageId: string; executionId?: string };
  createdAt: string;
  /**
   * When a hit last used it, if that was more than a day after `createdAt` (set by `get`, at most once
   * a day): garbage collection keeps a record, and what it names, by the later of the two.
   */
  usedAt?: string;
}

/** When a record was written or last used by a hit, in ms; -Infinity when it says neither validly. */
export function lastUse(rec: { createdAt?: unknown; usedAt?: unknown }): number {
  const times = [rec.createdAt, rec.usedAt].map((t) => (typeof t === 'string' ? Date.parse(t) : NaN)).filter(Number.isFinite);
  return times.length ? Math.max(...times) : -Infinity;
}

export function cacheKey(parts: CacheKeyParts): string {
  return hashJson({ v: 1, ...parts });
}

/** Whether `rec` has the shape of a record of `key` (the outputs' references are verified apart). */
function wellFormed(rec: unknown, key: string): rec is CacheRecord {
  if (typeof rec !== 'object' || rec === null) return false;
  const r = rec as Partial<CacheRecord>;
  const by = r.producedBy;
  return (
    r.key === key &&
    typeof r.kind === 'string' &&
    typeof r.outputs === 'object' &&
    r.outputs !== null &&
    !Array.isArray(r.outputs) &&
    typeof by === 'object' &&
    by !== null &&
    typeof by.runId === 'string' &&
    typeof by.stageId === 'string' &&
    (by.executionId === undefined || typeof by.executionId === 'string')
  );
}

function collectRefs(value: unknown, out: ArtifactRef[] = []): ArtifactRef[] {
  if (isArtifactRef(value)) out.push(value);
  else if (Array.isArray(value)) value.forEach((v) => collectRefs(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => collectRefs(v, out));
  return out;
}

/**
 * The references the outputs of `text`, a record of `key`, hold; undefined when it is no well-formed record of that
 * key, which `get` reads as a miss (`tempered import-home` leaves such a record behind).
 */
export function recordRefs(text: string, key: string): ArtifactRef[] | undefined {
  let rec: unknown;
  try {
    rec = JSON.parse(text);
  } catch {
    return undefined;
  }
  return wellFormed(rec, key) ? collectRefs(rec.outputs) : undefined;
}

/** The record files of a local cache folder (`<dir>/<ab>/<key>.json`), each with its text; one that cannot be read is skipped. */
export async function* localRecordFiles(dir: string): AsyncIterable<{ key: string; text: string; path: string }> {
  for (const sub of (await fsp.readdir(dir).catch(() => [] as string[])).sort())
    for (const name of (await fsp.readdir(join(dir, sub)).catch(() => [] as string[])).sort()) {
      const key = /^(.+)\.json$/.exec(name)?.[1];
      if (!key) continue;
      const path = join(dir, sub, name);
      const text = await fsp.readFile(path, 'utf8').catch(() => undefined);
      if (text !== undefined) yield { key, text, path };
    }
}

export interface StageCacheOptions {
  /** A background upload that failed (after the client's own retries); the default writes a warning to stderr. */
  onUploadError?: (key: string, error: unknown) => void;
  /**
   * Where the records every worker shares live. Default: the store's shared backend, when it has one
   * (`cache/<ab>/<key>.json`); none for a store that is only a local folder.
   */
  shared?: SharedRecords;
}

export class StageCache {
  private readonly uploading = new Map<string, Promise<void>>();
  private readonly onUploadError: (key: string, error: unknown) => void;
  private readonly shared: SharedRecords | undefined;

  constructor(
    private readonly dir: string,
    private readonly store: ArtifactStore,
    opts: StageCacheOptions = {},
  ) {
    mkdirSync(dir, { recursive: true });
    this.shared = opts.shared ?? (store.remote ? new ObjectStoreRecords(store.remote) : undefined);
    this.onUploadError =
      opts.onUploadError ??
      ((key, e) =>
        console.error(
          `stage cache: the shared copy of record ${key.slice(0, 12)}… was not stored (${(e as Error)?.message ?? e}); other workers will run that stage again instead of reusing it`,
        ));
  }

  private path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  async get(key: string): Promise<CacheRecord | undefined> {
    const p = this.path(key);
    let text: string | undefined;
    let shared = false;
    if (existsSync(p)) text = await fsp.readFile(p, 'utf8').catch(() => undefined);
    else if (this.shared && /^[0-9a-f]{64}$/.test(key)) {
      text = await this.shared.get(key);
      shared = true;
    }
    if (text === undefined) return undefined;
    let rec: unknown;
    try {
      rec = JSON.parse(text);
    } catch {
      rec = undefined;
    }
    // An unreadable or malformed record (the shared copy comes from another host, or whoever can
    // write the bucket) is a miss, never a hit with missing outputs or a crash: the rerun replaces it.
    if (!wellFormed(rec, key)) {
      if (shared) await this.evict(key);
      return undefined;
    }
    if (shared) await this.writeLocal(p, text);
    const refs = collectRefs(rec.outputs);
    for (const ref of refs) {
      try {
        await this.store.verifyDeep(ref);
      } catch (e) {
        // A malformed reference is the record's fault, not the user's: a miss like a damaged object.
        if (!(e instanceof IntegrityError) && !(e instanceof InputError)) throw e;
        // Missing or damaged (verify quarantined it): the stage must run again and store it afresh.
        await this.evict(key);
        return undefined;
      }
    }
    // An old record's outputs are marked in use before they are handed out, and the record says it
    // was used, so a garbage collection running now or soon takes neither from the run (garbage.ts).
    if (Date.now() - lastUse(rec) > this.store.freshenAfterMs) {
      await this.uploading.get(key);
      if (!shared && this.shared && /^[0-9a-f]{64}$/.test(key)) {
        // This worker's copy is old: if another worker has replaced the shared record since, that
        // one is the record now, and writing this copy back would undo it for every worker.
        const current = await this.shared.get(key);
        if (current !== undefined && current !== text) {
          await fsp.rm(p, { force: true });
          return this.get(key);
        }
      }
      for (const ref of refs) await this.store.keepAlive(ref);
      const used: CacheRecord = { ...rec, usedAt: new Date().toISOString() };
      await this.put(used);
      return used;
    }
    return rec;
  }

  /**
   * Records `rec`: the local copy, and the shared copy (with a shared store).
   *
   * `upload: 'background'` returns once the local copy is written and leaves the shared copy's
   * upload running (`flush()` waits for it). A stage then completes without waiting a round trip to
   * the store: the record only makes later runs faster, this worker finds its local copy at once,
   * and an upload lost to a crash or a failed request costs other workers one miss, never a wrong
   * hit. Against a remote S3 service that round trip is most of what a short stage's record costs.
   */
  async put(rec: CacheRecord, opts: { upload?: 'await' | 'background' } = {}): Promise<void> {
    const text = JSON.stringify(rec, null, 2);
    if (opts.upload !== 'background') {
      // The local copy and the shared one side by side: a stage waits for the slower, not both.
      await Promise.all([this.writeLocal(this.path(rec.key), text), this.shared?.put(rec.key, text)]);
      return;
    }
    await this.writeLocal(this.path(rec.key), text);
    if (!this.shared) return;
    // After any upload of the same key still under way, so the last put is the one stored and
    // flush() and evict() wait for both.
    const upload = Promise.resolve(this.uploading.get(rec.key))
      .then(() => this.shared!.put(rec.key, text))
      .catch((e: unknown) => {
        try {
          this.onUploadError(rec.key, e);
        } catch {
          // A reporter that fails must not turn a lost record into an unhandled rejection.
        }
      })
      .finally(() => {
        if (this.uploading.get(rec.key) === upload) this.uploading.delete(rec.key);
      });
    this.uploading.set(rec.key, upload);
  }

  /** Waits for the shared copies of records put with `upload: 'background'` (a worker calls it before it exits). */
  async flush(): Promise<void> {
    while (this.uploading.size) await Promise.all(this.uploading.values());
  }

  /** Records whose shared copy is still being uploaded. */
  get pendingUploads(): number {
    return this.uploading.size;
  }

  private async writeLocal(p: string, text: string): Promise<void> {
    const tmp = `${p}.${randomBytes(4).toString('hex')}.tmp`;
    // Renamed into place, so a reader never sees half a record. Not fsynced: after a power cut a
    // record may be lost, or come back cut short or zeroed, and get() treats each of those as a
    // miss (it must parse, name its own key, and every artifact it names is verified), so the stage
    // runs again and writes it afresh. A flush to disk would cost every stage a millisecond or more
    // to save a rerun after a crash.
    try {
      await fsp.mkdir(join(p, '..'), { recursive: true });
      await fsp.writeFile(tmp, text, { flag: 'wx' });
      await fsp.rename(tmp, p);
    } catch (e) {
      // A record cut short by a full disk would hold the space it lacked until the cache is cleared.
      await fsp.rm(tmp, { force: true });
      // Named here, where the folder and the record's size are known: a lookup that refreshes a record writes too,
      // and reached the workflow as a bare ENOSPC that named no disk.
      throw isDiskFull(e) ? diskFullError(e, [this.dir], { at: this.dir, neededBytes: Buffer.byteLength(text) }) : e;
    }
  }

  async evict(key: string): Promise<void> {
    // An upload still under way would bring the record back after the delete.
    await this.uploading.get(key);
    await fsp.rm(this.path(key), { force: true });
    if (this.shared && /^[0-9a-f]{64}$/.test(key)) await this.shared.delete(key);
  }

  /**
   * Evicts the record only where its text is still `text`: garbage collection drops what it judged
   * expired, not a record of the same key written (or refreshed by a hit) since.
   */
  async evictIfUnchanged(key: string, text: string): Promise<boolean> {
    await this.uploading.get(key);
    const p = this.path(key);
    let gone = false;
    if ((await fsp.readFile(p, 'utf8').catch(() => undefined)) === text) {
      await fsp.rm(p, { force: true });
      gone = true;
    }
    if (this.shared && /^[0-9a-f]{64}$/.test(key)) gone = (await this.shared.deleteIf(key, text)) || gone;
    return gone;
  }

  /**
   * Every record this cache sees, each key once: the shared records and then this host's local
   * copies of records the shared ones lack (the whole cache, without a shared store).
   */
  async *records(readAhead?: number): AsyncIterable<{ key: string; text: string }> {
    const seen = new Set<string>();
    if (this.shared)
      for await (const r of this.shared.entries(readAhead)) {
        seen.add(r.key);
        yield r;
      }
    for await (const r of localRecordFiles(this.dir)) if (!seen.has(r.key)) yield r;
  }

  /**
   * Evicts every record whose outputs name the object `sha256`, directly or as a file of a tree.
   * Called when a stage finds that object damaged, so a rerun recomputes whatever produced it.
   * Returns the evicted keys.
   */
  async evictReferencing(sha256: string): Promise<string[]> {
    const evicted: string[] = [];
    if (this.shared)
      for await (const { key, text } of this.shared.entries())
        if (await this.references(text, sha256)) {
          await this.evict(key);
          evicted.push(key);
        }
    for await (const { key, text, path } of localRecordFiles(this.dir))
      if (await this.references(text, sha256)) {
        await fsp.rm(path, { force: true });
        if (!evicted.includes(key)) {
          // Not seen in the shared records: its upload may still be under way, and evict waits for it.
          if (this.uploading.has(key)) await this.evict(key);
          evicted.push(key);
        }
      }
    return evicted;
  }

  /** Whether a record's text names `sha256` among its outputs (false for text that is not a record). */
  private async references(text: string, sha256: string): Promise<boolean> {
    let rec: CacheRecord | null;
    try {
      rec = JSON.parse(text) as CacheRecord | null;
    } catch {
      return false;
    }
    if (typeof rec !== 'object' || rec === null) return false;
    for (const ref of collectRefs(rec.outputs)) if (ref.sha256 === sha256 || (await this.store.treeContains(ref, sha256))) return true;
    return false;
  }
}
