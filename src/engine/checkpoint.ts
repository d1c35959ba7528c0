/**
 * Training checkpoints: trainable weights and optimizer state as safetensors plus a JSON manifest with
 * everything needed to continue bitwise identically (step, epoch, position in the data order, RNG state,
 * config hash), the per-step training history so far (history.json), so that a resumed run's
 * history is the uninterrupted run's, and the best step of early stopping with its weights
 * (best-weights.safetensors, when they are not the checkpoint's own), so that a resumed run exports the
 * uninterrupted run's best weights. A checkpoint is a folder written under a temp name and renamed into
 * place.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InputError } from '../errors.ts';
import { encodeSafetensors, readSafetensors, writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import type { TypedArray } from '../onnx/dtype.ts';
import { canonicalJson, hashJson, sha256Hex } from '../util/canonical-json.ts';
import { diskFullError, isDiskFull } from '../util/disk-full.ts';
import { jsonDiff } from '../util/json-diff.ts';
import { processAlive } from '../util/process-alive.ts';
import type { RngState } from './prng.ts';

export interface CheckpointManifest {
  format: 'tempered-checkpoint/1';
  step: number;
  epoch: number;
  /** Micro-batches of the current epoch's order already consumed. */
  position: number;
  rng: RngState;
  /** settingsHash(the settings).hash; a resume with other settings is refused (sameSettings). */
  configHash: string;
  /**
   * settingsHash(the settings).recorded: what was hashed, so that a refusal can name the settings that differ.
   * Absent in checkpoints written before 7 Dec 2026, which record the hash only.
   */
  settings?: unknown;
  /** Early-stopping bookkeeping: the best score so far (lower is better), not a step. */
  best?: number;
  /**
   * The step whose evaluation scored `best`, for trainers that keep the best weights (the classifier
   * loop exports them). At most `step`; before it, the weights at that step are in best-weights.safetensors.
   * Absent in checkpoints written before checkpoints carried it (see CheckpointData.bestParams).
   */
  bestStep?: number;
  evalsWithoutImprovement: number;
  shapes: Record<string, number[]>;
}

/**
 * The hash a checkpoint records of the settings its training ran with (manifest.configHash), and the one code before
 * 7 Dec 2026 recorded for the same settings. The hash is over canonical JSON: the order of an object's keys is no
 * setting. A stage's cache key (so its checkpoint folder) ignores it too, so a pipeline file submitted again with
 * `lora: { alpha: 8, r: 4 }` after a run with `{ r: 4, alpha: 8 }` died mid-training, or a plan read back from the
 * audit trail (canonical JSON, keys sorted: `models reproduce` before it trained in a folder of its own), finds the
 * checkpoint of the same work. Hashed as JSON.stringify wrote it, the two orders differed, and the resume was refused
 * as "different training settings": an input error, not retried, that failed the stage.
 */
export interface SettingsHash {
  /** What a checkpoint written now records. */
  hash: string;
  /**
   * sha256 of JSON.stringify(settings), what earlier code recorded: a checkpoint a worker wrote before an upgrade
   * (its run's config in the key order it had then) is still resumed by an upgraded one.
   */
  earlier: string;
  /**
   * The settings as a checkpoint records them beside the hash (manifest.settings): canonical JSON, with any array or
   * string longer than RECORDED_CHARS (a data order, a list of weight shapes) replaced by its digest, so a manifest
   * stays a few KB and a difference there is still named.
   */
  recorded: unknown;
}

/** The longest canonical JSON of an array or string a checkpoint records as it is. */
const RECORDED_CHARS = 256;

function recordable(v: unknown): unknown {
  const text = canonicalJson(v, 'training settings');
  if (text.length <= RECORDED_CHARS) return JSON.parse(text);
  // An object is recorded key by key, so a difference inside it is named down to the setting.
  if (typeof v === 'object' && v !== null && !Array.isArray(v))
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, x]) => [k, recordable(x)]),
    );
  return `sha256:${sha256Hex(text).slice(0, 16)} (${text.length} characters)`;
}

export function settingsHash(settings: object): SettingsHash {
  return {
    hash: hashJson(settings, 'training settings'),
    earlier: sha256Hex(JSON.stringify(settings)),
    recorded: recordable(settings),
  };
}

/** Whether a checkpoint recording `recorded` was written with these settings (now or by earlier code). */
export function sameSettings(recorded: string, settings: SettingsHash): boolean {
  return recorded === settings.hash || recorded === settings.earlier;
}

