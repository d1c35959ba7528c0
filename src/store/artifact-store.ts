/**
 * Content-addressed artifact store: every file is kept under its sha256, written atomically and
 * verified on read. Stage outputs carry `ArtifactRef`s, never the bytes.
 *
 * Layout: <root>/sha256/<first two hex>/<hex>; temporary files live in <root>/tmp on the same
 * filesystem so the final rename is atomic.
 *
 * With a remote backend (`TEMPERED_STORE=s3://…`, see open-store.ts) the folder is this worker's
 * read-through cache: every put is stored locally and then in the backend (create-only, checksummed)
 * before its reference is returned, and a read of an object that is not in the folder, or whose
 * cached copy no longer hashes to its name, fetches it from the backend, re-hashing it on the way.
 * Stages still read local files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, existsSync, lstatSync, mkdirSync, promises as fsp, readdirSync } from 'node:fs';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { IntegrityError, InputError } from '../errors.ts';
import { diskFullError, isDiskFull } from '../util/disk-full.ts';
import { writeFileDurable } from '../util/durable-write.ts';
import { sha256File } from '../util/hash-file.ts';
import { processAlive } from '../util/process-alive.ts';
import type { ArtifactRef } from '../types.ts';
import { ObjectSizeMismatch, type ObjectBackend } from './object-backend.ts';
import { downloadObject } from './object-download.ts';
import { KEY_PREFIXES } from './key-layout.ts';

const URI_PREFIX = 'artifact://sha256/';
const HEX64 = /^[0-9a-f]{64}$/;

export function uriFor(sha256: string): string {
  return `${URI_PREFIX}${sha256}`;
}

/** Parses an artifact URI; anything that is not exactly `artifact://sha256/<64 hex>` is rejected. */
export function parseUri(uri: string): string {
  if (!uri.startsWith(URI_PREFIX))
    throw new InputError(`not an artifact URI: ${JSON.stringify(uri)}`, { hint: 'expected artifact://sha256/<hex>' });
  const hex = uri.slice(URI_PREFIX.length);
  if (!HEX64.test(hex))
    throw new InputError(`malformed artifact URI: ${JSON.stringify(uri)}`, { hint: 'the hash must be 64 lower-case hex digits' });
  return hex;
}

/**
 * Checks a relative name used inside an artifact tree (a manifest entry, a file in a model folder):
 * no absolute paths, no `..`, no empty segments. Returns the normalised name.
 */
export function safeRelativeName(name: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new InputError('empty file name in artifact tree');
  if (isAbsolute(name) || name.includes('\0') || name.includes('\\'))
    throw new InputError(`unsafe file name in artifact tree: ${JSON.stringify(name)}`);
  const norm = normalize(name);
  if (norm.split(sep).some((s) => s === '..' || s === '') || norm.startsWith('.' + sep) || norm === '.') {
    throw new InputError(`unsafe file name in artifact tree: ${JSON.stringify(name)}`, {
      hint: 'names must stay inside the tree (no .. or absolute paths)',
    });
  }
  return norm;
}

export interface PutOptions {
  mediaType: string;
  rows?: number;
  schema?: Record<string, string>;
}

/** A file listed in a tree manifest: a folder stored as one JSON artifact naming its files. */
export interface TreeEntry {
  name: string;
  sha256: string;
  bytes: number;
}
export const TREE_MEDIA = 'application/vnd.tempered.tree+json';

/** What one `pruneCache` round did. */
export interface PruneResult {
  removed: number;
  freedBytes: number;
  keptBytes: number;
  quarantined: number;
}

/** The folder in a stage's scratch folder that holds the links to its inputs (`pinningInto`). */
export const INPUT_PINS = '.inputs';

/** A put that finds its object stored longer ago than this marks it in use again (`freshen`). */
export const FRESHEN_AFTER_MS = 24 * 60 * 60 * 1000;

/** The backend key of the mark that an old object was stored again (see `freshen`). */
export function touchedKey(hex: string): string {
  return `${KEY_PREFIXES.touched}${hex.slice(0, 2)}/${hex}`;
}

/** The backend key of an object: the same two-level layout as the local folder. */
export function objectKey(hex: string): string {
  return `${KEY_PREFIXES.objects}${hex.slice(0, 2)}/${hex}`;
}

