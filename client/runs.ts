/**
 * Client-side run operations over Temporal: submit (and its audit record), status (the workflow's
 * status query merged with the live heartbeat of each running stage), follow, list, wait, the input
 * a run was started with, and whether any worker polls a task queue.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, WorkflowFailedError, type WorkflowHandle, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { openAudit, type AuditLog } from '../src/audit/log.ts';
import { useOpen, type KeptOpen } from '../src/db/kept-open.ts';
import type { RunInput, RunStatus } from '../workflows/types.ts';
import { pendingStatus } from '../workflows/pending-status.ts';

export const WORKFLOW_TYPE = 'pipelineRun';

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

export function newRunId(name: string): string {
  return `${name}-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}-${randomBytes(3).toString('hex')}`;
}

export async function submitRun(
  client: Client,
  input: RunInput,
  opts: { taskQueue: string; runId?: string },
): Promise<WorkflowHandleWithFirstExecutionRunId> {
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
  // No worker has run the workflow's first task: a query would wait for one (and time out). Its
  // stages are all still pending, as the run's input says; and where it waits is worth saying.
  const first = desc.status.name === 'RUNNING' ? await firstTask(client, runId, desc.historyLength) : { state: 'done' as const };
  if (first.state === 'queued')
    return {
      ...pendingStatus(inputOf(client, runId, first.events), runId, desc.startTime.toISOString()),
      waitingForWorker: desc.taskQueue,
      ...(first.cancelRequested ? { cancelRequested: true } : {}),
    };
  if (first.state === 'failing')
    throw new Error(
      `run ${runId}: a worker of task queue '${desc.taskQueue}' took it, but its first workflow task failed (${first.message}); see that worker's log`,
    );
  const status = await handle.query<RunStatus>('status');
  const pending = (desc.raw.pendingActivities ?? []) as PendingActivityInfo[];
  for (const pa of pending) {
    const id = pa.activityId?.replace(/^stage-/, '');
    const st = status.stages.find((s) => s.id === id);
    if (!st) continue;
    if (pa.attempt) st.attempt = pa.attempt;
    const payloads = pa.heartbeatDetails?.payloads;
    if (payloads && payloads.length > 0) {
      const details = (await client.options.loadedDataConverter.payloadConverter.fromPayload(payloads[0] as never)) as {
        progress?: Record<string, unknown>;
      };
      if (details?.progress) st.progress = details.progress;
    }
    if (pa.lastFailure?.message && st.state === 'running') st.error = { message: `retrying after: ${pa.lastFailure.message}` };
  }
  if (desc.status.name === 'TERMINATED') status.state = 'cancelled';
  return status;
}

/**
 * How the run's first workflow task went: `done`; `queued`, no worker has taken it (the run waits in
 * its task queue); or `failing`, a worker took it and failed it (an unknown workflow type, a broken
 * workflow bundle), with the failure. Looked at only while the history is this short: a run that
 * started has more events.
 */
export async function firstTask(
  client: Client,
  runId: string,
  historyLength: number,
): Promise<
  { state: 'done' } | { state: 'queued'; cancelRequested: boolean; events: HistoryEvent[] } | { state: 'failing'; message: string }
> {
  if (historyLength > 5) return { state: 'done' };
  const events = (await client.workflow.getHandle(runId).fetchHistory()).events ?? [];
  if (events.some((e) => e.workflowTaskCompletedEventAttributes)) return { state: 'done' };
  const failed = events.find((e) => e.workflowTaskFailedEventAttributes || e.workflowTaskTimedOutEventAttributes);
  if (!failed) return { state: 'queued', cancelRequested: events.some((e) => e.workflowExecutionCancelRequestedEventAttributes), events };
  return {
    state: 'failing',
    message: failed.workflowTaskFailedEventAttributes?.failure?.message ?? 'the worker did not finish it in time',
  };
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
  /** Temporal's id of this execution (a run id can be reused once the earlier run closed). */
  execution?: string;
  /** Schedule that started the run, if one did. */
  scheduleId?: string;
}

export interface RunFilters {
  /** Temporal execution status: Running, Completed, Failed, Canceled, Terminated, TimedOut. */
  status?: string;
  pipeline?: string;
  schedule?: string;
}

const EXECUTION_STATUSES = ['Running', 'Completed', 'Failed', 'Canceled', 'Terminated', 'TimedOut', 'ContinuedAsNew'];

