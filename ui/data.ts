/**
 * What the dashboard shows, read from the same places as the CLI: a run's status from Temporal
 * (client/runs.ts), its reports and training history from the artifact store, live training points
 * from the progress log the worker writes, models from the registry, records from the audit log.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Client } from '@temporalio/client';
import { tableFromIPC } from 'apache-arrow';
import { diffLines } from 'diff';
import { describedRunStatus, runInput, type ClientRunStatus } from '../client/runs.ts';
import { withFailureNotes } from '../client/failure-notes.ts';
import { scheduleView } from '../client/schedules.ts';
import { openAudit, type AuditLog, type AuditQuery, type AuditRecord } from '../src/audit/log.ts';
import { hiddenInText, keptParamArgs } from '../src/audit/redact-spec.ts';
import {
  recordedSpec,
  scheduleSpec,
  sourcesOf,
  stageRecords,
  trainedOn,
  trainedWith,
  type RecordedSpec,
  type TrainedWith,
} from '../src/audit/run-spec.ts';
import { databaseExists } from '../src/db/database.ts';
import { compareTrialRuns } from '../src/eval/trial-artifacts.ts';
import type { TrialComparison } from '../src/eval/trials.ts';
import { KeptOpen } from '../src/db/kept-open.ts';
import { modelCard } from '../src/registry/card.ts';
import { diffModelVersions, productionComparisonNote } from '../src/registry/diff.ts';
import { modelRecords, resolveModelFilter, type ModelFilter } from '../src/registry/model-filter.ts';
import { openRegistry, type Registry } from '../src/registry/registry.ts';
import type { AliasChange, ModelVersion, VersionDiff } from '../src/registry/types.ts';
import type { StatePaths } from '../src/state-paths.ts';
import { parseUri, type ArtifactStore } from '../src/store/artifact-store.ts';
import type { ProgressPoint } from '../src/store/progress-log.ts';
import type { ProgressPoints } from '../src/store/progress-points.ts';
import { isArtifactRef, type ArtifactRef } from '../src/types.ts';
import type { RunStatus } from '../workflows/types.ts';
import { jsonDiff, type SpecDiffLine } from '../src/util/json-diff.ts';

/** Reports small enough to send whole: data reports and evaluation reports are JSON of a few KiB. */
const MAX_INLINE_JSON = 4 << 20;

export interface RunView {
  /** `encrypted` where this dashboard lacks the run's key: then what Temporal keeps in clear (getRunStatus's showClear). */
  status: ClientRunStatus;
  /** Temporal's id of the execution shown (a workflow id can be reused). */
  execution: string;
  temporalStatus: string;
  /** Parsed JSON report outputs (`report`, `metrics`) by stage id and output name. */
  reports: Record<string, Record<string, unknown>>;
  /** An evaluate stage's comparison with the production version, by stage id (where it compared with one). */
  production: Record<string, ProductionComparison>;
  /** Why a report output could not be read (not in this dashboard's store, not JSON), by stage id and output name. */
  unread: Record<string, Record<string, string>>;
}

export async function runView(client: Client, store: ArtifactStore, runId: string): Promise<RunView> {
  // Its execution and Temporal's status are in clear: read so without TEMPERED_PAYLOAD_KEY too, and the status is what
  // Temporal keeps in clear then (status.encrypted says which key), as `tempered status` shows it.
  // One describe for both: the status is read from the same description (describedRunStatus).
  const { status: read, desc } = await describedRunStatus(client, runId);
  const status = { ...read, stages: withFailureNotes(read.stages) };
  const reports: RunView['reports'] = {};
  const production: RunView['production'] = {};
  const unread: RunView['unread'] = {};
  for (const st of status.stages) {
    for (const [name, ref] of Object.entries(st.outputs ?? {})) {
      if ((name !== 'report' && name !== 'metrics') || !isArtifactRef(ref)) continue;
      const read = await readJson(store, ref);
      if ('json' in read) (reports[st.id] ??= {})[name] = read.json;
      else if (read.why) (unread[st.id] ??= {})[name] = read.why;
    }
    const compared = st.uses === 'evaluate' ? productionComparison(reports[st.id]?.metrics, reports[st.id]?.report) : undefined;
    if (compared) production[st.id] = compared;
  }
  return { status, execution: desc.runId, temporalStatus: desc.status.name, reports, production, unread };
}

/** The scores a comparison with production shows, in this order, where present; and which way is better. */
const COMPARED: [name: string, better: 'higher' | 'lower'][] = [
  ['accuracy', 'higher'],
  ['f1_macro', 'higher'],
  ['precision_macro', 'higher'],
  ['recall_macro', 'higher'],
  ['loss', 'lower'],
  ['perplexity', 'lower'],
  ['exact_match', 'higher'],
  ['balanced_exact_match', 'higher'],
  ['answer_f1_macro', 'higher'],
  ['rouge_l', 'higher'],
  ['chrf', 'higher'],
];

