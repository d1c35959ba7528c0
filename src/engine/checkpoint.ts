/**
 * Training checkpoints: trainable weights and optimizer state as safetensors plus a JSON manifest with
 * everything needed to continue bitwise identically (step, epoch, position in the data order, RNG state,
 * config hash). A checkpoint is a folder written under a temp name and renamed into place.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InputError } from '../errors.ts';
import { readSafetensors, writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import type { TypedArray } from '../onnx/dtype.ts';
import { processAlive } from '../util/process-alive.ts';
import type { RngState } from './prng.ts';

export interface CheckpointManifest {
  format: 'tempered-checkpoint/1';
  step: number;
  epoch: number;
  /** Micro-batches of the current epoch's order already consumed. */
  position: number;
  rng: RngState;
  configHash: string;
  /** Early-stopping bookkeeping. */
  best?: number;
  evalsWithoutImprovement: number;
  shapes: Record<string, number[]>;
}

export interface CheckpointData {
  manifest: CheckpointManifest;
  params: Map<string, TypedArray>;
  state: Map<string, TypedArray>;
}

function toSafe(a: TypedArray, shape: number[]): SafeTensor {
  if (a instanceof Float32Array) return { dtype: 'F32', shape, data: a };
  if (a instanceof Float64Array) return { dtype: 'F64', shape, data: a };
  throw new Error('checkpoints hold float32/float64 tensors only');
}

export function saveCheckpoint(dir: string, data: CheckpointData): void {
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const sh = data.manifest.shapes;
  const tensors = (m: Map<string, TypedArray>) => new Map([...m].map(([k, v]) => [k, toSafe(v, sh[k] ?? [v.length])]));
  writeSafetensors(join(tmp, 'weights.safetensors'), tensors(data.params), { format: 'tempered' });
  writeSafetensors(join(tmp, 'optimizer.safetensors'), tensors(data.state), { format: 'tempered' });
  writeFileSync(join(tmp, 'manifest.json'), JSON.stringify(data.manifest, null, 2) + '\n');
  if (existsSync(dir)) {
    const old = `${tmp}.old`;
    renameSync(dir, old);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(tmp, dir);
  }
}

export function loadCheckpoint(dir: string): CheckpointData {
  const mpath = join(dir, 'manifest.json');
  if (!existsSync(mpath))
    throw new InputError('not a checkpoint folder (manifest.json missing)', {
      where: dir,
      hint: 'pass a folder written by the trainer (checkpointDir/step-N)',
    });
  const manifest = JSON.parse(readFileSync(mpath, 'utf8')) as CheckpointManifest;
  if (manifest.format !== 'tempered-checkpoint/1')
    throw new InputError(`unknown checkpoint format ${JSON.stringify(manifest.format)}`, { where: mpath });
  const read = (f: string) => new Map([...readSafetensors(join(dir, f)).tensors].map(([k, t]) => [k, t.data as TypedArray]));
  return { manifest, params: read('weights.safetensors'), state: read('optimizer.safetensors') };
}

const STEP_DIR = /^step-(\d+)$/;

/** Checkpoint folders under `dir` (complete ones only: temp folders are skipped), oldest first. */
export function listCheckpoints(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => STEP_DIR.test(n) && existsSync(join(dir, n, 'manifest.json')))
    .sort((a, b) => Number(STEP_DIR.exec(a)![1]) - Number(STEP_DIR.exec(b)![1]))
    .map((n) => join(dir, n));
}

/** The newest checkpoint under `dir`, for resuming after a crash or retry. */
export function latestCheckpoint(dir: string): string | undefined {
  return listCheckpoints(dir).at(-1);
}

/** Deletes all but the newest `keep` checkpoints. */
export function pruneCheckpoints(dir: string, keep: number): void {
  const all = listCheckpoints(dir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) rmSync(old, { recursive: true, force: true });
}

/**
 * Deletes half-written checkpoint folders of processes that are gone (a stage process killed while
 * it wrote one); those of live writers are left alone.
 */
export function removeStaleTemps(dir: string): void {
  if (!existsSync(dir)) return;
  for (const n of readdirSync(dir)) {
    const m = /^\.step-\d+\.tmp-(\d+)(\.old)?$/.exec(n);
    if (m && !processAlive(Number(m[1]))) rmSync(join(dir, n), { recursive: true, force: true });
  }
}
