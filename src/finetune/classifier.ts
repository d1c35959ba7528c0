/**
 * trainClassifier: fine-tunes a BERT-family encoder for sequence classification, end to end:
 * tokenize the tables once (to Arrow), build the forward graph with a classification head, compile
 * the train step with the engine (full, LoRA or head-only), train with bucketed batches and
 * checkpoints, and export an inference folder (see export.ts).
 */
import { sha256File } from '../util/hash-file.ts';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import type { Model } from '../onnx/ir.ts';
import { settingsHash } from '../engine/checkpoint.ts';
import { compileTrainStep, type TrainableSpec, type TrainProgram } from '../engine/compile.ts';
import { loadTokenizer } from '../models/tokenizer.ts';
import { tokenizeToArrow } from '../models/tokenize-arrow.ts';
import { checkLoraLayers, checkLoraTargets, modelLayerCount } from '../models/lora-targets.ts';
import { readBertConfig } from '../models/bert.ts';
import { ModelConfig } from '../models/weights.ts';
import { checkTokenIdsFitModel, checkTokenTypesFitModel, checkWidthFitsPositions } from './token-ids.ts';
import { buildBertClassifier, CLASSIFIER_BIAS, CLASSIFIER_WEIGHT, FEATURES, type BertConfig, type Pooling } from './bert.ts';
import type { DropoutRates } from '../models/bert.ts';
import { POOLINGS } from '../models/pooling.ts';
import { readTokenTable, type TokenTable } from './batches.ts';
import { exportedValidation, runLoop, type HistoryRow, type Progress, type StopMetric } from './loop.ts';
import { exportClassifier, type ModelManifest } from './export.ts';
import { KEEP_CHECKPOINTS, type RunSettings } from './run-options.ts';
import { runsOnCuda } from '../engine/cuda.ts';
import { modelWeightsSha256 } from '../formats/safetensors-index.ts';
import type { Device } from '../engine/runtime.ts';

export interface LoraOptions {
  r: number;
  alpha: number;
  dropout?: number;
  /** Module names ('query', 'value', …) or weight-name patterns (globs or /regex/). Default query + value. */
  targets?: string[];
  /** Only these encoder layers get adapters (default: all). */
  layers?: number[];
}

export type DropoutSetting = number | DropoutRates;

/** The rates a dropout setting gives (undefined fields: the checkpoint's). */
export function dropoutRates(d: DropoutSetting | undefined): DropoutRates | undefined {
  return typeof d === 'number' ? { hidden: d, attention: d, classifier: d } : d;
}

/** `train` (and `validation`) hold a text and a label column. */
export interface TrainClassifierOptions extends RunSettings {
  labels: string[];
  textColumn?: string;
  labelColumn?: string;
  method: 'full' | 'lora' | 'head';
  lora?: LoraOptions;
  warmupRatio?: number;
  pooling: Pooling;
  /** Batches are padded to the longest row rounded up to this multiple (default 8). */
  bucket?: number;
  /** Batch texts of similar length together (default true): far less padding on short-text data. */
  groupByLength?: boolean;
  /**
   * The encoder's dropout while training (inference never drops out). Default: the checkpoint's
   * config.json rates (hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout; 0.1 each
   * when absent), as transformers applies them in train mode. A number sets every rate; `hidden` also
   * sets the classifier's unless `classifier` is given; 0 turns dropout off.
   */
  dropout?: DropoutSetting;
  earlyStopping?: { metric: StopMetric; patience: number };
  onProgress?: (m: Progress) => void;
  signal?: AbortSignal;
}

export interface TrainResult {
  steps: number;
  epochs: number;
  finalLoss: number;
  bestStep?: number;
  history: HistoryRow[];
  resumedFromStep?: number;
  /** Rows whose text was cut at maxLength (train table). */
  truncatedRows: number;
  outDir: string;
  /** Where the steps ran (what `auto` chose). */
  device: Exclude<Device, 'auto'>;
}

const posInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1;

function validate(o: TrainClassifierOptions): void {
  const bad = (field: string, msg: string, hint?: string) => {
    throw new InputError(msg, { where: `train.${field}`, hint });
  };
  if (!existsSync(o.train)) bad('train', `table ${o.train} does not exist`);
  if (o.validation !== undefined && !existsSync(o.validation)) bad('validation', `table ${o.validation} does not exist`);
  if (!Array.isArray(o.labels) || o.labels.length < 2) bad('labels', 'give at least two class labels, in a fixed order');
  if (new Set(o.labels).size !== o.labels.length) bad('labels', `labels ${JSON.stringify(o.labels)} contain duplicates`);
  if (!['full', 'lora', 'head'].includes(o.method)) bad('method', `method ${JSON.stringify(o.method)} is not one of full, lora, head`);
  if (o.method === 'lora') {
    if (!o.lora) bad('lora', 'method lora needs lora: { r, alpha }');
    if (!posInt(o.lora!.r)) bad('lora.r', `r must be a positive integer, got ${o.lora!.r}`);
    if (!(o.lora!.alpha > 0)) bad('lora.alpha', `alpha must be positive, got ${o.lora!.alpha}`);
  }
  if (!(o.lr > 0 && o.lr < 1)) bad('lr', `lr must be in (0, 1), got ${o.lr}`, 'typical: 2e-5…5e-5 full, 5e-4…2e-3 LoRA, 1e-3…1e-2 head');
  if (o.epochs === undefined && o.maxSteps === undefined) bad('epochs', 'give epochs or maxSteps');
  if (o.epochs !== undefined && !posInt(o.epochs)) bad('epochs', `epochs must be a positive integer, got ${o.epochs}`);
  if (o.maxSteps !== undefined && !posInt(o.maxSteps)) bad('maxSteps', `maxSteps must be a positive integer, got ${o.maxSteps}`);
  if (!posInt(o.batchSize)) bad('batchSize', `batchSize must be a positive integer, got ${o.batchSize}`);
  if (o.accumulation !== undefined && !posInt(o.accumulation))
    bad('accumulation', `accumulation must be a positive integer, got ${o.accumulation}`);
  if (o.warmupRatio !== undefined && !(o.warmupRatio >= 0 && o.warmupRatio < 1))
    bad('warmupRatio', `warmupRatio must be in [0, 1), got ${o.warmupRatio}`);
  if (!['constant', 'linear', 'cosine'].includes(o.schedule))
    bad('schedule', `schedule ${JSON.stringify(o.schedule)} is not one of constant, linear, cosine`);
  if (!(o.weightDecay >= 0)) bad('weightDecay', `weightDecay must be ≥ 0, got ${o.weightDecay}`);
  if (o.clipNorm !== undefined && !(o.clipNorm > 0)) bad('clipNorm', `clipNorm must be positive, got ${o.clipNorm}`);
  if (!Number.isInteger(o.seed)) bad('seed', `seed must be an integer, got ${o.seed}`);
  if (!posInt(o.maxLength) || o.maxLength < 3) bad('maxLength', `maxLength must be an integer ≥ 3, got ${o.maxLength}`);
  const rates = dropoutRates(o.dropout);
  for (const k of ['hidden', 'attention', 'classifier'] as const) {
    const v = rates?.[k];
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && v < 1))
      bad(typeof o.dropout === 'number' ? 'dropout' : `dropout.${k}`, `dropout rate must be a number in [0, 1), got ${JSON.stringify(v)}`);
  }
  if (!(POOLINGS as readonly string[]).includes(o.pooling))
    bad('pooling', `pooling must be ${POOLINGS.join(', ')}, got ${JSON.stringify(o.pooling)}`);
  if (!['cpu', 'webgpu', 'cuda', 'auto'].includes(o.device))
    bad('device', `device must be cpu, webgpu, cuda or auto, got ${JSON.stringify(o.device)}`);
  if (!(Number.isInteger(o.checkpointEvery) && o.checkpointEvery >= 0))
    bad('checkpointEvery', `checkpointEvery must be an integer ≥ 0, got ${o.checkpointEvery}`);
  if (o.evalEvery !== undefined && !posInt(o.evalEvery)) bad('evalEvery', `evalEvery must be a positive integer, got ${o.evalEvery}`);
  if (o.earlyStopping) {
    if (!o.validation || !o.evalEvery) bad('earlyStopping', 'early stopping needs a validation table and evalEvery');
    if (!['loss', 'accuracy', 'f1_macro'].includes(o.earlyStopping.metric))
      bad('earlyStopping.metric', `metric must be loss, accuracy or f1_macro, got ${JSON.stringify(o.earlyStopping.metric)}`);
    if (!posInt(o.earlyStopping.patience))
      bad('earlyStopping.patience', `patience must be a positive integer, got ${o.earlyStopping.patience}`);
  }
}

