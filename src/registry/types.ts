/** Public shapes of the model registry. All plain JSON so they can travel in Temporal payloads. */

export type ArtifactRole = 'onnx' | 'adapter' | 'tokenizer' | 'metrics' | 'config' | 'card' | (string & {});

export interface RegisteredArtifact {
  role: ArtifactRole;
  uri: string;
  sha256: string;
  bytes: number;
  mediaType?: string;
}

/** One input data set the version was trained or evaluated on. */
export interface DataRef {
  /** e.g. 'train', 'eval', or the ingest stage id. */
  name: string;
  sha256: string;
  uri?: string;
  rows?: number;
}

export interface Lineage {
  /** Hash of the resolved pipeline spec. */
  specHash: string;
  runId: string;
  stageId: string;
  data: DataRef[];
  /** Identity of the base model (source, name, revision, file hashes). */
  baseModel?: Record<string, unknown>;
  /** Git commit or package version of tempered that trained it. */
  codeVersion?: string;
}

export interface RegisterInput {
  name: string;
  runId: string;
  stageId: string;
  /**
   * What makes two registrations "the same attempt" (default `runId/stageId`). A workflow id can be
   * reused once its run closed, so workflow callers add the execution's run id.
   */
  idempotencyKey?: string;
  /** Return the existing version whose artifact of this role has the same sha256, instead of a copy. */
  reuseVersionWithSame?: string;
  specHash: string;
  data: DataRef[];
  artifacts: RegisteredArtifact[];
  /** Flat or nested numbers; nested keys are stored dotted (`per_class.spam.f1`). */
  metrics?: Record<string, unknown>;
  /** Hyperparameters as given in the spec (any JSON). */
  params?: Record<string, unknown>;
  baseModel?: Record<string, unknown>;
  codeVersion?: string;
  description?: string;
  intendedUse?: string;
  limitations?: string;
  tags?: Record<string, string>;
  /** Defaults to TEMPERED_ACTOR or the OS user. */
  actor?: string;
}

export interface ModelVersion {
  name: string;
  version: number;
  createdAt: string;
  createdBy: string;
  description: string | null;
  intendedUse: string | null;
  limitations: string | null;
  lineage: Lineage;
  params: Record<string, unknown>;
  /** Dotted metric name → value, sorted by name. */
  metrics: Record<string, number>;
  artifacts: RegisteredArtifact[];
  tags: Record<string, string>;
  /** Aliases pointing at this version now, sorted. */
  aliases: string[];
}

export interface ModelSummary {
  name: string;
  createdAt: string;
  latestVersion: number;
  versions: number;
  aliases: Record<string, number>;
}

export interface AliasChange {
  id: number;
  model: string;
  alias: string;
  kind: 'set' | 'rollback';
  fromVersion: number | null;
  toVersion: number;
  actor: string;
  reason: string | null;
  at: string;
}

export interface VersionDiff {
  name: string;
  a: number;
  b: number;
  /** Only keys whose values differ; absent on one side is `undefined` there. */
  params: { key: string; a?: unknown; b?: unknown }[];
  /**
   * Every metric on either side; delta = b − a when both exist, except for production.* when `production`
   * is not `comparable` (and production.version, an identifier).
   */
  metrics: { name: string; a?: number; b?: number; delta?: number }[];
  /**
   * Which version each side's production.* metrics were measured against (its `production.version`; null:
   * it has production.* but the registry does not say; absent: none). `comparable` only when both name
   * the same version. Absent when neither side has production.* metrics.
   */
  production?: { a?: number | null; b?: number | null; comparable: boolean };
  /**
   * By hash: `added` (only in b), `removed` (only in a), `unchanged` (b's, in both). `changed` pairs a
   * data set of one name on both sides whose bytes differ (a retrain's new split); those are in `added`
   * and `removed` too.
   */
  data: { added: DataRef[]; removed: DataRef[]; unchanged: DataRef[]; changed: { name: string; a: DataRef; b: DataRef }[] };
  artifacts: { role: string; a?: string; b?: string; changed: boolean }[];
  specHashChanged: boolean;
  codeVersionChanged: boolean;
  baseModelChanged: boolean;
}