/** Newest first. Pipeline is kept in the memo, which visibility cannot query, so that filter applies while reading. */
export async function listRuns(client: Client, limit = 20, filters: RunFilters = {}): Promise<RunSummary[]> {
  const clauses = [`WorkflowType = '${WORKFLOW_TYPE}'`];
  if (filters.status) {
    const st = EXECUTION_STATUSES.find((s) => s.toLowerCase() === filters.status!.toLowerCase());
    if (!st) throw new Error(`unknown run status '${filters.status}'; one of ${EXECUTION_STATUSES.join(', ')}`);
    clauses.push(`ExecutionStatus = '${st}'`);
  }
  if (filters.schedule) clauses.push(`TemporalScheduledById = '${filters.schedule.replace(/['\\]/g, '')}'`);
  const out: RunSummary[] = [];
  for await (const wf of client.workflow.list({ query: clauses.join(' AND ') })) {
    const memo = (wf.memo ?? {}) as Record<string, string>;
    if (filters.pipeline && memo.pipeline !== filters.pipeline) continue;
    const scheduled = (wf.searchAttributes as Record<string, unknown[]> | undefined)?.TemporalScheduledById?.[0];
    out.push({
      runId: wf.workflowId,
      pipeline: memo.pipeline ?? '?',
      status: wf.status.name,
      startTime: wf.startTime,
      closeTime: wf.closeTime,
      actor: memo.actor,
      execution: wf.runId,
      ...(typeof scheduled === 'string' ? { scheduleId: scheduled } : {}),
    });
    if (out.length >= limit) break;
  }
  // Temporal lists running runs first, then by close time; people read a list of runs by when they started.
  return out.sort((a, b) => b.startTime.getTime() - a.startTime.getTime());
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

/**
 * Polls the run's status, handing each one to `onStatus`, until the workflow has closed; returns
 * the final status.
 */
export async function followRun(
  client: Client,
  runId: string,
  onStatus: (st: RunStatus) => void = () => {},
  intervalMs = 1000,
): Promise<RunStatus> {
  for (;;) {
    let st: RunStatus;
    try {
      st = await getRunStatus(client, runId);
    } catch (e) {
      // The run's first workflow task may not have run yet; keep polling.
      if (/query|not found|workflow task/i.test((e as Error).message)) {
        await sleep(500);
        continue;
      }
      throw e;
    }
    onStatus(st);
    if (st.state !== 'running') {
      const desc = await client.workflow.getHandle(runId).describe();
      if (desc.status.name !== 'RUNNING') return st;
    }
    await sleep(intervalMs);
  }
}

export async function hasWorkers(client: Client, namespace: string, queue: string): Promise<boolean> {
  const res = await client.workflowService.describeTaskQueue({ namespace, taskQueue: { name: queue }, taskQueueType: 1 });
  return (res.pollers ?? []).length > 0;
}

/** The input a run was started with, read back from its history. */
export async function runInput(client: Client, runId: string): Promise<RunInput> {
  return inputOf(client, runId, (await client.workflow.getHandle(runId).fetchHistory()).events ?? []);
}

/** The input in a run's history that has been read already. */
function inputOf(client: Client, runId: string, events: HistoryEvent[]): RunInput {
  const started = events.find((e) => e.workflowExecutionStartedEventAttributes)?.workflowExecutionStartedEventAttributes;
  const payload = started?.input?.payloads?.[0];
  if (!payload) throw new Error(`run ${runId} has no recorded input`);
  return client.options.loadedDataConverter.payloadConverter.fromPayload(payload) as RunInput;
}

/**
 * Appends `run.submitted` for a run this client started: who, which spec and params. The run id
 * (workflow id) can be reused once the earlier run closed (`submit --run-id`), so the record is
 * keyed on the execution too; without it a second submission under the same id went unrecorded.
 */
export async function auditRunSubmitted(
  auditDb: string | KeptOpen<AuditLog>,
  runId: string,
  input: RunInput,
  executionId?: string,
): Promise<void> {
  await useOpen(auditDb, openAudit, (audit) =>
    audit.append({
      action: 'run.submitted',
      subject: runId,
      runId,
      actor: input.options.actor,
      specHash: input.plan.specHash,
      details: {
        pipeline: input.plan.name,
        params: input.plan.params,
        specFile: input.options.specFile,
        resumeOf: input.options.resumeOf,
        noCache: !!input.options.noCache,
        execution: executionId ?? null,
      },
      dedupeKey: executionId ? `${runId}/${executionId}/submitted` : `${runId}/submitted`,
    }),
  );
}
