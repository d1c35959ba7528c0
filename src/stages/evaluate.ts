/**
 * Stage kind `evaluate`: the fine-tuned model on the test split, side by side with the baselines
 * the spec names: the base model (for a classifier: its frozen features under a logistic-regression
 * head; for a causal LM: the base model itself, on the same rendering of the records), and the
 * version currently serving under a registry alias, scored only on the test rows it was not trained on (the inputs of
 * the `train` data its registered lineage records), with the fine-tuned model's scores on those same rows beside it.
 * Causal LMs are scored by response-token loss and perplexity, and with `generation` also by the
 * answers they generate (exact match, ROUGE-L, chrF) with side-by-side samples in the report.
 */
import { existsSync, readFileSync, utimesSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalJson, sha256Hex } from '../util/canonical-json.ts';
import { writeFileAtomic } from '../data/atomic.ts';
import { classificationGateShape, lmGateMetrics, lmGateShape, NoAnswerTokensError } from '../eval/metrics.ts';
import { statePaths } from '../state-paths.ts';
import type { ArtifactRef } from '../types.ts';
import { artifactRefSchema } from './schema-helpers.ts';
import { absoluteModelSource } from '../models/source-spec.ts';
import { downloadProgress } from '../models/download-progress.ts';
import { POOLINGS, type Pooling } from '../models/pooling.ts';
import { hasRefs } from '../spec/runtime-refs.ts';
import type { ValueShape } from '../spec/types.ts';
import { issuesFrom, modelSourceIssues } from './checks.ts';
import type { ConversationMessage } from '../data/conversation.ts';
import { localModelRoots, modelIdentityKey } from './model-identity.ts';
import { checkAnswerNormalization, generativeGateShape, type AnswerBreakdown, type AnswerNormalization } from '../eval/generative.ts';
import type { KindIssue } from '../spec/types.ts';
import type { StageContext, StageKind } from './types.ts';
import { InputError } from '../errors.ts';
import type { ChatOptions } from '../finetune/causal-lm.ts';
import type { PromptTemplate } from '../models/tokenizer.ts';
import type { DataRef } from '../registry/types.ts';
import type { ClassificationReport } from '../eval/metrics.ts';
import type { ModelIdentity } from '../models/sources.ts';

/** Part of the stage cache's key, and of the baseline memo's (baselineMemo): a change of results bumps it. */
// 7: whether answers are labels (balanced_exact_match, answer_f1_macro measured) is asked of the whole test split, not of
// the maxRows evaluated: an evaluate-6 result or baseline memo with maxRows may lack them where this measures them.
const EVALUATE_CODE_VERSION = 'evaluate-7';

// The library (Arrow, onnxruntime, …) loads when the stage runs, not when `validate` reads the kind's contract.
const lib = async () => ({
  ...(await import('../eval/metrics.ts')),
  ...(await import('../finetune/evaluate.ts')),
  ...(await import('../finetune/causal-lm.ts')),
  ...(await import('../finetune/generative-eval.ts')),
  ...(await import('../data/head-table.ts')),
  ...(await import('../finetune/predictor.ts')),
  ...(await import('../models/sources.ts')),
  ...(await import('../registry/current.ts')),
  ...(await import('../eval/contamination.ts')),
  ...(await import('./production-rows.ts')),
});

/** Causal LMs: generate an answer for every test prompt and score it against the test response. */
export interface GenerationConfig {
  /** Most new tokens per answer; default 16 (a word or a short phrase). */
  maxNewTokens?: number;
  /** Prompts decoded together; default 8. */
  batchSize?: number;
  /** Strings that end an answer (cut before them), besides the end-of-turn / EOS token. */
  stop?: string[];
  /** Rows shown side by side in the report (prompt, reference, base, production, fine-tuned); default 10. */
  samples?: number;
  exactMatch?: AnswerNormalization;
}

export const GENERATION_DEFAULTS = { maxNewTokens: 16, batchSize: 8, samples: 10 } as const;

interface Config {
  model: ArtifactRef;
  test: ArtifactRef;
  /** Classifier: `train` is required (the logistic-regression head's training rows). Causal LM: `model` only. */
  baseline?: { model: string; train?: ArtifactRef; pooling?: Pooling; maxLength?: number; seed?: number };
  production?: { name: string; alias?: string };
  /**
   * Evaluate the first maxRows rows of the test split only (the fine-tuned and base models the same rows), so the cost
   * is bounded; production, and the fine-tuned model again beside it, get the first maxRows test rows production was
   * not trained on.
   */
  maxRows?: number;
  generation?: GenerationConfig;
  threads?: number;
}

/**
 * A model's folder in the stage's scratch folder, its files linked to the store's (no copy, no
 * space), so it goes with the stage: a copy kept per evaluated model would fill a worker's disk over
 * months of scheduled retraining (`tempered serve` keeps its own checkouts).
 */
