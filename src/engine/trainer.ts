/**
 * Trainer: runs compiled train-step graphs on onnxruntime over plain typed-array datasets, with a seeded
 * data order, LR schedule, gradient accumulation, periodic evaluation, early stopping and checkpoints
 * that resume bitwise identically on CPU.
 */
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import type { DType, TypedArray } from '../onnx/dtype.ts';
import { allocate } from '../onnx/dtype.ts';
import type { TrainProgram } from './compile.ts';
import { LOSS_OUTPUT } from './compile.ts';
import { DropoutMasker } from './dropout-masks.ts';
import { learningRate, type ScheduleSpec } from './lr-schedules.ts';
import { Rng } from './prng.ts';
import { createSession, toOrt, type Device } from './runtime.ts';
import {
  loadCheckpoint,
  pruneCheckpoints,
  sameSettings,
  settingsMismatch,
  saveCheckpoint,
  settingsHash,
  type CheckpointManifest,
  type SettingsHash,
} from './checkpoint.ts';
import { StepRunner } from './step-runner.ts';

/** A column of examples: dims[0] is the number of examples. */
export interface Column {
  data: TypedArray;
  dims: number[];
  dtype: DType;
}
export type Dataset = Record<string, Column>;

export interface StepMetrics {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  samplesPerSec: number;
  /** Sequence length the step's batches were fed at (the widest micro-batch), for [rows, seq] data. */
  seqLen?: number;
  /**
   * The evaluation on the validation rows at this step, where one ran: set on the step's history row once it has
   * (onStep reports such a step after it, with this set), so a checkpoint's history carries it and a resumed run's history is the uninterrupted run's.
   */
  val?: { loss: number; accuracy?: number };
}

export interface EvalMetrics {
  step: number;
  epoch: number;
  loss: number;
  /** Cross-entropy programs: share of non-ignored labels whose argmax prediction is right. */
  accuracy?: number;
  /** Results of `evalFn`, when given. */
  custom?: Record<string, number>;
}

/** Outputs of the forward graph for one batch, by output name. */
export type Outputs = Record<string, { data: TypedArray; dims: number[] }>;

/**
 * A caller-defined evaluation: `predict` runs the current weights on any rows (in batches of batchSize)
 * and returns the forward outputs (e.g. logits); the returned numbers land in EvalMetrics.custom.
 */
export type EvalFn = (ctx: { predict: (data: Dataset) => Promise<Outputs>; step: number; val: Dataset }) => Promise<Record<string, number>>;

export interface TrainerOptions {
  device?: Device;
  threads?: number;
  seed: number;
  batchSize: number;
  /** Micro-batches per optimizer step (default 1). */
  accumulation?: number;
  epochs?: number;
  maxSteps?: number;
  schedule: ScheduleSpec;
  evalEvery?: number;
  /** Stop after this many evaluations without improvement of `monitor`. */
  patience?: number;
  /** 'loss' (lower is better), 'accuracy' or a key of evalFn's result (higher is better). */
  monitor?: string;
  evalFn?: EvalFn;
  checkpointEvery?: number;
  checkpointDir?: string;
  /** Keep only the newest N checkpoints (default: all; at least the one just written). */
  keepCheckpoints?: number;
  onStep?: (m: StepMetrics) => void;
  onEval?: (m: EvalMetrics) => void;
  /** Called after each checkpoint is on disk; training awaits what it returns (the upload to a shared store). */
  onCheckpoint?: (dir: string, step: number) => unknown;
  /** Stop (as if interrupted) after this optimizer step; for tests and time-boxed activities. */
  stopAfterStep?: number;
  /** Cancellation (e.g. a Temporal activity's): training stops after the current run of steps, keeping its weights. */
  signal?: AbortSignal;
  /**
   * Optimizer steps per onnxruntime run (default: defaultStepsPerRun: 8 on CUDA, 4 on CPU when the trainable
   * weights and optimizer state are large, else 1). Runs end at every evaluation, checkpoint and stop step, so
   * results do not depend on it; step metrics of one run are reported together when it ends. The first
   * run takes one step, and later runs stay within `runBudgetMs` (RunSizer): a run blocks the JS thread.
   */
  stepsPerRun?: number;
  /** Longest a multi-step run may take (RunSizer's budget). */
  runBudgetMs?: number;
  /**
   * The epoch's batches (row indices, batchSize rows each), a pure function of the epoch so resumes find the same
   * order; the same number every epoch. Default: consecutive slices of a seeded permutation of the rows.
   */
  epochBatches?: (epoch: number) => Uint32Array[];
  /**
   * Cut each training batch's [rows, seq] columns to its longest row (`lengths[row]` tokens, right-padded rows)
   * rounded up to a multiple of `bucket`: trailing padding every row of the batch has costs nothing then.
   */
  trimPadding?: { lengths: ArrayLike<number>; bucket: number };
}

