/**
 * What tempered says of a run the Temporal server does not have but the audit trail does. A namespace deletes a
 * closed run's history after its retention (a day on many clusters), and then `status`, `logs`, `cancel`, `resume`
 * and the dashboard's run page said "no run 'X'" or "workflow not found" of a run the trail, the registry and the
 * store still hold: a user read that as a typo or a lost run. The CLI (cli/commands/run-gone.ts) and the dashboard
 * (ui/server.ts) both say it with this.
 */
import type { Client } from '@temporalio/client';
import { namespaceRetentionMs, retentionWords } from './namespace.ts';
import type { AuditLog, AuditRecord } from '../src/audit/log.ts';

const ENDS = new Set(['run.completed', 'run.failed', 'run.cancelled']);

export interface RunGone {
  /** That the server no longer has it, why that may be, and the trail's account: who submitted it when, how it ended. */
  message: string;
  /** Where to read more: the run's audit records and the model it registered. */
  next: string;
  /** The pipeline file it was submitted with, as its run.submitted record names it. */
  specFile?: string;
}

/**
 * The trail's account of `runId`, which the server behind `client` does not have; undefined where the trail has no
 * record of it or cannot be read now (then there is nothing more to say than the server did).
 */
export async function runGoneAccount(audit: () => Promise<AuditLog>, client: Client, runId: string): Promise<RunGone | undefined> {
  let records: AuditRecord[];
  try {
    records = (await (await audit()).query({ run: runId })).filter((r) => r.runId === runId);
  } catch {
    return undefined;
  }
  if (!records.length) return undefined;
  const namespace = client.options.namespace;
  const retentionMs = await namespaceRetentionMs(client.workflowService, namespace);
  const kept = retentionMs
    ? ` keeps a run's history for ${retentionWords(retentionMs)} after it ends (its retention)`
    : " deletes a run's history once its retention has passed";
  const submitted = records.find((r) => r.action === 'run.submitted');
  const first = submitted ?? records[0]!;
  const end = records.filter((r) => ENDS.has(r.action)).pop();
  const models = [...new Set(records.filter((r) => r.action === 'model.registered' && r.model).map((r) => r.model!))];
  return {
    message:
      `run ${runId} is no longer on the Temporal server (namespace '${namespace}'${kept}, or it was deleted); ` +
      `the audit trail has it, ${submitted ? 'submitted' : 'started'} ${first.time} by ${first.actor}${end ? `, ${end.action.slice(4)} ${end.time}` : ''}.`,
    next:
      `what it did: \`tempered audit --run ${runId}\`` +
      (models.length
        ? `; the model it registered: \`tempered models show ${models[0]} --spec\` prints the file it was submitted with`
        : ''),
    specFile: typeof submitted?.details.specFile === 'string' ? submitted.details.specFile : undefined,
  };
}
