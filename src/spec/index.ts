/** Public API of the pipeline spec library. */
export type * from './types.ts';
export { loadSpec, loadSpecText, checkSpec, checkSpecText, type LoadSpecOptions, type LoadSpecResult, type CheckSpecResult } from './load.ts';
export { formatSpecErrors } from './format.ts';
export { parseParamOverrides, COMMAND_LINE } from './params.ts';
export { planPipeline, DEFAULT_RETRY, DEFAULT_TIMEOUT_MS } from './plan.ts';
export { resolveStageRefs, listStageRefs, StageRefError, type StageRef } from './runtime-refs.ts';
export { parseDuration, formatDuration } from './duration.ts';
export { pipelineSchema } from './schema.ts';
export { canonicalJson, sha256Hex } from './canonical-json.ts';