export interface ArtifactStoreOptions {
  /** The shared store (S3 or a shared folder); the local folder is then this worker's cache of it. */
  remote?: ObjectBackend;
  /** A put that finds its object stored longer ago than this marks it (`freshen`); default FRESHEN_AFTER_MS. */
  freshenAfterMs?: number;
  /** See `pinningInto`. */
  pinDir?: string;
}

export class ArtifactStore {
  readonly root: string;
  readonly remote: ObjectBackend | undefined;
  private readonly tmpDir: string;

  private readonly pinDir: string | undefined;
  /** See ArtifactStoreOptions.freshenAfterMs. */
  readonly freshenAfterMs: number;
  private pinDirMade: Promise<void> | undefined;

  constructor(root: string, opts: ArtifactStoreOptions = {}) {
    this.root = root;
    this.remote = opts.remote;
    this.pinDir = opts.pinDir;
    this.freshenAfterMs = opts.freshenAfterMs ?? FRESHEN_AFTER_MS;
    this.tmpDir = join(root, 'tmp');
    // A pinning view (one per stage) shares a store whose folders exist already.
    if (opts.pinDir) return;
    mkdirSync(join(root, 'sha256'), { recursive: true });
    mkdirSync(this.tmpDir, { recursive: true });
  }

  /**
   * The same store, except that `verify` and `localPath` return a hard link in `dir` (made on first
   * use, on the store's filesystem) instead of the cached copy's own path. A stage gets such a store:
   * `pruneCache` may delete the cached copy of an input the stage holds the path of (it reopens its
   * test table for every model it evaluates, hours apart), and the link keeps the file for the
   * stage's life at no cost in space. The stage's scratch folder, which holds `dir`, goes with it.
   */
  pinningInto(dir: string): ArtifactStore {
    return this.remote ? new ArtifactStore(this.root, { remote: this.remote, pinDir: dir, freshenAfterMs: this.freshenAfterMs }) : this;
  }

  /** `path`, the verified copy of `hex`, as a link in the pin folder (see `pinningInto`). */
  private async pinned(hex: string, path: string): Promise<string> {
    if (!this.pinDir) return path;
    const pin = join(this.pinDir, hex);
    this.pinDirMade ??= fsp.mkdir(this.pinDir, { recursive: true }).then(
      () => undefined,
      (e: unknown) => {
        this.pinDirMade = undefined;
        throw e;
      },
    );
    await this.pinDirMade;
    for (let attempt = 0; ; attempt++) {
      try {
        await fsp.link(path, pin);
        return pin;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Pinned before: the same verified bytes (read-only, named by their hash).
        if (code === 'EEXIST') return pin;
        // Pruned between the check and the link: fetch it again, once.
        if (code === 'ENOENT' && attempt === 0) {
          path = (await this.ensureLocal(hex)).path;
          continue;
        }
        // A pin folder on another filesystem, or one without hard links: the stage still runs, unpinned.
        if (code === 'EXDEV' || code === 'EPERM' || code === 'ENOTSUP') return path;
        throw e;
      }
    }
  }

  private objectPath(hex: string): string {
    return join(this.root, 'sha256', hex.slice(0, 2), hex);
  }

  /**
   * Path of a stored artifact in the local folder after checking the reference names a well-formed
   * object that exists there. Never fetches: with a remote backend use `verify` or `localPath`.
   */
  pathOf(ref: Pick<ArtifactRef, 'uri'> | string): string {
    const hex = parseUri(typeof ref === 'string' ? ref : ref.uri);
    const path = this.objectPath(hex);
    let st;
    try {
      st = lstatSync(path);
    } catch {
      throw new IntegrityError(`artifact ${hex} is not in the store at ${this.root}`, { sha256: hex });
    }
    if (!st.isFile()) throw new IntegrityError(`artifact ${hex} is not a regular file (symlinks are rejected)`, { sha256: hex });
    return path;
  }

  /** Whether an object exists in the local folder (not whether it is intact: `verify` re-hashes it). */
  has(sha256: string): boolean {
    return HEX64.test(sha256) && existsSync(this.objectPath(sha256));
  }

