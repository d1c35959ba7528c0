/** Stage kind `split`: seeded, stratified, group-aware train/validation/test (and k-fold) split. */
import { existsSync } from 'node:fs';
import type { SplitConfig } from '../data/config.ts';
import { splitWithSchema } from '../data/schemas.ts';
import { MEDIA, type ArtifactRef } from '../types.ts';
import { artifactRefSchema, withInputs } from './schema-helpers.ts';
import { checkSplitConfig } from '../data/split-config.ts';
import { hasRefs } from '../spec/runtime-refs.ts';
import { issuesFrom } from './checks.ts';
import type { StageContext, StageKind } from './types.ts';

// The library (Arrow, onnxruntime, …) loads when the stage runs, not when `validate` reads the kind's contract.
const lib = async () => ({ ...(await import('../data/arrow-io.ts')), ...(await import('../data/split.ts')) });

type Config = SplitConfig & { table: ArtifactRef };

async function put(ctx: StageContext, path: string): Promise<ArtifactRef> {
  const d = await (await lib()).describeArrowFile(path);
  return ctx.store.putFile(path, { mediaType: MEDIA.arrow, rows: d.rows, schema: d.schema, move: true });
}

export const splitStage: StageKind<Config> = {
  kind: 'split',
  description: 'seeded train/validation/test split, stratified by label, keeping duplicate clusters and groups together',
  codeVersion: 'split-1',
  withSchema: withInputs(splitWithSchema, { table: { ...artifactRefSchema, takes: ['table'] } }),
  outputs: {
    train: { type: 'table' },
    validation: { type: 'table' },
    test: { type: 'table' },
    folds: { type: 'json', description: 'k-fold pairs [{train, validation}] when kfold is set' },
    report: { type: 'json' },
  },
  check({ table: _table, ...cfg }) {
    // The input table is a reference by nature; the rest must be known now to be checked now.
    return hasRefs(cfg) ? [] : issuesFrom(checkSplitConfig(cfg as SplitConfig));
  },
  absentOutputs(raw) {
    // With kfold the split writes folds and test only; a reference to train or validation would fail at run time.
    const kfold = (raw as Partial<Config>).kfold;
    return kfold === undefined || hasRefs(kfold)
      ? undefined
      : { names: ['train', 'validation'], because: `with kfold: ${kfold} it writes outputs.folds (train/validation pairs) and test` };
  },
  async run({ table, ...cfg }, ctx) {
    const { split } = await lib();
    const inPath = await ctx.store.verify(table);
    const res = await split(inPath, cfg, {
      outDir: ctx.workDir,
      onProgress: (p) => ctx.progress({ fraction: p.fraction, message: `${p.rows} rows`, metrics: { rows: p.rows } }),
    });
    const { files, ...report } = res;
    const outputs: Record<string, unknown> = {};
    for (const name of ['train', 'validation', 'test']) {
      if (files[name] && existsSync(files[name]!)) outputs[name] = await put(ctx, files[name]!);
    }
    const folds: { train: ArtifactRef; validation: ArtifactRef }[] = [];
    for (let i = 0; files[`fold-${i}-train`]; i++) {
      folds.push({ train: await put(ctx, files[`fold-${i}-train`]!), validation: await put(ctx, files[`fold-${i}-validation`]!) });
    }
    outputs.folds = folds;
    outputs.report = await ctx.store.putJson(report);
    return outputs as Record<string, ArtifactRef>;
  },
};

export function stageKinds(): StageKind<any>[] {
  return [splitStage];
}
