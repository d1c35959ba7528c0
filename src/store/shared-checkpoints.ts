/**
 * Training checkpoints in the shared store, so that a stage killed on one worker resumes on another.
 * The trainer writes each checkpoint folder locally (atomically, engine/checkpoint.ts); `push` then
 * uploads its files under `checkpoint-files/<name>/<step-N>.<write id>/…` and moves a small pointer,
 * `checkpoints/<name>.json` (step, folder name, each file's sha256 and size), to them. Before
 * training, `pull` brings the pointed-to checkpoint into the local folder when it is newer than any
 * there, so the trainer's ordinary resume finds it. Without a remote backend (one machine, local
 * folder store) all three do nothing.
 *
 * Checkpoints are working state, not artifacts: they live outside the content-addressed objects so
 * that they can be deleted. Once the pointer has moved, the files of older steps go; once the stage
 * has finished (its last checkpoint is then one of its outputs, stored as an artifact), all its files
 * go and the pointer holds only the finished record (finishSharedCheckpoint), for a retry whose
 * completion was lost. A stage therefore holds at most about one checkpoint in the bucket, where an
 * LLM's is 1.6 GB, and none in the worker's artifact cache.
 *
 * The pointer is moved by compare-and-swap only (S3 `If-Match`, the folder's lock: ObjectBackend.swapBytes). The
 * lease holder first claims it (claimSharedCheckpoint: rewrites it as it is, with a write id of its own), and each
 * write must find the pointer as this writer last left it: a writer whose lease was taken over while it was paused
 * between its lease check and its write (GC, SIGSTOP, a host cut off) finds the new holder's claim instead, writes
 * nothing, deletes nothing, and fails its attempt (PointerMovedError).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, lstatSync, promises as fsp, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { IntegrityError, InputError } from '../errors.ts';
import { sha256File } from '../util/hash-file.ts';
import { isArtifactRef, type ArtifactRef } from '../types.ts';
import { safeRelativeName, type ArtifactStore, type TreeEntry } from './artifact-store.ts';
import { ObjectSizeMismatch, readText, type ObjectBackend } from './object-backend.ts';
import { downloadObject } from './object-download.ts';
import { KEY_PREFIXES } from './key-layout.ts';

const STEP_DIR = /^step-(\d+)$/;
/** A push's folder of files in the store: `step-N.<write id>` (before 7 Dec 2026, `step-N`). */
const FILES_DIR = /^step-(\d+)(?:\.[0-9a-f]{16})?$/;
const HEX64 = /^[0-9a-f]{64}$/;
/** More files than any checkpoint folder holds (a manifest and a few tensor files): a bound on a hostile pointer. */
const MAX_FILES = 10_000;

interface Pointer {
  step: number;
  /** The checkpoint's folder name, e.g. step-00000040. */
  name: string;
  /** The folder's files, uploaded under `checkpoint-files/<name>/<at>/`. */
  files?: TreeEntry[];
  /** The push's own folder of files, `<name>.<write id>`; before 7 Dec 2026 there was none and the files were under `<name>/`. */
  at?: string;
  /** Before 5 Dec 2026 a checkpoint was a tree artifact; such pointers still resume. */
  tree?: ArtifactRef;
  /** This write's own id (the pointer's version tag differs from every other write's); `claimed` names the writer that claimed it. */
  write?: string;
  claimed?: string;
}

/**
 * A writer's hold on a pointer: the version it last read or wrote, which its next write must find. Taken by
 * claimSharedCheckpoint, carried through pushCheckpoint and finishSharedCheckpoint.
 */
export interface PointerHold {
  /** The pointer's version tag (ObjectBackend.readTagged); undefined while there is no pointer. */
  etag: string | undefined;
  /** The pointer as it was before the claim: what pullCheckpoint resumes from. */
  readonly before: string | undefined;
}

/**
 * The pointer was moved by another writer since this one last wrote it: this writer's lease was taken over (it was
 * presumed dead) and the training is another attempt's now. Transient: the attempt fails, writing and deleting
 * nothing; its retry waits for the lease and resumes from the pointer.
 */
export class PointerMovedError extends Error {
  override name = 'PointerMovedError';
}

/** Reports what a shared checkpoint could not do without failing the training it serves (a clean-up, a damaged pointer). */
export type CheckpointLog = (message: string) => void;

