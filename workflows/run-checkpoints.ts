/**
 * The run's own checkpoint names as the workflow reads them from its input, and the refusal of such a name (or of
 * RunOptions.cachedStages) that tempered's client would not have written. Whoever can start a workflow on the
 * namespace writes the input. Plain functions of the input and the workflow id: deterministic, so replay-safe.
 */
import { OWN_CHECKPOINTS } from '../src/stages/own-checkpoints.ts';
import type { PlannedStage } from '../src/spec/types.ts';
import type { RunInput, RunOptions } from './types.ts';

/**
 * What names the own checkpoint folder of the run `workflowId` when its input says to derive it
 * (RunOptions.uncachedCheckpointsFromRunId: a schedule's runs, whose input is the schedule's, the same for every run).
 * Of the id alone, so that a resume, knowing the id of the run it resumes, names the same folder. The readable part of
 * the id and a 64-bit hash of all of it (FNV-1a twice: no node:crypto in workflow code), as submitRun's names are.
 */
export function runCheckpointName(workflowId: string): string {
  let a = 0x811c9dc5;
  let b = 0x050c5d1f;
  for (let i = 0; i < workflowId.length; i++) {
    const c = workflowId.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x01000193) ^ (a >>> 7);
  }
  const hex = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
  return `${workflowId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}-${hex(a)}${hex(b)}`;
}

/**
 * Why the run's `cache: false` trainings name their folder from its own workflow id, if they do: its input says so
 * (`flag`: RunOptions.uncachedCheckpointsFromRunId), or it is a run a schedule made before that flag started (`schedule`:
 * scheduleId, which every schedule's input has carried, and no name of its own; not a resume, whose client names it).
 * Such a schedule sends its old input until `tempered schedule update`, and its runs trained in the work's folder,
 * where they resumed the step another run of the work had left.
 */
export function checkpointNameFromRunId(input: RunInput): 'flag' | 'schedule' | undefined {
  const { options, plan } = input;
  if (options.uncachedCheckpoints !== undefined || options.ownCheckpoints) return undefined;
  if (options.uncachedCheckpointsFromRunId === true) return 'flag';
  const scheduled = options.scheduleId !== undefined && options.resumeOf === undefined;
  return scheduled && plan.stages.some((s) => s.uses === 'train' && s.cache === false) ? 'schedule' : undefined;
}

/**
 * The name the run's `cache: false` train stages train under: the input's, or derived from the run's id.
 * `scheduleRunsDerive` says whether an old schedule's run does (the workflow's patch: a run in flight when its workers
 * were upgraded keeps the folder it trained in); asked only of such a run, so that no other history records the patch.
 */
export function uncachedCheckpointsOf(input: RunInput, workflowId: string, scheduleRunsDerive: () => boolean): unknown {
  if (input.options.uncachedCheckpoints !== undefined) return input.options.uncachedCheckpoints;
  const from = checkpointNameFromRunId(input);
  return from === 'flag' || (from === 'schedule' && scheduleRunsDerive()) ? runCheckpointName(workflowId) : undefined;
}

/**
 * Why `stage` must not run with these options, where a field it reads is not what tempered's client writes: an
 * uncachedCheckpoints that is no folder name (`x/../../srv` would have the training write, and clear, a folder out of
 * the checkpoints folder), a cachedStages that is no list of stage ids (a string `"train"` would match by substring).
 */
export function runOptionsRefusal(options: RunOptions, stage: Pick<PlannedStage, 'cache'>): { message: string; hint: string } | undefined {
  const unchecked = options.uncachedCheckpoints as unknown;
  if (stage.cache === false && !options.ownCheckpoints && unchecked !== undefined)
    if (typeof unchecked !== 'string' || !OWN_CHECKPOINTS.test(unchecked))
      return {
        message: `RunOptions.uncachedCheckpoints: ${JSON.stringify(unchecked)?.slice(0, 80)} is not 1 to 64 letters, digits, '_' or '-': it names the checkpoint folder of a train stage with \`cache: false\``,
        hint: '`tempered submit` and `tempered resume` name it; a run started by other means must leave it out',
      };
  const listed = options.cachedStages as unknown;
  if (options.noCache && stage.cache !== false && listed !== undefined)
    if (!Array.isArray(listed) || !listed.every((s) => typeof s === 'string'))
      return {
        message: `RunOptions.cachedStages: ${JSON.stringify(listed)?.slice(0, 80)} is not a list of stage ids: it names the stages a resume of a --no-cache run may take from the stage cache`,
        hint: '`tempered resume` writes it; a run started by other means must leave it out',
      };
  return undefined;
}