async function materialize(ctx: StageContext, tree: ArtifactRef): Promise<string> {
  // Verified first: its sha256 is then the 64 hex digits its URI names, safe as a folder name.
  await ctx.store.verify(tree);
  const dir = join(ctx.workDir, 'models', tree.sha256);
  if (existsSync(dir)) return dir;
  const tmp = `${dir}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await ctx.store.materializeTree(tree, tmp, { link: true });
  await rename(tmp, dir);
  return dir;
}

interface ProductionModel {
  id: string;
  alias: string;
  /** `name@N (current alias)`, as logs, progress and the comparison line name it. */
  label: string;
  tree: ArtifactRef;
  /** The data sets its registered lineage records (its training rows are the `train` one). */
  data: DataRef[];
  /**
   * Its model folder is the fine-tuned model's, byte for byte (a rerun whose training came from the stage cache, against
   * the version that run promoted): its scores are the fine-tuned model's, so it is not scored a second time.
   */
  sameModel: boolean;
}

/** The version the spec's `production` alias points at now, with its exported model folder. */
async function productionModel(cfg: Config, stateDir: string): Promise<ProductionModel | undefined> {
  if (!cfg.production) return undefined;
  const { currentVersion, versionArtifact } = await lib();
  const alias = cfg.production.alias ?? 'production';
  const v = await currentVersion(statePaths(stateDir).registryDb, cfg.production.name, alias);
  const tree = v && versionArtifact(v, 'model');
  return (
    v &&
    tree && {
      id: `${v.name}@${v.version}`,
      alias,
      label: `${v.name}@${v.version} (current ${alias})`,
      tree,
      data: v.lineage.data ?? [],
      sameModel: tree.sha256 === cfg.model.sha256,
    }
  );
}

/** The test rows production is scored on: those whose task input is not one of its training rows' inputs. */
interface ProductionRows {
  /** The table production is scored on, and the fine-tuned model again for `production.candidate.*` unless `same`. */
  table: string;
  /** The very rows the fine-tuned model's own metrics are over (nothing left out): those serve as production.candidate.*. */
  same: boolean;
  /** Rows in `table`; undefined when they are the test rows the fine-tuned model was scored on (not decontaminated). */
  rows: number | undefined;
  contaminatedRows: number;
  /** Production's training rows were read and the test rows among them left out (even when there were none). */
  decontaminated: boolean;
  /** The index among production's rows of a test row the fine-tuned model was scored on; undefined when left out. */
  indexOf: (testRow: number) => number | undefined;
  /** The test row that row `i` of `table` is (what an error about one of production's rows names). */
  testRowAt: (i: number) => number;
  report: Record<string, unknown>;
}

/**
 * Production's rows: the first maxRows test rows (all without maxRows) whose input (classifier: `text`; causal LM:
 * `prompt`; a chat table: the conversation before its last trained reply, against the conversation before each trained
 * reply of a training row), normalised as dedupe normalises, is neither the input of a row of its `train` lineage data nor a near
 * duplicate of one (as dedupe's defaults find them: src/eval/contamination.ts). Without that
 * data (registered without lineage, or no longer in the store) it is scored on the fine-tuned model's test rows, as
 * before, and the report, the log and `production.decontaminated` (false) say so.
 */
async function productionRows(
  cfg: Config,
  ctx: StageContext,
  prod: ProductionModel,
  o: { fullTest: string; testPath: string; causal: boolean; conversations?: boolean },
): Promise<ProductionRows> {
  const { inputColumns, productionTraining, writeCleanRows } = await lib();
  const columns = inputColumns(o.conversations ? 'chat' : o.causal ? 'instruction' : 'classification');
  ctx.progress({ message: `${prod.label}: reading its training rows, to leave them out of its test rows` });
  const training = await productionTraining(ctx.store, prod.data, columns, ctx.signal, o.fullTest);
  if (!training.checked) {
    ctx.log(`${prod.label} is scored on all the test rows, some of which it may have been trained on: ${training.reason}`);
    return {
      table: o.testPath,
      same: true,
      rows: undefined,
      contaminatedRows: 0,
      decontaminated: false,
      indexOf: (i) => i,
      testRowAt: (i) => i,
      report: { decontaminated: false, reason: training.reason, columns },
    };
  }
  const clean = await writeCleanRows(
    o.fullTest,
    training.seen,
    columns,
    cfg.maxRows,
    join(ctx.workDir, 'production-test.arrow'),
    training.path,
  );
  const same = clean.contaminated === 0;
  const at = new Map(clean.testRows.map((r, i) => [r, i]));
  if (clean.contaminated > 0)
    ctx.log(
      `${prod.label}: ${clean.contaminated} test rows are in its training data${clean.near ? ` (${clean.near} of them as near duplicates)` : ''} and left out; it is scored on ${clean.rows} rows it was not trained on` +
        (cfg.maxRows !== undefined ? ` (the first ${cfg.maxRows} such rows of the test split)` : ''),
    );
  return {
    table: same ? o.testPath : join(ctx.workDir, 'production-test.arrow'),
    same,
    rows: clean.rows,
    contaminatedRows: clean.contaminated,
    decontaminated: true,
    indexOf: same ? (i) => i : (i) => at.get(i),
    testRowAt: same ? (i) => i : (i) => clean.testRows[i]!,
    report: {
      decontaminated: true,
      training_data: { name: training.data.name, sha256: training.data.sha256, rows: training.rows },
      columns,
      rows: clean.rows,
      contaminated_rows: clean.contaminated,
      near_duplicate_rows: clean.near,
      near_duplicate_examples: clean.nearExamples,
      near_duplicate_matches: clean.nearMatches,
      near_duplicates: nearSettings(training.seen),
      near_duplicate_checks_cut: training.seen.nearChecksCut,
    },
  };
}

/** How near a test row's input must be to a training row's to count as seen, for the report. */
function nearSettings(seen: { nearSettings: { shingle: string; size: number; threshold: number } | null }) {
  const n = seen.nearSettings;
  return n ? { shingles: `${n.size} ${n.shingle === 'word' ? 'words' : 'characters'}`, estimated_jaccard_at_least: n.threshold } : null;
}

/** What gates see of the rows production was scored on (production.rows, .contaminated_rows, .decontaminated). */
function rowGateMetrics(p: ProductionRows, rows: number, prod: ProductionModel) {
  return { rows, contaminated_rows: p.contaminatedRows, decontaminated: p.decontaminated, ...(prod.sameModel ? { same_model: true } : {}) };
}

/**
 * The `comparison` output: how production was compared, in a line `status` and `submit --wait` print. A comparison
 * on rows production may have learnt must not pass unnoticed behind a gate that reads `production.rows >= 100`.
 */
function comparisonLine(prod: ProductionModel, p: ProductionRows, rows: number): string {
  if (!p.decontaminated && !prod.sameModel)
    return `${prod.label} scored on all ${rows} test rows, some of which it may have been trained on: ${String(p.report.reason)}`;
  if (rows === 0) return `${prod.label} not scored: it was trained on the input of every test row (${p.contaminatedRows})`;
  if (prod.sameModel)
    return `${prod.label} is the fine-tuned model itself (the same model bytes), not scored again: production.* are the fine-tuned model's scores on ${p.decontaminated ? `the ${rows} test rows it was not trained on; ${p.contaminatedRows} left out` : `all ${rows} test rows, some of which it may have been trained on: ${String(p.report.reason)}`}`;
  return `${prod.label} scored on ${rows} test rows it was not trained on, beside the fine-tuned model on the same rows; ${p.contaminatedRows} left out`;
}