export interface ProductionComparison {
  /** The version compared with, e.g. `spam-clf@3`. */
  version?: string;
  /**
   * The fine-tuned model was scored again on the rows production was scored on (`production.candidate.*`), and
   * those scores stand beside production's. False for metrics written before evaluate did that: production's
   * scores then stand beside the fine-tuned model's scores over all its test rows, as they always did.
   */
  sameRows: boolean;
  /** Test rows both were scored on: those production was not trained on (undefined in older metrics). */
  rows?: number;
  /** Test rows left out because production was trained on their input, or a near duplicate of it. */
  contaminatedRows?: number;
  /** Of those, the near duplicates (reports since evaluate-4; undefined before). */
  nearDuplicateRows?: number;
  /** False: production's training data could not be read, so it was scored on every test row (undefined in older metrics). */
  decontaminated?: boolean;
  /** Why it was not decontaminated, as the report says. */
  reason?: string;
  /** All the fine-tuned model's test rows (its own scores are over these). */
  testRows?: number;
  /** False when production has no scores: it was trained on every test row. */
  scored: boolean;
  /** `candidate`: the fine-tuned model's score beside production's (on production's rows where `sameRows`); `delta` = candidate − production. */
  metrics: { name: string; candidate?: number; production?: number; delta?: number; better: 'higher' | 'lower' }[];
}

const record = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
const finite = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** A classifier report's scores under their gate names (for an evaluation whose metrics artifact cannot be read). */
function classifierScores(r: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!r) return undefined;
  const macro = record(r.macro);
  return { accuracy: r.accuracy, f1_macro: macro?.f1, precision_macro: macro?.precision, recall_macro: macro?.recall, n: r.n };
}

/**
 * What an evaluate stage says of the production version beside the fine-tuned model, from its metrics (the gate
 * names: `production.*`, `production.candidate.*`, `production.rows`, …) or, failing those, its report. Undefined
 * when it did not compare with production. Older evaluations, without `production.candidate`, compare with the
 * fine-tuned model's own scores, as the dashboard always showed them.
 */
export function productionComparison(metrics: unknown, report: unknown): ProductionComparison | undefined {
  const m = record(metrics);
  const r = record(report);
  const rp = record(r?.production);
  let own: Record<string, unknown> | undefined = m;
  let prod = record(m?.production);
  if (!prod && rp) {
    // No metrics artifact: a causal LM's report holds the gate names; a classifier's holds full reports.
    if (r?.task === 'causal-lm') {
      own = r;
      prod = rp;
    } else {
      own = classifierScores(record(r?.model));
      const candidate = classifierScores(record(rp.candidate));
      prod = { ...classifierScores(record(rp.metrics)), version: rp.id, ...(candidate ? { candidate } : {}) };
    }
  }
  if (!prod) return undefined;
  const candidate = record(prod.candidate);
  const contamination = record(r?.contamination);
  // A classifier's report alone has no row counts where it was not decontaminated: production's own n is its rows.
  const rows = finite(prod.rows) ?? finite(contamination?.rows) ?? (candidate ? finite(prod.n) : undefined);
  const compared = COMPARED.flatMap(([name, better]) => {
    const p = finite(prod[name]);
    const c = finite(candidate ? candidate[name] : own?.[name]);
    if (p === undefined && c === undefined) return [];
    return [
      {
        name,
        better,
        ...(c !== undefined ? { candidate: c } : {}),
        ...(p !== undefined ? { production: p } : {}),
        ...(c !== undefined && p !== undefined ? { delta: c - p } : {}),
      },
    ];
  });
  const version = typeof prod.version === 'string' ? prod.version : typeof rp?.id === 'string' ? rp.id : undefined;
  const decontaminated =
    typeof prod.decontaminated === 'boolean'
      ? prod.decontaminated
      : typeof contamination?.decontaminated === 'boolean'
        ? contamination.decontaminated
        : undefined;
  const contaminatedRows = finite(prod.contaminated_rows) ?? finite(contamination?.contaminated_rows);
  const nearDuplicateRows = finite(contamination?.near_duplicate_rows);
  return {
    ...(version !== undefined ? { version } : {}),
    sameRows: candidate !== undefined,
    ...(rows !== undefined ? { rows } : {}),
    ...(contaminatedRows !== undefined ? { contaminatedRows } : {}),
    ...(nearDuplicateRows !== undefined ? { nearDuplicateRows } : {}),
    ...(decontaminated !== undefined ? { decontaminated } : {}),
    ...(typeof contamination?.reason === 'string' ? { reason: contamination.reason } : {}),
    ...(finite(r?.testRows) !== undefined ? { testRows: finite(r?.testRows) } : {}),
    scored: compared.some((x) => x.production !== undefined),
    metrics: compared.filter((x) => x.production !== undefined || candidate !== undefined),
  };
}

/**
 * A small JSON artifact, parsed; undefined when it is not JSON, too large, or cannot be had. The
 * store hands a verified local copy (fetched from a remote backend when there is one).
 */
export async function readJsonArtifact(store: ArtifactStore, ref: ArtifactRef): Promise<unknown> {
  const read = await readJson(store, ref);
  return 'json' in read ? read.json : undefined;
}

/** A small JSON artifact, or why the page cannot show it (none where it is not meant to be shown: not JSON, too large). */
async function readJson(store: ArtifactStore, ref: ArtifactRef): Promise<{ json: unknown } | { why?: string }> {
  if (!ref.mediaType?.includes('json') || ref.bytes > MAX_INLINE_JSON) return {};
  let path: string;
  try {
    path = await store.localPath(ref.uri);
  } catch (e) {
    return { why: (e as Error).message };
  }
  try {
    return { json: JSON.parse(readFileSync(path, 'utf8')) };
  } catch (e) {
    return { why: `${ref.uri} is not JSON: ${(e as Error).message}` };
  }
}

