/** A short pipeline, ingest → split → train, over a tiny random BERT: for tests about how training runs. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeTinyClassifierInputs } from './tiny-classifier.ts';

export interface TrainFixtureOptions {
  epochs?: number;
  checkpointEvery?: number;
  heartbeatTimeout?: string;
  maxSteps?: number;
  device?: 'cpu' | 'cuda' | 'auto';
}

export function writeTrainPipeline(dir: string, o: TrainFixtureOptions = {}): string {
  writeTinyClassifierInputs(dir);
  const file = join(dir, 'pipeline.yaml');
  writeFileSync(
    file,
    `name: train-only
stages:
  ingest:
    uses: ingest
    with:
      path: data.jsonl
      task: classification
  split:
    uses: split
    needs: ingest
    with:
      table: \${{ stages.ingest.outputs.table }}
      ratios: { train: 0.8, test: 0.2 }
      seed: 3
  train:
    uses: train
    needs: split
    heartbeatTimeout: ${o.heartbeatTimeout ?? '10s'}
    retry: { maximumAttempts: 3, initialInterval: 1s }
    with:
      model: tiny-bert
      train: \${{ stages.split.outputs.train }}
      method: lora
      lora: { r: 4, alpha: 8 }
      lr: 0.02
${o.maxSteps ? `      maxSteps: ${o.maxSteps}` : `      epochs: ${o.epochs ?? 1}`}
      batchSize: 16
      maxLength: 32
      seed: 1
      checkpointEvery: ${o.checkpointEvery ?? 4}
${o.device ? `      device: ${o.device}\n` : ''}`,
  );
  return file;
}
