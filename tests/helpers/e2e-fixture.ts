/** A complete fine-tuning pipeline over a tiny random BERT and a learnable synthetic dataset. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeTinyClassifierInputs } from './tiny-classifier.ts';

export interface E2EOptions {
  epochs?: number;
  checkpointEvery?: number;
  gate?: string;
  rows?: number;
  seed?: number;
}

export function writeE2EPipeline(dir: string, o: E2EOptions = {}): string {
  writeTinyClassifierInputs(dir, o.rows, o.seed);
  const file = join(dir, 'pipeline.yaml');
  writeFileSync(
    file,
    `name: e2e
params:
  seed:
    type: integer
    default: 3
stages:
  ingest:
    uses: ingest
    with:
      path: data.jsonl
      task: classification
  dedupe:
    uses: dedupe
    needs: ingest
    with:
      table: \${{ stages.ingest.outputs.table }}
  split:
    uses: split
    needs: dedupe
    with:
      table: \${{ stages.dedupe.outputs.table }}
      ratios:
        train: 0.7
        validation: 0.1
        test: 0.2
      seed: \${{ params.seed }}
  train:
    uses: train
    needs: split
    heartbeatTimeout: 10s
    with:
      model: tiny-bert
      train: \${{ stages.split.outputs.train }}
      validation: \${{ stages.split.outputs.validation }}
      evalEvery: 2
      method: lora
      lora:
        r: 4
        alpha: 8
      lr: 0.02
      epochs: ${o.epochs ?? 4}
      batchSize: 16
      maxLength: 32
      seed: 1
      checkpointEvery: ${o.checkpointEvery ?? 5}
  evaluate:
    uses: evaluate
    needs: [train, split]
    with:
      model: \${{ stages.train.outputs.model }}
      test: \${{ stages.split.outputs.test }}
      baseline:
        model: tiny-bert
        train: \${{ stages.split.outputs.train }}
      production:
        name: e2e-clf
  register:
    uses: register
    needs: [train, evaluate, split]
    with:
      name: e2e-clf
      model: \${{ stages.train.outputs.model }}
      metrics: \${{ stages.evaluate.outputs.metrics }}
      data:
        train: \${{ stages.split.outputs.train }}
        test: \${{ stages.split.outputs.test }}
  deploy:
    uses: deploy
    needs: [register, evaluate]
    with:
      name: e2e-clf
      version: \${{ stages.register.outputs.version }}
      alias: production
      metrics: \${{ stages.evaluate.outputs.metrics }}
      gate: "${o.gate ?? 'f1_macro >= 0.8'}"
`,
  );
  return file;
}

/** The promoted e2e classifier, served at `url`, tells a glowing review from a scathing one. */
export async function assertPredictsSentiment(url: string, token = 'test-token-123456'): Promise<void> {
  const res = await fetch(`${url}/predict`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: ['what a wonderful great film', 'an awful terrible boring plot'] }),
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { model: string; predictions: { label: string }[] };
  assert.equal(body.model, 'e2e-clf@1');
  assert.deepEqual(
    body.predictions.map((p) => p.label),
    ['positive', 'negative'],
  );
}
