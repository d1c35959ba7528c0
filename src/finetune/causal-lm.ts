/**
 * Instruction tuning of a causal LM (GPT-2 / LLaMA family) on `prompt, response` tables, with the loss on
 * response tokens only, and its evaluation (loss and perplexity on response tokens). Sequences are
 * short in the demos, so this uses the engine's Trainer on fixed-width token columns.
 */
import { sha256File } from '../util/hash-file.ts';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InputError } from '../errors.ts';
import { compileTrainStep, type TrainableSpec } from '../engine/compile.ts';
import { Trainer, type Dataset, type StepMetrics } from '../engine/trainer.ts';
import { latestCheckpoint } from '../engine/checkpoint.ts';
import { exportInference, exportPeftAdapter } from '../engine/export.ts';
import { createSession, toOrt, type Device } from '../engine/runtime.ts';
import { LmLossAccumulator, responseLoss, type ResponseLoss } from '../eval/metrics.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { checkLoraLayers, checkLoraTargets, modelLayerCount } from '../models/lora-targets.ts';
import { loadTokenizer, type CausalEncoding, type PromptTemplate } from '../models/tokenizer.ts';
import { packSequences } from '../models/packing.ts';
import type { ChatEncodingOptions } from '../models/chat-encoding.ts';
import { loadChatTemplate } from '../models/chat-template.ts';
import { GGUF_FILE_KEY } from '../models/gguf-llama.ts';
import { inputRowOf, sourceOfRow, tokenizeToArrow } from '../models/tokenize-arrow.ts';
import { ModelConfig } from '../models/weights.ts';
import { readArrowBatches, readArrowSchema } from '../data/arrow-io.ts';
import { MESSAGES } from '../data/conversation.ts';
import { modelWeightsSha256 } from '../formats/safetensors-index.ts';
import { KEEP_CHECKPOINTS, type RunSettings } from './run-options.ts';
import { epochBatches, exportedValidation } from './loop.ts';
import { runsOnCuda } from '../engine/cuda.ts';
import { checkTokenIdsFitModel, firstRowPastVocab, unfitMessage } from './token-ids.ts';

/** `train` (and `validation`) hold prompt and response columns. */
export interface TrainCausalLmOptions extends RunSettings {
  promptColumn?: string;
  responseColumn?: string;
  template?: PromptTemplate;
  /** Render records with the model's chat template (or `chat.template`, Jinja text) instead of `template`. */
  chat?: ChatOptions;
  /** `qlora`: LoRA over a 4-bit frozen base (LLaMA; src/engine/quant4.ts), with the `lora` settings. */
  method: 'full' | 'lora' | 'qlora';
  /**
   * Pack several examples into each row of maxLength tokens (LLaMA only): attention and positions never cross an
   * example boundary (src/models/packing.ts). The exported model is the ordinary unpacked graph.
   */
  pack?: boolean;
  /**
   * Recompute each decoder layer's activations in the backward pass instead of keeping them through the step
   * (LLaMA; src/engine/recompute.ts): the same gradients, a fraction of the activation memory, about a third more
   * compute. Default: on for qlora (whose point is memory), off otherwise.
   */
  recompute?: boolean;
  /**
   * Batch rows of similar length together (default true), each batch cut to its longest row rounded up to a multiple
   * of 8: the encoders' seeded scheme (src/finetune/loop.ts epochBatches), so short examples cost short sequences.
   */
  groupByLength?: boolean;
  /**
   * targets: module names (`q_proj`) or weight-name patterns; default c_attn for GPT-2, every projection (q, k, v, o,
   * gate, up, down) for LLaMA. layers: only these decoder layers get adapters (module names only; default all).
   */
  lora?: { r: number; alpha: number; dropout?: number; targets?: string[]; layers?: number[] };
  onProgress?: (m: CausalProgress) => void;
  /** What training is doing before its first step (tokenizing, building the graph, starting onnxruntime), which takes minutes for a real LLM on CPU. */
  onStatus?: (message: string) => void;
  /** Data a person should know about: rows whose prompt was cut to fit maxLength, rows left out because their reply does not fit. */
  onWarning?: (message: string) => void;
}

