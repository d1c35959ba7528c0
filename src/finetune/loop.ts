/**
 * The classification training loop over compiled engine programs, fed from length-bucketed token
 * batches (the engine's Trainer feeds fixed-width columns; bucketing is what makes short-text
 * fine-tuning fast on CPU). Checkpoints use the engine's format; a resumed run replays the same data
 * order, learning rates and dropout seeds, so its weights are bitwise those of an uninterrupted run,
 * and it carries on early stopping's best step and weights, so it exports the same ones.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import type { TypedArray } from '../onnx/dtype.ts';
import { allocate } from '../onnx/dtype.ts';
import { LOSS_OUTPUT, type TrainProgram } from '../engine/compile.ts';
import { DropoutMasker } from '../engine/dropout-masks.ts';
import { learningRate, type ScheduleSpec } from '../engine/lr-schedules.ts';
import { Rng } from '../engine/prng.ts';
import { createSession, toOrt, type Device } from '../engine/runtime.ts';
import {
  loadCheckpoint,
  pruneCheckpoints,
  sameSettings,
  settingsMismatch,
  saveCheckpoint,
  type CheckpointManifest,
  type SettingsHash,
} from '../engine/checkpoint.ts';
import { StepRunner } from '../engine/step-runner.ts';
import { classificationReport } from '../eval/metrics.ts';
import { makeBatch, type TokenTable } from './batches.ts';
import { FEATURES, LOGITS } from './bert.ts';

export interface Progress {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  samplesPerSec: number;
  etaSec: number;
  gradNorm?: number;
  /** Validation metrics of this step, when it evaluated. */
  val?: ValMetrics;
}

export interface ValMetrics {
  loss: number;
  accuracy: number;
  f1_macro: number;
}

export interface HistoryRow {
  step: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  val?: ValMetrics;
}

/** The validation scores of an exported model, as its manifest keeps them (`training.validation`). */
export type ExportedValidation = { step: number; loss: number; accuracy?: number; f1_macro?: number };

/**
 * The validation scores of the weights a training exports, for its manifest, which `register` reads (val_*): those of
 * early stopping's best step where it exported that step's weights, else of the last evaluation. Undefined without one.
 */
export function exportedValidation(
  history: readonly { step: number; val?: Omit<ExportedValidation, 'step'> }[],
  bestStep?: number,
): ExportedValidation | undefined {
  const row = bestStep !== undefined ? history.find((h) => h.step === bestStep) : history.findLast((h) => h.val !== undefined);
  return row?.val ? { step: row.step, ...row.val } : undefined;
}

export type StopMetric = 'loss' | 'accuracy' | 'f1_macro';

export interface LoopOptions {
  program: TrainProgram;
  train: TokenTable;
  val?: TokenTable;
  labels: string[];
  seed: number;
  batchSize: number;
  accumulation: number;
  epochs?: number;
  maxSteps?: number;
  lr: number;
  schedule: 'constant' | 'linear' | 'cosine';
  warmupRatio?: number;
  warmupSteps?: number;
  bucket: number;
  /** Batch rows of similar length together (shuffled within and across groups), cutting padding. */
  groupByLength: boolean;
  device: Device;
  threads?: number;
  checkpointDir: string;
  checkpointEvery: number;
  /** Only the newest this many checkpoints are kept, pruned as each is written (default: all; at least 1). */
  keepCheckpoints?: number;
  resume: boolean;
  evalEvery?: number;
  earlyStopping?: { metric: StopMetric; patience: number };
  /** Of everything that shapes the trajectory (checked on resume): settingsHash of it. */
  configHash: SettingsHash;
  onProgress?: (m: Progress) => void;
  /** Called after each checkpoint is on disk; training awaits what it returns (the upload to a shared store). */
  onCheckpoint?: (dir: string) => unknown;
  signal?: AbortSignal;
  /** Optimizer steps per onnxruntime run (default: defaultStepsPerRun); runs end at evaluations and checkpoints. */
  stepsPerRun?: number;
  runBudgetMs?: number;
}