/** The checkpoint folder's name (a stage cache key) when it is a plain one, else its hash. */
function safeName(name: string): string {
  return /^[A-Za-z0-9._-]{1,128}$/.test(name) && name !== '.' && name !== '..' ? name : createHash('sha256').update(name).digest('hex');
}

/**
 * The name of the lease (shared-lease.ts) its writer holds on `name`'s checkpoints: one per pointer
 * key, so that garbage collection can tell an abandoned checkpoint from one whose training runs.
 */
export function checkpointLeaseName(name: string): string {
  return checkpointLeaseOf(safeName(name));
}

/** The lease name of the checkpoint whose pointer is `checkpoints/<segment>.json`. */
export function checkpointLeaseOf(segment: string): string {
  return `checkpoint-${segment}`;
}

function pointerKey(name: string): string {
  return `${KEY_PREFIXES.checkpointPointers}${safeName(name)}.json`;
}

/** Where a checkpoint's files go; ends with `/`. */
function filesPrefix(name: string): string {
  return `${KEY_PREFIXES.checkpointFiles}${safeName(name)}/`;
}

/**
 * Where the bucket keeps `name`'s checkpoint, as an error that says to delete it names it: a name over 128 characters
 * (a `--no-cache` run's own, `<key>.fresh-<run>-<random>-<stage>`) is there under its hash, not as the folder is named.
 */
export function sharedCheckpointKeys(name: string): { pointer: string; files: string } {
  return { pointer: pointerKey(name), files: filesPrefix(name) };
}

function stepOf(name: string): number | undefined {
  const m = STEP_DIR.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** The step of a folder of files in the store, either form. */
function filesStep(dir: string): number | undefined {
  const m = FILES_DIR.exec(dir);
  return m ? Number(m[1]) : undefined;
}

/** The regular files of a folder, as slash-separated relative names, sorted; symlinks are refused. */
function filesOf(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, rel)).sort()) {
    const name = rel ? `${rel}/${entry}` : entry;
    const st = lstatSync(join(dir, name));
    if (st.isSymbolicLink()) throw new Error(`${join(dir, name)} is a symlink; a checkpoint holds regular files only`);
    if (st.isDirectory()) out.push(...filesOf(dir, name));
    else if (st.isFile()) out.push(name);
  }
  return out;
}

/**
 * Uploads the checkpoint folder `dir`, points `name`'s pointer at it, then deletes the files of
 * older checkpoints of `name` (and of other pushes of its step). A failed upload throws (the trainer's checkpoint is not yet shared);
 * a failed clean-up is only logged: what it left is removed by the next push or the finish (finishSharedCheckpoint).
 */
export async function pushCheckpoint(
  store: ArtifactStore,
  name: string,
  dir: string,
  log: CheckpointLog = () => {},
  /** Called after the files are up, just before the pointer moves: throws when this writer may no longer move it (a lost lease). */
  beforePointer: () => void | Promise<void> = () => {},
  /** This writer's claim (claimSharedCheckpoint); without one, the pointer as it is just before the write. */
  hold?: PointerHold,
): Promise<void> {
  const remote = store.remote;
  if (!remote) return;
  const folder = basename(dir);
  const step = stepOf(folder);
  if (step === undefined) throw new Error(`${dir} is not a checkpoint folder (step-N)`);
  // Each push's files go in a folder of their own: a writer that lost its lease and still uploads (maybe the same
  // step as the new holder, maybe other bytes) never replaces a file the new holder's pointer names.
  const write = writeId();
  const at = `${folder}.${write}`;
  const files: TreeEntry[] = [];
  for (const rel of filesOf(dir)) {
    const path = join(dir, rel);
    const { sha256, bytes } = await sha256File(path);
    await remote.putFile(`${filesPrefix(name)}${at}/${rel}`, path, { sha256, bytes, ifAbsent: false });
    files.push({ name: rel, sha256, bytes });
  }
  const text = JSON.stringify({ step, name: folder, at, files, write } satisfies Pointer) + '\n';
  // Uploading the files can take long (an LLM's adapters and optimizer state): the lease may have
  // been lost meanwhile, and a lost writer must not move the new holder's pointer. (Nor may one that
  // passed this check and then paused: the swap below refuses it.)
  await beforePointer();
  await movePointer(remote, name, text, hold);
  await removeFiles(remote, name, (stepDir) => stepDir !== at && (filesStep(stepDir) ?? Infinity) <= step).catch((e: Error) =>
    log(`could not delete older shared checkpoints of ${name} (left for the next checkpoint): ${e.message}`),
  );
}