/** One optimizer step as a person follows it: where training is, how fast, and how long it has left. */
export interface CausalProgress {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Training rows (packed rows with pack) per second, this step. */
  samplesPerSec: number;
  /** Real (non-padding) tokens per second, this step: rows per second × the table's mean real tokens per row. */
  tokensPerSec: number;
  /** Seconds the remaining steps take at this process's mean step time so far. */
  etaSec: number;
  /** The validation loss, at a step that evaluated (its token accuracy is no answer's: left out, as in the history). */
  val?: { loss: number };
}

export interface CausalTrainResult {
  steps: number;
  epochs: number;
  finalLoss: number;
  /** seqLen: the padded length the step trained at (length grouping cuts it per batch). */
  /** val: the validation loss at the steps that evaluated (a token accuracy is no answer's: left out). */
  history: { step: number; epoch: number; loss: number; lr: number; gradNorm: number; seqLen?: number; val?: { loss: number } }[];
  resumedFromStep?: number;
  /** Training rows cut to maxLength (chat records: the end of the user message; the reply is kept whole). */
  truncatedRows: number;
  /** Chat records left out: the template and the whole reply alone exceed maxLength. */
  droppedRows: number;
  /** Where the steps ran (what `auto` chose). */
  device: Exclude<Device, 'auto'>;
}

const MANIFEST = 'tempered-model.json';

/** Chat-format training: the model's own template unless `template` (Jinja text) is given. */
export interface ChatOptions {
  template?: string;
  system?: string;
  /** The token ending an assistant turn; default the tokenizer's eos_token. */
  endOfTurn?: string;
}

function chatTask(modelDir: string, chat: ChatOptions | undefined): Omit<ChatEncodingOptions, 'maxLength'> | undefined {
  if (!chat) return undefined;
  return { template: loadChatTemplate(modelDir, chat.template), system: chat.system, endOfTurn: chat.endOfTurn };
}

/** The sha256 of the base model's weights: the GGUF file a GGUF model folder names in config.json (`cfg`), or its safetensors. */
async function baseWeightsSha256(modelDir: string, cfg: Record<string, unknown>): Promise<string> {
  const gguf = cfg[GGUF_FILE_KEY];
  return typeof gguf === 'string' ? (await sha256File(join(modelDir, gguf))).sha256 : modelWeightsSha256(modelDir);
}

/** Token columns of a causal tokenized table as int64 [rows, seqLen] arrays for the trainer. */
async function readCausalTable(path: string): Promise<{ data: Dataset; rows: number; seq: number }> {
  const cols: Record<string, bigint[]> = { input_ids: [], attention_mask: [], labels: [] };
  let rows = 0,
    seq = 0;
  for await (const b of readArrowBatches(path)) {
    rows += b.numRows;
    for (const name of Object.keys(cols)) {
      const vec = b.getChild(name)!;
      seq = (vec.type as { listSize: number }).listSize;
      for (const d of vec.data) {
        const child = d.children[0]!;
        const v = (child.values as Int32Array).subarray(child.offset, child.offset + child.length);
        for (const x of v) cols[name]!.push(BigInt(x));
      }
    }
  }
  const data: Dataset = {};
  for (const [name, v] of Object.entries(cols)) data[name] = { data: BigInt64Array.from(v), dims: [rows, seq], dtype: 'int64' };
  return { data, rows, seq };
}

/** Padded one-example rows → packed rows (segments in attention_mask, restarting position_ids). */
function packTable(
  t: { data: Dataset; rows: number; seq: number },
  rowLength: number,
  padId: number,
): { data: Dataset; rows: number; seq: number } {
  const col = (name: string) => t.data[name]!.data as BigInt64Array;
  const [ids, mask, labels] = [col('input_ids'), col('attention_mask'), col('labels')];
  const examples: CausalEncoding[] = [];
  for (let r = 0; r < t.rows; r++) {
    let n = 0;
    while (n < t.seq && mask[r * t.seq + n] === 1n) n++;
    const at = r * t.seq;
    examples.push({
      inputIds: Array.from(ids.subarray(at, at + n), Number),
      attentionMask: new Array<number>(n).fill(1),
      labels: Array.from(labels.subarray(at, at + n), Number),
    });
  }
  const p = packSequences(examples, rowLength, padId);
  const dims = [p.rows, p.seqLen];
  const big = (a: Int32Array) => ({ data: BigInt64Array.from(a, (v) => BigInt(v)), dims, dtype: 'int64' as const });
  return {
    data: { input_ids: big(p.inputIds), attention_mask: big(p.segments), position_ids: big(p.positionIds), labels: big(p.labels) },
    rows: p.rows,
    seq: p.seqLen,
  };
}