/** Says what production is scored on next, for the progress line. */
function scoredOn(p: ProductionRows): string {
  return p.decontaminated ? 'on the test rows it was not trained on' : 'on all the test rows (its training data could not be read)';
}

/**
 * A baseline as scored before, in `TEMPERED_HOME/baselines/<key>.json`: a classifier's frozen-feature baseline, or a
 * causal LM's base model scores and answers. The key hashes all it depends on (the base model's identity, its file
 * hashes included; the tables; the settings) and this kind's code version, so a change to any of them scores it
 * again. One worker's own (each worker of a shared store scores it once); delete the folder to score every baseline again.
 * Memos unused for gc's horizon are collected by `store gc` and by each worker (src/store/baseline-memos.ts).
 */
function baselineMemo<T>(stateDir: string, inputs: Record<string, unknown>) {
  const key = sha256Hex(canonicalJson({ code: EVALUATE_CODE_VERSION, inputs }));
  const path = join(statePaths(stateDir).baselines, `${key}.json`);
  return {
    path,
    read(): T | undefined {
      let scores: T;
      // A file cut short or otherwise unreadable is a miss: the baseline is scored again and the file replaced.
      try {
        scores = JSON.parse(readFileSync(path, 'utf8')) as T;
      } catch {
        return undefined;
      }
      // Used now: `store gc` and the worker collect memos by their last use (src/store/baseline-memos.ts), and the
      // access time alone is not it where the disk is mounted noatime. A memo that cannot be touched is still a hit.
      try {
        const now = new Date();
        utimesSync(path, now, now);
      } catch {
        // read-only state folder: the memo may go after the horizon, costing one scoring again
      }
      return scores;
    },
    /** Keeps the scores for the next trial; undefined when kept, else why not. */
    write(scores: T): string | undefined {
      try {
        writeFileAtomic(path, JSON.stringify(scores));
        return undefined;
      } catch (e) {
        // A memo, not a result: a full disk or an unwritable folder costs the next trial the scoring again, never
        // this stage its finished work. (writeFileAtomic leaves no temp file behind.)
        return (e as Error).message;
      }
    },
  };
}

async function resolveBaseline(cfg: NonNullable<Config['baseline']>, ctx: StageContext) {
  const { resolveModelSource } = await lib();
  return resolveModelSource(absoluteModelSource(cfg.model, ctx.baseDir), {
    cacheDir: statePaths(ctx.stateDir).models,
    ...localModelRoots('evaluate.baseline.model'),
    signal: ctx.signal,
    // A base model not in the cache yet (a first run, an hf: source of hundreds of MB) downloads for minutes: the stage
    // log says what and how far, where it said nothing.
    onProgress: downloadProgress((line) => {
      ctx.log(line.trim());
      ctx.progress({ message: `base model: ${line.trim()}` });
    }),
  });
}