/** A training history as columns (step, loss, lr, grad_norm, val_*; throughput from the live points), NaN as null. */
export type Columns = Record<string, (number | null)[]>;

/** A history's columns, or why the store could not hand it over (not in this store yet: the live points stand in). */
async function readHistory(store: ArtifactStore, ref: unknown): Promise<{ columns: Columns } | { why?: string }> {
  if (!isArtifactRef(ref)) return {};
  let path: string;
  try {
    path = await store.localPath(ref.uri);
  } catch (e) {
    return { why: (e as Error).message };
  }
  const table = tableFromIPC(readFileSync(path));
  const out: Columns = {};
  // NaN (no validation at that step) becomes null when the response is serialised.
  for (const field of table.schema.fields) out[field.name] = Array.from(table.getChild(field.name)!.toArray() as ArrayLike<number>);
  return { columns: out };
}

/** Live metric names as the train stage reports them, by the history column they fill. */
const LIVE_NAMES: Record<string, string> = {
  loss: 'loss',
  lr: 'lr',
  grad_norm: 'gradNorm',
  val_loss: 'val_loss',
  val_accuracy: 'val_accuracy',
  val_f1_macro: 'val_f1_macro',
  samplesPerSec: 'samplesPerSec',
  tokensPerSec: 'tokensPerSec',
};
/** Live-only columns: the history artifact has no throughput. */
const LIVE_ONLY = ['samplesPerSec', 'tokensPerSec'];

export interface TrainingCurves {
  /** One array per metric, aligned with `step`: the finished history when there is one, else the live points. */
  columns: Columns;
  source: 'history' | 'live';
  /** Byte offset in the progress log after the points included, to tail from (server-sent events). */
  offset: number;
  /** Why the finished history could not be read (e.g. not in this dashboard's store), where the stage has one. */
  unread?: string;
}

/**
 * A stage's curves. Throughput exists only in the live points; a retried attempt reports steps
 * again from its checkpoint, and the newest report of a step wins.
 */
export async function trainingCurves(
  points: ProgressPoints,
  store: ArtifactStore,
  runId: string,
  execution: string,
  stage: RunStatus['stages'][number],
): Promise<TrainingCurves> {
  // Read to the end: a database answers a long curve in pieces.
  const live = await points.read(runId, execution, stage.id);
  for (let more = live; more.points.length > 0; ) {
    more = await points.read(runId, execution, stage.id, live.offset);
    live.points.push(...more.points);
    live.offset = more.offset;
  }
  const byStep = new Map<number, Record<string, number>>();
  for (const p of live.points) if (typeof p.metrics.step === 'number') byStep.set(p.metrics.step, p.metrics);
  const read = await readHistory(store, stage.outputs?.history);
  const history = 'columns' in read ? read.columns : undefined;
  const unread = 'why' in read && read.why ? { unread: read.why } : {};
  if (history?.step) {
    const { epoch: _epoch, ...columns } = history;
    for (const col of LIVE_ONLY) columns[col] = history.step.map((s) => byStep.get(s!)?.[col] ?? null);
    return { columns, source: 'history', offset: live.offset };
  }
  const steps = [...byStep.keys()].sort((a, b) => a - b);
  const columns: Columns = { step: steps };
  for (const [col, name] of Object.entries(LIVE_NAMES)) columns[col] = steps.map((s) => byStep.get(s)![name] ?? null);
  return { columns, source: 'live', offset: live.offset, ...unread };
}

/** A run's training curves for compare: the finished history, else the live points its run page draws; null without either. */
export async function runCurves(points: ProgressPoints, store: ArtifactStore, v: RunView): Promise<Columns | null> {
  const train = v.status.stages.find(
    (s) => s.outputs?.history !== undefined || (s.uses === 'train' && s.state !== 'pending' && s.state !== 'skipped'),
  );
  if (!train) return null;
  const c = await trainingCurves(points, store, v.status.runId, v.execution, train);
  return (c.columns.step?.length ?? 0) > 0 ? c.columns : null;
}

/** Numeric outputs (`stage.output`) of a run. */
function numericOutputs(v: RunView): Record<string, number> {
  const out: Record<string, number> = {};
  for (const st of v.status.stages)
    for (const [k, x] of Object.entries(st.outputs ?? {})) if (typeof x === 'number') out[`${st.id}.${k}`] = x;
  return out;
}

/** Hashes of a run's table outputs (`stage.output` → sha256): the data each stage made. */
function tableHashes(v: RunView): Record<string, string> {
  const out: Record<string, string> = {};
  for (const st of v.status.stages)
    for (const [k, x] of Object.entries(st.outputs ?? {})) if (isArtifactRef(x) && x.rows !== undefined) out[`${st.id}.${k}`] = x.sha256;
  return out;
}

export interface RunComparison {
  runs: RunView[];
  /** Every numeric output of any run; deltas are against the first run. */
  metrics: { name: string; values: (number | undefined)[]; deltas: (number | undefined)[] }[];
  /** Every table output; `same` when all runs made the same bytes. */
  data: { name: string; values: (string | undefined)[]; same: boolean }[];
  /** Where the planned specs (params, stage configs) differ. */
  spec: SpecDiffLine[];
  /**
   * The runs as `tempered runs --compare` compares them (the same code): params that differ, the exported model's validation, evaluate's
   * scores, stage times, each metric's best and the run to choose. Its `runs` are left out: `runs` above has them.
   */
  trials: Omit<TrialComparison, 'runs'>;
}