/** Mean count of real (non-padding) tokens per row: attention_mask is 0 on padding (and segment ids > 0 when packed). */
function meanRealTokens(t: { data: Dataset; rows: number }): number {
  const mask = t.data.attention_mask!.data as BigInt64Array;
  let n = 0;
  for (const v of mask) if (v !== 0n) n++;
  return t.rows ? n / t.rows : 0;
}

/**
 * Turns the trainer's step metrics into progress: tokens per second from the step's rows per second, and an ETA
 * from the mean step time of the steps this process ran (a resumed run starts its mean afresh).
 */
function stepPace(totalSteps: number, rowsPerStep: number, tokensPerRow: number) {
  let steps = 0,
    ms = 0;
  return {
    report(m: StepMetrics): CausalProgress {
      steps++;
      ms += (rowsPerStep * 1000) / Math.max(1e-9, m.samplesPerSec);
      const { val, ...step } = m;
      return {
        ...step,
        ...(val ? { val: { loss: val.loss } } : {}),
        totalSteps,
        tokensPerSec: m.samplesPerSec * tokensPerRow,
        etaSec: (Math.max(0, totalSteps - m.step) * ms) / steps / 1000,
      };
    },
  };
}

/** Rows are right-padded: a row's length is one past its last attended position (packed rows: last example's). */
function rowLengths(t: { data: Dataset; rows: number; seq: number }): Int32Array {
  const mask = t.data.attention_mask!.data as BigInt64Array;
  const lengths = new Int32Array(t.rows);
  for (let r = 0; r < t.rows; r++) {
    let n = t.seq;
    while (n > 0 && mask[r * t.seq + n - 1] === 0n) n--;
    lengths[r] = n;
  }
  return lengths;
}

/** Trainer options for length-grouped batches, each cut to its longest row rounded up to a multiple of 8. */
function lengthGrouping(t: { data: Dataset; rows: number; seq: number }, batchSize: number, seed: number) {
  const table = { rows: t.rows, lengths: rowLengths(t) };
  return {
    epochBatches: (epoch: number) => epochBatches(table, batchSize, seed, epoch, true),
    trimPadding: { lengths: table.lengths, bucket: 8 },
  };
}

function abortError(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  return new Error(typeof r === 'string' ? r : 'training was aborted');
}

/**
 * LoRA weight patterns: module names (`q_proj`) become globs, restricted to `layers` when given; patterns pass as they
 * are. GPT-2 names its blocks `[transformer.]h.N`, LLaMA `model.layers.N`.
 */
export function causalLoraTargets(modelType: string, targets: string[] | undefined, layers: number[] | undefined): string[] {
  const names = targets?.length ? targets : defaultCausalTargets(modelType);
  const isPattern = (t: string) => /[*?/.]/.test(t);
  if (!layers?.length) return names.map((t) => (isPattern(t) ? t : `*.${t}.weight`));
  const bad = names.find(isPattern);
  if (bad)
    throw new InputError(`lora.layers restricts module names, but target ${JSON.stringify(bad)} is a pattern`, {
      where: 'train.lora.targets',
      hint: 'give module names (q_proj, v_proj, …) with layers, or put the layer in the pattern and drop layers',
    });
  const block = (l: number) => (modelType === 'gpt2' ? [`h.${l}`, `transformer.h.${l}`] : [`model.layers.${l}`]);
  return layers.flatMap((l) => block(l).flatMap((b) => names.map((t) => `${b}.*.${t}.weight`)));
}

function defaultCausalTargets(modelType: string): string[] {
  return modelType === 'gpt2' ? ['c_attn'] : ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
}

/** The decoder layer numbers of adapted modules (PEFT's layers_to_transform), sorted. */
function adaptedLayers(modules: { module: string }[]): number[] {
  const found = modules.map((m) => /(?:^|\.)(?:layers|h)\.(\d+)\./.exec(m.module)?.[1]).filter((x): x is string => x !== undefined);
  return [...new Set(found.map(Number))].sort((a, b) => a - b);
}