export interface FitResult {
  params: Map<string, TypedArray>;
  step: number;
  epoch: number;
  stoppedEarly: boolean;
  /** The signal stopped training before maxSteps/epochs. */
  aborted: boolean;
  lastEval?: EvalMetrics;
  history: StepMetrics[];
  /** Where the steps ran (what `auto` chose). */
  device: Exclude<Device, 'auto'>;
}

const rows = (c: Column) => c.dims[0]!;
const rowSize = (c: Column) => c.data.length / Math.max(1, c.dims[0]!);

/** Rows `idx` of a column; a [rows, seq] column with `width` keeps only the first `width` positions of each row. */
function gatherRows(c: Column, idx: ArrayLike<number>, width?: number): Column {
  const rs = rowSize(c);
  const keep = width !== undefined && c.dims.length === 2 && width < rs ? width : rs;
  const out = allocate(c.dtype, idx.length * keep);
  for (let i = 0; i < idx.length; i++) out.set(c.data.subarray(idx[i]! * rs, idx[i]! * rs + keep) as never, i * keep);
  return { data: out, dims: keep === rs ? [idx.length, ...c.dims.slice(1)] : [idx.length, keep], dtype: c.dtype };
}

/** Feeds holding rows `idx` of each named column (cut to `width` positions when given). */
function rowFeeds(data: Dataset, names: readonly string[], idx: ArrayLike<number>, width?: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of names) {
    const c = gatherRows(data[name]!, idx, width);
    feeds[name] = toOrt(c.dtype, c.data, c.dims);
  }
  return feeds;
}

/** Row indices of consecutive batches covering rows 0..n-1 (the last one may be short). */
function* consecutiveBatches(n: number, batchSize: number): Generator<Uint32Array> {
  for (let start = 0; start < n; start += batchSize)
    yield Uint32Array.from({ length: Math.min(batchSize, n - start) }, (_, i) => start + i);
}

function checkDataset(ds: Dataset, needed: string[], what: string): number {
  let n = -1;
  for (const name of needed) {
    const c = ds[name];
    if (!c) throw new InputError(`${what} has no column '${name}' (the model needs ${needed.join(', ')})`, { where: `${what}.${name}` });
    if (n >= 0 && rows(c) !== n)
      throw new InputError(`${what} column '${name}' has ${rows(c)} rows, others have ${n}`, { where: `${what}.${name}` });
    n = rows(c);
  }
  return n;
}

export class Trainer {
  readonly program: TrainProgram;
  readonly opts: TrainerOptions;
  private params = new Map<string, TypedArray>();
  private state = new Map<string, TypedArray>();

  constructor(program: TrainProgram, opts: TrainerOptions) {
    if (!(opts.batchSize >= 1)) throw new InputError('batchSize must be at least 1', { where: 'train.batchSize' });
    if (opts.epochs === undefined && opts.maxSteps === undefined) throw new InputError('give epochs or maxSteps', { where: 'train' });
    this.program = program;
    this.opts = opts;
    for (const p of program.params) this.params.set(p.name, p.init.slice());
    for (const s of program.state)
      this.state.set(
        s.input,
        allocate(
          s.dtype,
          s.dims.reduce((a, b) => a * b, 1),
        ),
      );
  }

  /** Hash of everything that must match for a checkpoint to be resumable with these settings (settingsHash). */
  configHash(): SettingsHash {
    const o = this.opts;
    const cfg = {
      compile: this.program.options,
      seed: o.seed,
      batchSize: o.batchSize,
      accumulation: o.accumulation ?? 1,
      schedule: o.schedule,
      params: this.program.params.map((p) => [p.name, p.dims]),
      // A custom batch order (length grouping) is part of the data order a resume must reproduce: its first epoch stands for it.
      ...(o.epochBatches
        ? {
            epochBatches: o
              .epochBatches(0)
              .map((b) => Array.from(b).join(','))
              .join(';'),
          }
        : {}),
      ...(o.trimPadding ? { trimBucket: o.trimPadding.bucket } : {}),
    };
    return settingsHash(cfg);
  }

  /** Current trainable weights (name → values). */
  weights(): Map<string, TypedArray> {
    return this.params;
  }