/** Two or more runs side by side: the first is the reference the deltas are taken from. */
export async function compareRuns(client: Client, store: ArtifactStore, ids: string[]): Promise<RunComparison> {
  const views = await Promise.all(ids.map((id) => runView(client, store, id)));
  const inputs = await Promise.all(ids.map((id) => runInput(client, id)));
  const nums = views.map(numericOutputs);
  const metrics = [...new Set(nums.flatMap((m) => Object.keys(m)))].sort().map((name) => {
    const values = nums.map((m) => m[name]);
    const base = values[0];
    return { name, values, deltas: values.map((x) => (x !== undefined && base !== undefined ? x - base : undefined)) };
  });
  const hashes = views.map(tableHashes);
  const data = [...new Set(hashes.flatMap((h) => Object.keys(h)))].sort().map((name) => {
    const values = hashes.map((h) => h[name]);
    return { name, values, same: new Set(values).size === 1 };
  });
  // Stages by id rather than by position, so a difference reads `stages.split.with.seed`.
  const plans = inputs.map(({ plan }) => ({ ...plan, stages: Object.fromEntries(plan.stages.map((st) => [st.id, st])) }));
  const { runs: _runs, ...trials } = await compareTrialRuns(
    store,
    views.map((v) => v.status),
  );
  return { runs: views, metrics, data, spec: jsonDiff(plans), trials };
}

/**
 * The registry and audit log the dashboard reads, each opened on its first request and kept for the
 * server's life (opening per request cost a pool, a connection and the migration lock on PostgreSQL).
 */
export class UiDatabases {
  readonly audit: KeptOpen<AuditLog>;
  readonly registry: KeptOpen<Registry>;

  constructor(readonly paths: StatePaths) {
    this.audit = new KeptOpen(() => openAudit(paths.auditDb));
    this.registry = new KeptOpen(() => openRegistry(paths.registryDb));
  }

  async close(): Promise<void> {
    await Promise.all([this.audit.close(), this.registry.close()]);
  }
}

/**
 * Versions the Models page lists per model, and per request for older ones. Twenty: twice the ten a model has
 * after the year bench/models-page.bench.ts builds, so such a registry still shows every version without a
 * click, and about five months of weekly retrains; a screenful of rows per model, and the page's answer stays
 * at most 20 rows a model however long the registry grows.
 */
export const VERSION_PAGE = 20;
/** The most versions one request for older ones may ask for. */
export const MAX_VERSION_PAGE = 100;
/** Alias changes the Models page shows per model, the newest (`tempered models history` has them all). */
export const HISTORY_SHOWN = 10;
/**
 * The metrics the Models page has columns for, in order (a column no listed version has is not drawn); a version's
 * others are on its card and in diffs. val_*: the validation scores training ended with (register records them), what
 * a sweep's trials are chosen on. A causal LM's exact_match and rouge_l score its generated answers, beside the base
 * model's: without them its rows showed losses only.
 */
export const LISTED_METRICS = [
  'f1_macro',
  'accuracy',
  'baseline.f1_macro',
  'exact_match',
  'baseline.exact_match',
  'rouge_l',
  'loss',
  'baseline.loss',
  'perplexity',
  'val_f1_macro',
  'val_loss',
];

/** A version as a row of the Models page shows it; the rest (card, artifacts, data) comes with its card. */
export interface VersionRowView {
  version: number;
  createdAt: string;
  createdBy: string;
  runId: string;
  /** Only LISTED_METRICS. */
  metrics: Record<string, number>;
}

export interface ModelView {
  name: string;
  aliases: Record<string, number>;
  /** All the model's versions; `versions` holds the newest VERSION_PAGE of them. */
  versionCount: number;
  /** Newest first. */
  versions: VersionRowView[];
  /** The gate the pipeline's deploy stage last judged with, for the promote form. */
  lastGate?: string;
  /** The newest HISTORY_SHOWN alias changes, oldest first. */
  history: AliasChange[];
  /** By alias, its last change: who moved it to the version it holds, and when (the heading says so). */
  aliasSet: Record<string, Pick<AliasChange, 'kind' | 'actor' | 'at'>>;
}

const versionRow = (v: ModelVersion): VersionRowView => ({
  version: v.version,
  createdAt: v.createdAt,
  createdBy: v.createdBy,
  runId: v.lineage.runId,
  metrics: Object.fromEntries(LISTED_METRICS.filter((k) => v.metrics[k] !== undefined).map((k) => [k, v.metrics[k]!])),
});

/**
 * The Models page: per model what its heading, forms and alias history show, and its newest versions as
 * rows; older versions (versionPage) and a version's card (versionCard) are read when asked for, so the
 * answer and what it reads stay the same size however many versions a model has.
 */
export async function listModelViews(dbs: UiDatabases): Promise<ModelView[]> {
  if (!databaseExists(dbs.paths.registryDb)) return [];
  const reg = await dbs.registry.get();
  // A read: no audit database is made where there is none.
  const log = databaseExists(dbs.paths.auditDb) ? await dbs.audit.get() : undefined;
  const views: ModelView[] = [];
  for (const m of await reg.listModels()) {
    const gate = log && (await lastGate(log, m.name));
    const history = await reg.aliasHistory(m.name, undefined, { newest: HISTORY_SHOWN });
    // Each alias's last change, from the history read where it is there (as a rule), else read for that alias alone:
    // another alias's many moves can push it out of the newest HISTORY_SHOWN.
    const aliasSet: ModelView['aliasSet'] = {};
    for (const alias of Object.keys(m.aliases)) {
      const last = history.findLast((c) => c.alias === alias) ?? (await reg.aliasHistory(m.name, alias, { newest: 1 }))[0];
      if (last) aliasSet[alias] = { kind: last.kind, actor: last.actor, at: last.at };
    }
    views.push({
      name: m.name,
      aliases: m.aliases,
      versionCount: m.versions,
      versions: (await reg.listVersionPage(m.name, { limit: VERSION_PAGE })).versions.map(versionRow),
      ...(gate !== undefined ? { lastGate: gate } : {}),
      history,
      aliasSet,
    });
  }
  return views;
}