export const evaluateStage: StageKind<Config> = {
  kind: 'evaluate',
  description:
    'classifiers: accuracy, per-class and macro/micro P/R/F1 and confusion matrix; causal LMs: response loss, perplexity and (generation) exact_match, rouge_l, chrf; on the test split, against baselines',
  // 3: production scored on the test rows it was not trained on; production.rows, .contaminated_rows, .decontaminated, .candidate.
  // 5: the contamination check compares near duplicates without the prompt template the tables record.
  codeVersion: EVALUATE_CODE_VERSION,
  // onnxruntime blocks the thread for a whole run, and a native crash or OOM must not take the worker down.
  isolation: { module: import.meta.url },
  withSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['model', 'test'],
    properties: {
      // `takes`: an artifact reference alone fits any output stored as a file; the stage reads a model folder and a table.
      model: { ...artifactRefSchema, takes: ['artifact'], description: 'exported model folder (train outputs.model)' },
      test: { ...artifactRefSchema, takes: ['table'] },
      baseline: {
        type: 'object',
        additionalProperties: false,
        required: ['model'],
        description:
          'the base model: for a classifier, logistic regression on its pooled embeddings (needs train); for a causal LM, the base model itself',
        properties: {
          model: { type: 'string' },
          train: { ...artifactRefSchema, takes: ['table'] },
          pooling: { enum: POOLINGS },
          maxLength: { type: 'integer', minimum: 3 },
          seed: { type: 'integer' },
        },
      },
      production: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        description:
          "compare with the version a registry alias points at (skipped when there is none), on the test rows it was not trained on (its lineage's train data)",
        properties: { name: { type: 'string' }, alias: { type: 'string' } },
      },
      maxRows: {
        type: 'integer',
        minimum: 1,
        description: 'evaluate only the first maxRows rows of the test split (production: the first maxRows rows it was not trained on)',
      },
      generation: {
        type: 'object',
        additionalProperties: false,
        description: 'causal LM: greedy answers to the test prompts, scored by exact_match, rouge_l and chrf',
        properties: {
          maxNewTokens: { type: 'integer', minimum: 1, maximum: 4096, description: `default ${GENERATION_DEFAULTS.maxNewTokens}` },
          batchSize: { type: 'integer', minimum: 1, maximum: 256, description: `default ${GENERATION_DEFAULTS.batchSize}` },
          stop: { type: 'array', items: { type: 'string', minLength: 1 }, maxItems: 16 },
          samples: {
            type: 'integer',
            minimum: 0,
            maximum: 1000,
            description: `rows shown side by side in the report; default ${GENERATION_DEFAULTS.samples}`,
          },
          exactMatch: {
            type: 'object',
            additionalProperties: false,
            description: 'normalisation before exact match',
            properties: {
              caseFold: { type: 'boolean', description: 'default false' },
              whitespace: { enum: ['keep', 'strip', 'collapse'], description: 'default collapse' },
              stripPunctuation: { type: 'boolean', description: 'default false' },
              extract: {
                description: "final answer only: 'gsm8k' (the number after the last ####) or a regex",
                oneOf: [
                  { const: 'gsm8k' },
                  {
                    type: 'object',
                    additionalProperties: false,
                    required: ['regex'],
                    properties: {
                      regex: { type: 'string', minLength: 1 },
                      group: { type: 'integer', minimum: 0 },
                      select: { enum: ['first', 'last'] },
                      flags: { type: 'string', pattern: '^[imsu]*$' },
                    },
                  },
                ],
              },
            },
          },
        },
      },
      threads: { type: 'integer', minimum: 1 },
    },
  },
  // The baseline's scores depend on the files its model source resolves to now (a local folder exported again, an hf:
  // branch moved), as train's do; the production comparison on which version the alias points at now. Each is named
  // only when the spec asks for it, so the keys of evaluations without one are those they had before.
  async externalInputs(cfg, { baseDir, stateDir }) {
    const inputs: string[] = [];
    if (cfg.baseline) inputs.push(`baseline:${await modelIdentityKey(cfg.baseline.model, baseDir, stateDir, 'evaluate.baseline.model')}`);
    if (cfg.production) {
      const { currentVersion, versionArtifact } = await lib();
      const v = await currentVersion(statePaths(stateDir).registryDb, cfg.production.name, cfg.production.alias ?? 'production');
      inputs.push(v ? `production:${v.name}@${v.version}:${versionArtifact(v, 'model')?.sha256 ?? ''}` : 'production:none');
    }
    return inputs;
  },
  outputs: {
    metrics: {
      type: 'json',
      description:
        'metrics for gates: accuracy, f1_macro, … or loss, perplexity, exact_match, rouge_l, chrf; baseline.*; production.* (on the test rows production was not trained on: production.rows, production.contaminated_rows, production.decontaminated, and the fine-tuned model on those rows as production.candidate.*)',
    },
    report: { type: 'json', description: 'full reports: confusion matrices, or generated samples side by side' },
    f1_macro: { type: 'number', description: 'classification' },
    accuracy: { type: 'number', description: 'classification' },
    loss: { type: 'number', description: 'causal LM: mean NLL of response tokens' },
    perplexity: { type: 'number', description: 'causal LM' },
    comparison: {
      type: 'string',
      description:
        'with production: on how many test rows it was not trained on it was compared, or why on all of them (absent while no version holds the alias)',
    },
  },
  check(raw, ctx) {
    const cfg = raw as Partial<Config>;
    const issues: KindIssue[] = [
      ...modelSourceIssues(cfg.baseline?.model, ['baseline', 'model'], ctx),
      ...issuesFrom(checkAnswerNormalization(cfg.generation?.exactMatch, 'generation.exactMatch')),
    ];
    const trained = ctx.upstream(cfg.model);
    if (trained?.kind.kind !== 'train' || hasRefs(trained.config.task)) return issues;
    if (trained.config.task === 'causal-lm') return issues;
    if (cfg.generation)
      issues.push({
        path: ['generation'],
        message: `stage '${trained.stage}' trains a classifier; generation scores causal LMs`,
        hint: 'remove generation',
      });
    if (cfg.baseline && cfg.baseline.train === undefined)
      issues.push({
        path: ['baseline', 'train'],
        message: "a classifier's baseline is a logistic regression on the base model's features: it needs the rows to fit it on",
        hint: 'train: ${{ stages.split.outputs.train }}',
      });
    return issues;
  },
  absentOutputs(raw, ctx) {
    const trained = ctx.upstream((raw as Partial<Config>).model);
    if (trained?.kind.kind !== 'train' || hasRefs(trained.config.task)) return undefined;
    return trained.config.task === 'causal-lm'
      ? { names: ['f1_macro', 'accuracy'], because: `stage '${trained.stage}' trains a causal LM, evaluated by loss and perplexity` }
      : { names: ['loss', 'perplexity'], because: `stage '${trained.stage}' trains a classifier, evaluated by accuracy and F1` };
  },
  outputShape(output, raw, ctx) {
    if (output !== 'metrics') return undefined;
    const cfg = raw as Partial<Config>;
    // The task, and the labels when listed, are the training stage's.
    const trained = ctx.upstream(cfg.model);
    if (trained?.kind.kind !== 'train' || hasRefs(trained.config.task) || hasRefs(trained.config.labels)) return undefined;
    const causal = trained.config.task === 'causal-lm';
    const labels = Array.isArray(trained.config.labels) ? (trained.config.labels as string[]) : undefined;
    const shape = () => {
      if (!causal) return classificationGateShape(labels);
      const lm = lmGateShape();
      return cfg.generation ? { ...lm, fields: { ...lm.fields, ...generativeGateShape() } } : lm;
    };
    const own = shape();
    const fields: Record<string, ValueShape> = { ...own.fields };
    if (cfg.baseline) fields.baseline = shape();
    // Present only when the alias has a version when the run evaluates; deploy falls back to the registry the same way.
    // Its scores are over the test rows production was not trained on, and so are candidate.*, the fine-tuned model's.
    // Without evaluate.production only the registered metrics can stand in, and they have none of the comparison's names.
    const compares = cfg.production !== undefined;
    fields.production = {
      type: 'object',
      optional: true,
      description: compares ? 'absent while no version holds the alias' : 'the registered metrics of the version holding the alias',
      ...(compares
        ? {}
        : {
            lacking:
              "production.rows, production.candidate.* and the comparison's other names need the evaluate stage to compare: give it production: { name: … }",
          }),
      fields: {
        ...own.fields,
        version: { type: 'string' },
      },
    };
    if (compares)
      fields.production.fields = {
        ...fields.production.fields,
        rows: { type: 'number', description: 'test rows production was scored on: those it was not trained on' },
        contaminated_rows: { type: 'number', description: "test rows left out because production's training rows hold their input" },
        decontaminated: {
          type: 'boolean',
          description: "false when production's training data could not be read: scored on all test rows",
        },
        candidate: { ...own, description: 'the fine-tuned model on the rows production was scored on' },
        same_model: {
          type: 'boolean',
          optional: true,
          description: "true when production's model is the fine-tuned model's bytes: production.* are then its scores, not scored twice",
        },
      };
    return { type: 'object', fields };
  },
  async run(cfg, ctx) {
    const { evaluateClassifier, frozenFeatureBaseline, headTable, readLabeledTexts, readManifest, reportToGateMetrics } = await lib();
    const modelDir = await materialize(ctx, cfg.model);
    const fullTest = await ctx.store.verify(cfg.test);
    const testPath = cfg.maxRows === undefined ? fullTest : join(ctx.workDir, 'test-head.arrow');
    if (cfg.maxRows !== undefined) await headTable(fullTest, cfg.maxRows, testPath);
    const task = (JSON.parse(readFileSync(join(modelDir, 'tempered-model.json'), 'utf8')) as { task?: string }).task;
    if (task === 'causal-lm') return evaluateLm(cfg, ctx, modelDir, fullTest, testPath);
    if (cfg.generation)
      throw new InputError(`the model's task is ${JSON.stringify(task)}; generation scores causal LMs`, {
        where: 'evaluate.generation',
        hint: 'remove generation',
      });
    const manifest = readManifest(modelDir);
    const labels = manifest.labels;
    ctx.progress({ fraction: 0.05, message: 'evaluating the fine-tuned model' });
    const main = await evaluateClassifier({
      modelFolder: modelDir,
      modelName: 'evaluate.model',
      table: testPath,
      tableName: 'evaluate.test',
      labels,
      threads: cfg.threads,
    });
    const metrics: Record<string, unknown> = reportToGateMetrics(main.metrics);
    const report: Record<string, unknown> = { model: main.metrics, labels, testRows: (await readLabeledTexts(testPath)).texts.length };
    if (cfg.baseline) {
      ctx.progress({ fraction: 0.4, message: 'frozen-feature baseline (base model embeddings + logistic regression)' });
      if (!cfg.baseline.train)
        throw new InputError("a classifier's baseline needs train: the rows its logistic regression is fitted on", {
          where: 'evaluate.baseline.train',
        });
      const base = await resolveBaseline(cfg.baseline, ctx);
      const settings = {
        pooling: cfg.baseline.pooling ?? manifest.pooling,
        maxLength: cfg.baseline.maxLength ?? manifest.maxLength,
        seed: cfg.baseline.seed ?? 0,
        threads: cfg.threads,
      };
      // The baseline does not depend on the fine-tuned model: the trials of a sweep, and a rerun against a moved
      // production, score the same one, which was most of evaluate's time (115 of 137 s on the demo's split).
      const memo = baselineMemo<ClassificationReport>(ctx.stateDir, {
        model: base.identity,
        train: cfg.baseline.train.sha256,
        test: cfg.test.sha256,
        maxRows: cfg.maxRows ?? null,
        labels,
        ...settings,
        threads: settings.threads ?? null,
      });
      let scored = memo.read();
      if (scored) ctx.progress({ fraction: 0.8, message: `frozen-feature baseline: the same as scored before (${memo.path})` });
      else {
        scored = (
          await frozenFeatureBaseline({
            modelDir: base.dir,
            train: await ctx.store.verify(cfg.baseline.train),
            test: testPath,
            trainName: 'evaluate.baseline.train',
            testName: 'evaluate.test',
            labels,
            ...settings,
            // Embedding every train row with the base model is most of evaluate's time (minutes on a large split).
            onProgress: (done, total) =>
              ctx.progress({
                fraction: 0.4 + 0.4 * (done / total),
                message: `frozen-feature baseline: base model embeddings, ${done} of ${total} rows`,
              }),
          })
        ).metrics;
        const notKept = memo.write(scored);
        if (notKept) ctx.progress({ fraction: 0.85, message: `frozen-feature baseline not kept for the next evaluation: ${notKept}` });
      }
      metrics.baseline = reportToGateMetrics(scored);
      report.baseline = scored;
      // Which model the baseline is: its scores alone do not say (status's table heads their column 'baseline').
      report.baseline_model = base.identity;
    }
    // No production version yet: gates see has(production) = false.
    const prod = await productionModel(cfg, ctx.stateDir);
    let comparison: string | undefined;
    if (prod) {
      const rows = await productionRows(cfg, ctx, prod, { fullTest, testPath, causal: false });
      report.contamination = rows.report;
      if (rows.rows === 0) {
        // Every test row is one production was trained on: nothing to compare on, and the scores are absent.
        comparison = comparisonLine(prod, rows, 0);
        ctx.log(comparison);
        metrics.production = { version: prod.id, ...rowGateMetrics(rows, 0, prod) };
        report.production = { id: prod.id };
      } else {
        // Production the fine-tuned model itself: scored once, as the fine-tuned model on production's rows.
        let p: Awaited<ReturnType<typeof evaluateClassifier>> | undefined;
        if (!prod.sameModel) {
          ctx.progress({ fraction: 0.7, message: `evaluating ${prod.label} ${scoredOn(rows)}` });
          p = await evaluateClassifier({
            modelFolder: await materialize(ctx, prod.tree),
            modelName: prod.label,
            table: rows.table,
            tableName: 'evaluate.test',
            rowOf: rows.testRowAt,
            labels,
            threads: cfg.threads,
          });
        }
        // The fine-tuned model on the same rows, so a gate compares like with like.
        if (!rows.same) ctx.progress({ fraction: 0.85, message: 'evaluating the fine-tuned model on the rows production was scored on' });
        const c = rows.same
          ? main
          : await evaluateClassifier({
              modelFolder: modelDir,
              modelName: 'evaluate.model',
              table: rows.table,
              tableName: 'evaluate.test',
              rowOf: rows.testRowAt,
              labels,
              threads: cfg.threads,
            });
        const scored = p ?? c;
        metrics.production = {
          ...reportToGateMetrics(scored.metrics),
          version: prod.id,
          ...rowGateMetrics(rows, scored.metrics.n, prod),
          candidate: reportToGateMetrics(c.metrics),
        };
        report.production = { id: prod.id, metrics: scored.metrics, candidate: c.metrics, ...(prod.sameModel ? { same_model: true } : {}) };
        comparison = comparisonLine(prod, rows, scored.metrics.n);
        if (prod.sameModel) ctx.log(comparison);
      }
    }
    return {
      metrics: await ctx.store.putJson(metrics),
      report: await ctx.store.putJson(report),
      f1_macro: main.metrics.macro.f1,
      accuracy: main.metrics.accuracy,
      ...(comparison !== undefined ? { comparison } : {}),
    };
  },
};