/** A write's own id: the pointer's bytes, and so its version tag, differ from any other write's. */
function writeId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * Claims `name`'s pointer for the lease holder `writer`: rewrites it as it is (or, where there is none, as a claim
 * naming no checkpoint) with a write id of its own, by compare-and-swap. From then on a writer that last wrote the
 * pointer before the claim (its lease lost, its write delayed) fails its swap. A write that lands between this
 * writer's look and its claim only makes the claim look again. Undefined without a shared store.
 */
export async function claimSharedCheckpoint(store: ArtifactStore, name: string, writer: string): Promise<PointerHold | undefined> {
  const remote = store.remote;
  if (!remote) return undefined;
  for (let attempt = 1; attempt <= 5; attempt++) {
    const current = await remote.readTagged(pointerKey(name));
    const before = current?.bytes.toString('utf8');
    let claimed: Record<string, unknown> = { claimed: writer };
    try {
      const p = JSON.parse(before ?? 'null') as unknown;
      if (typeof p === 'object' && p !== null && !Array.isArray(p)) claimed = { ...(p as Record<string, unknown>), claimed: writer };
    } catch {
      /* not JSON: pullCheckpoint logs it from `before`; the claim replaces it */
    }
    const bytes = Buffer.from(JSON.stringify({ ...claimed, write: writeId() }) + '\n');
    const r = await swapOrOwn(remote, pointerKey(name), bytes, current?.etag);
    if (r !== 'conflict') return { etag: r.etag, before };
  }
  throw new PointerMovedError(`${remote.url}/${pointerKey(name)} keeps changing under the claim of ${writer}: another writer moves it`);
}

/** Moves the pointer by compare-and-swap from the version `hold` last saw (without one, the current version). */
async function movePointer(remote: ObjectBackend, name: string, text: string, hold: PointerHold | undefined): Promise<void> {
  const key = pointerKey(name);
  const expect = hold ? hold.etag : (await remote.readTagged(key))?.etag;
  const r = await swapOrOwn(remote, key, Buffer.from(text), expect);
  if (r === 'conflict')
    throw new PointerMovedError(
      `the shared checkpoint pointer ${remote.url}/${key} was moved by another writer: this attempt's lease was taken over, the training is another attempt's now; this one stops without writing (a retry resumes from the pointer)`,
    );
  if (hold) hold.etag = r.etag;
}

/** swapBytes; a conflict with the pointer holding these very bytes (unique by their write id) is a retried write that landed. */
async function swapOrOwn(remote: ObjectBackend, key: string, bytes: Buffer, expect: string | undefined) {
  const r = await remote.swapBytes(key, bytes, expect);
  if (r !== 'conflict') return r;
  const now = await remote.readTagged(key).catch(() => undefined);
  return now?.bytes.equals(bytes) ? { etag: now.etag } : r;
}

/** Deletes the checkpoint files of `name` whose step folder `doomed` picks. */
async function removeFiles(remote: ObjectBackend, name: string, doomed: (stepDir: string) => boolean): Promise<void> {
  const prefix = filesPrefix(name);
  const keys: string[] = [];
  for await (const key of remote.list(prefix)) {
    // Only what a push could have written: a listing with other keys (a server that ignores the
    // prefix) must not turn a clean-up into deleting artifacts.
    const step = key.startsWith(prefix) ? key.slice(prefix.length).split('/')[0]! : '';
    if (FILES_DIR.test(step) && doomed(step)) keys.push(key);
  }
  for (const key of keys) await remote.delete(key);
}