/** Rows of a model's versions below `before`, newest first; `more` when older ones remain. */
export async function versionPage(
  dbs: UiDatabases,
  name: string,
  page: { before?: number; limit: number },
): Promise<{ name: string; versions: VersionRowView[]; more: boolean }> {
  const { versions, more } = await (await dbs.registry.get()).listVersionPage(name, page);
  return { name, versions: versions.map(versionRow), more };
}

/** A version's model card (markdown) and the lineage the registry recorded, for when the page opens it. */
export async function versionCard(
  dbs: UiDatabases,
  name: string,
  version: number,
): Promise<{ name: string; version: number; card: string; lineage: ModelVersion['lineage'] }> {
  const v = await (await dbs.registry.get()).getVersion(name, version);
  return { name, version: v.version, card: modelCard(v), lineage: v.lineage };
}

/** The actions whose records carry the gate a promotion was judged with (deploy's, and promotes by hand with --gate). */
const JUDGED = ['model.promoted', 'model.not_promoted'];
/** Records of each action read per model before the rest of its records are: its newest judgements carry a gate but for a run of promotes by hand. */
export const GATE_PAGE = 20;

/**
 * The gate a model's promotion was last judged with: the newest `model.promoted` or `model.not_promoted` of it with a
 * gate other than `false`. Its newest GATE_PAGE of each, read through the model index; the rest only when no gate is among those
 * (promotes by hand without one) or one action's page reaches further back than the gate found.
 */
async function lastGate(log: AuditLog, name: string): Promise<string | undefined> {
  // A query by model gives only records of `name` and its versions (the model column, not the subject).
  // A gate of `false` says a run never promotes, choose by hand (a sweep's --param gate=false): as the promote form's
  // gate it would refuse the very promotion by hand it is there for, so the gate before it is the one to offer.
  const offered = (gate: unknown) => typeof gate === 'string' && gate.trim() !== 'false';
  const newestGated = (recs: AuditRecord[]) => recs.filter((r) => offered(r.details.gate)).sort((a, b) => b.seq - a.seq)[0];
  const pages = await Promise.all(JUDGED.map((action) => log.query({ model: name, action, newestFirst: true, limit: GATE_PAGE })));
  // Every record of both actions from this seq on is in the pages (-Infinity: every record of both is).
  const whole = Math.max(...pages.map((p) => (p.length < GATE_PAGE ? -Infinity : p.at(-1)!.seq)));
  const found = newestGated(pages.flat());
  if ((found && found.seq >= whole) || whole === -Infinity) return found?.details.gate as string | undefined;
  const all = await Promise.all(JUDGED.map((action) => log.query({ model: name, action })));
  return newestGated(all.flat())?.details.gate as string | undefined;
}

/** Oldest first; with `newest`, only the newest that many, read as a page of the log, not the whole of it. */
export async function auditRecords(dbs: UiDatabases, q: AuditQuery & { newest?: number }): Promise<AuditRecord[]> {
  if (!databaseExists(dbs.paths.auditDb)) return [];
  const log = await dbs.audit.get();
  const { newest, ...rest } = q;
  if (rest.actor === '') delete rest.actor;
  // A version's trail as `tempered audit --model` gives it: with the serve.swapped records that ended its serving.
  if (rest.model !== undefined && rest.run === undefined && rest.afterSeq === undefined && rest.limit === undefined)
    return modelRecords(log, rest.model, { action: rest.action, actor: rest.actor, newest });
  if (newest === undefined) return log.query(rest);
  return (await log.query({ ...rest, newestFirst: true, limit: newest })).reverse();
}

export interface AuditView {
  /** Newest first, at most `limit`; `run.submitted` without the spec text and plan it keeps (withoutSpecCopy). */
  records: AuditRecord[];
  /** The model filter as the log was queried: an alias (`name@production`) is the version it points at now. */
  model?: { ref: string; query: string; resolved?: NonNullable<ModelFilter['resolved']> };
}

/**
 * A `run.submitted` record as the audit page lists it: the spec file's text and the resolved plan it keeps (several KB
 * each, client/runs.ts) become their sizes. The page polls up to 500 records every 5 s and shows details in a table
 * cell; `tempered models show NAME@V --spec` and `tempered audit --json` give them whole.
 */
function withoutSpecCopy(r: AuditRecord): AuditRecord {
  const { spec, plan, ...details } = r.details;
  if (r.action !== 'run.submitted' || (spec === undefined && plan === undefined)) return r;
  const bytes = (x: unknown) => Buffer.byteLength(JSON.stringify(x) ?? '');
  const text = (spec as { text?: unknown } | null)?.text;
  return {
    ...r,
    details: {
      ...details,
      ...(spec !== undefined
        ? {
            spec: {
              sha256: (spec as { sha256?: unknown } | null)?.sha256,
              ...(typeof text === 'string' ? { bytes: Buffer.byteLength(text) } : {}),
              shown: 'tempered models show NAME@V --spec',
            },
          }
        : {}),
      ...(plan !== undefined ? { plan: `${bytes(plan).toLocaleString('en-US')} bytes of JSON, not shown here` } : {}),
    },
  };
}

