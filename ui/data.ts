/**
 * What the dashboard shows, read from the same places as the CLI: a run's status from Temporal
 * (client/runs.ts), its reports and training history from the artifact store, live training points
 * from the progress log the worker writes, models from the registry, records from the audit log.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { tableFromIPC } from 'apache-arrow';
import { getRunStatus, runInput } from '../client/runs.ts';
import { openAudit, type AuditQuery, type AuditRecord } from '../src/audit/log.ts';
import { databaseExists } from '../src/db/database.ts';
import { modelCard } from '../src/registry/card.ts';
import { openRegistry } from '../src/registry/registry.ts';
import type { AliasChange, ModelVersion } from '../src/registry/types.ts';
import type { StatePaths } from '../src/state-paths.ts';
import type { ArtifactStore } from '../src/store/artifact-store.ts';
import { progressLogPath, readProgressPoints, type ProgressPoint } from '../src/store/progress-log.ts';
import { isArtifactRef, type ArtifactRef } from '../src/types.ts';
import type { RunStatus } from '../workflows/types.ts';

/** Reports small enough to send whole: data reports and evaluation reports are JSON of a few KiB. */
const MAX_INLINE_JSON = 4 << 20;

export interface RunView {
  status: RunStatus;
  /** Temporal's id of the execution shown (a workflow id can be reused). */
  execution: string;
  temporalStatus: string;
  /** Parsed JSON report outputs (`report`, `metrics`) by stage id and output name. */
  reports: Record<string, Record<string, unknown>>;
}

export async function runView(client: Client, store: ArtifactStore, runId: string): Promise<RunView> {
  const desc = await client.workflow.getHandle(runId).describe();
  const status = await getRunStatus(client, runId);
  const reports: RunView['reports'] = {};
  for (const st of status.stages) {
    for (const [name, ref] of Object.entries(st.outputs ?? {})) {
      if ((name !== 'report' && name !== 'metrics') || !isArtifactRef(ref)) continue;
      const json = await readJsonArtifact(store, ref);
      if (json !== undefined) (reports[st.id] ??= {})[name] = json;
    }
  }
  return { status, execution: desc.runId, temporalStatus: desc.status.name, reports };
}

/**
 * A small JSON artifact, parsed; undefined when it is not JSON, too large, or cannot be had. The
 * store hands a verified local copy (fetched from a remote backend when there is one).
 */
export async function readJsonArtifact(store: ArtifactStore, ref: ArtifactRef): Promise<unknown> {
  if (!ref.mediaType?.includes('json') || ref.bytes > MAX_INLINE_JSON) return undefined;
  try {
    return JSON.parse(readFileSync(await store.localPath(ref.uri), 'utf8'));
  } catch {
    return undefined;
  }
}

/** A training history as columns (step, loss, lr, grad_norm, val_*), NaN as null. */
export type Columns = Record<string, (number | null)[]>;

export async function readHistoryArtifact(store: ArtifactStore, ref: unknown): Promise<Columns | undefined> {
  if (!isArtifactRef(ref)) return undefined;
  let path: string;
  try {
    path = await store.localPath(ref.uri);
  } catch {
    return undefined; // not in this store (yet): the live points stand in
  }
  const table = tableFromIPC(readFileSync(path));
  const out: Columns = {};
  // NaN (no validation at that step) becomes null when the response is serialised.
  for (const field of table.schema.fields) out[field.name] = Array.from(table.getChild(field.name)!.toArray() as ArrayLike<number>);
  return out;
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
};

export interface TrainingCurves {
  /** One array per metric, aligned with `step`: the finished history when there is one, else the live points. */
  columns: Columns;
  source: 'history' | 'live';
  /** Byte offset in the progress log after the points included, to tail from (server-sent events). */
  offset: number;
}

/**
 * A stage's curves. Throughput exists only in the live points; a retried attempt reports steps
 * again from its checkpoint, and the newest report of a step wins.
 */
export async function trainingCurves(
  paths: StatePaths,
  store: ArtifactStore,
  runId: string,
  execution: string,
  stage: RunStatus['stages'][number],
): Promise<TrainingCurves> {
  const live = readProgressPoints(progressLogPath(paths.progress, runId, execution, stage.id));
  const byStep = new Map<number, Record<string, number>>();
  for (const p of live.points) if (typeof p.metrics.step === 'number') byStep.set(p.metrics.step, p.metrics);
  const history = await readHistoryArtifact(store, stage.outputs?.history);
  if (history?.step) {
    const { epoch: _epoch, ...columns } = history;
    columns.samplesPerSec = history.step.map((s) => byStep.get(s!)?.samplesPerSec ?? null);
    return { columns, source: 'history', offset: live.offset };
  }
  const steps = [...byStep.keys()].sort((a, b) => a - b);
  const columns: Columns = { step: steps };
  for (const [col, name] of Object.entries(LIVE_NAMES)) columns[col] = steps.map((s) => byStep.get(s)![name] ?? null);
  return { columns, source: 'live', offset: live.offset };
}