  async fit(train: Dataset, val?: Dataset, fitOpts: { resumeFrom?: string } = {}): Promise<FitResult> {
    const o = this.opts;
    const prog = this.program;
    const sessOpts = { device: o.device, threads: o.threads };
    // Head-only: run the frozen backbone once over the data, then train the head on its features.
    if (prog.backbone) {
      train = await this.featurize(train, sessOpts);
      if (val) val = await this.featurize(val, sessOpts);
    }
    const masks = new Set(prog.dropoutMasks.map((m) => m.input));
    const feedNames = prog.dataInputs.map((v) => v.name).filter((n) => !masks.has(n));
    const n = checkDataset(train, feedNames, 'train data');
    if (val) checkDataset(val, feedNames, 'validation data');
    const accumulation = o.accumulation ?? 1;
    const perEpoch = o.epochBatches ? o.epochBatches(0).length : Math.floor(n / o.batchSize);
    if (perEpoch < accumulation)
      throw new InputError(`train data has ${n} rows: fewer than one optimizer step of ${accumulation}×${o.batchSize}`, {
        where: 'train.batchSize',
        hint: 'lower batchSize or accumulation',
      });
    const stepsPerEpoch = Math.floor(perEpoch / accumulation);
    const maxSteps = o.maxSteps ?? stepsPerEpoch * o.epochs!;

    let step = 0,
      epoch = 0,
      position = 0,
      best: number | undefined,
      bad = 0;
    const rng = new Rng(o.seed);
    let rngState = rng.state();
    let resumedHistory: readonly StepMetrics[] = [];
    // Once per fit, not per checkpoint: it walks the first epoch's batch order (epochBatches), and the settings are fixed.
    const settings = this.configHash();
    if (fitOpts.resumeFrom) {
      const ck = loadCheckpoint<StepMetrics>(fitOpts.resumeFrom);
      if (!sameSettings(ck.manifest.configHash, settings))
        throw settingsMismatch(fitOpts.resumeFrom, ck.manifest, settings, 'training settings');
      for (const [k, v] of ck.params) this.params.set(k, v);
      for (const [k, v] of ck.state) this.state.set(k, v);
      ({ step, epoch, position, best } = ck.manifest);
      bad = ck.manifest.evalsWithoutImprovement;
      rngState = ck.manifest.rng;
      // The steps before the checkpoint, as they were recorded (samplesPerSec too: the attempt's own), so that the
      // run's history is the uninterrupted run's. A checkpoint from before checkpoints carried a history has none:
      // the history then starts after the checkpoint's step.
      resumedHistory = ck.history ?? [];
    }
    const dropRng = new Rng(rngState);

    const runner = await StepRunner.open(prog, this.params, this.state, {
      accumulation,
      stepsPerRun: o.stepsPerRun,
      runBudgetMs: o.runBudgetMs,
      ...sessOpts,
    });
    const evalSession = val && o.evalEvery ? await createSession(prog.eval, sessOpts) : undefined;
    const evaluates = (s: number) => Boolean(val && o.evalEvery && (s % o.evalEvery === 0 || s === maxSteps));
    const history: FitResult['history'] = [...resumedHistory];
    let lastEval: EvalMetrics | undefined;
    let stoppedEarly = false,
      aborted = false;

    const plan = (e: number): Uint32Array[] => {
      if (o.epochBatches) return o.epochBatches(e);
      const perm = new Rng((o.seed ^ Math.imul(e + 1, 0x9e3779b1)) >>> 0).permutation(n);
      return Array.from({ length: perEpoch }, (_, b) => perm.subarray(b * o.batchSize, (b + 1) * o.batchSize));
    };
    let batches = plan(epoch);
    const trim = o.trimPadding;
    const batchWidth = (idx: Uint32Array): number | undefined => {
      if (!trim) return undefined;
      let longest = 1;
      for (const r of idx) longest = Math.max(longest, trim.lengths[r]!);
      return Math.ceil(longest / trim.bucket) * trim.bucket;
    };

    const masker = new DropoutMasker(prog.dropoutMasks, prog.dataInputs);
    const batchFeeds = (idx: Uint32Array): Record<string, ort.Tensor> => {
      const f = rowFeeds(train, feedNames, idx, batchWidth(idx));
      if (prog.dropoutMasks.length > 0) Object.assign(f, masker.feeds(f, dropRng.nextU32()));
      return f;
    };
    const nextBatch = (): Uint32Array => {
      if (position >= stepsPerEpoch * accumulation) {
        epoch++;
        position = 0;
        batches = plan(epoch);
      }
      const idx = batches[position]!;
      position++;
      return idx;
    };

    while (step < maxSteps) {
      const stops = {
        ends: [maxSteps, o.stopAfterStep],
        everys: [val ? o.evalEvery : undefined, o.checkpointDir ? o.checkpointEvery : undefined],
      };
      const epochs: number[] = [],
        widths: (number | undefined)[] = [];
      const run = await runner.next(
        step,
        stops,
        (s) => learningRate(o.schedule, s),
        () => {
          const f = batchFeeds(nextBatch());
          epochs.push(epoch);
          widths.push(Object.values(f).find((t) => t.dims.length === 2)?.dims[1]);
          return f;
        },
      );
      const perStepMs = run.ms / run.steps.length;
      for (const [i, { loss, gradNorm, lr }] of run.steps.entries()) {
        step++;
        if (!Number.isFinite(loss)) throw new Error(`loss became ${loss} at step ${step}; lower the learning rate or set clipNorm`);
        const m: StepMetrics = {
          step,
          epoch: epochs[i]!,
          loss,
          lr,
          gradNorm,
          samplesPerSec: (o.batchSize * accumulation * 1000) / Math.max(1e-9, perStepMs),
        };
        const seqLen = Math.max(...widths.slice(i * accumulation, (i + 1) * accumulation).map((w) => w ?? -1));
        if (seqLen > 0) m.seqLen = seqLen;
        history.push(m);
        // A step that evaluates is reported once its validation is on it: reported before, a causal LM's progress
        // line at that step had no val_loss although the history has one (a run ends at every evaluation).
        if (!(i === run.steps.length - 1 && evaluates(step))) o.onStep?.(m);
      }

      if (val && evaluates(step)) {
        lastEval = await this.evaluate(evalSession!, val, feedNames, step, epoch);
        if (o.evalFn) lastEval.custom = await o.evalFn({ predict: (d) => this.predictWith(evalSession!, d, feedNames), step, val });
        o.onEval?.(lastEval);
        const row = history.at(-1);
        if (row?.step === step) {
          row.val = { loss: lastEval.loss, ...(lastEval.accuracy !== undefined ? { accuracy: lastEval.accuracy } : {}) };
          o.onStep?.(row);
        }
        const monitor = o.monitor ?? 'loss';
        const metric =
          monitor === 'loss'
            ? lastEval.loss
            : monitor === 'accuracy'
              ? -(lastEval.accuracy ?? 0)
              : -(lastEval.custom?.[monitor] ?? Number.NEGATIVE_INFINITY);
        if (best === undefined || metric < best) {
          best = metric;
          bad = 0;
        } else bad++;
        if (o.patience !== undefined && bad >= o.patience) stoppedEarly = true;
      }
      if (o.checkpointDir && o.checkpointEvery && step % o.checkpointEvery === 0) {
        const dir = join(o.checkpointDir, `step-${String(step).padStart(8, '0')}`);
        const shapes: Record<string, number[]> = {};
        for (const p of prog.params) shapes[p.name] = p.dims;
        for (const s of prog.state) shapes[s.input] = s.dims;
        const manifest: CheckpointManifest = {
          format: 'tempered-checkpoint/1',
          step,
          epoch,
          position,
          rng: dropRng.state(),
          configHash: settings.hash,
          settings: settings.recorded,
          best,
          evalsWithoutImprovement: bad,
          shapes,
        };
        // The history so far goes with it (a row per step: small beside the weights and optimizer state).
        saveCheckpoint(dir, { manifest, params: this.params, state: this.state, history });
        if (o.keepCheckpoints !== undefined) pruneCheckpoints(o.checkpointDir, Math.max(1, o.keepCheckpoints));
        await o.onCheckpoint?.(dir, step);
      }
      if (o.signal?.aborted) {
        aborted = true;
        break;
      }
      if (stoppedEarly || (o.stopAfterStep !== undefined && step >= o.stopAfterStep)) break;
    }
    const device = runner.device;
    await runner.release();
    await evalSession?.release();
    return { params: this.params, step, epoch, stoppedEarly, aborted, lastEval, history, device };
  }