/** The differing settings a refusal lists; the rest are counted. */
const CHANGES_SHOWN = 5;

/**
 * Refuses to resume `dir`, a checkpoint written with other settings than `settings` (sameSettings was false), naming
 * the settings that differ (`hyper.lr: 0.003 → 0.01`) where the checkpoint recorded them; one written before
 * checkpoints kept their settings says that it did not. `what` says what else the hash covers (model, data).
 */
export function settingsMismatch(
  dir: string,
  manifest: Pick<CheckpointManifest, 'settings'>,
  settings: SettingsHash,
  what: string,
): InputError {
  const head = `the checkpoint was written with different ${what}`;
  const hint = `resume with the settings it was written with, or train from step 0: delete ${dirname(dir)} (or give another checkpoint folder)`;
  const unrecorded = `${head}; it records only their hash (written before checkpoints kept their settings), so which differ is not known`;
  if (manifest.settings === undefined) return new InputError(unrecorded, { where: dir, hint, code: 'checkpoint-settings' });
  const show = (x: unknown) => (x === undefined ? '(none)' : JSON.stringify(x));
  const changes = jsonDiff([manifest.settings, settings.recorded]).map(
    (d) => `${d.path || '(all)'}: ${show(d.values[0])} → ${show(d.values[1])}`,
  );
  // Equal as recorded but not as hashed: a difference inside a value recorded by its digest has the digest differ,
  // so this is a checkpoint whose settings were edited, or a hash over what is not recorded.
  if (!changes.length) changes.push("(the recorded settings are the same: the checkpoint's hash does not match them)");
  const more = changes.length > CHANGES_SHOWN ? [`… and ${changes.length - CHANGES_SHOWN} more`] : [];
  return new InputError([`${head} (checkpoint → now):`, ...changes.slice(0, CHANGES_SHOWN), ...more].join('\n  '), {
    where: dir,
    hint,
    code: 'checkpoint-settings',
  });
}

/** A row of a training history: the step it records, and its metrics (numbers, or objects of them). */
export interface HistoryRecord {
  step: number;
  /** The step's training loss: every trainer records it. */
  loss: number;
}

export interface CheckpointData<Row extends HistoryRecord = HistoryRecord> {
  manifest: CheckpointManifest;
  params: Map<string, TypedArray>;
  state: Map<string, TypedArray>;
  /**
   * The training history up to and including manifest.step, a row per optimizer step, oldest first
   * (history.json). Undefined when reading a checkpoint written before checkpoints carried their
   * history: a run resumed from one has a history that starts at the checkpoint's step + 1. A run that
   * resumed from such a checkpoint carries only the rows it has, so its rows need not start at step 1.
   */
  history?: readonly Row[];
  /**
   * The trainable weights at manifest.bestStep. Written (best-weights.safetensors) only when bestStep is
   * before manifest.step: at manifest.step they are `params`, and storing them again would double the
   * checkpoint for nothing. When they are stored, the checkpoint holds the trainable weights twice: a few MB
   * for LoRA adapters, the size of weights.safetensors again for full fine-tuning. Pointing at the older
   * step's folder instead would not survive pruning (keepCheckpoints) nor the shared store, which keeps
   * one checkpoint. Read back whenever manifest.bestStep is set (for bestStep === step, as a copy of
   * `params`); undefined when it is not, as in checkpoints written before checkpoints carried the best step.
   */
  bestParams?: Map<string, TypedArray>;
}

/** The history file of a checkpoint folder (optional: older checkpoints have none). */
export const HISTORY_FILE = 'history.json';
/** The best weights file of a checkpoint folder: there when manifest.bestStep is before manifest.step. */
export const BEST_WEIGHTS_FILE = 'best-weights.safetensors';

/**
 * JSON has no NaN, ±Infinity or -0 (a gradient norm or a validation metric can be NaN): they are written
 * as strings and read back as the numbers, so a history round-trips exactly (finite numbers do anyway:
 * JSON.stringify writes the shortest text that parses back to the same double).
 */
const SPECIAL: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity, '-0': -0 };
function encodeNumber(_key: string, v: unknown): unknown {
  if (typeof v !== 'number') return v;
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity || v === -Infinity) return String(v);
  return Object.is(v, -0) ? '-0' : v;
}
function decodeNumber(_key: string, v: unknown): unknown {
  return typeof v === 'string' && Object.hasOwn(SPECIAL, v) ? SPECIAL[v] : v;
}