/** Stage ids with a progress log for this execution (stages that reported steps). */
export function stagesWithPoints(paths: StatePaths, runId: string, execution: string): string[] {
  const dir = join(progressLogPath(paths.progress, runId, execution, 'x'), '..');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.jsonl'))
    .map((n) => decodeURIComponent(n.slice(0, -'.jsonl'.length)));
}

export interface SpecDiffLine {
  path: string;
  a: unknown;
  b: unknown;
}

/** Leaf-by-leaf differences between two JSON values (the planned specs of two runs). */
export function jsonDiff(a: unknown, b: unknown, path = '', out: SpecDiffLine[] = []): SpecDiffLine[] {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
  if (isObj(a) && isObj(b) && Array.isArray(a) === Array.isArray(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) jsonDiff(a[k], b[k], path ? `${path}.${k}` : k, out);
  } else if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ path, a, b });
  return out;
}

export async function compareRuns(client: Client, store: ArtifactStore, a: string, b: string) {
  const [va, vb] = await Promise.all([runView(client, store, a), runView(client, store, b)]);
  const [ia, ib] = await Promise.all([runInput(client, a), runInput(client, b)]);
  const metricsOf = (v: RunView) => {
    const out: Record<string, number> = {};
    for (const st of v.status.stages)
      for (const [k, x] of Object.entries(st.outputs ?? {})) if (typeof x === 'number') out[`${st.id}.${k}`] = x;
    return out;
  };
  const ma = metricsOf(va);
  const mb = metricsOf(vb);
  const metrics = [...new Set([...Object.keys(ma), ...Object.keys(mb)])].sort().map((name) => ({
    name,
    a: ma[name],
    b: mb[name],
    delta: ma[name] !== undefined && mb[name] !== undefined ? mb[name]! - ma[name]! : undefined,
  }));
  const hashes = (v: RunView) => {
    const out: Record<string, string> = {};
    for (const st of v.status.stages)
      for (const [k, x] of Object.entries(st.outputs ?? {})) if (isArtifactRef(x) && x.rows !== undefined) out[`${st.id}.${k}`] = x.sha256;
    return out;
  };
  const ha = hashes(va);
  const hb = hashes(vb);
  const data = [...new Set([...Object.keys(ha), ...Object.keys(hb)])]
    .sort()
    .map((name) => ({ name, a: ha[name], b: hb[name], same: ha[name] === hb[name] }));
  return { a: va, b: vb, metrics, data, spec: jsonDiff(ia.plan, ib.plan) };
}

export interface ModelView {
  name: string;
  aliases: Record<string, number>;
  versions: (ModelVersion & { card: string })[];
  /** The gate the pipeline's deploy stage last judged with, for the promote form. */
  lastGate?: string;
  history: AliasChange[];
}

export async function listModelViews(paths: StatePaths): Promise<ModelView[]> {
  if (!databaseExists(paths.registryDb)) return [];
  const reg = await openRegistry(paths.registryDb);
  const gates = await lastGates(paths);
  try {
    const views: ModelView[] = [];
    for (const m of await reg.listModels()) {
      views.push({
        name: m.name,
        aliases: m.aliases,
        versions: (await reg.listVersions(m.name)).map((v) => ({ ...v, card: modelCard(v) })).sort((x, y) => y.version - x.version),
        lastGate: gates.get(m.name),
        history: await reg.aliasHistory(m.name),
      });
    }
    return views;
  } finally {
    await reg.close();
  }
}

async function lastGates(paths: StatePaths): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (!databaseExists(paths.auditDb)) return out;
  const judged = [
    ...(await auditRecords(paths, { action: 'model.promoted' })),
    ...(await auditRecords(paths, { action: 'model.not_promoted' })),
  ];
  for (const r of judged.sort((a, b) => a.seq - b.seq)) {
    const gate = r.details.gate;
    const model = r.model ?? r.subject;
    if (typeof gate === 'string' && model) out.set(model.split('@')[0]!, gate);
  }
  return out;
}

export async function auditRecords(paths: StatePaths, q: AuditQuery & { actor?: string }): Promise<AuditRecord[]> {
  if (!databaseExists(paths.auditDb)) return [];
  const log = await openAudit(paths.auditDb);
  try {
    const { actor, ...rest } = q;
    const rows = await log.query(rest);
    return actor ? rows.filter((r) => r.actor === actor) : rows;
  } finally {
    await log.close();
  }
}

export async function verifyAudit(paths: StatePaths) {
  if (!databaseExists(paths.auditDb)) return { ok: false, checked: 0, problem: 'empty', message: `no audit log at ${paths.auditDb}` };
  const log = await openAudit(paths.auditDb);
  try {
    return { ...(await log.verify()), head: await log.head() };
  } finally {
    await log.close();
  }
}