  /** Whether the stored object's content still hashes to its name; false when absent or damaged. */
  private async intact(hex: string): Promise<boolean> {
    const path = this.objectPath(hex);
    const st = await fsp.lstat(path).catch(() => undefined);
    if (!st?.isFile()) return false;
    return (await sha256File(path)).sha256 === hex;
  }

  /**
   * Moves a damaged object out of the way (to <root>/quarantine, kept for inspection), so that the
   * next put of the right bytes stores them afresh and `has` no longer reports it.
   */
  async quarantine(hex: string): Promise<void> {
    if (!HEX64.test(hex)) return;
    const dir = join(this.root, 'quarantine');
    await fsp.mkdir(dir, { recursive: true });
    const aside = join(dir, `${hex}.${Date.now()}.${randomBytes(3).toString('hex')}`);
    const moved = await fsp.rename(this.objectPath(hex), aside).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
        return false;
      },
    );
    // A rename keeps the mtime, by which garbage collection ages quarantined objects: kept from now.
    if (moved) await this.touchLocal(aside);
  }

  /** Sets a local file's times to now; false when it is gone. */
  private async touchLocal(path: string): Promise<boolean> {
    const now = new Date();
    return fsp.utimes(path, now, now).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
        return false;
      },
    );
  }

  /** Deletes this host's cached copy of an object the shared store no longer holds (garbage collection). */
  async dropLocalCopy(hex: string): Promise<void> {
    if (HEX64.test(hex)) await fsp.rm(this.objectPath(hex), { force: true });
  }

  /** A fresh temp path inside the store, for writers that produce a file and then `putFile(..., {move: true})`. */
  tempPath(suffix = ''): string {
    return join(this.tmpDir, `${Date.now()}-${process.pid}-${randomBytes(6).toString('hex')}${suffix}`);
  }

  /** Adds a file's content; with `move`, the source (which must be on the store's filesystem) is renamed in. */
  async putFile(src: string, opts: PutOptions & { move?: boolean }): Promise<ArtifactRef> {
    const st = lstatSync(src);
    if (st.isSymbolicLink() || !st.isFile()) throw new InputError(`${src} is not a regular file (symlinks are not stored)`);
    let staged = src;
    let hex: string;
    let bytes: number;
    // With a remote backend the local copy is a cache (re-hashed on every read, fetched again when
    // torn) and the backend holds the durable one, so the local fsync is skipped.
    const sync = !this.remote;
    if (!(opts.move && src.startsWith(this.tmpDir + sep))) {
      // The kernel copies (copy_file_range), then the copy itself is hashed: what is stored is what
      // is named, even if the source changes meanwhile, and no bytes pass through JS buffers on the
      // way in (bench/store.bench.ts, local put; figures in the README).
      staged = this.tempPath();
      try {
        await fsp.copyFile(src, staged, fsConstants.COPYFILE_EXCL);
      } catch (e) {
        await fsp.rm(staged, { force: true });
        throw isDiskFull(e) ? diskFullError(e, [this.root], { neededBytes: st.size }) : e;
      }
    }
    try {
      ({ sha256: hex, bytes } = await sha256File(staged));
      if (sync) {
        // Read-only is enough for fsync, and the kernel copy keeps the source's mode (0444 for a read-only source).
        const fh = await fsp.open(staged, 'r');
        await fh.sync();
        await fh.close();
      }
    } catch (e) {
      if (staged !== src) await fsp.rm(staged, { force: true });
      throw e;
    }
    return this.commit(staged, hex, bytes, opts);
  }

  async putBytes(data: Uint8Array | string, opts: PutOptions): Promise<ArtifactRef> {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const staged = this.tempPath();
    await writeFileDurable(staged, buf).catch((e: unknown) => {
      throw isDiskFull(e) ? diskFullError(e, [this.root], { neededBytes: buf.length }) : e;
    });
    return this.commit(staged, createHash('sha256').update(buf).digest('hex'), buf.length, opts);
  }

  async putJson(value: unknown, mediaType = 'application/json'): Promise<ArtifactRef> {
    return this.putBytes(JSON.stringify(value, null, 2) + '\n', { mediaType });
  }

  private async commit(staged: string, hex: string, bytes: number, opts: PutOptions): Promise<ArtifactRef> {
    await this.commitLocal(staged, hex);
    // A reference is handed out only once the shared store holds the object: another worker may read it next.
    if (this.remote) await this.upload(hex, bytes);
    const ref: ArtifactRef = { uri: uriFor(hex), sha256: hex, bytes, mediaType: opts.mediaType };
    if (opts.rows !== undefined) ref.rows = opts.rows;
    if (opts.schema !== undefined) ref.schema = opts.schema;
    return ref;
  }

  /** Stores an object in the backend unless it is there already (create-only, so concurrent writers never clobber). */
  private async upload(hex: string, bytes: number): Promise<void> {
    const remote = this.remote!;
    const key = objectKey(hex);
    const there = await remote.head(key);
    if (there?.bytes === bytes) {
      await this.freshen(hex, bytes, there.modified);
      return;
    }
    // A wrong-sized object under this name is damage: move it aside and store the right bytes.
    if (there) await remote.quarantine(key);
    const r = await remote.putFile(key, this.objectPath(hex), { sha256: hex, bytes, ifAbsent: true });
    if (r === 'exists') {
      const now = await remote.head(key);
      if (now?.bytes !== bytes)
        throw new IntegrityError(`artifact ${hex} in ${remote.url} has ${now?.bytes} bytes, expected ${bytes}`, { sha256: hex });
    }
  }

  /**
   * Marks an object that a put found already stored, and stored long ago, as in use again, so that
   * garbage collection (garbage.ts), which collects unreferenced objects by age, does not take it
   * while the reference this put hands out is on its way into a record or the registry. Objects
   * are immutable, so the mark is a small object of its own (`touched/…`) rather than a rewrite.
   */
  private async freshen(hex: string, bytes: number, modified: Date | undefined): Promise<void> {
    if (!modified || Date.now() - modified.getTime() < this.freshenAfterMs) return;
    const remote = this.remote!;
    await remote.putBytes(touchedKey(hex), Buffer.from(new Date().toISOString()), { ifAbsent: false });
    // A collection that looked at the object before the mark landed may have deleted it meanwhile.
    if (!(await remote.head(objectKey(hex))))
      await remote.putFile(objectKey(hex), this.objectPath(hex), { sha256: hex, bytes, ifAbsent: true });
  }

  private async commitLocal(staged: string, hex: string): Promise<void> {
    const final = this.objectPath(hex);
    // An existing object is only trusted after re-hashing it: a damaged one (bit rot, a torn copy,
    // a hand edit) is replaced by these bytes instead of staying wrong forever. Only what was found
    // damaged is moved aside: an object that was absent when looked at may have been stored since by a
    // concurrent put of the same bytes, and the rename below replaces it atomically (moving it aside
    // first would leave a moment with no file for that put's upload or reader to open).
    const found = lstatSync(final, { throwIfNoEntry: false });
    // Without a backend this folder is the store, and garbage collection ages its objects by mtime:
    // a put of bytes already here uses them again (see freshen). Marked before the staged copy goes,
    // so an object collected meanwhile (ENOENT) is stored from it instead.
    const damaged = found !== undefined && !(await this.intact(hex));
    const reused = found !== undefined && !damaged && (this.remote !== undefined || (await this.touchLocal(final)));
    if (reused) {
      await fsp.rm(staged, { force: true });
    } else {
      if (damaged) await this.quarantine(hex);
      await fsp.mkdir(join(this.root, 'sha256', hex.slice(0, 2)), { recursive: true });
      await fsp.chmod(staged, 0o444);
      await fsp.rename(staged, final);
      // The rename is durable only once the directory entry is on disk.
      const dh = await fsp.open(join(this.root, 'sha256', hex.slice(0, 2)), 'r');
      await dh.sync().catch(() => undefined);
      await dh.close();
    }
  }

  /**
   * Re-hashes a stored artifact; throws IntegrityError when size or hash differ from the reference.
   * An object whose content no longer hashes to its own name is quarantined, so the stage that
   * produces it stores it afresh when it runs again. With a remote backend a missing or damaged
   * local copy is fetched again first.
   */
  async verify(ref: ArtifactRef): Promise<string> {
    const name = parseUri(ref.uri);
    const { path, bytes } = await this.ensureLocal(name, Number.isSafeInteger(ref.bytes) ? ref.bytes : undefined);
    if (name !== ref.sha256) throw new IntegrityError(`artifact reference names ${name} but says sha256 ${ref.sha256}`, { sha256: name });
    if (bytes !== ref.bytes)
      throw new IntegrityError(`artifact ${ref.sha256} has ${bytes} bytes on disk, the reference says ${ref.bytes}`, { sha256: name });
    return this.pinned(name, path);
  }

  /** A verified local copy of the object an artifact URI names (fetched from the remote backend when needed). */
  async localPath(uri: string): Promise<string> {
    const hex = parseUri(uri);
    return this.pinned(hex, (await this.ensureLocal(hex)).path);
  }

  /** Hashes the local copy of `hex`; fetches it from the backend when absent or damaged. */
  private async ensureLocal(hex: string, expectBytes?: number): Promise<{ path: string; bytes: number }> {
    const path = this.objectPath(hex);
    const st = await fsp.lstat(path).catch(() => undefined);
    if (st && !st.isFile()) {
      if (!this.remote) throw new IntegrityError(`artifact ${hex} is not a regular file (symlinks are rejected)`, { sha256: hex });
      await this.quarantine(hex);
    } else if (st) {
      // A copy pruned between the lstat and the open counts as absent, like one pruned while hashed.
      const got = await sha256File(path).catch((e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT' && this.remote) return undefined;
        throw e;
      });
      if (got?.sha256 === hex) {
        if (!this.remote) return { path, bytes: got.bytes };
        // Marks the copy as used now, for pruneCache (the access time, which mounts with relatime
        // update only now and then; the modification time stays the object's own). A copy pruned
        // while it was hashed is fetched again below.
        const there = await fsp.utimes(path, new Date(), st.mtime).then(
          () => true,
          (e: NodeJS.ErrnoException) => e.code !== 'ENOENT',
        );
        if (there) return { path, bytes: got.bytes };
      } else if (got) {
        await this.quarantine(hex);
        if (!this.remote)
          throw new IntegrityError(
            `artifact ${hex} is corrupt: its content hashes to ${got.sha256} (moved to ${join(this.root, 'quarantine')})`,
            { sha256: hex },
          );
      }
    } else if (!this.remote) {
      // Also what a worker without the team's TEMPERED_STORE meets when it reads another host's output.
      throw new IntegrityError(
        `artifact ${hex} is not in the store at ${this.root} (this host's folder: TEMPERED_STORE is not set; where workers share a store, each needs it)`,
        { sha256: hex },
      );
    }
    return { path, bytes: await this.fetch(hex, expectBytes) };
  }

  /**
   * Downloads an object into a temp file of the local folder, hashing it on the way, and renames it
   * in only once its bytes hash to its name; an object that does not, twice, is quarantined in the
   * backend and reported. Transient faults are retried: the SDK retries failed requests, a range whose body
   * breaks off is resumed (ranged-download.ts), and a download that still fails is started over
   * (3 attempts). The temp file is removed whatever happens.
   */
  private async fetch(hex: string, expectBytes?: number): Promise<number> {
    const remote = this.remote!;
    const key = objectKey(hex);
    let mismatched: string | undefined;
    for (let attempt = 1; ; attempt++) {
      const staged = this.tempPath();
      try {
        const got = await downloadObject(remote, key, staged, expectBytes).catch((e: Error) => {
          // The bucket's object is larger than the reference says: one of them is wrong, and nothing
          // is downloaded to find out which (a server may claim any size). Not quarantined: the
          // object may be right and the reference (a hostile cache record, say) wrong; a wrong-sized
          // object is replaced when its producing stage stores it again (upload).
          if (e instanceof ObjectSizeMismatch) throw new IntegrityError(`artifact ${hex}: ${e.message}`, { sha256: hex });
          throw e;
        });
        if (!got) throw new IntegrityError(`artifact ${hex} is not in the store at ${remote.url}`, { sha256: hex });
        if (got.hex !== hex) {
          // Bytes changed on the way (a proxy, a bad NIC) look the same as a damaged object: the
          // bucket's copy is moved aside only when a second download hashes wrong too.
          if (!mismatched) {
            mismatched = got.hex;
            continue;
          }
          await remote.quarantine(key);
          throw new IntegrityError(`artifact ${hex} in ${remote.url} is corrupt: its content hashes to ${got.hex} (moved to quarantine/)`, {
            sha256: hex,
          });
        }
        await this.commitLocal(staged, hex);
        return got.bytes;
      } catch (e) {
        // A full disk is no fault of the transfer: another download would fill it again.
        if (isDiskFull(e)) {
          // The part downloaded goes first, so the space named is what the disk has without it.
          await fsp.rm(staged, { force: true });
          throw diskFullError(e, [this.root], { at: this.root, neededBytes: expectBytes });
        }
        if (e instanceof IntegrityError || e instanceof InputError || attempt >= 3) throw e;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      } finally {
        await fsp.rm(staged, { force: true });
      }
    }
  }

  /** `verify`, and for a tree every file its manifest lists. */
  async verifyDeep(ref: ArtifactRef): Promise<void> {
    await this.verify(ref);
    if (ref.mediaType !== TREE_MEDIA) return;
    const manifest = await this.readTree(ref);
    for (const e of manifest.files)
      await this.verify({ uri: uriFor(e.sha256), sha256: e.sha256, bytes: e.bytes, mediaType: 'application/octet-stream' });
  }

  /**
   * Marks `ref` (and a tree's files) as in use again, as a put of the same bytes would (`freshen`):
   * a stage-cache hit hands out old outputs, which garbage collection must not take while the run
   * that got them goes on. An object the bucket no longer holds is stored again from the verified
   * local copy (call `verifyDeep` first). Without a backend, sets the local file's mtime.
   */
  async keepAlive(ref: ArtifactRef): Promise<void> {
    const entries = [{ sha256: ref.sha256, bytes: ref.bytes }];
    if (ref.mediaType === TREE_MEDIA) entries.push(...(await this.readTree(ref)).files);
    // What a put of the same bytes does: upload marks an old stored object, and stores a lost one.
    for (const e of entries)
      if (this.remote) await this.upload(e.sha256, e.bytes);
      else await this.touchLocal(this.objectPath(e.sha256));
  }

  /** Whether a tree's manifest lists the object `sha256` (false for other artifacts or unreadable manifests). */
  async treeContains(ref: ArtifactRef, sha256: string): Promise<boolean> {
    if (ref.mediaType !== TREE_MEDIA) return false;
    try {
      const manifest = JSON.parse(await fsp.readFile(await this.localPath(ref.uri), 'utf8')) as { files?: TreeEntry[] };
      return (manifest.files ?? []).some((f) => f.sha256 === sha256);
    } catch {
      return false;
    }
  }

  /**
   * A tree's manifest, checked: a list of entries with a name, a 64-hex sha256 and a size. One that
   * is not (a reference that calls other JSON a tree, a manifest altered in the store) is an
   * IntegrityError like any damaged artifact, never a TypeError deep inside a reader.
   */
  private async readTree(ref: ArtifactRef): Promise<{ files: TreeEntry[] }> {
    const manifest = await this.readJson<{ files?: unknown }>(ref).catch((e: Error) => {
      if (e instanceof SyntaxError)
        throw new IntegrityError(`artifact ${ref.sha256} is not a tree manifest (not JSON)`, { sha256: ref.sha256 });
      throw e;
    });
    const files = manifest?.files;
    const ok =
      Array.isArray(files) &&
      files.every(
        (f: Partial<TreeEntry> | null) =>
          typeof f === 'object' &&
          f !== null &&
          typeof f.name === 'string' &&
          typeof f.sha256 === 'string' &&
          HEX64.test(f.sha256) &&
          Number.isSafeInteger(f.bytes) &&
          f.bytes! >= 0,
      );
    if (!ok) throw new IntegrityError(`artifact ${ref.sha256} is not a tree manifest`, { sha256: ref.sha256 });
    return manifest as { files: TreeEntry[] };
  }

  async readJson<T>(ref: ArtifactRef): Promise<T> {
    const path = await this.verify(ref);
    return JSON.parse(await fsp.readFile(path, 'utf8')) as T;
  }

  /** Stores every regular file of a folder and a manifest naming them; symlinks are rejected. */
  async putTree(dir: string): Promise<ArtifactRef> {
    const entries: TreeEntry[] = [];
    const walk = async (rel: string): Promise<void> => {
      for (const name of readdirSync(join(dir, rel)).sort()) {
        const relName = rel ? `${rel}/${name}` : name;
        const st = lstatSync(join(dir, relName));
        if (st.isSymbolicLink()) throw new InputError(`${join(dir, relName)} is a symlink; artifact trees hold regular files only`);
        if (st.isDirectory()) await walk(relName);
        else if (st.isFile()) {
          const ref = await this.putFile(join(dir, relName), { mediaType: 'application/octet-stream' });
          entries.push({ name: relName, sha256: ref.sha256, bytes: ref.bytes });
        }
      }
    };
    await walk('');
    return this.putBytes(JSON.stringify({ files: entries }, null, 2) + '\n', { mediaType: TREE_MEDIA });
  }

  /**
   * Recreates a tree under `dest` (verifying every file); names that would escape `dest` are rejected.
   * With `link`, files are hard links to the verified copies where the filesystem allows, else copies.
   */
  async materializeTree(ref: ArtifactRef, dest: string, opts: { link?: boolean } = {}): Promise<string> {
    const manifest = await this.readTree(ref);
    await fsp.mkdir(dest, { recursive: true });
    for (const e of manifest.files) {
      const name = safeRelativeName(e.name);
      const src = await this.verify({ uri: uriFor(e.sha256), sha256: e.sha256, bytes: e.bytes, mediaType: 'application/octet-stream' });
      const target = join(dest, name);
      await fsp.mkdir(join(target, '..'), { recursive: true });
      // A link shares the stored file (read-only, like a copy of it): no bytes written, no space taken.
      if (opts.link) await fsp.link(src, target).catch(() => fsp.copyFile(src, target));
      else await fsp.copyFile(src, target);
    }
    return dest;
  }

  /**
   * A read-only working copy of a tree at `<parent>/<sha256>`, made once and reused: the name is the
   * tree's hash, so an existing folder is already right. Built under a temp name and renamed in, so
   * a crash never leaves a half-written copy behind.
   */
  async checkoutTree(ref: ArtifactRef, parent: string): Promise<string> {
    const dir = join(parent, parseUri(ref.uri));
    if (existsSync(dir)) {
      // The copy is outside the store, so its name proves nothing: reuse it only if its files are
      // exactly the manifest's; a damaged or added file gets a fresh copy instead of being served.
      if (await this.copyMatches(ref, dir)) return dir;
      const aside = `${dir}.damaged.${randomBytes(4).toString('hex')}`;
      await fsp.rename(dir, aside).catch(() => undefined);
      await fsp.rm(aside, { recursive: true, force: true });
    }
    const tmp = `${dir}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await this.materializeTree(ref, tmp);
      await fsp.rename(tmp, dir).catch(async (e: NodeJS.ErrnoException) => {
        // Another process checked the same tree out first: theirs is identical.
        if (!existsSync(dir)) throw e;
      });
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      // The copy cut short goes first, so the space named is what the disk has without it. Named here: Node's
      // error names a file in the temp folder just removed, and `tempered serve` reported a bare ENOSPC.
      await fsp.rm(tmp, { recursive: true, force: true });
      const needed = await this.readTree(ref).then(
        (m) => m.files.reduce((sum, f) => sum + f.bytes, 0),
        () => undefined,
      );
      throw diskFullError(e, [parent], { at: parent, neededBytes: needed });
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
    return dir;
  }

  /** Whether `dir` holds exactly the files of the tree `ref`, each with its recorded hash. */
  private async copyMatches(ref: ArtifactRef, dir: string): Promise<boolean> {
    try {
      const manifest = await this.readTree(ref);
      const found: string[] = [];
      const walk = async (rel: string): Promise<void> => {
        for (const e of await fsp.readdir(join(dir, rel), { withFileTypes: true })) {
          const name = rel ? `${rel}/${e.name}` : e.name;
          if (e.isDirectory()) await walk(name);
          else found.push(name);
        }
      };
      await walk('');
      if (
        found.sort().join('\n') !==
        manifest.files
          .map((f) => f.name)
          .sort()
          .join('\n')
      )
        return false;
      for (const f of manifest.files) {
        const st = await fsp.lstat(join(dir, f.name));
        if (!st.isFile() || st.size !== f.bytes || (await sha256File(join(dir, f.name))).sha256 !== f.sha256) return false;
      }
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Keeps a worker's cache of the shared store within `maxBytes`: deletes the local copies used
   * least recently (by access time, which `verify` and `localPath` set), oldest first, until the
   * objects left add up to `maxBytes`. A copy used within `minIdleMs` is kept even above the limit, as
   * a running stage may be about to open the path it was given. Each copy is deleted only once the
   * backend answers for the object with its size (an intact copy is stored again first if not; a
   * damaged one is quarantined). `HEAD` does not prove the bucket's bytes right: an object replaced
   * there by one of the same size loses its last good copy here, as it would on any worker's next
   * fetch. Stages hold their inputs by hard links (`pinningInto`), so pruning never takes a file a
   * running stage was given. Without a backend the folder is the store, and nothing is deleted.
   * A copy deleted here is fetched again (and verified) by the next read that needs it.
   */
  async pruneCache(opts: { maxBytes: number; minIdleMs: number }): Promise<PruneResult> {
    const objects: { hex: string; bytes: number; usedMs: number }[] = [];
    const base = join(this.root, 'sha256');
    for (const shard of await fsp.readdir(base).catch(() => [] as string[]))
      for (const hex of await fsp.readdir(join(base, shard)).catch(() => [] as string[])) {
        if (!HEX64.test(hex) || hex.slice(0, 2) !== shard) continue;
        const st = await fsp.lstat(join(base, shard, hex)).catch(() => undefined);
        if (st?.isFile()) objects.push({ hex, bytes: st.size, usedMs: Math.max(st.atimeMs, st.mtimeMs) });
      }
    let kept = objects.reduce((n, o) => n + o.bytes, 0);
    let removed = 0;
    let freed = 0;
    let quarantined = 0;
    if (!this.remote) return { removed, freedBytes: freed, keptBytes: kept, quarantined };
    const idleBefore = Date.now() - opts.minIdleMs;
    for (const o of objects.sort((a, b) => a.usedMs - b.usedMs)) {
      if (kept <= opts.maxBytes || o.usedMs > idleBefore) break;
      const inBucket = (await this.remote.head(objectKey(o.hex)))?.bytes === o.bytes;
      if (!inBucket) {
        // The bucket lost it (or holds a wrong size): this copy may be the last one. Store it
        // again if it is intact; a damaged one is moved aside like any damaged object.
        if (!(await this.intact(o.hex))) {
          await this.quarantine(o.hex);
          kept -= o.bytes;
          quarantined++;
          continue;
        }
        await this.upload(o.hex, o.bytes);
      }
      // Looked at again just before it goes: a reader may have used it during the round trip above.
      // (Not after the hash and upload just above, whose own reads set the access time.)
      const now = await fsp.lstat(this.objectPath(o.hex)).catch(() => undefined);
      if (now && inBucket && Math.max(now.atimeMs, now.mtimeMs) > idleBefore) continue;
      if (now) await fsp.rm(this.objectPath(o.hex), { force: true });
      kept -= o.bytes;
      freed += o.bytes;
      removed++;
    }
    return { removed, freedBytes: freed, keptBytes: kept, quarantined };
  }

  /**
   * Removes temp files and stage scratch folders left by writers that died. A name that carries
   * its writer's pid (`<time>-<pid>-<rand>`, `stage-…-<attempt>-<pid>`) goes once that process is
   * gone from this host and the entry is older than `minAgeMs`; a live pid is never touched (a
   * long training keeps its scratch folder for hours). Anything else goes after `olderThanMs`.
   */
  async sweepTemp(olderThanMs = 60 * 60 * 1000, minAgeMs = 5 * 60 * 1000): Promise<number> {
    let removed = 0;
    for (const name of await fsp.readdir(this.tmpDir)) {
      const p = join(this.tmpDir, name);
      const st = await fsp.lstat(p).catch(() => undefined);
      if (!st) continue;
      const age = Date.now() - st.mtimeMs;
      const pid = writerPid(name);
      const dead = pid !== undefined ? !processAlive(pid) && age > minAgeMs : age > olderThanMs;
      if (dead) {
        await fsp.rm(p, { recursive: true, force: true });
        removed++;
      }
    }
    return removed;
  }
}

function writerPid(name: string): number | undefined {
  const m = /^\d+-(\d+)-[0-9a-f]+/.exec(name) ?? /^stage-.*-(\d+)$/.exec(name);
  return m ? Number(m[1]) : undefined;
}