  /** Forward outputs of the eval graph for every row of `data` (batched, concatenated along rows). */
  private async predictWith(session: ort.InferenceSession, data: Dataset, feedNames: string[]): Promise<Outputs> {
    const n = rows(data[feedNames[0]!]!);
    const outs = this.program.eval.graph.outputs.map((o) => o.name).filter((o) => o !== LOSS_OUTPUT);
    const parts = new Map<string, { chunks: TypedArray[]; dims: number[] }>();
    for (const { feeds } of this.evalBatches(data, feedNames, n)) {
      const r = await session.run(feeds, outs);
      for (const o of outs) {
        const t = r[o]!;
        const e = parts.get(o) ?? { chunks: [], dims: t.dims.slice(1) as number[] };
        e.chunks.push(t.data as TypedArray);
        parts.set(o, e);
      }
    }
    const result: Outputs = {};
    for (const [o, e] of parts) {
      const total = e.chunks.reduce((s, c) => s + c.length, 0);
      const data = new (e.chunks[0]!.constructor as new (n: number) => TypedArray)(total);
      let off = 0;
      for (const c of e.chunks) {
        data.set(c as never, off);
        off += c.length;
      }
      result[o] = { data, dims: [n, ...e.dims] };
    }
    return result;
  }

  /** Consecutive batches of every row with the current weights: what prediction and evaluation feed. */
  private *evalBatches(data: Dataset, feedNames: string[], n: number): Generator<{ idx: Uint32Array; feeds: Record<string, ort.Tensor> }> {
    for (const idx of consecutiveBatches(n, this.opts.batchSize)) {
      const feeds = rowFeeds(data, feedNames, idx);
      for (const p of this.program.params) feeds[p.name] = toOrt(p.dtype, this.params.get(p.name)!, p.dims);
      yield { idx, feeds };
    }
  }

