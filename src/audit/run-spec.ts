/**
 * The spec a run followed, as its `run.submitted` record keeps it (client/runs.ts auditRunSubmitted): the file's text
 * and the resolved plan, each checked against the hash recorded with it. `tempered models show NAME@V --spec` reads it
 * for the run a version's lineage names.
 */
import { canonicalJson, sha256Hex } from '../util/canonical-json.ts';
import { loadSpecText, type LoadSpecOptions } from '../spec/load.ts';
import { formatSpecErrors } from '../spec/format.ts';
import { parseParamOverrides } from '../spec/params.ts';
import type { PlannedPipeline } from '../spec/types.ts';
import { REDACTED } from '../util/redact.ts';
import type { AuditLog, AuditRecord } from './log.ts';

export interface RecordedSpec {
  runId: string;
  specHash: string;
  /** The run whose record holds the text: `runId`, or the run it resumes (a resume carries no text of its own when it resumes a run submitted before the text was kept). */
  textFrom?: string;
  text?: string;
  /** sha256 of `text` as recorded, and whether the text still hashes to it. */
  textSha256?: string;
  textMatches?: boolean;
  /** The resolved spec the run followed, and whether its canonical JSON hashes to `specHash` (not said where credentials were hidden in it). */
  plan?: Record<string, unknown>;
  planMatches?: boolean;
  /**
   * Where the record hid credentials (src/audit/redact-spec.ts): `text` and `plan` then differ there from the file and
   * the plan the run followed; `textSha256` is still the file's, and `textMatches` checks the kept text against its own hash.
   */
  redacted?: string[];
  params?: Record<string, unknown>;
  specFile?: string;
  actor: string;
  time: string;
  /** The source files the run's ingest stages read (their `stage.completed` records). */
  sources: { stage: string; path: string; sha256: string; bytes?: number }[];
}

/** How many resumes back a text is looked for. */
const MAX_RESUMES = 50;

async function submitted(audit: AuditLog, runId: string, specHash: string): Promise<AuditRecord | undefined> {
  const recs = await audit.query({ run: runId, action: 'run.submitted' });
  // A run id may be reused (submit --run-id); the newest submission with this spec is the one that ran it.
  return recs.filter((r) => r.runId === runId && r.specHash === specHash).pop();
}

/**
 * The spec of `runId` with hash `specHash` as the audit trail keeps it; undefined when the trail has no submission of it.
 * `stages`: the run's stage records where the caller has read them (stageRecords) for trainedWith too, so they are read once.
 */
export async function recordedSpec(
  audit: AuditLog,
  runId: string,
  specHash: string,
  stages?: AuditRecord[],
): Promise<RecordedSpec | undefined> {
  const first = await submitted(audit, runId, specHash);
  if (!first) return undefined;
  const d = first.details;
  const plan = isObject(d.plan) ? d.plan : undefined;
  const redacted = Array.isArray(d.redacted) ? d.redacted.filter((x): x is string => typeof x === 'string') : undefined;
  const planMatches = plan ? sha256Hex(canonicalJson(plan)) === specHash : undefined;
  const out: RecordedSpec = {
    runId,
    specHash,
    actor: first.actor,
    time: first.time,
    ...(isObject(d.params) ? { params: d.params } : {}),
    ...(typeof d.specFile === 'string' ? { specFile: d.specFile } : {}),
    // A plan with credentials hidden cannot hash to the one the run followed: not a mismatch then.
    ...(plan ? { plan, ...(planMatches || !redacted?.length ? { planMatches } : {}) } : {}),
    ...(redacted?.length ? { redacted } : {}),
    sources: await sourcesOf(audit, runId, stages),
  };
  let rec: AuditRecord | undefined = first;
  for (let hops = 0; rec && hops <= MAX_RESUMES; hops++) {
    const spec = rec.details.spec;
    if (isObject(spec) && typeof spec.text === 'string') {
      out.textFrom = rec.runId ?? rec.subject;
      out.text = spec.text;
      if (typeof spec.sha256 === 'string') out.textSha256 = spec.sha256;
      // Where credentials were hidden, the text kept hashes to `keptSha256`, and `sha256` is the file's.
      out.textMatches = sha256Hex(spec.text) === (typeof spec.keptSha256 === 'string' ? spec.keptSha256 : spec.sha256);
      break;
    }
    const from: unknown = rec.details.resumeOf;
    rec = typeof from === 'string' && from ? await submitted(audit, from, specHash) : undefined;
  }
  return out;
}

/** The source files a run's ingest stages read, or took from the cache with the tables made of them (`stages`: as recordedSpec's). */
export async function sourcesOf(audit: AuditLog, runId: string, stages?: AuditRecord[]): Promise<RecordedSpec['sources']> {
  const out: RecordedSpec['sources'] = [];
  for (const r of stages ?? (await stageRecords(audit, runId))) {
    const sources = r.details.sources;
    if (!Array.isArray(sources)) continue;
    const stage = typeof r.details.stage === 'string' ? r.details.stage : r.subject;
    for (const s of sources)
      if (isObject(s) && typeof s.path === 'string' && typeof s.sha256 === 'string')
        out.push({ stage, path: s.path, sha256: s.sha256, ...(typeof s.bytes === 'number' ? { bytes: s.bytes } : {}) });
  }
  return out;
}

/**
 * A run's records of its stages (its own, not those whose subject only names it): those it ran (`stage.completed`) and
 * those whose outputs it took from the cache (`stage.reused`). One query over every record of the run: a caller that
 * wants the spec and what it trained with (the dashboard's spec view, `models diff`) reads them once and passes them on.
 */
