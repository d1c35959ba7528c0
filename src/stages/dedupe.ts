/** Stage kind `dedupe`: exact and near-duplicate removal with a clusters table and conflict policy. */
import { join } from 'node:path';
import type { DedupeConfig } from '../data/config.ts';
import { dedupeWithSchema } from '../data/schemas.ts';
import { MEDIA, type ArtifactRef } from '../types.ts';
import { artifactRefSchema, withInputs } from './schema-helpers.ts';
import type { StageKind } from './types.ts';
import { resolveNear } from '../data/dedupe-config.ts';
import { InputError } from '../errors.ts';
import { hasRefs } from '../spec/runtime-refs.ts';
import { issuesFrom } from './checks.ts';

// The library (Arrow, onnxruntime, …) loads when the stage runs, not when `validate` reads the kind's contract.
const lib = async () => ({ ...(await import('../data/arrow-io.ts')), ...(await import('../data/dedupe.ts')) });

type Config = DedupeConfig & { table: ArtifactRef };

export const dedupeStage: StageKind<Config> = {
  kind: 'dedupe',
  description: 'remove exact and near duplicates (MinHash + LSH); report clusters and label conflicts',
  // 2: near duplicates compared without the prompt template the table records (src/data/template-shingles.ts).
  // 3: conflicts: majority drops a cluster whose labels tie (8 Dec); a cached 2 kept the first row's label there.
  codeVersion: 'dedupe-3',
  withSchema: withInputs(dedupeWithSchema, { table: { ...artifactRefSchema, takes: ['table'] } }),
  outputs: {
    table: { type: 'table', description: 'kept rows, with _cluster' },
    clusters: { type: 'table', description: 'cluster id, member, kept, reason' },
    report: { type: 'json' },
    rows: { type: 'number' },
  },
  check({ near }) {
    // The MinHash settings (bands × rows ≤ numPerm, ranges) are known from the file: refuse them now, not after ingest.
    if (near === undefined || hasRefs(near)) return [];
    try {
      resolveNear(near as DedupeConfig['near']);
      return [];
    } catch (e) {
      if (e instanceof InputError) return issuesFrom([e]);
      throw e;
    }
  },
  async run({ table, ...cfg }, ctx) {
    const { describeArrowFile, dedupe } = await lib();
    const inPath = await ctx.store.verify(table);
    const outPath = join(ctx.workDir, 'table.arrow');
    const clustersPath = join(ctx.workDir, 'clusters.arrow');
    const report = await dedupe(inPath, cfg, {
      outPath,
      clustersPath,
      onProgress: (p) => ctx.progress({ fraction: p.fraction, message: `${p.rows} rows`, metrics: { rows: p.rows } }),
    });
    const [kept, clusters] = await Promise.all([describeArrowFile(outPath), describeArrowFile(clustersPath)]);
    return {
      table: await ctx.store.putFile(outPath, { mediaType: MEDIA.arrow, rows: kept.rows, schema: kept.schema, move: true }),
      clusters: await ctx.store.putFile(clustersPath, { mediaType: MEDIA.arrow, rows: clusters.rows, schema: clusters.schema, move: true }),
      report: await ctx.store.putJson(report),
      rows: report.rowsOut,
    };
  },
};

export function stageKinds(): StageKind<any>[] {
  return [dedupeStage];
}
