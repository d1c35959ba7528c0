/**
 * Where tempered's objects live in a shared store (a bucket under its prefix, or a shared folder): one prefix per kind,
 * defined here and used by each module that writes that kind, so that what gc takes for tempered's own (the unfinished
 * uploads it aborts, garbage.ts) is every kind the store writes. The layout: src/store/README.md, "With a remote backend".
 */
export const KEY_PREFIXES = {
  /** Artifacts by their hash: `sha256/<ab>/<hex>` (artifact-store.ts). */
  objects: 'sha256/',
  /** Marks that an old object was stored again: `touched/<ab>/<hex>` (artifact-store.ts). */
  touched: 'touched/',
  /** Damaged objects moved aside (the backends' `quarantine`). */
  quarantine: 'quarantine/',
  /** Stage-cache records: `cache/<ab>/<key>.json` (shared-records.ts). */
  cacheRecords: 'cache/',
  /** Checkpoint pointers: `checkpoints/<name>.json` (shared-checkpoints.ts). */
  checkpointPointers: 'checkpoints/',
  /** Checkpoint files: `checkpoint-files/<name>/step-N.<write id>/…`, before 7 Dec 2026 `…/step-N/…` (shared-checkpoints.ts). */
  checkpointFiles: 'checkpoint-files/',
  /** Leases: `leases/<name>/<generation>.json` (shared-lease.ts). */
  leases: 'leases/',
  /** The store's identity, one object (instance-id.ts). */
  instance: 'instance.json',
} as const;

/** Every prefix tempered writes under. */
export const STORE_PREFIXES: readonly string[] = Object.values(KEY_PREFIXES);
