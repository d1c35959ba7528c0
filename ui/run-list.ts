/**
 * The Runs page's listing: client/runs.ts listRuns (its filters: status, pipeline, schedule, start time, run id prefix)
 * as the page's URL asks for it, and whether there are more than the page shows (`more`), so older runs are a click
 * away instead of out of reach. Two visibility list requests per page (running runs, ended ones: listRuns), mostly; the
 * pipeline filter reads more runs than it shows where Temporal cannot match it (runs without the TemperedPipeline search
 * attribute: client/pipeline-attribute.ts).
 */
import type { Client } from '@temporalio/client';
import { listRuns, type RunSummary } from '../client/runs.ts';
import { InputError } from '../src/errors.ts';

/** The page's query string: each value as typed. */
export interface RunPageQuery {
  status?: string;
  pipeline?: string;
  schedule?: string;
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

/** A query value as one string: a repeated one (`?id=a&id=b`) comes as an array, and is refused naming it. */
function one(q: Record<string, unknown>, k: keyof RunPageQuery): string | undefined {
  const v = q[k];
  if (v === undefined || typeof v === 'string') return v || undefined;
  throw new InputError(`given ${Array.isArray(v) ? v.length : 'several'} times; give it once`, { where: k });
}

/** The `limit` newest started runs that match, newest first, and whether more match (one more than shown is asked for). */
export async function listRunPage(client: Client, limit: number, q: RunPageQuery = {}): Promise<RunPage> {
  const raw = q as Record<string, unknown>;
  const since = one(raw, 'since');
  const runs = await listRuns(client, limit + 1, {
    status: one(raw, 'status'),
    pipeline: one(raw, 'pipeline'),
    schedule: one(raw, 'schedule'),
    id: one(raw, 'id'),
    ...(since ? { since: sinceTime(since) } : {}),
  });
  return { runs: runs.slice(0, limit), more: runs.length > limit };
}