const DEFAULT_TARGETS = ['query', 'value'];

/** Weight-name patterns for LoRA: short module names become globs, restricted to `layers` when given. */
export function loraTargetPatterns(targets: string[] | undefined, layers: number[] | undefined): string[] {
  const names = targets?.length ? targets : DEFAULT_TARGETS;
  const isPattern = (t: string) => /[*?/.]/.test(t);
  if (!layers?.length) return names.map((t) => (isPattern(t) ? t : `*.${t}.weight`));
  const out: string[] = [];
  for (const l of layers) for (const t of names) out.push(isPattern(t) ? t : `encoder.layer.${l}.*.${t}.weight`);
  return out;
}

/**
 * The value the classifier head reads: the graph output `embeddings` is an Identity of it, so the
 * head-only split must cut at its input for the head not to depend on the encoder.
 */
function pooledValue(model: Model): string {
  const id = model.graph.nodes.find((n) => n.opType === 'Identity' && n.outputs[0] === FEATURES);
  return id ? id.inputs[0]! : FEATURES;
}

/** Forward graph + compiled train program for the options' model, method and head (no data needed). */
export function compileClassifier(
  o: Pick<TrainClassifierOptions, 'modelDir' | 'labels' | 'method' | 'lora' | 'pooling' | 'seed' | 'weightDecay' | 'clipNorm' | 'dropout'> &
    Partial<Pick<TrainClassifierOptions, 'device'>>,
): { program: TrainProgram; config: BertConfig } {
  if (o.method === 'lora') checkLoraLayers(o.lora!.layers, modelLayerCount(o.modelDir));
  const { model, config } = buildBertClassifier(o.modelDir, {
    numLabels: o.labels.length,
    pooling: o.pooling,
    seed: o.seed,
    dropout: dropoutRates(o.dropout),
  });
  const head = [CLASSIFIER_WEIGHT, CLASSIFIER_BIAS];
  let trainable: TrainableSpec;
  if (o.method === 'full') trainable = { kind: 'full' };
  else if (o.method === 'head') trainable = { kind: 'head', features: pooledValue(model) };
  else {
    // Every target must adapt something: a typo (or another architecture's name) would otherwise be left out silently.
    checkLoraTargets(model, {
      targets: o.lora!.targets?.length ? o.lora!.targets : DEFAULT_TARGETS,
      defaulted: !o.lora!.targets?.length,
      resolve: (t) => loraTargetPatterns(t, o.lora!.layers),
      layers: o.lora!.layers,
      modelType: 'bert',
    });
    trainable = {
      kind: 'lora',
      r: o.lora!.r,
      alpha: o.lora!.alpha,
      dropout: o.lora!.dropout ?? 0,
      targets: loraTargetPatterns(o.lora!.targets, o.lora!.layers),
      seed: o.seed,
      alsoTrain: head,
    };
  }
  try {
    const program = compileTrainStep(model, {
      loss: { kind: 'cross_entropy', logits: 'logits' },
      trainable,
      clipNorm: o.clipNorm,
      optimizer: { kind: 'adamw', weightDecay: o.weightDecay },
      deterministicSums: runsOnCuda(o.device),
    });
    return { program, config };
  } catch (e) {
    if (o.method === 'lora' && /match no MatMul/.test((e as Error).message))
      throw new InputError((e as Error).message, { where: 'train.lora.targets', cause: e });
    throw e;
  }
}