export async function stageRecords(audit: Pick<AuditLog, 'query'>, runId: string): Promise<AuditRecord[]> {
  return (await audit.query({ run: runId })).filter(
    (r) => r.runId === runId && (r.action === 'stage.completed' || r.action === 'stage.reused'),
  );
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A train stage's `device` and `runtime` (src/stages/train.ts), as one line: `tempered audit`, `models show` and the dashboard print it: the thread count and CPU can change a model's bytes. */
export function trainedOn(d: Record<string, unknown>): string | undefined {
  if (typeof d.device !== 'string') return undefined;
  const rt = (d.runtime && typeof d.runtime === 'object' ? d.runtime : {}) as Record<string, unknown>;
  const facts = [
    ...('threads' in rt
      ? [typeof rt.threads === 'number' ? `${rt.threads} thread${rt.threads === 1 ? '' : 's'}` : "onnxruntime's default threads"]
      : []),
    ...(typeof rt.cpus === 'number' ? [`${rt.cpus} cpus`] : []),
    ...(typeof rt.onnxruntime === 'string' ? [`onnxruntime ${rt.onnxruntime}`] : []),
    ...(typeof d.resumedFromStep === 'number' ? [`resumed at step ${d.resumedFromStep}`] : []),
  ];
  return `trained on ${d.device}${facts.length ? ` (${facts.join(', ')})` : ''}`;
}

/** What a train stage was trained with, as its audit record keeps it (src/stages/train.ts's audit); a type, not an interface, so it reads as a record of details. */
export type TrainedWith = {
  device: unknown;
  runtime?: unknown;
  /** The checkpoint step a retried attempt went on from. */
  resumedFromStep?: number;
};

/**
 * What each train stage of a run was trained with, by stage id, from its `stage.completed` or `stage.reused` record
 * (src/stages/train.ts's audit). `stages`: as recordedSpec's.
 */
export async function trainedWith(audit: AuditLog, runId: string, stages?: AuditRecord[]): Promise<Record<string, TrainedWith>> {
  const out: Record<string, TrainedWith> = {};
  for (const r of stages ?? (await stageRecords(audit, runId))) {
    const d = r.details;
    if (d.kind !== 'train' || typeof d.device !== 'string') continue;
    out[typeof d.stage === 'string' ? d.stage : r.subject] = {
      device: d.device,
      ...(d.runtime !== undefined ? { runtime: d.runtime } : {}),
      ...(typeof d.resumedFromStep === 'number' ? { resumedFromStep: d.resumedFromStep } : {}),
    };
  }
  return out;
}

/**
 * Where a schedule keeps the spec file its runs follow: a run a schedule starts has no `run.submitted` (no client
 * submitted it), but the schedule's newest `schedule.created` / `schedule.updated` with that spec hash names the file's
 * bytes in the store (`details.specUri`, content-addressed) and its path.
 */
export async function scheduleSpec(
  audit: AuditLog,
  specHash: string,
): Promise<{ schedule: string; specUri: string; file?: string; params?: unknown; actor: string; time: string } | undefined> {
  const recs = [...(await audit.query({ action: 'schedule.created' })), ...(await audit.query({ action: 'schedule.updated' }))]
    .filter((r) => r.specHash === specHash && typeof r.details.specUri === 'string' && r.details.specUri)
    .sort((a, b) => a.seq - b.seq);
  const r = recs.pop();
  if (!r) return undefined;
  return {
    schedule: r.subject,
    specUri: r.details.specUri as string,
    ...(typeof r.details.file === 'string' ? { file: r.details.file } : {}),
    ...(r.details.param !== undefined ? { params: r.details.param } : {}),
    actor: r.actor,
    time: r.time,
  };
}

/**
 * A schedule's spec file (`text`, read from the store at `sched.specUri`) planned again with the `--param`s its record
 * keeps, for `models show --spec` and `models reproduce`: the plan where it gives `specHash`, else why not. The
 * record hides the value of a secret param (src/audit/redact-spec.ts keptScheduleDetails), so such a schedule's
 * file cannot plan to the hash its runs ran with; that is said, not taken for a changed file.
 */
export function plannedScheduleSpec(
  text: string,
  sched: { schedule: string; specUri: string; file?: string; params?: unknown },
  specHash: string,
  kinds: Omit<LoadSpecOptions, 'paramOverrides' | 'baseDir'>,
): { params: string[]; plan: PlannedPipeline; problem?: undefined } | { params: string[]; plan?: undefined; problem: string } {
  const params = Array.isArray(sched.params) ? sched.params.map(String) : [];
  // A secret-named param's value, or a URL's credentials in one (`src=https://REDACTED@…`).
  const hidden = params.filter((p) => p.slice(p.indexOf('=') + 1).includes(REDACTED)).map((p) => p.slice(0, p.indexOf('=')));
  const planned = loadSpecText(text, sched.file ?? sched.specUri, { ...kinds, paramOverrides: parseParamOverrides(params).overrides });
  if (planned.ok && planned.plan.specHash === specHash) return { params, plan: planned.plan };
  const why = hidden.length
    ? `schedule ${sched.schedule}'s record hides credentials in --param ${hidden.join(', --param ')}, so its file cannot be planned again as its runs were`
    : planned.ok
      ? `schedule ${sched.schedule}'s file with its params plans to spec ${planned.plan.specHash.slice(0, 12)}, not the version's spec hash ${specHash} (this CLI's stage kinds or defaults differ from the ones that planned it)`
      : `schedule ${sched.schedule}'s file no longer plans with this CLI: ${formatSpecErrors(planned.errors)}`;
  return { params, problem: why };
}
