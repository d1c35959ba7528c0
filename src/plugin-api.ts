/**
 * What a TEMPERED_PLUGINS module may import from tempered (docs/plugins.md): the stage kind contract
 * and the helpers the built-in kinds use. Everything else in src/ may change without notice; this
 * file is kept compatible, and a change to it is a breaking change for plugins.
 */
export type { StageKind, StageContext, StageAudit } from './stages/types.ts';
export type { KindIssue, KindCheckContext } from './spec/types.ts';
export type { ArtifactRef, StageOutputs, StageOutputValue, StageProgress } from './types.ts';
export { MEDIA, isArtifactRef } from './types.ts';
export { InputError } from './errors.ts';
export { artifactRefSchema } from './stages/schema-helpers.ts';
export { ArrowTableWriter, readArrowBatches, readArrowSchema, describeArrowFile, stringColumn, takeRows } from './data/arrow-io.ts';
