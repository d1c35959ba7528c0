/**
 * Types of the pipeline spec library: what a pipeline file holds once validated, the plan the
 * workflow receives, the injected stage-kind registry and the errors reported to people.
 * Everything here is plain JSON so it can travel in Temporal payloads.
 */

export interface StageOutputInfo {
  type: 'table' | 'artifact' | 'json' | 'string' | 'number' | 'boolean';
  description?: string;
}

/**
 * Keyword a node of a `with` schema may carry: which types of stage output a whole
 * `${{ stages.<id>.outputs.<name> }}` there may be, e.g. `{ ...artifactRefSchema, takes: ['table'] }`.
 * An artifact reference alone does not say what it points at: a json output (split's folds, a
 * report) fits the schema and fails only when the stage reads it. Without it, any output whose
 * type fits the schema is taken (a json output, whose value is unknown, anywhere).
 */
export const TAKES_KEYWORD = 'takes';

export interface StageKindInfo {
  kind: string;
  description: string;
  /** JSON Schema 2020-12 for the stage's `with` (a node may say which output types it takes: TAKES_KEYWORD). */
  withSchema: object;
  outputs: Record<string, StageOutputInfo>;
  codeVersion: string;
  /**
   * Rules the JSON Schema cannot express (fields that depend on each other, expressions, model
   * source strings, names another stage produces), so a file that validates does not fail later
   * for a reason visible in its text. Called only when `with` passed the schema; parameters are
   * substituted, and values holding `${{ … }}` are known only at run time (see hasRefs).
   */
  check?(config: Record<string, unknown>, ctx: KindCheckContext): KindIssue[];
  /** Outputs this config leaves out (e.g. classification metrics of a causal-LM evaluation), with why; references to them are errors. */
  absentOutputs?(config: Record<string, unknown>, ctx: KindCheckContext): { names: string[]; because: string } | undefined;
  /** What a `json` output will hold, for the checks of stages that read it (e.g. a gate reading evaluate's metrics). */
  outputShape?(output: string, config: Record<string, unknown>, ctx: KindCheckContext): ValueShape | undefined;
}

/** The shape of JSON data: which names a document will hold, with their types. */
export type ValueShape =
  /** 'unknown': whatever is there is known only at run time. */
  | { type: 'number' | 'boolean' | 'string' | 'unknown'; optional?: boolean; description?: string }
  | {
      type: 'object';
      /** May be absent at run time (e.g. no production model yet). */
      optional?: boolean;
      description?: string;
      fields: Record<string, ValueShape>;
      /** Fields whose names are known only at run time (e.g. one per class label), all of this shape. */
      rest?: ValueShape;
      /** Said when a name is not among the fields: how to get the names it lacks. */
      lacking?: string;
    };

/** A problem a stage kind's check found in its `with`. */
export interface KindIssue {
  /**
   * The upstream stage whose `with` holds the problem, when a rule between two stages finds it there
   * (e.g. evaluate's production alias that differs from the one deploy promotes); default this stage.
   */
  stage?: string;
  /** Inside `with`, e.g. ['lora'] or ['baseline', 'model']. */
  path: Array<string | number>;
  message: string;
  hint?: string;
  /** 0-based offset into the string value the problem is at (e.g. a gate's bad token). */
  offset?: number;
}

export interface KindCheckContext {
  stageId: string;
  /** Folder relative paths in the config resolve against, when the file is on this machine's disk. */
  baseDir?: string;
  /** The upstream stage a whole `${{ stages.<id>.outputs.<name> }}` value comes from, when its kind is known and its config valid. */
  upstream(value: unknown): UpstreamOutput | undefined;
}

export interface UpstreamOutput {
  stage: string;
  output: string;
  kind: StageKindInfo;
  /** The upstream stage's `with`, parameters substituted. */
  config: Record<string, unknown>;
  context: KindCheckContext;
}

export type ParamType = 'string' | 'number' | 'integer' | 'boolean';
export type ParamValue = string | number | boolean;

export interface ParamSpec {
  type: ParamType;
  default?: ParamValue;
  description?: string;
  enum?: ParamValue[];
}

export interface RetrySpec {
  maximumAttempts?: number;
  initialInterval?: string;
  backoffCoefficient?: number;
  maximumInterval?: string;
  nonRetryableErrorTypes?: string[];
}

export interface StageSpec {
  uses: string;
  description?: string;
  needs?: string | string[];
  with?: Record<string, unknown>;
  retry?: RetrySpec;
  timeout?: string;
  heartbeatTimeout?: string;
  cache?: boolean;
  queue?: string;
}

export type OnFailure = 'fail-fast' | 'finish-independent';