/** The pointer's fields, checked: anything a hostile or damaged pointer could misuse is refused. */
function parsePointer(text: string): Pointer | string {
  let p: Pointer;
  try {
    p = JSON.parse(text) as Pointer;
  } catch {
    return 'its pointer is not JSON';
  }
  if (
    typeof p !== 'object' ||
    p === null ||
    !Number.isSafeInteger(p.step) ||
    typeof p.name !== 'string' ||
    p.name.length > 32 ||
    stepOf(p.name) !== p.step ||
    (p.at !== undefined && (typeof p.at !== 'string' || !p.at.startsWith(`${p.name}.`) || filesStep(p.at) !== p.step))
  )
    return 'its pointer names no step folder';
  if (p.files === undefined) return isArtifactRef(p.tree) ? p : 'its pointer lists no files';
  if (!Array.isArray(p.files) || p.files.length > MAX_FILES) return 'its pointer lists no files';
  for (const f of p.files) {
    try {
      if (typeof f !== 'object' || f === null) return 'its pointer lists a file that is not an object';
      if (safeRelativeName(f.name) !== f.name) return `its pointer lists an unusual file name ${JSON.stringify(f.name)}`;
    } catch (e) {
      return (e as Error).message;
    }
    if (typeof f.sha256 !== 'string' || !HEX64.test(f.sha256) || !Number.isSafeInteger(f.bytes) || f.bytes < 0)
      return `its pointer's entry for ${f.name} has no valid sha256 and size`;
  }
  // Each name once, and none inside another: the files must fit in one folder.
  const names = new Set(p.files.map((f) => f.name));
  if (names.size !== p.files.length) return 'its pointer lists a file twice';
  for (const n of names) {
    const parts = n.split('/');
    for (let i = 1; i < parts.length; i++)
      if (names.has(parts.slice(0, i).join('/'))) return `its pointer lists ${parts.slice(0, i).join('/')} as a file and as a folder`;
  }
  // Without its manifest the trainer would not see the folder as a checkpoint at all.
  if (!names.has('manifest.json')) return 'its pointer lists no manifest.json';
  return p;
}

/**
 * Brings the newest shared checkpoint of `name` into `checkpointDir` unless a checkpoint at least as
 * new is there already. Returns the step fetched, or undefined when nothing was fetched. A pointer
 * that does not parse, or a file that is missing or does not hash to what the pointer says, is
 * logged and leaves the local state as it was: training then starts from it (a checkpoint only saves
 * time; the same seed gives the same weights either way).
 */
export async function pullCheckpoint(
  store: ArtifactStore,
  name: string,
  checkpointDir: string,
  log: CheckpointLog = () => {},
  /** The writer's claim: the pointer is read as it was before it (without one, from the store). */
  hold?: PointerHold,
): Promise<number | undefined> {
  const remote = store.remote;
  if (!remote) return undefined;
  const text = hold ? hold.before : await readText(remote, pointerKey(name));
  if (text === undefined || finishedOf(text) !== undefined || isBareClaim(text)) return undefined;
  const p = parsePointer(text);
  if (typeof p === 'string') {
    log(`ignoring the shared checkpoint of ${name}: ${p}`);
    return undefined;
  }
  const local = existsSync(checkpointDir)
    ? (await fsp.readdir(checkpointDir)).filter((n) => existsSync(join(checkpointDir, n, 'manifest.json'))).map((n) => stepOf(n) ?? -1)
    : [];
  if (local.some((s) => s >= p.step)) return undefined;
  await fsp.mkdir(checkpointDir, { recursive: true });
  // The temp name matches engine/checkpoint.ts's, so removeStaleTemps clears it if this process dies.
  const tmp = join(checkpointDir, `.${p.name}.tmp-${process.pid}`);
  const target = join(checkpointDir, p.name);
  await fsp.rm(tmp, { recursive: true, force: true });
  try {
    let damage: string | undefined;
    if (p.files) damage = await downloadFiles(remote, `${filesPrefix(name)}${p.at ?? p.name}/`, p.files, tmp);
    else
      damage = await store.materializeTree(p.tree!, tmp).then(
        () => undefined,
        (e: Error) => {
          if (e instanceof InputError || e instanceof IntegrityError) return e.message;
          throw e;
        },
      );
    if (damage) {
      log(`ignoring the shared checkpoint of ${name} at step ${p.step}: ${damage}`);
      return undefined;
    }
    // A folder of that name without a manifest (none at all would have been found above) is not a
    // checkpoint the trainer could use: this one replaces it.
    await fsp.rm(target, { recursive: true, force: true });
    await fsp.rename(tmp, target);
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
  return p.step;
}

/**
 * Downloads and verifies each file; returns what was wrong, or undefined when all arrived intact. A
 * download that fails (the network, after the SDK's retries) is started again, twice, then thrown,
 * so the stage's attempt is retried rather than 1.6 GB of progress given up.
 */
async function downloadFiles(remote: ObjectBackend, prefix: string, files: TreeEntry[], dest: string): Promise<string | undefined> {
  for (const f of files) {
    const path = join(dest, f.name);
    await fsp.mkdir(dirname(path), { recursive: true });
    let got: { hex: string; bytes: number } | undefined;
    try {
      got = await retried(async () => {
        await fsp.rm(path, { force: true });
        return downloadObject(remote, prefix + f.name, path, f.bytes);
      });
    } catch (e) {
      // The store's object is not the size the pointer says: damage, like a wrong hash.
      if (e instanceof ObjectSizeMismatch) return e.message;
      throw e;
    }
    if (!got) return `${remote.url}/${prefix}${f.name} is missing`;
    if (got.hex !== f.sha256 || got.bytes !== f.bytes)
      return `${remote.url}/${prefix}${f.name} has ${got.bytes} bytes hashing to ${got.hex}, its pointer says ${f.bytes} bytes, ${f.sha256}`;
  }
  return undefined;
}

/** `fn`, and again twice with a pause (1 s, then 2 s) while it throws (a size mismatch is not retried). */
async function retried<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (attempt >= 3 || e instanceof ObjectSizeMismatch) throw e;
      await new Promise((r) => setTimeout(r, 1000 * attempt));
    }
  }
}

