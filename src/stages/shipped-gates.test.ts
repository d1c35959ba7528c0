/** The promotion gates the shipped pipelines carry, judged on the metrics their evaluate stages report, and on their data. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { readArrowBatches, stringColumn } from '../data/arrow-io.ts';
import type { DedupeConfig, IngestConfig, SplitConfig } from '../data/config.ts';
import { dedupe } from '../data/dedupe.ts';
import { ingest } from '../data/ingest.ts';
import { split } from '../data/split.ts';
import { SeenInputs } from '../eval/contamination.ts';
import { evaluateGate } from '../eval/gates.ts';

const spec = parse(readFileSync(fileURLToPath(new URL('../../pipelines/instruct.yaml', import.meta.url)), 'utf8')) as {
  stages: { deploy: { with: { gate: string } } };
};
const gate = spec.stages.deploy.with.gate;

/**
 * What evaluate reports: the candidate over its test rows, and production (with the candidate again, `candidate`)
 * over the test rows production was not trained on.
 */
const metrics = (
  o: { rows?: number; production?: number; candidate?: number; own?: number; contaminated?: number; decontaminated?: boolean } = {},
) => ({
  exact_match: o.own ?? 0.7,
  balanced_exact_match: 0.7,
  generated: 100,
  baseline: { exact_match: 0.3 },
  ...(o.production === undefined
    ? {}
    : {
        production: {
          exact_match: o.production,
          version: 'sst2@3',
          rows: o.rows ?? 100,
          contaminated_rows: o.contaminated ?? 0,
          decontaminated: o.decontaminated ?? true,
          candidate: { exact_match: o.candidate ?? o.own ?? 0.7 },
        },
      }),
});

test("instruct.yaml's gate: a run compared on a few rows may promote a first version but never replace production", () => {
  assert.equal(evaluateGate(gate, { ...metrics(), generated: 10 }).passed, true, 'no production yet');
  assert.equal(evaluateGate(gate, metrics({ rows: 10, production: 0.7 })).passed, false, 'a tie on 10 rows');
  assert.equal(evaluateGate(gate, metrics({ rows: 100, production: 0.71 })).passed, true, 'within 0.02 on 100 rows');
  assert.equal(evaluateGate(gate, metrics({ rows: 100, production: 0.75 })).passed, false, 'worse by more than 0.02');
});

test("instruct.yaml's gate compares both models on the rows production was not trained on", () => {
  // A retrain: 80 of the first 180 test rows were production's training rows. On the 100 others production scores
  // 0.6 and the candidate 0.7; the candidate's 0.68 over its own test rows is not what the comparison reads.
  const retrain = { rows: 100, contaminated: 80, production: 0.6, candidate: 0.7, own: 0.68 };
  assert.equal(evaluateGate(gate, metrics(retrain)).passed, true, 'better on the same rows');
  assert.equal(
    evaluateGate(gate, metrics({ ...retrain, candidate: 0.55 })).passed,
    false,
    'worse on the same rows, whatever its own score',
  );
  // Every test row had been production's: 100 rows are required, and the scores (absent) are not read.
  const none = { ...metrics(), production: { version: 'sst2@3', rows: 0, contaminated_rows: 120, decontaminated: true } };
  const res = evaluateGate(gate, none);
  assert.equal(res.passed, false);
  assert.match(res.explanation, /production\.rows 0 >= 100/);
  // Production's training data could not be read: it was scored on all rows (its score can only be inflated), and
  // the comparison still stands on them.
  assert.equal(evaluateGate(gate, metrics({ rows: 100, production: 0.71, decontaminated: false })).passed, true);
});

test("sms-spam.yaml's gate can replace production after an ordinary retrain: a re-split leaves enough test rows production was not trained on", async (t) => {
  // The pipeline's own ingest, dedupe and split on its own data: production trained on the default seed's train
  // split, a retrain re-splits the same rows with another seed, and its test rows production never saw are what
  // production.rows counts. A minimum above what re-splits leave would keep any retrain from replacing production.
  const file = fileURLToPath(new URL('../../pipelines/sms-spam.yaml', import.meta.url));
  const sms = parse(readFileSync(file, 'utf8')) as {
    params: { seed: { default: number } };
    stages: Record<string, { with: Record<string, unknown> }>;
  };
  const minimum = Number(/production\.rows >= (\d+)/.exec(String(sms.stages.deploy!.with.gate))?.[1]);
  assert.ok(minimum > 0, 'the gate asks for a minimum of production.rows');
  const dir = mkdtempSync(join(tmpdir(), 'tempered-sms-gate-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { path: _path, ...ingestCfg } = sms.stages.ingest!.with;
  await ingest({ ...ingestCfg, path: String(sms.stages.ingest!.with.path) } as IngestConfig, {
    baseDir: dirname(file),
    outPath: join(dir, 'ingested.arrow'),
    quarantinePath: join(dir, 'quarantine.arrow'),
  });
  const { table: _t, ...dedupeCfg } = sms.stages.dedupe!.with;
  await dedupe(join(dir, 'ingested.arrow'), dedupeCfg as DedupeConfig, {
    outPath: join(dir, 'deduped.arrow'),
    clustersPath: join(dir, 'clusters.arrow'),
  });
  const ratios = sms.stages.split!.with.ratios as SplitConfig['ratios'];
  const splitWith = async (seed: number) =>
    (await split(join(dir, 'deduped.arrow'), { seed, ratios }, { outDir: join(dir, `split-${seed}`) })).files;
  const seen = new SeenInputs();
  for await (const b of readArrowBatches((await splitWith(sms.params.seed.default)).train!))
    for (const text of stringColumn(b, 'text')) seen.add([text]);
  const clean: number[] = [];
  for (let seed = 1; seed <= 12; seed++) {
    let rows = 0;
    for await (const b of readArrowBatches((await splitWith(1000 + seed)).test!))
      for (const text of stringColumn(b, 'text')) if (!seen.has([text])) rows++;
    clean.push(rows);
  }
  assert.ok(
    Math.min(...clean) >= minimum,
    `test rows production was not trained on, per re-split: ${clean.join(', ')}; the gate asks ${minimum}`,
  );
});
