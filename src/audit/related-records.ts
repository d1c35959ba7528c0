/**
 * Records that belong in a run's or a version's trail without naming it in their run or model: the `run.submitted` of a
 * resume (its run is the new one; `details.resumeOf` names the run it reruns), and the ingest records of the run that
 * registered a version (their run is that run; `details.sources` names the files the training data came from).
 */
import type { AuditLog, AuditRecord } from './log.ts';
import { stageRecords } from './run-spec.ts';

/** run.submitted records read per query while looking for a run's resumes. */
const PAGE = 1000;

/**
 * The `run.submitted` records of the runs that resume `runId`, oldest first: `audit --run <failed run>` listed the run's
 * own records, which say nothing of the resume (its records are the new run's). Only records after the run's first one
 * are read: a resume is submitted after the run it reruns.
 */
export async function resumesOf(audit: Pick<AuditLog, 'query'>, runId: string): Promise<AuditRecord[]> {
  const first = (await audit.query({ run: runId, limit: 1 }))[0];
  if (!first) return [];
  const out: AuditRecord[] = [];
  let afterSeq = first.seq;
  for (;;) {
    // Only the records that name it reach here: every later run.submitted, each with its spec and plan, was read and
    // parsed (20,000 later runs of 5 KB specs, SQLite, warm: 0.8-0.9 s, now 0.2-0.4 s), on PostgreSQL sent over.
    const page = await audit.query({
      action: 'run.submitted',
      afterSeq,
      detailsContain: `"resumeOf":${JSON.stringify(runId)}`,
      limit: PAGE,
    });
    out.push(...page.filter((r) => r.details.resumeOf === runId));
    if (page.length < PAGE) return out;
    afterSeq = page[page.length - 1]!.seq;
  }
}

/**
 * The ingest records (`stage.completed` or `stage.reused` with `details.sources`) of the runs whose register stage
 * registered the version `records` are about (their `model.registered` records' runs), oldest first: `audit --model
 * name@3` named the run, and a second `audit --run` was needed to learn which files the data came from.
 */
export async function sourceRecordsOf(audit: Pick<AuditLog, 'query'>, records: AuditRecord[]): Promise<AuditRecord[]> {
  const runs = new Set(records.filter((r) => r.action === 'model.registered' && r.runId).map((r) => r.runId!));
  const found = await Promise.all([...runs].map((run) => stageRecords(audit, run)));
  return found
    .flat()
    .filter((r) => Array.isArray(r.details.sources))
    .sort((a, b) => a.seq - b.seq);
}

/** `a` and `b` (each oldest first) as one list oldest first, a record in both once. */
export function mergedBySeq(a: AuditRecord[], b: AuditRecord[]): AuditRecord[] {
  const seen = new Set(a.map((r) => r.seq));
  return [...a, ...b.filter((r) => !seen.has(r.seq))].sort((x, y) => x.seq - y.seq);
}