/** A pipeline file as written, after it passed validation. */
export interface PipelineSpec {
  name: string;
  description?: string;
  params?: Record<string, ParamSpec>;
  stages: Record<string, StageSpec>;
  defaults?: { retry?: RetrySpec; timeout?: string; heartbeatTimeout?: string; queue?: string };
  concurrency?: number;
  onFailure?: OnFailure;
  triggers?: TriggerSpec;
}

/** Retrain-only-when-it-matters checks (see the `triggers` field of the schema). */
export interface TriggerSpec {
  skipIfUnchanged?: boolean;
  metricBelow?: { model: string; alias?: string; metric: string; threshold: number };
  labelDrift?: { distance?: 'jensen-shannon'; threshold: number };
}

/**
 * Retry policy with every field filled in. Intervals are milliseconds so the workflow can hand
 * the object to Temporal's RetryPolicy as is (Temporal's own duration strings do not accept `1h30m`).
 */
export interface PlannedRetry {
  maximumAttempts: number;
  initialInterval: number;
  backoffCoefficient: number;
  maximumInterval: number;
  nonRetryableErrorTypes: string[];
}

export interface PlannedStage {
  id: string;
  uses: string;
  /** Direct dependencies, in plan order. */
  needs: string[];
  /** Stage config with params substituted; `${{ stages.<id>.outputs.<name> }}` stay for run time. */
  with: Record<string, unknown>;
  retry: PlannedRetry;
  /** start-to-close timeout in milliseconds. */
  timeout: number;
  /** Heartbeat timeout in milliseconds; absent when neither the stage nor defaults set one. */
  heartbeatTimeout?: number;
  cache: boolean;
  /** Task queue; absent means the workflow's own queue. */
  queue?: string;
  /** Stages that list this one in `needs`, in plan order. */
  dependents: string[];
}

export interface PlannedPipeline {
  name: string;
  /** sha256 (hex) of the canonical JSON of the resolved spec (params substituted, defaults merged). */
  specHash: string;
  params: Record<string, ParamValue>;
  /** Most stages at once; the number of stages when the file sets no limit. */
  concurrency: number;
  onFailure: OnFailure;
  /** Run gate from the spec's `triggers`, when it has any. */
  triggers?: TriggerSpec;
  /** Topological order; ties broken by the order stages appear in the file. */
  stages: PlannedStage[];
}

export type SpecErrorCode =
  | 'file-not-found'
  | 'file-unreadable'
  /** Over MAX_SPEC_BYTES (load.ts). */
  | 'file-too-large'
  /** The file is not valid UTF-8. */
  | 'bad-encoding'
  | 'yaml-syntax'
  /** A .json file that is not strict JSON (RFC 8259). */
  | 'json-syntax'
  | 'duplicate-key'
  | 'empty-file'
  /** A value YAML allows but JSON does not (.inf, .nan, !!binary, !!set). */
  | 'bad-value'
  /** A YAML 1.1 merge key (`<<: *x`), which YAML 1.2 reads as a field named '<<'. */
  | 'merge-key'
  /** A plain mapping key YAML reads as a number or boolean written otherwise (`1.0: x` is the key "1", `True: x` "true"). */
  | 'number-key'
  /** A plain mapping key YAML reads as null (`~: x`, `null: x`, `Null: x`), which becomes the key "". */
  | 'null-key'
  | 'schema'
  | 'unknown-field'
  | 'missing-field'
  | 'bad-duration'
  | 'bad-retry'
  | 'unknown-kind'
  | 'kind-unavailable'
  | 'with-schema'
  | 'unknown-need'
  | 'self-need'
  | 'cycle'
  | 'bad-param-default'
  | 'bad-ref'
  | 'unknown-param'
  | 'unknown-stage'
  | 'unknown-output'
  | 'not-upstream'
  | 'type-mismatch'
  /** A rule of the stage kind beyond its JSON Schema (see StageKindInfo.check). */
  | 'bad-config'
  | 'bad-param-override'
  | 'missing-param';

/** One problem in a pipeline file, with where it is and what to do about it. */
export interface SpecError {
  file: string;
  /** 1-based; 0 when the problem is not in the file (e.g. a --param on the command line). */
  line: number;
  /** 1-based; 0 when line is 0. */
  column: number;
  /** Human path to the offending field, e.g. `stages.train.needs[0]`; '' for the whole file. */
  path: string;
  message: string;
  hint?: string;
  code: SpecErrorCode;
}

export interface KindRegistry {
  kinds: ReadonlyMap<string, StageKindInfo>;
  /** Kinds tempered knows of but this build does not provide. */
  knownButUnavailable?: ReadonlySet<string>;
}
