/**
 * Stage kind `evaluate`: the fine-tuned model on the test split, side by side with the baselines
 * the spec names: the base model's frozen features under a logistic-regression head, and the
 * version currently serving under a registry alias (evaluated on the same test split).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { classificationGateShape, lmGateShape } from '../eval/metrics.ts';
import { statePaths } from '../state-paths.ts';
import type { ArtifactRef } from '../types.ts';
import { artifactRefSchema } from './schema-helpers.ts';
import { absoluteModelSource } from '../models/source-spec.ts';
import { hasRefs } from '../spec/runtime-refs.ts';
import type { ValueShape } from '../spec/types.ts';
import { modelSourceIssues } from './checks.ts';
import type { StageContext, StageKind } from './types.ts';

// The library (Arrow, onnxruntime, …) loads when the stage runs, not when `validate` reads the kind's contract.
const lib = async () => ({
  ...(await import('../eval/metrics.ts')),
  ...(await import('../finetune/evaluate.ts')),
  ...(await import('../finetune/causal-lm.ts')),
  ...(await import('../finetune/predictor.ts')),
  ...(await import('../models/sources.ts')),
  ...(await import('../registry/current.ts')),
});

interface Config {
  model: ArtifactRef;
  test: ArtifactRef;
  baseline?: { model: string; train: ArtifactRef; pooling?: 'cls' | 'mean'; maxLength?: number; seed?: number };
  production?: { name: string; alias?: string };
  threads?: number;
}

/** Models are checked out once per state folder and shared with `tempered serve`. */
function materialize(ctx: StageContext, tree: ArtifactRef): Promise<string> {
  return ctx.store.checkoutTree(tree, statePaths(ctx.stateDir).serving);
}

/** The version the spec's `production` alias points at now, with its exported model folder. */
async function productionModel(cfg: Config, stateDir: string): Promise<{ id: string; alias: string; tree: ArtifactRef } | undefined> {
  if (!cfg.production) return undefined;
  const { currentVersion, versionArtifact } = await lib();
  const alias = cfg.production.alias ?? 'production';
  const v = currentVersion(statePaths(stateDir).registryDb, cfg.production.name, alias);
  const tree = v && versionArtifact(v, 'model');
  return v && tree && { id: `${v.name}@${v.version}`, alias, tree };
}

async function resolveBaseline(cfg: NonNullable<Config['baseline']>, ctx: StageContext) {
  const { resolveModelSource } = await lib();
  return resolveModelSource(absoluteModelSource(cfg.model, ctx.baseDir), { cacheDir: statePaths(ctx.stateDir).models, signal: ctx.signal });
}