/**
 * Marks `name`'s training finished, with `record` (what the stage returned, and which attempt's run it was), then
 * deletes its checkpoint files: a retry of that stage whose completion was lost (a worker or server that died
 * between the stage's return and its record in the workflow's history) finds the record on any worker instead of
 * training again from step 0. The pointer is rewritten first, so no pointer names deleted files. The record is a few
 * hundred bytes; the next training of the same work replaces it with its first checkpoint, and `store gc` deletes
 * it (with its lease) once unwritten for the horizon, as it does an abandoned checkpoint.
 */
export async function finishSharedCheckpoint(
  store: ArtifactStore,
  name: string,
  record: unknown,
  log: CheckpointLog = () => {},
  /** This writer's claim (claimSharedCheckpoint): a writer that lost it replaces nothing and deletes nothing. */
  hold?: PointerHold,
): Promise<void> {
  const remote = store.remote;
  if (!remote) return;
  await movePointer(remote, name, JSON.stringify({ finished: record, write: writeId() }) + '\n', hold);
  await deleteAllFiles(remote, name, log);
}

/** Every file of `name`'s checkpoints, tried three times; what a failed delete still leaves is logged with its prefix. */
function deleteAllFiles(remote: NonNullable<ArtifactStore['remote']>, name: string, log: CheckpointLog): Promise<void> {
  return retried(() => removeFiles(remote, name, () => true)).catch((e: Error) =>
    log(`could not delete the shared checkpoint files of ${name} under ${remote.url}/${filesPrefix(name)}: ${e.message}`),
  );
}

/** The record finishSharedCheckpoint left for `name`, or undefined (no shared store, no pointer, or a training's pointer). */
export async function readSharedFinished(store: ArtifactStore, name: string): Promise<unknown> {
  const remote = store.remote;
  if (!remote) return undefined;
  const text = await readText(remote, pointerKey(name));
  return text === undefined ? undefined : finishedOf(text);
}

/** Whether the shared store has a pointer of `name` (a checkpoint, a finished record or a claim); false without one. */
export async function sharedCheckpointExists(store: ArtifactStore, name: string): Promise<boolean> {
  const remote = store.remote;
  return remote !== undefined && (await readText(remote, pointerKey(name))) !== undefined;
}

/** A claim of a pointer that named nothing yet: no checkpoint, nothing to report. */
function isBareClaim(text: string): boolean {
  try {
    const p = JSON.parse(text) as Record<string, unknown> | null;
    return typeof p === 'object' && p !== null && typeof p.claimed === 'string' && p.step === undefined && p.finished === undefined;
  } catch {
    return false;
  }
}

function finishedOf(text: string): unknown {
  try {
    const p = JSON.parse(text) as { finished?: unknown } | null;
    return typeof p === 'object' && p !== null && !Array.isArray(p) ? p.finished : undefined;
  } catch {
    return undefined;
  }
}