/**
 * The audit page's records, its model filter read as `tempered audit --model` reads it (resolveModelFilter):
 * `name@production` is the version the alias points at now. A reference that cannot be resolved throws
 * ModelFilterError (the server answers 400 or 404 with its message).
 */
export async function auditView(
  dbs: UiDatabases,
  q: { run?: string; model?: string; action?: string; actor?: string },
  limit: number,
): Promise<AuditView> {
  const filter =
    q.model === undefined ? undefined : await resolveModelFilter(q.model, { location: dbs.paths.registryDb, kept: dbs.registry });
  const rows = await auditRecords(dbs, { ...q, model: filter?.model, newest: limit });
  return {
    records: rows.reverse().map(withoutSpecCopy),
    ...(filter && q.model !== undefined
      ? { model: { ref: q.model, query: filter.model, ...(filter.resolved ? { resolved: filter.resolved } : {}) } }
      : {}),
  };
}

export async function verifyAudit(dbs: UiDatabases) {
  if (!databaseExists(dbs.paths.auditDb))
    return { ok: false, checked: 0, problem: 'empty', message: `no audit log at ${dbs.paths.auditDb}` };
  const log = await dbs.audit.get();
  return { ...(await log.verify()), head: await log.head() };
}

/** What a train stage ran with, from its audit record (trainedWith), as the page shows it. */
export interface TrainedWithView {
  stage: string;
  /** `tempered models show`'s line: "trained on cpu (1 thread, 2 cpus, onnxruntime 1.30.0, resumed at step 4)". */
  summary: string;
  device: string;
  /** null: onnxruntime's default (one per physical core). */
  threads?: number | null;
  onnxruntime?: string;
  cpus?: number;
  /** The CPU's model name. */
  cpu?: string;
  platform?: string;
  node?: string;
  resumedFromStep?: number;
}

export interface SpecView {
  runId: string;
  specHash?: string;
  /**
   * The spec as the run's `run.submitted` keeps it (recordedSpec); the resolved plan only where the text was not kept.
   * A schedule's run (no `run.submitted`): the file the schedule keeps in the store for its spec hash, `schedule` naming it.
   */
  spec?: RecordedSpec & { schedule?: string };
  /** Why there is no text, as `tempered models show NAME@V --spec` says it. */
  missing?: string;
  /** Each train stage of the run; empty where none was recorded. */
  trainedWith: TrainedWithView[];
  /** Where none was recorded, why (no audit log). */
  trainedWithMissing?: string;
}

function trainedWithView(stage: string, t: TrainedWith): TrainedWithView {
  const rt = record(t.runtime) ?? {};
  const str = (x: unknown) => (typeof x === 'string' ? x : undefined);
  const facts = {
    threads: typeof rt.threads === 'number' || rt.threads === null ? rt.threads : undefined,
    onnxruntime: str(rt.onnxruntime),
    cpus: finite(rt.cpus),
    cpu: str(rt.cpu),
    platform: str(rt.platform),
    node: str(rt.node),
    resumedFromStep: t.resumedFromStep,
  };
  return {
    stage,
    summary: trainedOn(t) ?? '',
    device: String(t.device),
    ...Object.fromEntries(Object.entries(facts).filter(([, x]) => x !== undefined)),
  };
}

/**
 * The spec a run was submitted with and what its train stages ran with, from the audit trail alone (a run's history on
 * the Temporal server is deleted after the namespace's retention): `recordedSpec` and `trainedWith`, as
 * `tempered models show NAME@V --spec` and `models show` read them. Without `specHash` (a run's page), the run's newest
 * `run.submitted` names it. Undefined when the trail has no record of the run at all. No audit log: nothing recorded,
 * and none is made.
 */