export const evaluateStage: StageKind<Config> = {
  kind: 'evaluate',
  description: 'accuracy, per-class and macro/micro P/R/F1 and confusion matrix on the test split, against baselines',
  codeVersion: 'evaluate-1',
  // onnxruntime blocks the thread for a whole run, and a native crash or OOM must not take the worker down.
  isolation: { module: import.meta.url },
  withSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['model', 'test'],
    properties: {
      model: { ...artifactRefSchema, description: 'exported model folder (train outputs.model)' },
      test: artifactRefSchema,
      baseline: {
        type: 'object',
        additionalProperties: false,
        required: ['model', 'train'],
        description: 'frozen-feature baseline: logistic regression on the base model’s pooled embeddings',
        properties: {
          model: { type: 'string' },
          train: artifactRefSchema,
          pooling: { enum: ['cls', 'mean'] },
          maxLength: { type: 'integer', minimum: 3 },
          seed: { type: 'integer' },
        },
      },
      production: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        description: 'compare with the version a registry alias points at (skipped when there is none)',
        properties: { name: { type: 'string' }, alias: { type: 'string' } },
      },
      threads: { type: 'integer', minimum: 1 },
    },
  },
  // The production comparison depends on which version the alias points at now.
  async externalInputs(cfg, { stateDir }) {
    const { currentVersion, versionArtifact } = await lib();
    if (!cfg.production) return [];
    const v = currentVersion(statePaths(stateDir).registryDb, cfg.production.name, cfg.production.alias ?? 'production');
    return [v ? `production:${v.name}@${v.version}:${versionArtifact(v, 'model')?.sha256 ?? ''}` : 'production:none'];
  },
  outputs: {
    metrics: { type: 'json', description: 'flat metrics for gates: accuracy, f1_macro, …, baseline.*, production.*' },
    report: { type: 'json', description: 'full reports with confusion matrices' },
    f1_macro: { type: 'number', description: 'classification' },
    accuracy: { type: 'number', description: 'classification' },
    loss: { type: 'number', description: 'causal LM: mean NLL of response tokens' },
    perplexity: { type: 'number', description: 'causal LM' },
  },
  check(raw, ctx) {
    const cfg = raw as Partial<Config>;
    return modelSourceIssues(cfg.baseline?.model, ['baseline', 'model'], ctx);
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
    const own = causal ? lmGateShape() : classificationGateShape(labels);
    const fields: Record<string, ValueShape> = { ...own.fields };
    if (cfg.baseline) fields.baseline = { ...(causal ? lmGateShape() : classificationGateShape(labels)) };
    // Present only when the alias has a version when the run evaluates; deploy falls back to the registry the same way.
    fields.production = {
      type: 'object',
      optional: true,
      description: 'absent while no version holds the alias',
      fields: { ...own.fields, version: { type: 'string' } },
    };
    return { type: 'object', fields };
  },
  async run(cfg, ctx) {
    const { evaluateClassifier, frozenFeatureBaseline, readLabeledTexts, readManifest, reportToGateMetrics } = await lib();
    const modelDir = await materialize(ctx, cfg.model);
    const testPath = await ctx.store.verify(cfg.test);
    const task = (JSON.parse(readFileSync(join(modelDir, 'tempered-model.json'), 'utf8')) as { task?: string }).task;
    if (task === 'causal-lm') return evaluateLm(cfg, ctx, modelDir, testPath);
    const manifest = readManifest(modelDir);
    const labels = manifest.labels;
    ctx.progress({ fraction: 0.05, message: 'evaluating the fine-tuned model' });
    const main = await evaluateClassifier({ modelFolder: modelDir, table: testPath, labels, threads: cfg.threads });
    const metrics: Record<string, unknown> = reportToGateMetrics(main.metrics);
    const report: Record<string, unknown> = { model: main.metrics, labels, testRows: (await readLabeledTexts(testPath)).texts.length };
    if (cfg.baseline) {
      ctx.progress({ fraction: 0.4, message: 'frozen-feature baseline (base model embeddings + logistic regression)' });
      const base = await resolveBaseline(cfg.baseline, ctx);
      const b = await frozenFeatureBaseline({
        modelDir: base.dir,
        train: await ctx.store.verify(cfg.baseline.train),
        test: testPath,
        labels,
        pooling: cfg.baseline.pooling ?? manifest.pooling,
        maxLength: cfg.baseline.maxLength ?? manifest.maxLength,
        seed: cfg.baseline.seed ?? 0,
        threads: cfg.threads,
      });
      metrics.baseline = reportToGateMetrics(b.metrics);
      report.baseline = b.metrics;
    }
    // No production version yet: gates see has(production) = false.
    const prod = await productionModel(cfg, ctx.stateDir);
    if (prod) {
      ctx.progress({ fraction: 0.8, message: `evaluating ${prod.id} (current ${prod.alias}) on the same test split` });
      const p = await evaluateClassifier({ modelFolder: await materialize(ctx, prod.tree), table: testPath, labels, threads: cfg.threads });
      metrics.production = { ...reportToGateMetrics(p.metrics), version: prod.id };
      report.production = { id: prod.id, metrics: p.metrics };
    }
    return {
      metrics: await ctx.store.putJson(metrics),
      report: await ctx.store.putJson(report),
      f1_macro: main.metrics.macro.f1,
      accuracy: main.metrics.accuracy,
    };
  },
};

/** Causal LM: loss and perplexity on response tokens, against the base model before tuning and the production version. */
async function evaluateLm(cfg: Config, ctx: StageContext, modelDir: string, testPath: string) {
  const { evaluateCausalLm } = await lib();
  ctx.progress({ fraction: 0.05, message: 'response-token loss of the fine-tuned model' });
  const main = await evaluateCausalLm({ model: modelDir, table: testPath, threads: cfg.threads });
  const metrics: Record<string, unknown> = { loss: main.loss, perplexity: main.perplexity, tokens: main.tokens };
  if (cfg.baseline) {
    ctx.progress({ fraction: 0.5, message: 'the base model before tuning' });
    const base = await resolveBaseline(cfg.baseline, ctx);
    // The base model is scored on the same rendering of the records as the fine-tune (its chat settings, if any).
    const trainedChat = (
      JSON.parse(readFileSync(join(modelDir, 'tempered-model.json'), 'utf8')) as {
        chat?: { template: string; system: string | null; endOfTurn: string | null } | null;
      }
    ).chat;
    const chat = trainedChat
      ? { template: trainedChat.template, system: trainedChat.system ?? undefined, endOfTurn: trainedChat.endOfTurn ?? undefined }
      : undefined;
    const b = await evaluateCausalLm({ model: base.dir, table: testPath, maxLength: cfg.baseline.maxLength, chat, threads: cfg.threads });
    metrics.baseline = { loss: b.loss, perplexity: b.perplexity, tokens: b.tokens };
  }
  const prod = await productionModel(cfg, ctx.stateDir);
  if (prod) {
    const p = await evaluateCausalLm({ model: await materialize(ctx, prod.tree), table: testPath, threads: cfg.threads });
    metrics.production = { loss: p.loss, perplexity: p.perplexity, tokens: p.tokens, version: prod.id };
  }
  return {
    metrics: await ctx.store.putJson(metrics),
    report: await ctx.store.putJson({ task: 'causal-lm', ...metrics }),
    loss: main.loss,
    perplexity: main.perplexity,
  };
}

export function stageKinds(): StageKind<any>[] {
  return [evaluateStage];
}
