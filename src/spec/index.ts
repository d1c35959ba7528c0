/**
 * Public API of the pipeline spec library.
 *
 *   const { overrides, errors } = parseParamOverrides(['lr=0.01']);
 *   const r = await loadSpec('pipelines/x.yaml', { kinds, knownButUnavailable, paramOverrides: overrides });
 *   if (!r.ok) { console.error(formatSpecErrors(r.errors)); process.exit(2); }
 *   // r.plan is plain JSON: hand it to the workflow.
 *
 * Inside the workflow, only import './runtime-refs.ts' (it imports nothing): before running a
 * stage, `resolveStageRefs(stage.with, outputsByStage)`.
 */
export type * from './types.ts';
export {
  loadSpec,
  loadSpecText,
  checkSpec,
  checkSpecText,
  type LoadSpecOptions,
  type LoadSpecResult,
  type CheckSpecResult,
} from './load.ts';
export { formatSpecErrors } from './format.ts';
export { decodeSource } from './decode.ts';
export { expandParamSweep, parseParamOverrides, COMMAND_LINE } from './params.ts';
export { planPipeline, DEFAULT_RETRY, DEFAULT_TIMEOUT_MS } from './plan.ts';
export { resolveStageRefs, listStageRefs, StageRefError, type StageRef } from './runtime-refs.ts';
export { parseDuration, formatDuration } from './duration.ts';
export { pipelineSchema } from './schema.ts';
export { canonicalJson, sha256Hex } from '../util/canonical-json.ts';