/** One row a line: a few MB for 100k steps, beside weights and optimizer state of MBs to GBs. */
function historyText(rows: readonly HistoryRecord[]): string {
  return rows.length ? `[\n${rows.map((r) => JSON.stringify(r, encodeNumber)).join(',\n')}\n]\n` : '[]\n';
}

function readHistory(path: string, step: number): HistoryRecord[] {
  const rows = ((): unknown => {
    try {
      return JSON.parse(readFileSync(path, 'utf8'), decodeNumber);
    } catch (e) {
      throw new InputError(`the checkpoint's training history is not JSON: ${(e as Error).message}`, { where: path });
    }
  })();
  // Consecutive steps ending at the checkpoint's: a history that does not fit the weights beside it would
  // give the resumed run a record of steps it did not take.
  // Every row holds the step and the loss, and only numbers (or objects of them, such as validation
  // metrics): a row of strings would reach the exported manifest and the history table as they are.
  const first = Array.isArray(rows) ? step - rows.length + 1 : 0;
  if (
    !Array.isArray(rows) ||
    rows.length === 0 ||
    first < 1 ||
    !rows.every(
      (r: unknown, i) => isNumbers(r) && (r as HistoryRecord).step === first + i && typeof (r as { loss?: unknown }).loss === 'number',
    )
  )
    throw new InputError(`the checkpoint's training history does not end at its step ${step} with a row per step`, {
      where: path,
      hint: 'resume from an intact checkpoint, or start afresh (resume: false or a fresh checkpointDir)',
    });
  return rows as HistoryRecord[];
}

/** An object whose values are numbers or such objects, all the way down. */
function isNumbers(v: unknown): boolean {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  return Object.values(v).every((x) => typeof x === 'number' || isNumbers(x));
}

function toSafe(a: TypedArray, shape: number[]): SafeTensor {
  if (a instanceof Float32Array) return { dtype: 'F32', shape, data: a };
  if (a instanceof Float64Array) return { dtype: 'F64', shape, data: a };
  throw new Error('checkpoints hold float32/float64 tensors only');
}

