/**
 * The train stage's tests' tiny causal-LM run: a prompt/response table of 32 "repeat: i" rows and a few LoRA steps with a
 * checkpoint each, so a test can stop, move and resume it in seconds.
 */
import { ArrowTableWriter } from '../data/arrow-io.ts';
import type { ArtifactRef } from '../types.ts';
import type { TrainConfig } from './train.ts';

/** Writes the 32-row table to `path` and returns the path. */
export function writeRepeatTable(path: string): string {
  const w = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  w.writeBatch({ prompt: Array.from({ length: 32 }, (_, i) => `repeat: ${i}`), response: Array.from({ length: 32 }, (_, i) => String(i)) });
  w.close();
  return path;
}

/** The stage config: LoRA r 2 on `model`, 6 steps of 8 rows, a checkpoint every step, one step per onnxruntime run. */
export function tinyLoraTrainConfig(model: string, train: ArtifactRef, o: Partial<TrainConfig> = {}): TrainConfig {
  return {
    model,
    task: 'causal-lm',
    train,
    method: 'lora',
    lora: { r: 2, alpha: 4 },
    lr: 1e-2,
    maxSteps: 6,
    batchSize: 8,
    maxLength: 16,
    checkpointEvery: 1,
    stepsPerRun: 1,
    threads: 1,
    ...o,
  } as TrainConfig;
}

/** A tiny classifier's stage config: LoRA r 4 on `model`, 8 steps of 8 rows at length 32, one thread. */
export function tinyClassifierTrainConfig(model: string, train: ArtifactRef, o: Partial<TrainConfig> = {}): TrainConfig {
  return {
    model,
    train,
    labels: ['negative', 'positive'],
    method: 'lora',
    lora: { r: 4, alpha: 8 },
    lr: 1e-2,
    maxSteps: 8,
    batchSize: 8,
    maxLength: 32,
    threads: 1,
    ...o,
  } as TrainConfig;
}
