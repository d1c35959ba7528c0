/**
 * What a stage kind is: its contract (config schema, outputs, code version, from the spec
 * library's StageKindInfo) and the library function that does the work. Stage kinds know nothing
 * of Temporal; the activity adapter gives them a StageContext.
 */
import type { StageKindInfo } from '../spec/types.ts';
import type { ArtifactStore } from '../store/artifact-store.ts';
import type { StageOutputs, StageProgress } from '../types.ts';

export interface StageContext {
  /** The run's id (the workflow id). A user, a schedule or a backfill can reuse it once the run closed. */
  runId: string;
  /**
   * Id of this one execution of the run (Temporal's workflow run id): never reused, so side effects
   * that must happen once per run (registering, promoting, their audit records) key on it.
   */
  executionId?: string;
  stageId: string;
  /** 1 on the first try; higher on retries. */
  attempt: number;
  /** Folder that relative paths in the config are resolved against. */
  baseDir: string;
  specHash: string;
  actor: string;
  /** Cache key of this execution; stable across retries and resumed runs of the same work. */
  cacheKey?: string;
  /**
   * Start from scratch: resume no checkpoint that another run of the same work left (RunOptions.freshTraining). Its
   * own earlier attempts' checkpoints are still resumed.
   */
  freshTraining?: boolean;
  /**
   * A training of a run submitted with `--no-cache`, or of a resume of one (RunOptions.ownCheckpoints): it writes and
   * resumes the checkpoints of that run and its resumes only, under this name, never those of another run of the work.
   */
  ownCheckpoints?: string;
  store: ArtifactStore;
  /** Scratch folder on the store's filesystem, removed after the attempt. */
  workDir: string;
  /** Root of tempered's state (registry, audit log, model cache live here). */
  stateDir: string;
  /**
   * True when this attempt runs in a process of its own (src/isolate/): blocking the thread for long
   * stalls nobody else, so work may be sized for throughput rather than for responsiveness.
   */
  ownProcess?: boolean;
  /** Aborted when the run is cancelled or the attempt times out. */
  signal: AbortSignal;
  /**
   * Reports progress. `resume` data (e.g. a checkpoint reference) is kept and handed to the next
   * attempt as `resumeFrom`, so a retried stage continues instead of starting over.
   */
  progress(p: StageProgress & { resume?: unknown }): void;
  /** The last `resume` value a previous attempt reported, if any. */
  resumeFrom?: unknown;
  /**
   * Reports the identities of the external inputs the stage actually read, in the form its
   * `externalInputs` returns. A source that changed between the cache lookup and the read then
   * has its outputs recorded under the key of what was read, never under the looked-up key.
   */
  inputsRead?(externalInputs: string[]): void;
  log(message: string): void;
}

/**
 * What a stage's `stage.completed` audit record says beyond the hashes of its input and output
 * artifacts (the kind's `audit`). Absent fields are left out of the record.
 */
export interface StageAudit {
  /** Added to the record's `dataHashes`, e.g. `source:<path>` → sha256 of a file ingest read. */
  dataHashes?: Record<string, string>;
  /** `name@version` the stage's work is, for `tempered audit --model` (register). */
  model?: string;
  /** The model's hash as every audit record gives it (src/audit/model-hash.ts). */
  modelHash?: string;
  /** Added to the record's details (the adapter's own `stage`, `kind` and `cacheKey` win). */
  details?: Record<string, unknown>;
}

export interface StageKind<C = Record<string, unknown>> extends StageKindInfo {
  /**
   * Identities of inputs the config only names (source files, the model a registry alias points
   * at), so a change there misses the cache.
   */
  externalInputs?(config: C, ctx: { baseDir: string; stateDir: string }): Promise<string[]>;
  /**
   * False for stages whose point is a side effect on state outside the store (the registry): their
   * outputs are never reused, so a rerun acts again against the state as it is now.
   */
  cacheable?: boolean;
  /**
   * Run each attempt in a child process of its own (src/isolate/): for kinds whose work blocks the
   * JavaScript thread for long (onnxruntime runs) or may crash natively or run out of memory.
   * `module` exports `stageKinds()` with this kind; the child loads it from there. `device` says which
   * onnxruntime device the config asks for: a child for `cuda` (or `auto` where CUDA works) is started
   * with onnxruntime's CUDA build (src/engine/cuda.ts).
   */
  isolation?: { module: string; device?(config: C): 'cpu' | 'webgpu' | 'cuda' | 'auto' | undefined };
  run(config: C, ctx: StageContext): Promise<StageOutputs>;
  /**
   * What this stage's `stage.completed` audit record adds (ingest: the source files it read;
   * register: which version its model is). Computed from the config and the outputs, not during
   * `run`, so the retry that finishes a stage whose earlier attempt stored its outputs but not its
   * record writes the same record. A throw fails the attempt, which is retried.
   */
  audit?(config: C, outputs: Record<string, unknown>, ctx: { store: ArtifactStore }): Promise<StageAudit>;
}

export type AnyStageKind = StageKind<any>;