/** One causal LM's scores on the test rows: response-token loss and perplexity, and with `generation` its answers' scores. */
interface LmScores {
  metrics: Record<string, number>;
  /** Test rows scored for the reply loss, and those left out: prompt + reply exceed maxLength, no answer token left. */
  rows: number;
  unscoredRows: number;
  /** The length prompt + reply were cut to, for the note on rows left out. */
  maxLength: number;
  outputs?: string[];
  exact?: boolean[];
  truncatedPrompts?: number;
  answers?: AnswerBreakdown[];
}

type UnscoredCount = { rows: number; unscoredRows: number; maxLength: number };

/** Says how many test rows a model's reply loss left out, if any. */
function unscoredNote(label: string, l: UnscoredCount): string | undefined {
  if (l.unscoredRows === 0) return undefined;
  return `${label}: response-token loss over ${l.rows - l.unscoredRows} of ${l.rows} test rows; ${l.unscoredRows} left out (prompt + reply exceed maxLength ${l.maxLength}, no answer token left)`;
}

/** Per-answer figures go in the report for label-like answers only (a free-form task has one "answer" per row). */
const MAX_ANSWERS_IN_REPORT = 20;

/**
 * Causal LM: loss and perplexity on response tokens, and (with `generation`) greedy answers scored by exact match,
 * ROUGE-L and chrF; the same for the base model (on the fine-tune's rendering of the records) and the production version.
 */
