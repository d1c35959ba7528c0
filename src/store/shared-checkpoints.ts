/**
 * Training checkpoints in the shared store, so that a stage killed on one worker resumes on another.
 * The trainer writes each checkpoint folder locally (atomically, engine/checkpoint.ts); `push` then
 * stores it as a tree artifact and moves a small pointer, `checkpoints/<name>.json` (step, folder
 * name, tree reference), to it. Before training, `pull` brings the pointed-to checkpoint into the
 * local folder when it is newer than any there, so the trainer's ordinary resume finds it. Without a
 * remote backend (one machine, local folder store) all three do nothing.
 */
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import { basename, join } from 'node:path';
import { isArtifactRef, type ArtifactRef } from '../types.ts';
import type { ArtifactStore } from './artifact-store.ts';
import { readText } from './object-backend.ts';

const STEP_DIR = /^step-(\d+)$/;

interface Pointer {
  step: number;
  /** The checkpoint's folder name, e.g. step-00000040. */
  name: string;
  tree: ArtifactRef;
}

/** The pointer's key: the checkpoint folder's name (a stage cache key) when it is a plain one, else its hash. */
function pointerKey(name: string): string {
  const safe =
    /^[A-Za-z0-9._-]{1,128}$/.test(name) && name !== '.' && name !== '..' ? name : createHash('sha256').update(name).digest('hex');
  return `checkpoints/${safe}.json`;
}

function stepOf(name: string): number | undefined {
  const m = STEP_DIR.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Stores the checkpoint folder `dir` and points `name`'s pointer at it. */
export async function pushCheckpoint(store: ArtifactStore, name: string, dir: string): Promise<void> {
  const remote = store.remote;
  if (!remote) return;
  const step = stepOf(basename(dir));
  if (step === undefined) throw new Error(`${dir} is not a checkpoint folder (step-N)`);
  const tree = await store.putTree(dir);
  const text = JSON.stringify({ step, name: basename(dir), tree } satisfies Pointer) + '\n';
  await remote.putBytes(pointerKey(name), Buffer.from(text), { ifAbsent: false });
}

/**
 * Brings the newest shared checkpoint of `name` into `checkpointDir` unless a checkpoint at least as
 * new is there already. Returns the step fetched, or undefined when nothing was fetched. A pointer
 * that does not parse is ignored (training starts from the local state); a damaged checkpoint file
 * fails its hash on the way down (IntegrityError).
 */
export async function pullCheckpoint(store: ArtifactStore, name: string, checkpointDir: string): Promise<number | undefined> {
  const remote = store.remote;
  if (!remote) return undefined;
  const text = await readText(remote, pointerKey(name));
  if (text === undefined) return undefined;
  let p: Pointer;
  try {
    p = JSON.parse(text) as Pointer;
  } catch {
    return undefined;
  }
  if (!Number.isInteger(p.step) || stepOf(p.name) !== p.step || !isArtifactRef(p.tree)) return undefined;
  const local = existsSync(checkpointDir)
    ? (await fsp.readdir(checkpointDir)).filter((n) => existsSync(join(checkpointDir, n, 'manifest.json'))).map((n) => stepOf(n) ?? -1)
    : [];
  if (local.some((s) => s >= p.step)) return undefined;
  await fsp.mkdir(checkpointDir, { recursive: true });
  // The temp name matches engine/checkpoint.ts's, so removeStaleTemps clears it if this process dies.
  const tmp = join(checkpointDir, `.${p.name}.tmp-${process.pid}`);
  await fsp.rm(tmp, { recursive: true, force: true });
  try {
    await store.materializeTree(p.tree, tmp);
    await fsp.rename(tmp, join(checkpointDir, p.name));
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
  return p.step;
}

/** Forgets `name`'s shared checkpoint once its stage finished, so a later run of the same work starts afresh. */
export async function dropSharedCheckpoint(store: ArtifactStore, name: string): Promise<void> {
  await store.remote?.delete(pointerKey(name));
}
