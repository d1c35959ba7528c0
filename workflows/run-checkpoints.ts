/**
 * The refusal of a run's own checkpoint name (RunOptions.uncachedCheckpoints) or of RunOptions.cachedStages that
 * tempered's client would not have written. Whoever can start a workflow on the namespace writes the input. A plain
 * function of the input: deterministic, so replay-safe.
 */
import { OWN_CHECKPOINTS } from '../src/stages/own-checkpoints.ts';
import type { PlannedStage } from '../src/spec/types.ts';
import type { RunOptions } from './types.ts';

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
