/** Public API of the data library: what the activity adapters and the CLI import. */
export { ingest, ingestColumns, QUARANTINE_COLUMNS, type IngestOptions, type Progress } from './ingest.ts';
export { dedupe, CLUSTER_COLUMNS, type DedupeOptions } from './dedupe.ts';
export { split, type SplitOptions } from './split.ts';
export {
  formatDataReport,
  type DataReport,
  type IngestReport,
  type DedupeReport,
  type SplitReport,
  type SplitPart,
  type DedupeConflict,
  type SourceFileInfo,
  type LengthStats,
} from './report.ts';
export { ingestWithSchema, dedupeWithSchema, splitWithSchema } from './schemas.ts';
export {
  TASK_COLUMNS,
  type IngestConfig,
  type DedupeConfig,
  type SplitConfig,
  type Task,
  type TaskColumn,
  type NormalizeStep,
} from './config.ts';
export { BAD_REASONS, type BadReason } from './bad-rows.ts';
export {
  ArrowTableWriter,
  BATCH_ROWS,
  readArrowBatches,
  readArrowSchema,
  describeArrowFile,
  columnValues,
  stringColumn,
  selectRows,
  type ColumnSpec,
  type ColumnType,
} from './arrow-io.ts';
export { Rng, splitmix32, seedToInt } from './rng.ts';
export { writeFileAtomic, AtomicFile } from './atomic.ts';