export async function trainCausalLm(o: TrainCausalLmOptions): Promise<CausalTrainResult> {
  if (!existsSync(o.train)) throw new InputError(`table ${o.train} does not exist`, { where: 'train.train' });
  if (o.method !== 'full' && o.method !== 'lora' && o.method !== 'qlora')
    throw new InputError(`method ${JSON.stringify(o.method)} is not one of full, lora, qlora`, { where: 'train.method' });
  if (o.method !== 'full' && !o.lora) throw new InputError(`method ${o.method} needs lora: { r, alpha }`, { where: 'train.lora' });
  if (!(o.lr > 0 && o.lr < 1)) throw new InputError(`lr must be in (0, 1), got ${o.lr}`, { where: 'train.lr' });
  if (o.epochs === undefined && o.maxSteps === undefined) throw new InputError('give epochs or maxSteps', { where: 'train.epochs' });
  // A layer the model lacks would get no adapter (and train as if it were not listed): refuse it before tokenizing.
  if (o.method !== 'full') checkLoraLayers(o.lora!.layers, modelLayerCount(o.modelDir));
  // The base's config.json, read once: the vocabulary the rows must fit, and what the export copies and names.
  const baseConfig = ModelConfig.read(o.modelDir).raw;
  mkdirSync(o.checkpointDir, { recursive: true });
  const tokenizer = loadTokenizer(o.modelDir);
  const promptColumn = o.promptColumn ?? 'prompt';
  const conversations = await isConversationTable(o.train, promptColumn);
  if (conversations && o.template)
    throw new InputError('a conversation table is rendered with the chat template; a prompt template applies to prompt/response tables', {
      where: 'train.template',
      hint: 'remove the prompt template (chat settings choose the chat template)',
    });
  const task = {
    kind: 'causal' as const,
    promptColumn,
    responseColumn: o.responseColumn ?? 'response',
    template: o.template,
    // A conversation table is always in the model's chat format: the chat settings only choose the template and tokens.
    chat: chatTask(o.modelDir, conversations ? (o.chat ?? {}) : o.chat),
    ...(conversations ? { messagesColumn: MESSAGES } : {}),
  };
  const padding = { kind: 'longest' as const, maxLength: o.maxLength, multipleOf: 8 };
  const tokDir = join(o.checkpointDir, 'tokens');
  mkdirSync(tokDir, { recursive: true });
  o.onStatus?.('tokenizing the training rows');
  const trainTok = await tokenizeToArrow({ input: o.train, output: join(tokDir, 'train.arrow'), tokenizer, task, padding });
  warnAboutLength(o, 'train', trainTok, conversations);
  const packed = (t: { data: Dataset; rows: number; seq: number }) => (o.pack ? packTable(t, o.maxLength, tokenizer.padId) : t);
  const unpacked = await readCausalTable(trainTok.path);
  checkTokenIdsFitModel(o.modelDir, baseConfig, unpacked.data.input_ids!.data as BigInt64Array);
  const train = packed(unpacked);
  // Truncation can cut every reply away (a chat template's system prompt alone may fill maxLength): the loss would be
  // 0 over 0 tokens and training would change nothing, silently.
  if (!(train.data.labels!.data as BigInt64Array).some((l) => l !== -100n))
    throw new InputError(`no row of ${o.train} keeps a response token within maxLength ${o.maxLength}: there is nothing to train on`, {
      where: 'train.maxLength',
      hint: 'raise maxLength (the chat template and prompt come first and take their share)',
    });
  const val = o.validation
    ? packed(
        await readCausalTable(
          warnAboutLength(
            o,
            'validation',
            await tokenizeToArrow({ input: o.validation, output: join(tokDir, 'validation.arrow'), tokenizer, task, padding }),
            conversations,
          ).path,
        ),
      )
    : undefined;
  if (val) checkTokenIdsFitModel(o.modelDir, baseConfig, val.data.input_ids!.data as BigInt64Array, 'validation rows');

  const quantize = o.method === 'qlora' ? ('q4' as const) : undefined;
  o.onStatus?.(`building the training graph (${train.rows} ${o.pack ? 'packed ' : ''}rows of ${train.seq} tokens)`);
  const { model, modelType } = buildCausalLmGraph(o.modelDir, { packed: o.pack, quantize });
  // Every target must adapt something: a typo (or another architecture's name) would otherwise be left out silently.
  if (o.method !== 'full')
    checkLoraTargets(model, {
      targets: o.lora!.targets?.length ? o.lora!.targets : defaultCausalTargets(modelType),
      defaulted: !o.lora!.targets?.length,
      resolve: (t) => causalLoraTargets(modelType, t, o.lora!.layers),
      layers: o.lora!.layers,
      modelType,
    });
  const trainable: TrainableSpec =
    o.method === 'full'
      ? { kind: 'full' }
      : {
          kind: 'lora',
          r: o.lora!.r,
          alpha: o.lora!.alpha,
          dropout: o.lora!.dropout ?? 0,
          targets: causalLoraTargets(modelType, o.lora!.targets, o.lora!.layers),
          seed: o.seed,
        };
  const program = compileTrainStep(model, {
    loss: { kind: 'cross_entropy', logits: 'logits', labels: 'labels', shift: true, ignoreIndex: -100 },
    trainable,
    clipNorm: o.clipNorm,
    optimizer: { kind: 'adamw', weightDecay: o.weightDecay },
    recompute: o.recompute ?? o.method === 'qlora',
    deterministicSums: runsOnCuda(o.device),
  });
  const accumulation = o.accumulation ?? 1;
  const stepsPerEpoch = Math.floor(Math.floor(train.rows / o.batchSize) / accumulation);
  const totalSteps = o.maxSteps ?? stepsPerEpoch * (o.epochs ?? 1);
  const warmupSteps = o.warmupSteps ?? Math.round((o.warmupRatio ?? 0) * totalSteps);
  const schedule =
    o.schedule === 'constant'
      ? { kind: 'constant' as const, lr: o.lr, warmupSteps }
      : { kind: o.schedule, lr: o.lr, warmupSteps, totalSteps };
  const pace = stepPace(totalSteps, o.batchSize * accumulation, meanRealTokens(train));
  const trainer = new Trainer(program, {
    device: o.device,
    threads: o.threads,
    seed: o.seed,
    batchSize: o.batchSize,
    accumulation,
    epochs: o.epochs,
    maxSteps: o.maxSteps,
    schedule,
    evalEvery: o.evalEvery,
    checkpointEvery: o.checkpointEvery || undefined,
    checkpointDir: o.checkpointDir,
    keepCheckpoints: o.keepCheckpoints ?? KEEP_CHECKPOINTS,
    stepsPerRun: o.stepsPerRun,
    runBudgetMs: o.runBudgetMs,
    signal: o.signal,
    onStep: (m) => o.onProgress?.(pace.report(m)),
    onCheckpoint: (dir) => o.onCheckpoint?.(dir),
    ...(o.groupByLength === false ? {} : lengthGrouping(train, o.batchSize, o.seed)),
  });
  const resumeFrom = o.resume ? latestCheckpoint(o.checkpointDir) : undefined;
  // The checkpoint folder is step-N: the next step is N + 1.
  const nextStep = resumeFrom ? Number(/step-(\d+)$/.exec(basename(resumeFrom))?.[1] ?? 0) + 1 : 1;
  o.onStatus?.(`starting onnxruntime, then step ${nextStep} of ${totalSteps}${resumeFrom ? ' (resuming from the checkpoint)' : ''}`);
  if (o.signal?.aborted) throw abortError(o.signal);
  const r = await trainer.fit(train.data, val?.data, { resumeFrom });
  // An aborted run stops between steps; its weights are not a finished model, so nothing is exported.
  if (r.aborted) throw abortError(o.signal!);
  const history = r.history.map((h) => ({
    step: h.step,
    epoch: h.epoch,
    loss: h.loss,
    lr: h.lr,
    gradNorm: h.gradNorm,
    seqLen: h.seqLen,
    ...(h.val ? { val: { loss: h.val.loss } } : {}),
  }));

  o.onStatus?.('exporting the model');
  // Export folder, assembled under a temp name and renamed into place.
  const tmp = join(dirname(o.outDir), `.${basename(o.outDir)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    // Packed and unpacked graphs share every initializer name; inference runs one example per row.
    // QLoRA exports the dequantized base with the adapters merged, in float32 (exportInference).
    exportInference(
      o.pack ? { ...program, source: buildCausalLmGraph(o.modelDir, { quantize }).model } : program,
      r.params,
      join(tmp, 'model.onnx'),
    );
    // generation_config.json: the end-of-sequence ids generation stops on (src/generate/decoder.ts). The base's own
    // chat_template.jinja, which outranks tokenizer_config.json's template, only where training set none: a model
    // tuned with a template must be served with that one, written below.
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'])
      if (existsSync(join(o.modelDir, f))) copyFileSync(join(o.modelDir, f), join(tmp, f));
    if (!task.chat && existsSync(join(o.modelDir, 'chat_template.jinja')))
      copyFileSync(join(o.modelDir, 'chat_template.jinja'), join(tmp, 'chat_template.jinja'));
    // The weights live in model.onnx (LoRA merged); a GGUF base's file name would point at nothing here.
    const { [GGUF_FILE_KEY]: ggufFile, ...exportedConfig } = baseConfig;
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(exportedConfig, null, 2) + '\n');
    // The template the model was tuned with is the one it must be served with (an explicit chat.template included).
    if (task.chat) {
      const cfgPath = join(tmp, 'tokenizer_config.json');
      const tokCfg = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>) : {};
      writeFileSync(cfgPath, JSON.stringify({ ...tokCfg, chat_template: task.chat.template.text }, null, 2) + '\n');
    }
    const baseSha = await baseWeightsSha256(o.modelDir, baseConfig);
    const cfg = baseConfig as { _name_or_path?: string };
    writeFileSync(
      join(tmp, MANIFEST),
      JSON.stringify(
        {
          format: 'tempered-model/1',
          task: 'causal-lm',
          maxLength: o.maxLength,
          template: o.template ?? null,
          chat: task.chat
            ? { template: task.chat.template.text, system: o.chat?.system ?? null, endOfTurn: o.chat?.endOfTurn ?? null }
            : null,
          baseModel: { name: cfg._name_or_path ?? o.modelDir, sha256: baseSha, ...(typeof ggufFile === 'string' ? { ggufFile } : {}) },
          method: o.method,
          hyperparameters: {
            pack: o.pack ?? false,
            groupByLength: o.groupByLength ?? true,
            lora: o.lora,
            lr: o.lr,
            epochs: o.epochs,
            maxSteps: o.maxSteps,
            batchSize: o.batchSize,
            accumulation,
            schedule: o.schedule,
            warmupSteps,
            weightDecay: o.weightDecay,
            clipNorm: o.clipNorm,
            seed: o.seed,
            maxLength: o.maxLength,
          },
          inputs: ['input_ids', 'attention_mask'],
          outputs: { logits: 'logits' },
          training: { steps: r.step, epochs: r.epoch, validation: exportedValidation(history) },
        },
        null,
        2,
      ) + '\n',
    );
    if (program.lora)
      exportPeftAdapter(program, r.params, join(tmp, 'adapter'), {
        baseModel: o.peftBase?.name ?? cfg._name_or_path ?? (typeof ggufFile === 'string' ? ggufFile : undefined),
        revision: o.peftBase?.revision,
        taskType: 'CAUSAL_LM',
        layersToTransform: o.lora?.layers?.length ? adaptedLayers(program.lora.modules) : undefined,
        // GPT2LMHeadModel holds its blocks under `transformer.`, and its Conv1D weights are [in, out].
        ...(modelType === 'gpt2'
          ? { fanInFanOut: true, modulePrefix: (m: string) => (m.startsWith('transformer.') ? '' : 'transformer.') }
          : {}),
      });
    if (existsSync(o.outDir)) rmSync(o.outDir, { recursive: true });
    mkdirSync(dirname(o.outDir), { recursive: true });
    renameSync(tmp, o.outDir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  const resumedFromStep = resumeFrom ? Number(/step-(\d+)$/.exec(resumeFrom)?.[1]) : undefined;
  return {
    steps: r.step,
    epochs: r.epoch,
    finalLoss: history.at(-1)?.loss ?? NaN,
    history,
    resumedFromStep,
    truncatedRows: trainTok.truncatedRows,
    droppedRows: trainTok.droppedRows,
    device: r.device,
  };
}

/**
 * Says how many rows of the train or validation table lost part of their prompt or were left out to fit
 * maxLength; returns `t`. The table by its role: its file is a store object named by its hash.
 */
function warnAboutLength<
  T extends { truncatedRows: number; turnsCut: number; droppedRows: number; droppedExamples: number[]; rows: number },
>(o: TrainCausalLmOptions, table: 'train' | 'validation', t: T, conversations = false): T {
  const total = t.rows + t.droppedRows;
  const rows = `rows ${t.droppedExamples.join(', ')}${t.droppedRows > t.droppedExamples.length ? ', …' : ''}`;
  if (t.truncatedRows > 0)
    o.onWarning?.(
      conversations
        ? `${t.truncatedRows} of ${total} conversations of the ${table} table are longer than maxLength ${o.maxLength}: each was kept up to the end of its last assistant reply that fits, and the ${t.turnsCut} trained ${t.turnsCut === 1 ? 'reply' : 'replies'} after that were left out with the turns around them (no reply is cut in half)`
        : `${t.truncatedRows} of ${total} rows of the ${table} table are longer than maxLength ${o.maxLength}: ${o.chat ? 'the end of their prompt was cut, the reply kept whole' : 'cut to fit'}`,
    );
  if (t.droppedRows > 0)
    o.onWarning?.(
      conversations
        ? `${t.droppedRows} of ${total} conversations of the ${table} table were left out: their first trained assistant reply does not end within maxLength ${o.maxLength} (${rows}); raise maxLength to train on them`
        : `${t.droppedRows} of ${total} rows of the ${table} table were left out: the chat template and the reply alone exceed maxLength ${o.maxLength} (${rows}); raise maxLength to train on them`,
    );
  return t;
}

/** A chat table (ingest's chat task) has a messages column and no prompt column: its rows are whole conversations. */
export async function isConversationTable(path: string, promptColumn: string): Promise<boolean> {
  const names = (await readArrowSchema(path)).fields.map((f) => f.name);
  return names.includes(MESSAGES) && !names.includes(promptColumn);
}

export interface EvaluateCausalLmOptions {
  /** A folder written by trainCausalLm, or a base model folder (HF layout) for the before-tuning score. */
  model: string;
  table: string;
  promptColumn?: string;
  responseColumn?: string;
  template?: PromptTemplate;
  /** Default: the chat settings the model was trained with (its manifest). */
  chat?: ChatOptions;
  maxLength?: number;
  batchSize?: number;
  device?: Device;
  threads?: number;
  /** What errors call the table (a pipeline field, say); default its path. */
  tableName?: string;
  /** What errors call the model (a pipeline field or a registry version, say); default its folder. */
  modelName?: string;
  /** The row an error names for row `i` of the table (default `i`): a table of some rows of another names that one's. */
  rowOf?: (i: number) => number;
}

/**
 * Every evaluation row's token ids against the model's embedding rows, before onnxruntime runs any: the first row
 * holding an id past them is named as the table's row (the tokenized table lacks the rows the tokenizer left out, so
 * its row r is not the table's), where the ids of all rows together named only tokenizer.json; padding past them (the
 * tokenizer's padding token is not the model's) names the padding.
 */
async function checkEvaluationRows(
  o: EvaluateCausalLmOptions,
  t: { data: Dataset; seq: number },
  dropped: readonly number[],
): Promise<void> {
  const vocab = ModelConfig.read(o.model).raw.vocab_size;
  if (typeof vocab !== 'number' || !Number.isInteger(vocab)) return;
  const tokenizer = join(o.model, 'tokenizer.json');
  const hint = `the tokenizer files beside the weights (${tokenizer}) are not the ones the model was trained with: put back the tokenizer files saved with these weights (tokenizer.json, tokenizer_config.json), or evaluate a model whose own they are`;
  const ids = t.data.input_ids!.data as BigInt64Array;
  const found = firstRowPastVocab(ids, t.data.attention_mask!.data as BigInt64Array, t.seq, vocab);
  if (found) {
    const inTable = inputRowOf(found.row, dropped);
    const row = `${(o.rowOf ?? ((i: number) => i))(inTable)}${await sourceOfRow(o.table, inTable)}`;
    throw new InputError(
      `the row is one ${o.modelName ?? o.model} cannot take: ${unfitMessage({ what: 'id', value: found.id, limit: vocab }, 'the row')}`,
      { where: `${o.tableName ?? o.table}: row ${row}`, hint },
    );
  }
  // Every row's own tokens fit: an id past the rows is the padding's.
  const pad = ids.find((id) => id >= BigInt(vocab));
  if (pad !== undefined)
    throw new InputError(
      `the tokenizer pads with token id ${pad} (its pad_token, else its eos_token), but config.json's vocab_size is ${vocab}: this tokenizer is not the model's`,
      { where: tokenizer, hint },
    );
}

/**
 * Mean NLL and perplexity over response tokens only (prompt tokens and padding are not scored), over the rows that keep
 * an answer token within maxLength (`unscoredRows` counts the others; when none does, a NoAnswerTokensError).
 */
export async function evaluateCausalLm(o: EvaluateCausalLmOptions): Promise<ResponseLoss> {
  const manifestPath = join(o.model, MANIFEST);
  const manifest = existsSync(manifestPath)
    ? (JSON.parse(readFileSync(manifestPath, 'utf8')) as {
        maxLength: number;
        template: PromptTemplate | null;
        chat?: { template: string; system: string | null; endOfTurn: string | null } | null;
      })
    : undefined;
  const maxLength = o.maxLength ?? manifest?.maxLength ?? 256;
  const template = o.template ?? manifest?.template ?? undefined;
  const m = manifest?.chat;
  const chat = o.chat ?? (m ? { template: m.template, system: m.system ?? undefined, endOfTurn: m.endOfTurn ?? undefined } : undefined);
  const tokenizer = loadTokenizer(o.model);
  const promptColumn = o.promptColumn ?? 'prompt';
  // Conversations: the loss over every trained reply, as training scored it.
  const conversations = await isConversationTable(o.table, promptColumn);
  const tmpDir = join(dirname(o.table), `.eval-lm-${process.pid}-${Date.now()}`);
  mkdirSync(tmpDir, { recursive: true });
  try {
    const tok = await tokenizeToArrow({
      input: o.table,
      output: join(tmpDir, 'tokens.arrow'),
      tokenizer,
      task: {
        kind: 'causal',
        promptColumn,
        responseColumn: o.responseColumn ?? 'response',
        template: conversations ? undefined : template,
        chat: chatTask(o.model, conversations ? (chat ?? {}) : chat),
        ...(conversations ? { messagesColumn: MESSAGES } : {}),
      },
      padding: { kind: 'longest', maxLength, multipleOf: 8 },
    });
    const t = await readCausalTable(tok.path);
    const T = t.seq;
    // Chat records whose template and reply alone exceed maxLength were left out by the tokenizer (as in training);
    // a row with no label after position 0 (position 0 is never a target) scores nothing either.
    const rows = { rows: t.rows + tok.droppedRows, unscoredRows: tok.droppedRows, maxLength };
    const labelIds = t.rows > 0 ? (t.data.labels!.data as BigInt64Array) : new BigInt64Array(0);
    for (let r = 0; r < t.rows; r++) if (!labelIds.subarray(r * T + 1, (r + 1) * T).some((l) => l !== -100n)) rows.unscoredRows++;
    const acc = new LmLossAccumulator();
    // Not one answer token to score: say so before loading the model.
    if (rows.rows > 0 && rows.unscoredRows === rows.rows) return responseLoss(acc, rows);
    if (t.rows > 0) await checkEvaluationRows(o, t, tok.droppedInputRows);
    const model = manifest ? readFileSync(join(o.model, 'model.onnx')) : buildCausalLmGraph(o.model, { inference: true }).model;
    const session = await createSession(
      model instanceof Buffer ? new Uint8Array(model.buffer, model.byteOffset, model.byteLength) : model,
      { device: o.device ?? 'cpu', threads: o.threads },
    );
    const bs = o.batchSize ?? 8;
    try {
      for (let s = 0; s < t.rows; s += bs) {
        const n = Math.min(bs, t.rows - s);
        const slice = (name: string) => (t.data[name]!.data as BigInt64Array).subarray(s * T, (s + n) * T);
        const out = await session.run({
          input_ids: toOrt('int64', slice('input_ids'), [n, T]),
          attention_mask: toOrt('int64', slice('attention_mask'), [n, T]),
        });
        const logits = out.logits!;
        const labels = slice('labels');
        const mask = new Int32Array(n * T);
        for (let i = 0; i < mask.length; i++) mask[i] = labels[i] === -100n ? 0 : 1;
        acc.addBatchLogits(logits.data as Float32Array, [n, T, logits.dims[2]!], slice('input_ids'), mask);
      }
    } finally {
      await session.release();
    }
    return responseLoss(acc, rows);
  } finally {
    rmSync(tmpDir, { recursive: true, force: true });
  }
}