export async function trainClassifier(o: TrainClassifierOptions): Promise<TrainResult> {
  validate(o);
  // A layer the model lacks would get no adapter (and train as if it were not listed): refuse it before tokenizing.
  if (o.method === 'lora') checkLoraLayers(o.lora!.layers, modelLayerCount(o.modelDir));
  const bucket = o.bucket ?? 8;
  const groupByLength = o.groupByLength ?? true;
  const textColumn = o.textColumn ?? 'text';
  const labelColumn = o.labelColumn ?? 'label';
  mkdirSync(o.checkpointDir, { recursive: true });

  // Tokenize once into Arrow files beside the checkpoints (deterministic bytes, reused on resume).
  const tokenizer = loadTokenizer(o.modelDir);
  const task = { kind: 'classification' as const, textColumn, labelColumn, labelNames: o.labels };
  const padding = { kind: 'longest' as const, maxLength: o.maxLength, multipleOf: bucket };
  const tokDir = join(o.checkpointDir, 'tokens');
  mkdirSync(tokDir, { recursive: true });
  const trainTok = await tokenizeToArrow({
    input: o.train,
    output: join(tokDir, 'train.arrow'),
    tokenizer,
    task,
    padding,
    labelsFrom: { field: 'train.labels', input: 'the train table' },
  });
  const valTok = o.validation
    ? await tokenizeToArrow({
        input: o.validation,
        output: join(tokDir, 'validation.arrow'),
        tokenizer,
        task,
        padding,
        labelsFrom: { field: 'train.labels', input: 'the validation table' },
      })
    : undefined;
  const train = await readTokenTable(trainTok.path);
  const val = valTok ? await readTokenTable(valTok.path) : undefined;
  refuseUnseenLabels(train, o.labels);
  refuseTablesPastModel(o, train, val);

  const { program, config } = compileClassifier(o);

  const baseSha = await modelWeightsSha256(o.modelDir);
  const hyper = {
    method: o.method,
    lora: o.method === 'lora' ? { ...o.lora, targets: loraTargetPatterns(o.lora!.targets, o.lora!.layers) } : undefined,
    lr: o.lr,
    epochs: o.epochs,
    maxSteps: o.maxSteps,
    batchSize: o.batchSize,
    accumulation: o.accumulation ?? 1,
    warmupRatio: o.warmupRatio,
    warmupSteps: o.warmupSteps,
    schedule: o.schedule,
    weightDecay: o.weightDecay,
    clipNorm: o.clipNorm,
    seed: o.seed,
    maxLength: o.maxLength,
    pooling: o.pooling,
    bucket,
    groupByLength,
    labels: o.labels,
    dropout: { hidden: config.hiddenDropout, attention: config.attentionDropout, classifier: config.classifierDropout },
  };
  const dataHash = (await sha256File(trainTok.path)).sha256;
  const configHash = settingsHash({ hyper, baseSha, dataHash, evalEvery: o.evalEvery, earlyStopping: o.earlyStopping });

  const r = await runLoop({
    program,
    train,
    val,
    labels: o.labels,
    seed: o.seed,
    batchSize: o.batchSize,
    accumulation: o.accumulation ?? 1,
    epochs: o.epochs,
    maxSteps: o.maxSteps,
    lr: o.lr,
    schedule: o.schedule,
    warmupRatio: o.warmupRatio,
    warmupSteps: o.warmupSteps,
    bucket,
    groupByLength,
    device: o.device,
    threads: o.threads,
    checkpointDir: o.checkpointDir,
    checkpointEvery: o.checkpointEvery,
    keepCheckpoints: o.keepCheckpoints ?? KEEP_CHECKPOINTS,
    resume: o.resume ?? false,
    evalEvery: o.evalEvery,
    earlyStopping: o.earlyStopping,
    configHash,
    onProgress: o.onProgress,
    onCheckpoint: o.onCheckpoint,
    signal: o.signal,
    stepsPerRun: o.stepsPerRun,
    runBudgetMs: o.runBudgetMs,
  });

  const cfgRaw = JSON.parse(readFileSync(join(o.modelDir, 'config.json'), 'utf8')) as { _name_or_path?: string };
  const manifest: ModelManifest = {
    format: 'tempered-model/1',
    task: 'classification',
    labels: o.labels,
    maxLength: o.maxLength,
    pooling: o.pooling,
    baseModel: { name: cfgRaw._name_or_path ?? o.modelDir, sha256: baseSha },
    method: o.method,
    hyperparameters: hyper,
    inputs: ['input_ids', 'attention_mask', 'token_type_ids'],
    outputs: { logits: 'logits', embeddings: FEATURES },
    training: {
      steps: r.steps,
      epochs: r.epochs,
      finalLoss: r.finalLoss,
      bestStep: r.bestStep,
      validation: exportedValidation(r.history, r.bestStep),
    },
  };
  exportClassifier({
    outDir: o.outDir,
    modelDir: o.modelDir,
    program,
    weights: r.bestParams ?? r.params,
    manifest,
    peftBase: o.peftBase,
  });
  return {
    steps: r.steps,
    epochs: r.epochs,
    finalLoss: r.finalLoss,
    bestStep: r.bestStep,
    history: r.history,
    resumedFromStep: r.resumedFromStep,
    truncatedRows: trainTok.truncatedRows,
    outDir: o.outDir,
    device: r.device,
  };
}