async function evaluateLm(cfg: Config, ctx: StageContext, modelDir: string, fullTest: string, testPath: string) {
  const { evaluateCausalLm, evaluateGenerative, isConversationTable, readPromptResponses, tableReferencesRepeat, trainedRendering } =
    await lib();
  const gen = cfg.generation;
  const rows = gen ? await readPromptResponses(testPath) : undefined;
  if (rows && rows.prompts.length === 0)
    throw new InputError('the test table has no rows to generate answers for', { where: 'evaluate.test', hint: 'check the split ratios' });
  // Whether the answers are labels is a property of the whole test split, not of the maxRows evaluated (free-form.ts).
  const answersRepeat = gen && (await tableReferencesRepeat(fullTest, gen.exactMatch));

  // Production and the rows it is scored on first, so the progress counts the models to score.
  const prod = await productionModel(cfg, ctx.stateDir);
  // A chat table's input is each conversation before its last trained reply: what production's training rows are compared on.
  const conversations = await isConversationTable(testPath, 'prompt');
  const prodRows = prod && (await productionRows(cfg, ctx, prod, { fullTest, testPath, causal: true, conversations }));
  const onProdRows =
    prodRows && prodRows.rows !== 0 && !prodRows.same
      ? { table: prodRows.table, records: gen ? await readPromptResponses(prodRows.table) : undefined }
      : undefined;
  // Production the fine-tuned model itself (prod.sameModel) is scored once: as the fine-tuned model on production's rows.
  const models = 1 + (cfg.baseline ? 1 : 0) + (prodRows && prodRows.rows !== 0 ? (onProdRows ? 1 : 0) + (prod.sameModel ? 0 : 1) : 0);
  let done = 0;
  /** `on`: another table than the test rows (production's rows), with its prompts and references for generation. */
  const score = async (
    role: 'fine-tuned' | 'baseline' | 'production',
    label: string,
    dir: string,
    rendering?: { template?: PromptTemplate; chat?: ChatOptions; maxLength?: number },
    on?: { table: string; records?: { prompts: string[]; references: string[]; conversations?: ConversationMessage[][] } },
  ): Promise<LmScores> => {
    const table = on?.table ?? testPath;
    const records = on ? on.records : rows;
    const at = (part: number) => (done + part) / models;
    ctx.progress({ fraction: 0.02 + 0.96 * at(0), message: `${label}: response-token loss` });
    // Rows whose answer maxLength cut off entirely are left out of the loss and said so; when that is every row the
    // error says which model, how many rows and what to change, in the pipeline's terms.
    const noteUnscored = (l: UnscoredCount) => {
      const message = unscoredNote(label, l);
      if (message === undefined) return;
      ctx.log(message);
      ctx.progress({ fraction: 0.02 + 0.96 * at(1), message });
    };
    const refine = (e: unknown): unknown =>
      e instanceof NoAnswerTokensError
        ? new NoAnswerTokensError(e.rows, e.maxLength, {
            who: label,
            where: 'evaluate.test',
            hint: `${
              role === 'baseline' && cfg.baseline?.maxLength !== undefined
                ? `raise evaluate.baseline.maxLength (${e.maxLength})`
                : role === 'production'
                  ? // Scored with its own rendering: the train stage's maxLength is not its.
                    `${label} was trained with maxLength ${e.maxLength}, which no test row fits: remove evaluate.production to compare without it`
                  : `raise maxLength in the train stage (the model was trained with ${e.maxLength})`
            }, shorten the prompt template, or evaluate more rows (maxRows) so that some fit`,
          })
        : e;
    if (!gen || !records) {
      const l = await evaluateCausalLm({
        model: dir,
        table,
        template: rendering?.template,
        chat: rendering?.chat,
        maxLength: rendering?.maxLength,
        threads: cfg.threads,
        tableName: 'evaluate.test',
        modelName: role === 'fine-tuned' ? 'evaluate.model' : role === 'baseline' ? 'evaluate.baseline.model' : label,
        // Production's rows are some of the test rows: an error names the test row.
        rowOf: on ? prodRows?.testRowAt : undefined,
      }).catch((e: unknown) => {
        throw refine(e);
      });
      noteUnscored(l);
      done++;
      return { metrics: lmGateMetrics(l, l.rows - l.unscoredRows), rows: l.rows, unscoredRows: l.unscoredRows, maxLength: l.maxLength };
    }
    // One decoder session gives both: the loss teacher-forced through its KV cache, then the greedy answers.
    const g = await evaluateGenerative({
      model: dir,
      prompts: records.prompts,
      references: records.references,
      conversations: records.conversations,
      rendering: rendering && { template: rendering.template, chat: rendering.chat },
      maxLength: rendering?.maxLength,
      maxNewTokens: gen.maxNewTokens ?? GENERATION_DEFAULTS.maxNewTokens,
      batchSize: gen.batchSize ?? GENERATION_DEFAULTS.batchSize,
      stop: gen.stop,
      exactMatch: gen.exactMatch,
      answersRepeat,
      threads: cfg.threads,
      tableName: 'evaluate.test',
      modelName: role === 'fine-tuned' ? 'evaluate.model' : role === 'baseline' ? 'evaluate.baseline.model' : label,
      rowOf: on ? prodRows?.testRowAt : undefined,
      signal: ctx.signal,
      onProgress: (n, total) =>
        ctx.progress({ fraction: 0.02 + 0.96 * at(0.2 + (0.8 * n) / total), message: `${label}: generated ${n}/${total} answers` }),
    }).catch((e: unknown) => {
      throw refine(e);
    });
    noteUnscored(g.loss);
    done++;
    return {
      metrics: { ...lmGateMetrics(g.loss, g.loss.rows - g.loss.unscoredRows), ...g.scores },
      rows: g.loss.rows,
      unscoredRows: g.loss.unscoredRows,
      maxLength: g.loss.maxLength,
      outputs: g.outputs,
      exact: g.rows.map((r) => r.exact),
      truncatedPrompts: g.truncatedPrompts,
      answers: g.answers,
    };
  };

  const main = await score('fine-tuned', 'fine-tuned model', modelDir);
  const metrics: Record<string, unknown> = { ...main.metrics };
  let base: LmScores | undefined;
  let baseIdentity: ModelIdentity | undefined;
  if (cfg.baseline) {
    const b = await resolveBaseline(cfg.baseline, ctx);
    baseIdentity = b.identity;
    // The base model is scored on the same rendering of the records as the fine-tune (its chat settings or prompt template).
    const trained = trainedRendering(modelDir);
    const rendering = { template: trained?.template, chat: trained?.chat, maxLength: cfg.baseline.maxLength ?? trained?.maxLength };
    // The base model's scores and answers do not depend on the fine-tuned model (only on the rendering it was trained
    // with, in the key): the trials of a sweep, and a rerun against a moved production, ask it the same test rows. Its
    // answers to every row are kept, so the report's samples and per-answer figures are the same as when scored.
    const memo = baselineMemo<LmScores>(ctx.stateDir, {
      task: 'causal-lm',
      model: b.identity,
      test: cfg.test.sha256,
      maxRows: cfg.maxRows ?? null,
      rendering: {
        template: rendering.template ?? null,
        chat: rendering.chat ?? null,
        maxLength: rendering.maxLength ?? null,
      },
      generation: gen
        ? {
            maxNewTokens: gen.maxNewTokens ?? GENERATION_DEFAULTS.maxNewTokens,
            // Batches pad prompts to a common length: another size may change an answer in the last digits.
            batchSize: gen.batchSize ?? GENERATION_DEFAULTS.batchSize,
            stop: gen.stop ?? [],
            exactMatch: gen.exactMatch ?? {},
          }
        : null,
      // No seed: the loss is teacher-forced and the answers greedy, so baseline.seed (the classifier's) changes nothing.
      threads: cfg.threads ?? null,
    });
    base = memo.read();
    if (base) {
      done++;
      ctx.progress({ fraction: 0.02 + (0.96 * done) / models, message: `base model: the same as scored before (${memo.path})` });
      // The run's log says what a scoring would have said.
      const note = unscoredNote('base model', base);
      if (note !== undefined) ctx.log(note);
    } else {
      base = await score('baseline', 'base model', b.dir, rendering);
      const notKept = memo.write(base);
      if (notKept)
        ctx.progress({
          fraction: 0.02 + (0.96 * done) / models,
          message: `base model scores not kept for the next evaluation: ${notKept}`,
        });
    }
    metrics.baseline = base.metrics;
  }
  let production: LmScores | undefined;
  if (prod && prodRows) {
    if (prodRows.rows === 0) {
      // Every test row is one production was trained on: nothing to compare on, and the scores are absent.
      ctx.log(comparisonLine(prod, prodRows, 0));
      metrics.production = { version: prod.id, ...rowGateMetrics(prodRows, 0, prod) };
    } else {
      const own = prod.sameModel
        ? undefined
        : await score('production', prod.label, await materialize(ctx, prod.tree), undefined, onProdRows);
      // The fine-tuned model on the same rows, so a gate compares like with like.
      const candidate = onProdRows
        ? await score('fine-tuned', "fine-tuned model (on production's rows)", modelDir, undefined, onProdRows)
        : main;
      production = own ?? candidate;
      if (prod.sameModel) ctx.log(comparisonLine(prod, prodRows, production.rows));
      metrics.production = {
        ...production.metrics,
        version: prod.id,
        ...rowGateMetrics(prodRows, production.rows, prod),
        candidate: candidate.metrics,
      };
    }
  }
  const report: Record<string, unknown> = {
    task: 'causal-lm',
    ...metrics,
    testRows: main.rows,
    // Rows each model's reply loss left out: the prompt (in its template) and the reply exceed maxLength.
    unscoredRows: { model: main.unscoredRows, baseline: base?.unscoredRows, production: production?.unscoredRows },
    ...(prodRows ? { contamination: prodRows.report } : {}),
    // Which model the baseline is: its scores alone do not say (status's table heads their column 'baseline').
    ...(baseIdentity ? { baseline_model: baseIdentity } : {}),
  };
  if (gen && rows) {
    const n = Math.min(gen.samples ?? GENERATION_DEFAULTS.samples, rows.prompts.length);
    report.generation = {
      rows: rows.prompts.length,
      maxNewTokens: gen.maxNewTokens ?? GENERATION_DEFAULTS.maxNewTokens,
      stop: gen.stop ?? [],
      exactMatch: gen.exactMatch ?? {},
      truncatedPrompts: { model: main.truncatedPrompts, baseline: base?.truncatedPrompts, production: production?.truncatedPrompts },
    };
    // Exact match alone hides a model that always gives the majority answer; per answer, that shows as recall 0 on the rest.
    if (main.answers && main.answers.length <= MAX_ANSWERS_IN_REPORT)
      report.answers = {
        model: main.answers,
        ...(base?.answers ? { baseline: base.answers } : {}),
        ...(production?.answers ? { production: production.answers } : {}),
      };
    // Production answered its own rows: a test row it was trained on has no answer of its (null, production_trained_on).
    const productionSample = (i: number) => {
      const j = prodRows!.indexOf(i);
      return j === undefined
        ? { production: null, production_exact: null, production_trained_on: true }
        : { production: production!.outputs![j], production_exact: production!.exact![j] };
    };
    report.samples = Array.from({ length: n }, (_, i) => ({
      prompt: rows.prompts[i],
      reference: rows.references[i],
      ...(base ? { baseline: base.outputs![i], baseline_exact: base.exact![i] } : {}),
      ...(production ? productionSample(i) : {}),
      output: main.outputs![i],
      exact: main.exact![i],
    }));
  }
  return {
    metrics: await ctx.store.putJson(metrics),
    report: await ctx.store.putJson(report),
    loss: main.metrics.loss!,
    perplexity: main.metrics.perplexity!,
    ...(prod && prodRows ? { comparison: comparisonLine(prod, prodRows, production?.rows ?? 0) } : {}),
  };
}

export function stageKinds(): StageKind<any>[] {
  return [evaluateStage];
}
