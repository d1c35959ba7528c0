/** Side effects of a finished stage that belong to the product rather than to the stage: the audit trail. */
import type { StageRequest, StageResult } from '../../../workflows/types.ts';
import type { CliContext } from '../context.ts';

export function stageCompletedHook(_ctx: CliContext): ((req: StageRequest, res: StageResult) => Promise<void>) | undefined {
  return undefined;
}
