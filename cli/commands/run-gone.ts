/**
 * What `status`, `logs`, `cancel` and `resume` say of a run the Temporal server does not have. A namespace deletes a
 * closed run's history after its retention (a day on many clusters), and then these said "no run 'X'" of a run the
 * audit trail, the registry and the store still hold: a user read that as a typo or a lost run.
 */
import type { Client } from '@temporalio/client';
import { checkNamespace, retentionWords } from '../../client/namespace.ts';
import type { AuditRecord } from '../../src/audit/log.ts';
import { CliError, type CliContext } from '../context.ts';

const ENDS = new Set(['run.completed', 'run.failed', 'run.cancelled']);

/** The error for `runId` not found on the server: the trail's account of it where the trail has the run. */
export async function runNotOnServer(ctx: CliContext, client: Client, runId: string, o: { resume?: boolean } = {}): Promise<CliError> {
  const plain = new CliError(`no run '${runId}'; list runs with \`tempered runs\``);
  let records: AuditRecord[];
  try {
    records = (await (await ctx.auditLog().get()).query({ run: runId })).filter((r) => r.runId === runId);
  } catch {
    return plain; // the trail cannot be read now: nothing more to say than the server did
  }
  if (!records.length) return plain;
  const s = ctx.settings();
  const facts = await checkNamespace(client.workflowService, s).catch(() => ({ retentionMs: undefined }));
  const kept = facts.retentionMs
    ? ` keeps a run's history for ${retentionWords(facts.retentionMs)} after it ends (its retention)`
    : " deletes a run's history once its retention has passed";
  const submitted = records.find((r) => r.action === 'run.submitted');
  const first = submitted ?? records[0]!;
  const end = records.filter((r) => ENDS.has(r.action)).pop();
  const models = [...new Set(records.filter((r) => r.action === 'model.registered' && r.model).map((r) => r.model!))];
  const specFile = typeof submitted?.details.specFile === 'string' ? submitted.details.specFile : undefined;
  const lines = [
    `run ${runId} is no longer on the Temporal server (namespace '${s.namespace}'${kept}, or it was deleted); ` +
      `the audit trail has it, ${submitted ? 'submitted' : 'started'} ${first.time} by ${first.actor}${end ? `, ${end.action.slice(4)} ${end.time}` : ''}.`,
    `  what it did: \`tempered audit --run ${runId}\`` +
      (models.length
        ? `; the model it registered: \`tempered models show ${models[0]} --spec\` prints the file it was submitted with`
        : ''),
  ];
  if (o.resume)
    lines.push(
      `  a run the server no longer has cannot be resumed: submit its pipeline again (\`tempered submit ${specFile ?? '<pipeline file>'}\`); finished stages come back from the stage cache`,
    );
  return new CliError(lines.join('\n'));
}