export interface LoopResult {
  params: Map<string, TypedArray>;
  steps: number;
  epochs: number;
  finalLoss: number;
  bestStep?: number;
  /** Weights at bestStep (early stopping), else undefined. */
  bestParams?: Map<string, TypedArray>;
  history: HistoryRow[];
  resumedFromStep?: number;
  /** Where the steps ran (what `auto` chose). */
  device: Exclude<Device, 'auto'>;
}

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(8, '0')}`;
}

/** The newest complete checkpoint folder in `dir` (temp folders never match), or undefined. */
export function latestCheckpoint(dir: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  const names = readdirSync(dir)
    .filter((n) => /^step-\d{8}$/.test(n) && existsSync(join(dir, n, 'manifest.json')))
    .sort();
  return names.length ? join(dir, names[names.length - 1]!) : undefined;
}

function abortError(signal: AbortSignal): Error {
  const r = signal.reason;
  if (r instanceof Error) return r;
  const e = new Error(typeof r === 'string' ? r : 'training was aborted');
  e.name = 'AbortError';
  return e;
}

export async function runLoop(o: LoopOptions): Promise<LoopResult> {
  const prog = o.program;
  const sessOpts = { device: o.device, threads: o.threads };
  const n = o.train.rows;
  const perStep = o.batchSize * o.accumulation;
  const stepsPerEpoch = Math.floor(epochBatches(o.train, o.batchSize, o.seed, 0, o.groupByLength).length / o.accumulation);
  if (stepsPerEpoch < 1)
    throw new InputError(
      `the training table has ${n} rows, fewer than one optimizer step of batchSize ${o.batchSize} × accumulation ${o.accumulation}`,
      { where: 'train.batchSize', hint: 'lower batchSize or accumulation, or add rows' },
    );
  const totalSteps = o.maxSteps ?? stepsPerEpoch * (o.epochs ?? 1);
  const warmupSteps = o.warmupSteps ?? Math.round((o.warmupRatio ?? 0) * totalSteps);
  const schedule: ScheduleSpec =
    o.schedule === 'constant' ? { kind: 'constant', lr: o.lr, warmupSteps } : { kind: o.schedule, lr: o.lr, warmupSteps, totalSteps };

  // Head-only programs train on pooled features computed once by the frozen backbone.
  let trainFeatures: Float32Array | undefined,
    valFeatures: Float32Array | undefined,
    featureDim = 0;
  const featureName = prog.backbone?.features ?? FEATURES;
  if (prog.backbone) {
    const bb = await createSession(prog.backbone.model, sessOpts);
    try {
      const f = await featurize(bb, o.train, o.bucket, featureName);
      trainFeatures = f.data;
      featureDim = f.dim;
      if (o.val) valFeatures = (await featurize(bb, o.val, o.bucket, featureName)).data;
    } finally {
      await bb.release();
    }
  }
  const dataFeeds = (t: TokenTable, feats: Float32Array | undefined, idx: ArrayLike<number>): Record<string, ort.Tensor> => {
    if (!t.labels) throw new Error('the table has no labels');
    if (feats) {
      const x = new Float32Array(idx.length * featureDim);
      for (let i = 0; i < idx.length; i++) x.set(feats.subarray(idx[i]! * featureDim, (idx[i]! + 1) * featureDim), i * featureDim);
      const labels = BigInt64Array.from(Array.from(idx, (r) => BigInt(t.labels![r]!)));
      return { [featureName]: toOrt('float32', x, [idx.length, featureDim]), labels: toOrt('int64', labels, [idx.length]) };
    }
    const b = makeBatch(t, idx, o.bucket);
    return {
      input_ids: toOrt('int64', b.inputIds, [b.rows, b.seq]),
      attention_mask: toOrt('int64', b.attentionMask, [b.rows, b.seq]),
      token_type_ids: toOrt('int64', b.tokenTypeIds, [b.rows, b.seq]),
      labels: toOrt('int64', b.labels!, [b.rows]),
    };
  };

  const params = new Map<string, TypedArray>();
  const state = new Map<string, TypedArray>();
  for (const p of prog.params) params.set(p.name, p.init.slice());
  for (const s of prog.state)
    state.set(
      s.input,
      allocate(
        s.dtype,
        s.dims.reduce((a, b) => a * b, 1),
      ),
    );

  let step = 0,
    epoch = 0,
    position = 0,
    best: number | undefined,
    bad = 0;
  let dropRng = new Rng((o.seed ^ 0x5bd1e995) >>> 0);
  let resumedFromStep: number | undefined;
  const history: HistoryRow[] = [];
  // Early stopping: the step of the best evaluation so far and the trainable weights then (exported).
  let bestStep: number | undefined;
  let bestParams: Map<string, TypedArray> | undefined;
  if (o.resume) {
    const dir = latestCheckpoint(o.checkpointDir);
    if (dir) {
      const ck = loadCheckpoint<HistoryRow>(dir);
      if (!sameSettings(ck.manifest.configHash, o.configHash))
        throw settingsMismatch(dir, ck.manifest, o.configHash, 'training settings, model or data');
      for (const p of prog.params) {
        const v = ck.params.get(p.name);
        if (!v) throw new InputError(`checkpoint lacks weight '${p.name}'`, { where: dir });
        params.set(p.name, v);
      }
      for (const s of prog.state) {
        const v = ck.state.get(s.input);
        if (!v) throw new InputError(`checkpoint lacks optimizer state '${s.input}'`, { where: dir });
        state.set(s.input, v);
      }
      ({ step, epoch, position, best } = ck.manifest);
      bad = ck.manifest.evalsWithoutImprovement;
      dropRng = new Rng(ck.manifest.rng);
      resumedFromStep = step;
      // The steps before the checkpoint, as they were recorded, so that the run's history is the
      // uninterrupted run's. A checkpoint from before checkpoints carried a history has none: the
      // history then starts after the checkpoint's step.
      if (ck.history) history.push(...ck.history);
      // The best step and its weights, so that the run exports what the uninterrupted run exports even when
      // no better step comes after the checkpoint. A checkpoint from before checkpoints carried them has its
      // best score only: early stopping still counts evaluations without improvement as the uninterrupted
      // run did, but the weights at that score are gone, so unless a later evaluation beats it the run
      // exports its final weights and reports no best step (what every resume did before).
      if (ck.bestParams) {
        bestStep = ck.manifest.bestStep;
        bestParams = new Map();
        for (const p of prog.params) {
          const v = ck.bestParams.get(p.name);
          if (!v) throw new InputError(`checkpoint lacks best-step weight '${p.name}'`, { where: dir });
          bestParams.set(p.name, v);
        }
      }
    }
  }
  // A checkpoint written where early stopping ended the run (killed before its export): the uninterrupted
  // run trained no further step.
  const stoppedEarly = o.earlyStopping !== undefined && bad >= o.earlyStopping.patience;

  const runner = await StepRunner.open(prog, params, state, {
    accumulation: o.accumulation,
    stepsPerRun: o.stepsPerRun,
    runBudgetMs: o.runBudgetMs,
    ...sessOpts,
  });
  const evalSession = o.val ? await createSession(prog.eval, sessOpts) : undefined;
  const device = runner.device;
  let batches = epochBatches(o.train, o.batchSize, o.seed, epoch, o.groupByLength);
  const nextIdx = (): Uint32Array => {
    if (position >= stepsPerEpoch * o.accumulation) {
      epoch++;
      position = 0;
      batches = epochBatches(o.train, o.batchSize, o.seed, epoch, o.groupByLength);
    }
    return batches[position++]!;
  };
  const masker = new DropoutMasker(prog.dropoutMasks, prog.dataInputs);
  /** Data feeds of one micro-batch, with its LoRA dropout masks (one RNG draw per micro-batch). */
  const trainFeeds = (): Record<string, ort.Tensor> => {
    const f = dataFeeds(o.train, trainFeatures, nextIdx());
    return prog.dropoutMasks.length > 0 ? { ...f, ...masker.feeds(f, dropRng.nextU32()) } : f;
  };

  // A run resumed from its last step's checkpoint (killed before its export) trains no further step.
  let finalLoss = history.at(-1)?.loss ?? NaN;
  const started = performance.now();
  const firstStep = step;
  // Time in validation passes: not training, so not in samples/s (it read as training slowing down after the first pass).
  let evalMs = 0;
  const progress = (r: HistoryRow) => {
    const elapsed = (performance.now() - started - evalMs) / 1000;
    const sps = ((r.step - firstStep) * perStep) / Math.max(1e-9, elapsed);
    o.onProgress?.({
      step: r.step,
      totalSteps,
      epoch: r.epoch,
      loss: r.loss,
      lr: r.lr,
      samplesPerSec: sps,
      etaSec: ((totalSteps - r.step) * perStep) / Math.max(1e-9, sps),
      gradNorm: r.gradNorm,
      ...(r.val ? { val: r.val } : {}),
    });
  };
  try {
    while (!stoppedEarly && step < totalSteps) {
      if (o.signal?.aborted) throw abortError(o.signal);
      const stops = {
        ends: [totalSteps],
        everys: [o.val ? o.evalEvery : undefined, o.checkpointEvery > 0 ? o.checkpointEvery : undefined],
      };
      const epochs: number[] = [];
      const run = await runner.next(
        step,
        stops,
        (s) => learningRate(schedule, s),
        () => {
          const f = trainFeeds();
          epochs.push(epoch);
          return f;
        },
      );
      let row!: HistoryRow;
      for (const [i, { loss, gradNorm, lr }] of run.steps.entries()) {
        if (!Number.isFinite(loss))
          throw new InputError(`loss became ${loss} at step ${step + 1}`, {
            where: 'train.lr',
            hint: 'lower the learning rate or set clipNorm',
          });
        step++;
        finalLoss = loss;
        row = { step, epoch: epochs[i]!, loss, lr, gradNorm };
        history.push(row);
        if (i < run.steps.length - 1) progress(row);
      }

      let stop = false;
      if (o.val && o.evalEvery && (step % o.evalEvery === 0 || step === totalSteps)) {
        const evalStart = performance.now();
        row.val = await evaluateTable(
          evalSession!,
          prog,
          o.val,
          valFeatures,
          featureName,
          featureDim,
          params,
          o.labels,
          o.batchSize,
          o.bucket,
        );
        evalMs += performance.now() - evalStart;
        if (o.earlyStopping) {
          const m = o.earlyStopping.metric;
          const score = m === 'loss' ? row.val.loss : -row.val[m];
          if (best === undefined || score < best) {
            best = score;
            bad = 0;
            bestStep = step;
            bestParams = new Map([...params].map(([k, v]) => [k, v.slice()]));
          } else if (++bad >= o.earlyStopping.patience) stop = true;
        }
      }
      progress(row);

      if (o.checkpointEvery > 0 && (step % o.checkpointEvery === 0 || step === totalSteps || stop)) {
        const dir = join(o.checkpointDir, checkpointName(step));
        const shapes: Record<string, number[]> = {};
        for (const p of prog.params) shapes[p.name] = p.dims;
        for (const s of prog.state) shapes[s.input] = s.dims;
        const manifest: CheckpointManifest = {
          format: 'tempered-checkpoint/1',
          step,
          epoch,
          position,
          rng: dropRng.state(),
          configHash: o.configHash.hash,
          settings: o.configHash.recorded,
          best,
          bestStep,
          evalsWithoutImprovement: bad,
          shapes,
        };
        // The history so far goes with it (a row per step: small beside the weights and optimizer state), and
        // the best weights: saveCheckpoint writes them only when bestStep is before this step (else they are
        // `params`); then a checkpoint holds the trainable weights twice (LoRA: the adapters; full: the model).
        saveCheckpoint(dir, { manifest, params, state, history, bestParams });
        // As the engine's Trainer does: the newest is always kept, whatever the count.
        if (o.keepCheckpoints !== undefined) pruneCheckpoints(o.checkpointDir, Math.max(1, o.keepCheckpoints));
        await o.onCheckpoint?.(dir);
      }
      if (stop) break;
    }
  } finally {
    await runner.release();
    await evalSession?.release();
  }
  return { params, steps: step, epochs: epoch + (position > 0 ? 1 : 0), finalLoss, bestStep, bestParams, history, resumedFromStep, device };
}

/** Rows per length group: large enough to shuffle well, small enough that lengths in a group vary. */
const GROUP_BATCHES = 32;

/**
 * The epoch's batches, a pure function of (seed, epoch): a seeded permutation; with grouping, each
 * window of GROUP_BATCHES batches is sorted by length, cut into batches, and the batch order shuffled
 * (as Hugging Face's group_by_length does). Incomplete batches are dropped.
 */
export function epochBatches(
  t: Pick<TokenTable, 'rows' | 'lengths'>,
  batchSize: number,
  seed: number,
  epoch: number,
  group: boolean,
): Uint32Array[] {
  const rng = new Rng((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
  const perm = rng.permutation(t.rows);
  const out: Uint32Array[] = [];
  if (!group) {
    for (let s = 0; s + batchSize <= t.rows; s += batchSize) out.push(perm.subarray(s, s + batchSize));
    return out;
  }
  const window = batchSize * GROUP_BATCHES;
  for (let s = 0; s < t.rows; s += window) {
    const seg = Array.from(perm.subarray(s, Math.min(t.rows, s + window))).sort((a, b) => t.lengths[a]! - t.lengths[b]! || a - b);
    for (let k = 0; k + batchSize <= seg.length; k += batchSize) out.push(Uint32Array.from(seg.slice(k, k + batchSize)));
  }
  const order = rng.permutation(out.length);
  return Array.from(order, (i) => out[i]!);
}

async function featurize(
  session: ort.InferenceSession,
  t: TokenTable,
  bucket: number,
  featureName: string,
): Promise<{ data: Float32Array; dim: number }> {
  let data: Float32Array | undefined;
  let dim = 0;
  const chunk = 64;
  for (let start = 0; start < t.rows; start += chunk) {
    const idx = Array.from({ length: Math.min(chunk, t.rows - start) }, (_, i) => start + i);
    const b = makeBatch(t, idx, bucket);
    const out = await session.run({
      input_ids: toOrt('int64', b.inputIds, [b.rows, b.seq]),
      attention_mask: toOrt('int64', b.attentionMask, [b.rows, b.seq]),
      token_type_ids: toOrt('int64', b.tokenTypeIds, [b.rows, b.seq]),
    });
    const f = out[featureName]!;
    dim = f.dims[1]!;
    data ??= new Float32Array(t.rows * dim);
    data.set(f.data as Float32Array, start * dim);
  }
  return { data: data ?? new Float32Array(0), dim };
}

/** Validation loss (row-weighted), accuracy and macro-F1 with the current weights. */
async function evaluateTable(
  session: ort.InferenceSession,
  prog: TrainProgram,
  t: TokenTable,
  feats: Float32Array | undefined,
  featureName: string,
  featureDim: number,
  params: Map<string, TypedArray>,
  labels: string[],
  batchSize: number,
  bucket: number,
): Promise<ValMetrics> {
  let lossSum = 0;
  const yTrue: string[] = [],
    yPred: string[] = [];
  const C = labels.length;
  // Token batches go shortest first, as training's are grouped by length: in table order each batch was
  // padded to its longest row, and a pass cost about as much as training steps over as many rows.
  // (Precomputed features are one width: kept in order, read as contiguous slices.)
  const order = Array.from({ length: t.rows }, (_, i) => i);
  if (!feats) order.sort((a, b) => t.lengths[a]! - t.lengths[b]! || a - b);
  for (let start = 0; start < t.rows; start += batchSize) {
    const idx = order.slice(start, start + batchSize);
    const feeds: Record<string, ort.Tensor> = {};
    if (feats) {
      const x = new Float32Array(idx.length * featureDim);
      x.set(feats.subarray(start * featureDim, (start + idx.length) * featureDim));
      feeds[featureName] = toOrt('float32', x, [idx.length, featureDim]);
    } else {
      const b = makeBatch(t, idx, bucket);
      feeds.input_ids = toOrt('int64', b.inputIds, [b.rows, b.seq]);
      feeds.attention_mask = toOrt('int64', b.attentionMask, [b.rows, b.seq]);
      feeds.token_type_ids = toOrt('int64', b.tokenTypeIds, [b.rows, b.seq]);
    }
    feeds.labels = toOrt(
      'int64',
      BigInt64Array.from(idx, (r) => BigInt(t.labels![r]!)),
      [idx.length],
    );
    for (const p of prog.params) feeds[p.name] = toOrt(p.dtype, params.get(p.name)!, p.dims);
    const out = await session.run(feeds);
    lossSum += Number(out[LOSS_OUTPUT]!.data[0]) * idx.length;
    const lg = out[LOGITS]!.data as Float32Array;
    idx.forEach((r, i) => {
      let arg = 0;
      for (let k = 1; k < C; k++) if (lg[i * C + k]! > lg[i * C + arg]!) arg = k;
      yTrue.push(labels[t.labels![r]!]!);
      yPred.push(labels[arg]!);
    });
  }
  const rep = classificationReport(yTrue, yPred, { labels, where: 'validation' });
  return { loss: lossSum / Math.max(1, t.rows), accuracy: rep.accuracy, f1_macro: rep.macro.f1 };
}
