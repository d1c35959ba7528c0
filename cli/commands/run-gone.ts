/** What `status`, `logs`, `cancel` and `resume` say of a run the Temporal server does not have (client/run-gone.ts). */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { runGoneAccount } from '../../client/run-gone.ts';
import { CliError, type CliContext } from '../context.ts';

/** The error for `runId` not found on the server: the trail's account of it where the trail has the run. */
export async function runNotOnServer(ctx: CliContext, client: Client, runId: string, o: { resume?: boolean } = {}): Promise<CliError> {
  const gone = await runGoneAccount(() => ctx.auditLog().get(), client, runId);
  if (!gone) return new CliError(`no run '${runId}'; list runs with \`tempered runs\``);
  const lines = [gone.message, `  ${gone.next}`];
  if (o.resume)
    lines.push(
      `  a run the server no longer has cannot be resumed: submit its pipeline again (\`tempered submit ${gone.specFile ?? '<pipeline file>'}\`); finished stages come back from the stage cache`,
    );
  return new CliError(lines.join('\n'));
}

/**
 * The error for a describe of `runId` that failed with `e`: the trail's account where the server does not have the
 * run, else `e`'s own message. Any failure read as "no longer on the server" before, so that one whose memo is
 * encrypted (TEMPERED_PAYLOAD_KEY unset here) was said to be gone, instead of which key to set.
 */
export async function notOnServerOr(
  ctx: CliContext,
  client: Client,
  runId: string,
  e: Error,
  o: { resume?: boolean } = {},
): Promise<CliError> {
  return e instanceof WorkflowNotFoundError ? runNotOnServer(ctx, client, runId, o) : new CliError(e.message);
}