  /** Loss (mean over batches weighted by rows) and, for cross-entropy, accuracy on a dataset. */
  async evaluate(session: ort.InferenceSession, data: Dataset, feedNames: string[], step: number, epoch: number): Promise<EvalMetrics> {
    const prog = this.program;
    const n = rows(data[feedNames[0]!]!);
    const loss = prog.options.loss;
    let lossSum = 0,
      right = 0,
      counted = 0;
    for (const { idx, feeds } of this.evalBatches(data, feedNames, n)) {
      const out = await session.run(feeds);
      lossSum += Number(out[LOSS_OUTPUT]!.data[0]) * idx.length;
      if (loss.kind === 'cross_entropy') {
        const logits = out[prog.prediction]!;
        const labels = feeds[loss.labels ?? 'labels']!.data as BigInt64Array;
        const c = logits.dims[logits.dims.length - 1]!;
        const ld = logits.data as Float32Array;
        const t = loss.shift ? logits.dims[1]! : 1;
        const ignore = BigInt(loss.ignoreIndex ?? -100);
        for (let r = 0; r < ld.length / c; r++) {
          // With shift, position j predicts label j+1 of the same sequence.
          if (loss.shift && r % t === t - 1) continue;
          const label = labels[loss.shift ? r + 1 : r]!;
          if (label === ignore) continue;
          let arg = 0;
          for (let k = 1; k < c; k++) if (ld[r * c + k]! > ld[r * c + arg]!) arg = k;
          if (BigInt(arg) === label) right++;
          counted++;
        }
      }
    }
    return { step, epoch, loss: lossSum / n, accuracy: loss.kind === 'cross_entropy' ? right / Math.max(1, counted) : undefined };
  }

  private async featurize(ds: Dataset, sessOpts: { device?: Device; threads?: number }): Promise<Dataset> {
    const bb = this.program.backbone!;
    const session = await createSession(bb.model, sessOpts);
    const names = bb.model.graph.inputs.map((v) => v.name);
    const n = checkDataset(ds, names, 'data');
    const chunks: TypedArray[] = [];
    let dims: number[] = [];
    let dtype: DType = 'float32';
    for (const idx of consecutiveBatches(n, this.opts.batchSize)) {
      const f = (await session.run(rowFeeds(ds, names, idx)))[bb.features]!;
      chunks.push(f.data as TypedArray);
      dims = f.dims.slice(1) as number[];
      dtype = f.type === 'float64' ? 'float64' : 'float32';
    }
    await session.release();
    const total = chunks.reduce((s, c) => s + c.length, 0);
    const data = allocate(dtype, total);
    let off = 0;
    for (const c of chunks) {
      data.set(c as never, off);
      off += c.length;
    }
    const out: Dataset = { ...ds };
    const headInputs = new Set(this.program.dataInputs.map((v) => v.name));
    for (const name of names) if (!headInputs.has(name)) delete out[name];
    out[bb.features] = { data, dims: [n, ...dims], dtype };
    return out;
  }
}
