/** ingest → dedupe → split on the real datasets: every row is accounted for at every stage. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeArrowFile, readArrowBatches, stringColumn } from './arrow-io.ts';
import type { IngestConfig } from './config.ts';
import { dedupe } from './dedupe.ts';
import { ingest } from './ingest.ts';
import { split } from './split.ts';
import { datasetsDir } from './datasets-dir.ts';

const DATASETS = datasetsDir();

async function hashes(path: string): Promise<string[]> {
  const out: string[] = [];
  for await (const b of readArrowBatches(path)) out.push(...stringColumn(b, '_hash'));
  return out;
}

const cases: [string, IngestConfig, number][] = [
  ['sms_spam jsonl', { path: 'sms_spam/sms_spam.jsonl', task: 'classification' }, 5574],
  ['sms_spam tsv', { path: 'sms_spam/SMSSpamCollection.tsv', task: 'classification', header: false, columns: ['label', 'text'] }, 5574],
  ['sst2 all splits', { path: 'sst2', task: 'classification', labels: ['negative', 'positive'] }, 6920 + 872 + 1821],
];

for (const [name, cfg, rows] of cases) {
  test(`accounting: ${name}`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pipeline-'));
    const ing = await ingest(cfg, {
      baseDir: DATASETS,
      outPath: join(dir, 'ingested.arrow'),
      quarantinePath: join(dir, 'quarantine.arrow'),
    });
    const quarantined = (await describeArrowFile(join(dir, 'quarantine.arrow'))).rows;
    assert.equal(ing.rowsIn, rows);
    assert.equal(ing.rowsIn, ing.rowsOut + quarantined);

    const dd = await dedupe(
      join(dir, 'ingested.arrow'),
      {},
      { outPath: join(dir, 'deduped.arrow'), clustersPath: join(dir, 'clusters.arrow') },
    );
    assert.equal(dd.rowsIn, ing.rowsOut);
    assert.equal(dd.rowsIn, dd.rowsOut + dd.exactRemoved + dd.nearRemoved + dd.conflictsRemoved);
    const clusters = await describeArrowFile(join(dir, 'clusters.arrow'));
    // clusters table lists each multi-row cluster's members: removed rows plus one kept row per cluster (or none when dropped)
    assert.ok(clusters.rows >= dd.rowsIn - dd.rowsOut);

    const sp = await split(join(dir, 'deduped.arrow'), { seed: 3 }, { outDir: dir });
    assert.equal(sp.rowsIn, dd.rowsOut);
    assert.equal(sp.leakage, 0);
    assert.ok(sp.maxStratifyDeviation < 1);
    const parts = await Promise.all(['train', 'validation', 'test'].map((s) => hashes(sp.files[s])));
    assert.equal(
      parts.reduce((a, p) => a + p.length, 0),
      dd.rowsOut,
    );
    // No text (by content hash) in two splits: dedupe made hashes unique, split kept them apart.
    const all = parts.flat();
    assert.equal(new Set(all).size, all.length);
  });
}
