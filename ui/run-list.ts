/**
 * The Runs page's listing: client/runs.ts listRuns's filters (status, pipeline, schedule) and what a person who has
 * run a few hundred runs also asks for: runs started since a time (`since`), runs whose id begins with what they
 * copied (`id`), and whether there are more than the page shows (`more`), so older runs are a click away instead of
 * out of reach. One visibility list request per page; only the pipeline filter, kept in the memo, reads more runs
 * than it shows.
 */
import type { Client } from '@temporalio/client';
import { ENCRYPTED_FIELD, listingClient, unreadableReason } from '../client/payloads.ts';
import { WORKFLOW_TYPE, type RunFilters, type RunSummary } from '../client/runs.ts';
import { InputError } from '../src/errors.ts';

export interface RunPageQuery extends RunFilters {
  /** `1h`, `24h`, `7d`, `30d` (any whole number of h or d) back from now, or a date/time Date.parse reads. */
  since?: string;
  /** The beginning of a run id. */
  id?: string;
}

export interface RunPage {
  runs: RunSummary[];
  /** Runs past the last one shown match too (a longer page shows them). */
  more: boolean;
}

const STATUSES = ['Running', 'Completed', 'Failed', 'Canceled', 'Terminated', 'TimedOut', 'ContinuedAsNew'];
/** Runs read per request where the pipeline (in the memo) filters: more are read than shown, in bounded pages. */
const FILTERED_PAGE = 200;

/** The instant `since` names, relative to `now`; an InputError naming the field when it names none. */
export function sinceTime(since: string, now = Date.now()): Date {
  const rel = /^(\d+)\s*([hd])$/i.exec(since.trim());
  if (rel) return new Date(now - Number(rel[1]) * (rel[2]!.toLowerCase() === 'h' ? 3_600_000 : 86_400_000));
  const t = Date.parse(since);
  if (Number.isNaN(t))
    throw new InputError(`a time back from now (1h, 24h, 7d, 30d) or a date (2026-12-01), not ${JSON.stringify(since)}`, {
      where: 'since',
    });
  return new Date(t);
}

/** A value inside a visibility query's single quotes. */
const quoted = (s: string) => `'${s.replace(/['\\]/g, '')}'`;

/** Newest first; `limit` runs at most, and whether more match. */
export async function listRunPage(client: Client, limit: number, q: RunPageQuery = {}): Promise<RunPage> {
  const clauses = [`WorkflowType = '${WORKFLOW_TYPE}'`];
  if (q.status) {
    const st = STATUSES.find((s) => s.toLowerCase() === q.status!.toLowerCase());
    if (!st) throw new InputError(`unknown run status '${q.status}'; one of ${STATUSES.join(', ')}`, { where: 'status' });
    clauses.push(`ExecutionStatus = '${st}'`);
  }
  if (q.since) clauses.push(`StartTime >= '${sinceTime(q.since).toISOString()}'`);
  if (q.id?.trim()) clauses.push(`WorkflowId STARTS_WITH ${quoted(q.id.trim())}`);
  const schedule = q.schedule?.replace(/['\\]/g, '') || undefined;
  // As listRuns: a resumed run of a schedule is named after it; a visibility store without STARTS_WITH lists the
  // schedule's own runs only.
  const byName = schedule
    ? [...clauses, `(TemporalScheduledById = ${quoted(schedule)} OR WorkflowId STARTS_WITH '${schedule}-')`]
    : clauses;
  try {
    return await read(client, byName.join(' AND '), limit, q.pipeline, schedule);
  } catch (e) {
    const err = e as { code?: number; cause?: { code?: number } };
    if (!schedule || (err.code ?? err.cause?.code) !== 3) throw e; // gRPC INVALID_ARGUMENT
    return read(client, [...clauses, `TemporalScheduledById = ${quoted(schedule)}`].join(' AND '), limit, q.pipeline, schedule);
  }
}

async function read(client: Client, query: string, limit: number, pipeline?: string, schedule?: string): Promise<RunPage> {
  const runs: RunSummary[] = [];
  let more = false;
  // One more than shown says whether there are more, in the same request.
  const pageSize = pipeline ? Math.max(limit + 1, FILTERED_PAGE) : limit + 1;
  for await (const wf of listingClient(client).workflow.list({ query, pageSize })) {
    const memoEncrypted = Object.values(wf.memo ?? {})
      .map(unreadableReason)
      .find((r) => r !== undefined);
    const memo = (memoEncrypted ? {} : (wf.memo ?? {})) as Record<string, string>;
    if (pipeline && !(memo.pipeline ?? '').toLowerCase().includes(pipeline.toLowerCase())) continue;
    const startedBy = (wf.searchAttributes as Record<string, unknown[]> | undefined)?.TemporalScheduledById?.[0];
    const scheduled = typeof startedBy === 'string' ? startedBy : memo.scheduleId || undefined;
    if (schedule && scheduled !== schedule) continue;
    if (runs.length >= limit) {
      more = true;
      break;
    }
    runs.push({
      runId: wf.workflowId,
      pipeline: memoEncrypted ? ENCRYPTED_FIELD : (memo.pipeline ?? '?'),
      status: wf.status.name,
      startTime: wf.startTime,
      closeTime: wf.closeTime,
      actor: memo.actor,
      execution: wf.runId,
      ...(scheduled ? { scheduleId: scheduled } : {}),
      ...(memo.resumeOf ? { resumeOf: memo.resumeOf } : {}),
      ...(!memoEncrypted && typeof wf.memo?.params === 'object' && wf.memo.params
        ? { params: wf.memo.params as Record<string, unknown> }
        : {}),
      ...(memoEncrypted ? { memoEncrypted } : {}),
    });
  }
  // Temporal lists running runs first, then by close time; people read a list of runs by when they started.
  return { runs: runs.sort((a, b) => b.startTime.getTime() - a.startTime.getTime()), more };
}