/**
 * Rows the model has no embedding for (an id past vocab_size, a type past type_vocab_size, a position past
 * max_position_embeddings) are refused before the graph is built: onnxruntime failed the first step (or the first
 * validation pass, whose rows may be longer) with a Gather's or an Add's shape error, which the stage retried as
 * transient.
 */
function refuseTablesPastModel(o: TrainClassifierOptions, train: TokenTable, val: TokenTable | undefined): void {
  const cfg = readBertConfig(o.modelDir);
  for (const [t, rows] of [
    [train, 'training rows'],
    [val, 'validation rows'],
  ] as const) {
    if (!t) continue;
    checkTokenIdsFitModel(o.modelDir, ModelConfig.read(o.modelDir).raw, t.inputIds, rows);
    checkTokenTypesFitModel(o.modelDir, cfg.typeVocabSize, t.tokenTypeIds, rows);
    checkWidthFitsPositions(t.width, cfg.maxPositions, o.maxLength, rows, 'train.maxLength');
  }
}

/**
 * A label with no training row cannot be learned, and the model would still offer it: a split that put
 * a rare label's only rows in test (1 of 151 rows, say) trained and registered such a model silently.
 */
function refuseUnseenLabels(train: TokenTable, labels: string[]): void {
  if (!train.labels) return;
  const counts = new Array<number>(labels.length).fill(0);
  for (const l of train.labels) counts[l]!++;
  const unseen = labels.filter((_, i) => counts[i] === 0);
  if (unseen.length)
    throw new InputError(
      `the training table has no rows labelled ${unseen.map((l) => JSON.stringify(l)).join(', ')} (of ${train.rows} rows); a classifier cannot learn a label it never sees`,
      {
        where: 'train.labels',
        hint: 'add rows of that label to the data, or remove it from labels (the split report counts each label per split: a label with fewer rows than the splits may have none in train)',
      },
    );
}
