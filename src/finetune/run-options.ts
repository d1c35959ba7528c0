/** Settings every fine-tuning run takes, whatever the task (classification, causal LM). */
import type { Device } from '../engine/runtime.ts';

/** The newest checkpoint, and the one before it for a person to fall back on if the newest is damaged. */
export const KEEP_CHECKPOINTS = 2;

export interface RunSettings {
  /** Hugging Face folder: config.json, model.safetensors, tokenizer.json. */
  modelDir: string;
  /**
   * What the PEFT adapter's adapter_config.json names as its base (`base_model_name_or_path`, `revision`). A Hub repo
   * and the commit trained from make peft's AutoPeftModel load the base by itself; transformers 5 writes no
   * `_name_or_path` in config.json, so without this a Hub model's adapter named none. Absent: that field, as before.
   */
  peftBase?: { name: string; revision?: string };
  /** Arrow IPC table of training rows. */
  train: string;
  validation?: string;
  lr: number;
  epochs?: number;
  maxSteps?: number;
  batchSize: number;
  accumulation?: number;
  warmupSteps?: number;
  /** Warmup as a share of the total steps (rounded), when warmupSteps is not given. */
  warmupRatio?: number;
  schedule: 'constant' | 'linear' | 'cosine';
  weightDecay: number;
  clipNorm?: number;
  seed: number;
  maxLength: number;
  device: Device;
  threads?: number;
  checkpointDir: string;
  /** Optimizer steps between checkpoints; the last step is always saved when > 0 (0: no checkpoints). */
  checkpointEvery: number;
  /** Continue from the latest checkpoint in checkpointDir, if any. */
  resume?: boolean;
  /**
   * Checkpoints kept in checkpointDir, the newest (default KEEP_CHECKPOINTS): a resume reads only the
   * newest, and an LLM's full fine-tuning checkpoint is 1.6 GB, so older ones would only fill the disk.
   */
  keepCheckpoints?: number;
  evalEvery?: number;
  /**
   * Optimizer steps per onnxruntime run (default: 4 on CPU when the trainable weights and optimizer
   * state exceed 32 MB, as in full fine-tuning, else 1). Results do not depend on it, so it is not part of
   * the settings a resume checks.
   */
  stepsPerRun?: number;
  /**
   * Longest one multi-step onnxruntime run may take (default 5 s, RunSizer): a run blocks its thread,
   * so a caller whose thread serves others keeps it short; one in a process of its own (the train stage's
   * child) passes Infinity, and runs then take `stepsPerRun` steps from the first.
   */
  runBudgetMs?: number;
  outDir: string;
  /** Called after each checkpoint is on disk; training awaits what it returns (the upload to a shared store). */
  onCheckpoint?: (dir: string) => unknown;
  /** Stops training between steps (run cancelled, attempt timed out, checkpoint lock lost); nothing is exported then. */
  signal?: AbortSignal;
}