export async function specView(dbs: UiDatabases, store: ArtifactStore, runId: string, specHash?: string): Promise<SpecView | undefined> {
  const base = { runId, ...(specHash ? { specHash } : {}) };
  if (!databaseExists(dbs.paths.auditDb)) {
    const missing = `not recorded: no audit log at ${dbs.paths.auditDb}, which keeps the spec a run was submitted with and what it trained with`;
    return { ...base, missing, trainedWith: [], trainedWithMissing: missing };
  }
  const log = await dbs.audit.get();
  if (!specHash) {
    const submitted = (await log.query({ run: runId, action: 'run.submitted' })).filter((r) => r.runId === runId).pop();
    // A schedule's run has no run.submitted: its stages' records carry the spec hash.
    const any = submitted ?? (await log.query({ run: runId, newestFirst: true, limit: 1 }))[0];
    if (!any) return undefined;
    specHash = any.specHash;
  }
  // Read once for both: the sources in the spec and what each train stage trained with.
  const stages = await stageRecords(log, runId);
  const s = specHash ? await recordedSpec(log, runId, specHash, stages) : undefined;
  const trained = Object.entries(await trainedWith(log, runId, stages)).map(([stage, t]) => trainedWithView(stage, t));
  const short = specHash ? ` (spec ${specHash.slice(0, 12)})` : '';
  let missing: string | undefined;
  let scheduled: SpecView['spec'];
  if (!s) {
    // A schedule's run: the file the schedule keeps for this spec hash (its schedule.created/updated names both).
    const sched = specHash ? await scheduleSpec(log, specHash) : undefined;
    const kept = sched ? await storedSpecText(store, sched.specUri) : undefined;
    if (sched && specHash && kept && 'text' in kept)
      scheduled = {
        runId,
        specHash,
        schedule: sched.schedule,
        text: kept.text,
        textSha256: kept.sha256,
        textMatches: true,
        ...(sched.file ? { specFile: sched.file } : {}),
        actor: sched.actor,
        time: sched.time,
        sources: await sourcesOf(log, runId, stages),
      };
    else
      missing = sched
        ? `not recorded: run ${runId} has no run.submitted record; schedule ${sched.schedule} started it, and keeps its spec file${sched.file ? ` ${sched.file}` : ''} in the store (${sched.specUri})${kept && 'error' in kept ? `, which cannot give it: ${kept.error}` : ''}`
        : `not recorded: the audit trail keeps no submission of run ${runId}${short}`;
  } else if (s.text === undefined)
    missing = s.plan
      ? `the trail keeps the resolved plan run ${runId} followed${short}, not its file: shown as JSON`
      : `the audit trail keeps only the hash of the spec of run ${runId}${short}: it was submitted before the trail kept specs`;
  // The plan is the text's copy where there is a text: sent only where it stands in for one.
  let spec = scheduled ?? (s && (s.text !== undefined ? (({ plan: _plan, ...rest }) => rest)(s) : s));
  // The answer hides credentials the record or the store kept (server.ts): the note that the text is not the file needs where.
  const hidden = spec?.text !== undefined && !spec.redacted?.length ? hiddenInText(spec.text, spec.params) : [];
  if (spec && hidden.length) spec = { ...spec, redacted: hidden };
  return {
    runId,
    ...(specHash ? { specHash } : {}),
    ...(spec ? { spec } : {}),
    ...(missing ? { missing } : {}),
    trainedWith: trained,
    ...(trained.length ? {} : { trainedWithMissing: 'not recorded: no train stage of this run has a record of what it trained with' }),
  };
}

/** The spec file a schedule runs, as the schedule keeps it in the store (GET /api/schedules/:name/spec). */
export interface ScheduleSpecView {
  name: string;
  pipeline: string;
  specHash: string;
  /** Where the store keeps the file's exact bytes (content-addressed); `store gc` keeps it. */
  specUri: string;
  /** The path the schedule's file was read from, when it was created or last updated. */
  file: string;
  params: string[];
  /** The file's text; absent where the store could not give it (`missing` says why). */
  text?: string;
  /** sha256 of the file's bytes: the hash its URI names, which the store checked them against. */
  textSha256?: string;
  /** Where the answer hides credentials the file holds (hiddenInText): `text` is then not the file `textSha256` names. */
  redacted?: string[];
  missing?: string;
}

/**
 * The spec file schedule `name` runs, read from the store as `schedule update` reads it to plan again. A file the store
 * no longer has (a `store gc` before 6 Dec 2026 did not keep them) or cannot read is a `missing` message, not an error:
 * the schedule still runs, from the plan Temporal keeps in its action.
 */
export async function scheduleSpecView(client: Client, store: ArtifactStore, name: string): Promise<ScheduleSpecView> {
  // Without the key the file's address is in the schedule's encrypted definition: said so, as `schedule describe` does.
  const view = await scheduleView(client, name);
  const { spec } = view;
  if (view.encrypted)
    return {
      name,
      pipeline: spec.pipeline,
      specHash: spec.specHash,
      specUri: spec.specUri,
      file: spec.file,
      params: [],
      missing: `the spec file of schedule ${name} is named in its definition, which is encrypted: ${view.encrypted}`,
    };
  // Every reader of the dashboard sees it: a secret --param's value hidden, as the trail's schedule records hide it.
  const params = keptParamArgs(spec.params);
  const base = { name, pipeline: spec.pipeline, specHash: spec.specHash, specUri: spec.specUri, file: spec.file, params };
  const kept = await storedSpecText(store, spec.specUri);
  if ('text' in kept) {
    const hidden = hiddenInText(kept.text);
    return { ...base, text: kept.text, textSha256: kept.sha256, ...(hidden.length ? { redacted: hidden } : {}) };
  }
  const where = spec.specUri ? `the store (${spec.specUri})` : 'the store (the schedule names no stored file)';
  return {
    ...base,
    missing: `the spec file of schedule ${name}${spec.file ? ` (${spec.file})` : ''} cannot be read from ${where}: ${kept.error}; \`tempered schedule update ${name} --pipeline FILE\` stores it again`,
  };
}

