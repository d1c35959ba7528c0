/**
 * Public types shared across tempered's library, activities and workflows.
 * Everything here is plain JSON so it can travel in Temporal payloads.
 */

/** A reference to an immutable, content-addressed file in the artifact store. */
export interface ArtifactRef {
  /** `artifact://sha256/<hex>`: location-independent; the store resolves it to a path. */
  uri: string;
  sha256: string;
  bytes: number;
  mediaType: string;
  /** Row count, for tables. */
  rows?: number;
  /** Column name → Arrow type string, for tables. */
  schema?: Record<string, string>;
}

export const MEDIA = {
  arrow: 'application/vnd.apache.arrow.file',
  json: 'application/json',
  onnx: 'application/onnx',
  safetensors: 'application/safetensors',
  markdown: 'text/markdown',
  tar: 'application/x-tar',
  octet: 'application/octet-stream',
} as const;

/** Output value of a stage: an artifact reference or a small JSON scalar. */
export type StageOutputValue = ArtifactRef | string | number | boolean | null | Record<string, unknown>;
export type StageOutputs = Record<string, StageOutputValue>;

/** Progress a long-running stage reports (heartbeats carry it to the workflow's status query). */
export interface StageProgress {
  /** 0..1 when known. */
  fraction?: number;
  message?: string;
  /** Free-form metrics, e.g. step, loss, lr, samplesPerSec, etaSec. */
  metrics?: Record<string, number>;
}

export function isArtifactRef(v: unknown): v is ArtifactRef {
  return typeof v === 'object' && v !== null && typeof (v as ArtifactRef).uri === 'string' && typeof (v as ArtifactRef).sha256 === 'string';
}