export function saveCheckpoint(dir: string, data: CheckpointData): void {
  if (data.history?.length && data.history.at(-1)!.step !== data.manifest.step)
    throw new Error(`the history ends at step ${data.history.at(-1)!.step}, the checkpoint is of step ${data.manifest.step}`);
  const { step, bestStep } = data.manifest;
  if (bestStep !== undefined && !(Number.isInteger(bestStep) && bestStep >= 1 && bestStep <= step))
    throw new Error(`the best step ${bestStep} is not a step of the run up to the checkpoint's step ${step}`);
  if (bestStep === undefined && data.bestParams) throw new Error('best weights without a best step');
  // Only best weights other than the checkpoint's own are written (see CheckpointData.bestParams).
  const storeBest = bestStep !== undefined && bestStep < step;
  if (storeBest && !data.bestParams) throw new Error(`the checkpoint of step ${step} lacks the weights of its best step ${bestStep}`);
  const tmp = join(dirname(dir), `.${basename(dir)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const sh = data.manifest.shapes;
  const tensors = (m: Map<string, TypedArray>) => new Map([...m].map(([k, v]) => [k, toSafe(v, sh[k] ?? [v.length])]));
  const meta = { format: 'tempered' };
  const history = data.history ? historyText(data.history) : undefined;
  const manifestText = JSON.stringify(data.manifest, null, 2) + '\n';
  try {
    writeSafetensors(join(tmp, 'weights.safetensors'), tensors(data.params), meta);
    writeSafetensors(join(tmp, 'optimizer.safetensors'), tensors(data.state), meta);
    if (history !== undefined) writeFileSync(join(tmp, HISTORY_FILE), history);
    if (storeBest) writeSafetensors(join(tmp, BEST_WEIGHTS_FILE), tensors(data.bestParams!), meta);
    writeFileSync(join(tmp, 'manifest.json'), manifestText);
  } catch (e) {
    // A checkpoint cut short by a full disk holds most of the space it lacked: freed now, as the
    // writer lives on (a retry in the same worker) and removeStaleTemps clears only dead writers' folders.
    rmSync(tmp, { recursive: true, force: true });
    if (!isDiskFull(e)) throw e;
    // What the whole checkpoint takes, its files' exact sizes (the tensors and their headers as encoded), counted
    // only now: the user needs that much free, and a write that fits should not pay for the count.
    const safetensorsBytes = (m: Map<string, TypedArray>) => encodeSafetensors(tensors(m), meta).reduce((n, c) => n + c.byteLength, 0);
    const needed =
      safetensorsBytes(data.params) +
      safetensorsBytes(data.state) +
      (storeBest ? safetensorsBytes(data.bestParams!) : 0) +
      (history !== undefined ? Buffer.byteLength(history) : 0) +
      Buffer.byteLength(manifestText);
    // Named here, where the folder is known: Node's write error names no file, and with the folder gone
    // the full disk has its space back, so the stage adapter's guess (the listed disk with the least
    // free) would blame another disk, TMPDIR's, whenever that one has less.
    throw diskFullError(e, [dirname(dir)], { at: dirname(dir), neededBytes: needed });
  }
  if (existsSync(dir)) {
    const old = `${tmp}.old`;
    renameSync(dir, old);
    renameSync(tmp, dir);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(tmp, dir);
  }
}

/**
 * Reads a checkpoint folder. Row is the caller's history row type: rows are checked for their step
 * numbers only, the rest is what the writer put there (a checkpoint's config hash ties it to its writer).
 */
export function loadCheckpoint<Row extends HistoryRecord = HistoryRecord>(dir: string): CheckpointData<Row> {
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
  const hpath = join(dir, HISTORY_FILE);
  // Checkpoints written before they carried the history have no history.json: they still resume, with the
  // history starting after the checkpoint's step (history undefined).
  const history = existsSync(hpath) ? (readHistory(hpath, manifest.step) as Row[]) : undefined;
  const params = read('weights.safetensors');
  // Checkpoints written before they carried the best step have none (their `best` score is there):
  // bestParams is then undefined, and what a resume does without them is the trainer's to say.
  const bestParams = manifest.bestStep === undefined ? undefined : readBest(dir, manifest, params);
  return {
    manifest,
    params,
    state: read('optimizer.safetensors'),
    ...(history ? { history } : {}),
    ...(bestParams ? { bestParams } : {}),
  };
}

function readBest(dir: string, manifest: CheckpointManifest, params: Map<string, TypedArray>): Map<string, TypedArray> {
  const { step, bestStep } = manifest;
  if (!(Number.isInteger(bestStep) && bestStep! >= 1 && bestStep! <= step))
    throw new InputError(`the checkpoint's best step ${JSON.stringify(bestStep)} is not a step up to its step ${step}`, {
      where: join(dir, 'manifest.json'),
    });
  // At the checkpoint's own step the best weights are its weights: a copy, as training goes on from them.
  if (bestStep === step) return new Map([...params].map(([k, v]) => [k, v.slice()]));
  const bpath = join(dir, BEST_WEIGHTS_FILE);
  if (!existsSync(bpath))
    throw new InputError(`the checkpoint of step ${step} lacks the weights of its best step ${bestStep} (${BEST_WEIGHTS_FILE})`, {
      where: dir,
      hint: 'resume from an intact checkpoint, or start afresh (resume: false or a fresh checkpointDir)',
    });
  const best = new Map([...readSafetensors(bpath).tensors].map(([k, t]) => [k, t.data as TypedArray]));
  // The same tensors as the weights beside them, of the same type and size, and finite: a best score is
  // never that of NaN weights, and a mismatch would surface only at export, after the whole training.
  const mismatch = (k: string, v: TypedArray | undefined) => {
    const w = params.get(k);
    if (!w || !v) return `${k} is missing`;
    if (v.constructor !== w.constructor || v.length !== w.length) return `${k} is not of the weights' type and size`;
    if (v instanceof Float32Array || v instanceof Float64Array) if (!v.every(Number.isFinite)) return `${k} is not finite`;
    return undefined;
  };
  const problem = [...new Set([...params.keys(), ...best.keys()])].map((k) => mismatch(k, best.get(k))).find((m) => m !== undefined);
  if (problem)
    throw new InputError(`the checkpoint's best weights do not fit its weights: ${problem}`, {
      where: bpath,
      hint: 'resume from an intact checkpoint, or start afresh (resume: false or a fresh checkpointDir)',
    });
  return best;
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