/** A spec file a schedule keeps in the store, as text with the sha256 its URI names (the store checks the bytes against it), or why the store cannot give it. */
async function storedSpecText(store: ArtifactStore, specUri: string): Promise<{ text: string; sha256: string } | { error: string }> {
  try {
    return { text: await readFile(await store.localPath(specUri), 'utf8'), sha256: parseUri(specUri) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/** specView of the run that registered a version, with its spec hash. */
export async function versionSpec(
  dbs: UiDatabases,
  store: ArtifactStore,
  name: string,
  version: number,
): Promise<SpecView & { name: string; version: number }> {
  const v = await (await dbs.registry.get()).getVersion(name, version);
  const view = await specView(dbs, store, v.lineage.runId, v.lineage.specHash);
  return { name, version: v.version, ...view!, specHash: v.lineage.specHash };
}

export type LineageKind = 'source' | 'data' | 'run' | 'version' | 'alias' | 'serving';

export interface LineageNode {
  id: string;
  kind: LineageKind;
  label: string;
  detail?: string;
  /** A page of the dashboard the node opens (`#/run/<id>`). */
  href?: string;
}

export interface LineageGraph {
  name: string;
  version: number;
  nodes: LineageNode[];
  edges: [from: string, to: string][];
  /** What could not be shown and why (a run Temporal no longer keeps). */
  notes: string[];
}

/** A source file as the ingest stage's report lists it. */
interface SourceFileEntry {
  path: string;
  sha256: string;
  rows?: number;
}

const short = (sha: string) => `${sha.slice(0, 12)}…`;

/**
 * Where a model version came from and where it goes: the run's source files and the data hashes the
 * registry recorded → the run → the version → the aliases pointing at it → what `tempered serve`
 * serves under each alias (serve follows an alias, so the alias is what is served). Source files come
 * from the run's ingest reports in the store, found through Temporal; a run Temporal no longer keeps
 * leaves the registry's data hashes alone, with a note.
 */
export async function versionLineage(
  dbs: UiDatabases,
  /** Asked for once the version is known: an unknown one is the registry's 404, whether or not Temporal answers. */
  client: () => Promise<Client>,
  store: ArtifactStore,
  name: string,
  version: number,
): Promise<LineageGraph> {
  const v = await (await dbs.registry.get()).getVersion(name, version);
  const notes: string[] = [];
  const sources: SourceFileEntry[] = [];
  let runState: string | undefined;
  try {
    const run = await runView(await client(), store, v.lineage.runId);
    runState = run.status.state;
    for (const st of run.status.stages) {
      if (st.uses !== 'ingest') continue;
      const files = (run.reports[st.id]?.report as { sourceFiles?: SourceFileEntry[] } | undefined)?.sourceFiles ?? [];
      for (const f of files) if (!sources.some((s) => s.sha256 === f.sha256 && s.path === f.path)) sources.push(f);
    }
  } catch (e) {
    notes.push(`run ${v.lineage.runId}: ${(e as Error).message} (source files unknown)`);
  }
  const nodes: LineageNode[] = [];
  const edges: LineageGraph['edges'] = [];
  const runNode = `run:${v.lineage.runId}`;
  const versionNode = `version:${v.version}`;
  for (const f of sources)
    nodes.push({
      id: `source:${f.path}:${f.sha256}`,
      kind: 'source',
      label: f.path,
      detail: `${short(f.sha256)}${f.rows != null ? ` · ${f.rows} rows` : ''}`,
    });
  for (const d of v.lineage.data) {
    const id = `data:${d.name}:${d.sha256}`;
    nodes.push({ id, kind: 'data', label: d.name, detail: `${short(d.sha256)}${d.rows != null ? ` · ${d.rows} rows` : ''}` });
    for (const f of sources) edges.push([`source:${f.path}:${f.sha256}`, id]);
    edges.push([id, runNode]);
  }
  if (v.lineage.data.length === 0) for (const f of sources) edges.push([`source:${f.path}:${f.sha256}`, runNode]);
  nodes.push({
    id: runNode,
    kind: 'run',
    label: v.lineage.runId,
    detail: `${runState ?? 'unknown'} · stage ${v.lineage.stageId} · spec ${short(v.lineage.specHash)}`,
    href: `#/run/${encodeURIComponent(v.lineage.runId)}`,
  });
  nodes.push({ id: versionNode, kind: 'version', label: `${name} v${v.version}`, detail: `by ${v.createdBy}` });
  edges.push([runNode, versionNode]);
  for (const alias of v.aliases) {
    nodes.push({ id: `alias:${alias}`, kind: 'alias', label: `@${alias}`, detail: `${name}@${alias} → v${v.version}` });
    nodes.push({ id: `serving:${alias}`, kind: 'serving', label: `tempered serve ${name}@${alias}`, detail: 'serves this version now' });
    edges.push([versionNode, `alias:${alias}`], [`alias:${alias}`, `serving:${alias}`]);
  }
  if (v.aliases.length === 0) notes.push(`no alias points at v${v.version}, so nothing serves it`);
  return { name, version: v.version, nodes, edges, notes };
}

export interface ModelVersionDiff {
  diff: VersionDiff;
  /** What production.* were measured against on both sides, as `models diff` says it. */
  productionNote?: string;
  /** The two model cards, line by line: unchanged, added (in b) and removed (from a). */
  card: { value: string; added: boolean; removed: boolean }[];
}

/** Two versions of a model: parameters, metrics with deltas, data hashes, artifacts, and the cards' text. */
export async function diffVersions(dbs: UiDatabases, name: string, a: number, b: number): Promise<ModelVersionDiff> {
  const reg = await dbs.registry.get();
  const [va, vb] = await Promise.all([reg.getVersion(name, a), reg.getVersion(name, b)]);
  const card = diffLines(modelCard(va), modelCard(vb)).map((c) => ({ value: c.value, added: !!c.added, removed: !!c.removed }));
  const diff = diffModelVersions(va, vb);
  const productionNote = productionComparisonNote(diff);
  return { diff, ...(productionNote ? { productionNote } : {}), card };
}
