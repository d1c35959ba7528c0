/**
 * Client-side run operations over Temporal: submit, status (the workflow's status query merged with
 * the live heartbeat of each running stage), list, cancel, wait.
 */
import { randomBytes } from 'node:crypto';
import { Client, WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { RunInput, RunStatus } from '../../workflows/types.ts';

export const WORKFLOW_TYPE = 'pipelineRun';

export function newRunId(name: string): string {
  return `${name}-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}-${randomBytes(3).toString('hex')}`;
}

export async function submitRun(client: Client, input: RunInput, opts: { taskQueue: string; runId?: string }): Promise<WorkflowHandle> {
  const workflowId = opts.runId ?? newRunId(input.plan.name);
  return client.workflow.start(WORKFLOW_TYPE, {
    workflowId,
    taskQueue: opts.taskQueue,
    args: [input],
    memo: { pipeline: input.plan.name, specHash: input.plan.specHash, actor: input.options.actor, resumeOf: input.options.resumeOf ?? '' },
  });
}

interface PendingActivityInfo {
  activityId?: string | null;
  attempt?: number | null;
  heartbeatDetails?: { payloads?: unknown[] | null } | null;
  lastFailure?: { message?: string | null } | null;
}

/** The run's status; for running stages, attempt and progress come from the server's view of the activity. */
export async function getRunStatus(client: Client, runId: string): Promise<RunStatus> {
  const handle = client.workflow.getHandle(runId);
  const desc = await handle.describe();
  if (desc.status.name !== 'RUNNING') {
    // A finished run carries its final status in its result (or failure details), so reading it
    // needs no worker to replay the workflow for a query.
    const final = await closedRunStatus(client, runId);
    if (final) return final;
  }
  const status = await handle.query<RunStatus>('status');
  const pending = (desc.raw.pendingActivities ?? []) as PendingActivityInfo[];
  for (const pa of pending) {
    const id = pa.activityId?.replace(/^stage-/, '');
    const st = status.stages.find((s) => s.id === id);
    if (!st) continue;
    if (pa.attempt) st.attempt = pa.attempt;
    const payloads = pa.heartbeatDetails?.payloads;
    if (payloads && payloads.length > 0) {
      const details = (await client.options.loadedDataConverter.payloadConverter.fromPayload(payloads[0] as never)) as { progress?: Record<string, unknown> };
      if (details?.progress) st.progress = details.progress;
    }
    if (pa.lastFailure?.message && st.state === 'running') st.error = { message: `retrying after: ${pa.lastFailure.message}` };
  }
  if (desc.status.name === 'TERMINATED') status.state = 'cancelled';
  return status;
}

async function closedRunStatus(client: Client, runId: string): Promise<RunStatus | undefined> {
  try {
    return (await client.workflow.getHandle(runId).result()) as RunStatus;
  } catch (e) {
    if (e instanceof WorkflowFailedError) {
      const details = (e.cause as { details?: unknown[] } | undefined)?.details;
      if (details && details.length > 0) return details[0] as RunStatus;
    }
    return undefined;
  }
}

export interface RunSummary {
  runId: string;
  pipeline: string;
  status: string;
  startTime: Date;
  closeTime?: Date;
  actor?: string;
}

export async function listRuns(client: Client, limit = 20): Promise<RunSummary[]> {
  const out: RunSummary[] = [];
  for await (const wf of client.workflow.list({ query: `WorkflowType = '${WORKFLOW_TYPE}'` })) {
    const memo = (wf.memo ?? {}) as Record<string, string>;
    out.push({ runId: wf.workflowId, pipeline: memo.pipeline ?? '?', status: wf.status.name, startTime: wf.startTime, closeTime: wf.closeTime, actor: memo.actor });
    if (out.length >= limit) break;
  }
  return out;
}

/** Waits for the run; resolves with the final status whether it succeeded or failed. */
export async function waitForRun(client: Client, runId: string): Promise<RunStatus> {
  const handle = client.workflow.getHandle(runId);
  try {
    return (await handle.result()) as RunStatus;
  } catch (e) {
    if (e instanceof WorkflowFailedError) {
      const st = await closedRunStatus(client, runId);
      if (st) return st;
      return getRunStatus(client, runId);
    }
    throw e;
  }
}
