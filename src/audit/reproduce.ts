/**
 * `tempered models reproduce NAME@V`: the plan a rerun of a registered version follows, and what the rerun is judged
 * on. The rerun is the recorded plan cut down to the stage that made the model and what it needs, so checking a
 * version registers, promotes and serves nothing; it is judged on the model's bytes (`modelHash`,
 * src/audit/model-hash.ts), and where they differ, on the data each stage upstream of training made, so the verdict
 * says where the rerun first went another way: in the data, or in training (with what each training ran with).
 */
import { canonicalJson, sha256Hex } from '../util/canonical-json.ts';
import { parseRefExpression } from '../spec/runtime-refs.ts';
import type { PlannedPipeline, PlannedStage, StageOutputInfo } from '../spec/types.ts';
import { isArtifactRef } from '../types.ts';
import type { AuditRecord } from './log.ts';
import type { TrainedWith } from './run-spec.ts';

/**
 * The rerun's plan: the stage that made the model and the stages it needs, nothing else. Register and deploy (the
 * registry and its aliases) are after it, so checking a version registers, promotes and serves nothing; evaluate and
 * the like are left out too, since the verdict reads the model's bytes and the data before them, and an LLM's
 * generated-answer evaluation can take longer than its training. No run gate either (a gate compares the data with the
 * pipeline's last run and may end the rerun as "unchanged"), and a name of its own, so that the outcome a run records
 * for later runs' gates is the reproduction's, not the pipeline's. Its spec hash is its own.
 *
 * Every stage `cache: false`: it neither reuses nor records outputs. `--no-cache` (RunOptions.noCache) stops the
 * reuse only, and the rerun recorded its outputs under the work's keys, over the original run's records: a rerun that
 * did not reproduce (other bytes from other threads or CPUs) then served its model to every later run of the same work,
 * a resume of a failed one included, which would register it; the records named the check run as their producer; and a
 * record newer than the checkpoint a failed run left under the key tells `store gc` that the work completed, so gc
 * deleted that checkpoint, which the rerun's own folder had been made to leave alone.
 */
export function reproductionPlan(
  recorded: Omit<PlannedPipeline, 'specHash'>,
  modelStage: string,
): { plan: PlannedPipeline; dropped: string[] } {
  const keep = new Set(upstreamOf(recorded.stages, modelStage));
  const stages = recorded.stages
    .filter((s) => keep.has(s.id))
    .map((s): PlannedStage => ({ ...s, cache: false, dependents: s.dependents.filter((d) => keep.has(d)) }));
  const { triggers: _, ...rest } = recorded;
  const body = { ...rest, name: `${recorded.name}-reproduce`, stages };
  return {
    plan: { ...body, specHash: sha256Hex(canonicalJson(body)) },
    dropped: recorded.stages.filter((s) => !keep.has(s.id)).map((s) => s.id),
  };
}

/**
 * Why a plan read back from the trail is no plan a run can follow, or undefined: its hash matching the version's spec
 * hash says it is the one recorded, not that the planner made it (the record and the registry are files whoever can
 * write them can make agree). Checked before anything is submitted: stages a list of objects with an id the
 * schema allows, seen once, a stage kind `known`, a config object, and needs and dependents that name stages
 * (needs earlier ones, so the rerun cannot wait for itself).
 */
export function planProblem(plan: unknown, known: (kind: string) => boolean): string | undefined {
  const p = plan as { stages?: unknown; name?: unknown; params?: unknown };
  if (typeof p.name !== 'string') return 'it has no pipeline name';
  if (typeof p.params !== 'object' || p.params === null || Array.isArray(p.params)) return 'its params are not an object';
  if (!Array.isArray(p.stages) || p.stages.length === 0) return 'its stages are not a list of stages';
  const stages = p.stages.map((st: unknown) => (typeof st === 'object' && st !== null ? st : {}) as Record<string, unknown>);
  const ids = new Set<string>();
  for (const [i, x] of stages.entries()) {
    if (typeof x.id !== 'string' || !/^[a-z][a-z0-9_-]*$/.test(x.id)) return `stages[${i}].id is not a stage id: ${JSON.stringify(x.id)}`;
    if (ids.has(x.id)) return `stages[${i}].id ${x.id} comes twice`;
    ids.add(x.id);
  }
  const earlier = new Set<string>();
  for (const [i, x] of stages.entries()) {
    const at = `stages[${i}] (${x.id as string})`;
    if (typeof x.uses !== 'string' || !known(x.uses)) return `${at} uses ${JSON.stringify(x.uses)}, which is no stage kind here`;
    if (typeof x.with !== 'object' || x.with === null || Array.isArray(x.with)) return `${at} has no config object`;
    const names = (k: 'needs' | 'dependents', among: Set<string>) =>
      Array.isArray(x[k]) && (x[k] as unknown[]).every((n) => typeof n === 'string' && among.has(n));
    if (!names('needs', earlier)) return `${at}.needs names a stage that is not an earlier one: ${JSON.stringify(x.needs)}`;
    if (!names('dependents', ids)) return `${at}.dependents names a stage the plan does not have: ${JSON.stringify(x.dependents)}`;
    earlier.add(x.id as string);
  }
  return undefined;
}

/** The stage whose output `stages.<id>.outputs.<name>` a register stage's `model` is, when it is one whole reference. */
export function modelSource(register: PlannedStage | undefined): { stage: string; output: string } | undefined {
  const m = register?.with.model;
  const inner = typeof m === 'string' ? /^\$\{\{(.*)\}\}$/.exec(m.trim())?.[1] : undefined;
  const t = inner === undefined ? undefined : parseRefExpression(inner);
  return t?.kind === 'stage' ? { stage: t.stage, output: t.output } : undefined;
}

/** `stage` and every stage it needs, directly or not, in plan order. */
export function upstreamOf(stages: readonly PlannedStage[], stage: string): string[] {
  const want = new Set([stage]);
  for (const s of [...stages].reverse()) if (want.has(s.id)) for (const n of s.needs) want.add(n);
  return stages.filter((s) => want.has(s.id)).map((s) => s.id);
}

/**
 * Each stage's output hashes as its `stage.completed` or `stage.reused` record (`stageRecords`) keeps them (`out:<output>`), with an
 * ingest's `dataHash` (over its source files' bytes), by stage id: what a rerun's data is compared with.
 */
export function stageOutputHashes(stageRecords: readonly AuditRecord[]): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const r of stageRecords) {
    const hashes: Record<string, string> = {};
    for (const [k, v] of Object.entries(r.dataHashes ?? {})) if (k.startsWith('out:')) hashes[k.slice('out:'.length)] = v;
    if (typeof r.details.dataHash === 'string') hashes.dataHash = r.details.dataHash;
    out[typeof r.details.stage === 'string' ? r.details.stage : r.subject] = hashes;
  }
  return out;
}

/** A run's data hashes of one stage, by output name; undefined: the trail has no record of the stage. */
export type StageData = Record<string, string> | undefined;

export interface RunFacts {
  runId: string;
  modelHash?: string;
  /** Each data stage's hashes (its tables, and ingest's `dataHash` over its source files). */
  data: Record<string, StageData>;
  trainedWith?: TrainedWith;
}

export interface StageComparison {
  stage: string;
  kind: string;
  /** null: one of the runs has no record of it. */
  same: boolean | null;
  /** The outputs whose hashes differ, with both. */
  differs: { output: string; original?: string; rerun?: string }[];
}

export interface Reproduction {
  reproduced: boolean;
  original: RunFacts;
  rerun: RunFacts;
  /** The data stages upstream of training, in plan order. */
  stages: StageComparison[];
  /** Where the rerun first went another way: a data stage, or the training (same data, other bytes). */
  divergedAt?: { stage: string; kind: string; what: 'data' | 'training' | 'unknown' };
  /** What each training ran with, where it differs (device, threads, cpus, onnxruntime …). */
  trainedWithDiffers: { field: string; original: unknown; rerun: unknown }[];
  /** Set where the threads were not pinned and the runs' thread counts or CPUs differ: the likely cause, and the fix. */
  threadsNote?: string;
  verdict: string;
}

/**
 * The verdict on a finished rerun, from what each run left: the original's model hash, its stages' recorded output
 * hashes (`stageOutputHashes`) and what its training ran with (`trainedWith`); the rerun's stage outputs and the hash of
 * its model (computed as register computes it). Compared are the stages whose data the training read: their tables
 * (as each kind declares its outputs; every output where the kind is not known here), and ingest's `dataHash` over its
 * source files.
 */
export function judgeRerun(o: {
  plan: Pick<PlannedPipeline, 'stages'>;
  trainStage: string;
  threadsPinned: boolean;
  original: { runId: string; modelHash: string; stageHashes: Record<string, Record<string, string>>; trainedWith?: TrainedWith };
  rerun: { runId: string; modelHash?: string; outputs: Record<string, Record<string, unknown>> };
  /** A stage kind's declared outputs; undefined for a kind not known here. */
  declaredOutputs: (kind: string) => Record<string, StageOutputInfo> | undefined;
}): Reproduction {
  const kindOf = (id: string) => o.plan.stages.find((x) => x.id === id)!.uses;
  const dataStages = upstreamOf(o.plan.stages, o.trainStage)
    .filter((s) => s !== o.trainStage)
    .map((s) => ({ id: s, kind: kindOf(s) }));
  const pick = (kind: string, hashes: Record<string, string> | undefined) => {
    const declared = o.declaredOutputs(kind);
    return (
      hashes && Object.fromEntries(Object.entries(hashes).filter(([k]) => k === 'dataHash' || !declared || declared[k]?.type === 'table'))
    );
  };
  const rerunHashes = (stage: string): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const [k, x] of Object.entries(o.rerun.outputs[stage] ?? {})) {
      if (isArtifactRef(x)) out[k] = x.sha256;
      else if (k === 'dataHash' && typeof x === 'string') out[k] = x;
    }
    return out;
  };
  const trained = o.rerun.outputs[o.trainStage] ?? {};
  const original: RunFacts = {
    runId: o.original.runId,
    modelHash: o.original.modelHash,
    data: Object.fromEntries(dataStages.map((s) => [s.id, pick(s.kind, o.original.stageHashes[s.id])])),
    ...(o.original.trainedWith !== undefined ? { trainedWith: o.original.trainedWith } : {}),
  };
  const rerun: RunFacts = {
    runId: o.rerun.runId,
    ...(o.rerun.modelHash !== undefined ? { modelHash: o.rerun.modelHash } : {}),
    data: Object.fromEntries(dataStages.map((s) => [s.id, pick(s.kind, rerunHashes(s.id))])),
    ...(typeof trained.device === 'string'
      ? { trainedWith: { device: trained.device, ...(trained.runtime !== undefined ? { runtime: trained.runtime } : {}) } }
      : {}),
  };
  return compareReproduction({
    stages: dataStages,
    train: { id: o.trainStage, kind: kindOf(o.trainStage), threadsPinned: o.threadsPinned },
    original,
    rerun,
  });
}

const short = (h: string | undefined) => (h ? `${h.slice(0, 12)}…` : 'none');

/**
 * The verdict on a rerun: reproduced when the model's bytes are the same. Otherwise the first data stage (in plan
 * order) whose data differs is where it diverged; with every data stage the same, the training did. `train`: the
 * training stage's id and kind, and whether its config pinned `threads`.
 */
export function compareReproduction(o: {
  stages: { id: string; kind: string }[];
  train: { id: string; kind: string; threadsPinned: boolean };
  original: RunFacts;
  rerun: RunFacts;
}): Reproduction {
  const { original, rerun } = o;
  const stages = o.stages.map(({ id, kind }): StageComparison => {
    const a = original.data[id];
    const b = rerun.data[id];
    if (!a || !b) return { stage: id, kind, same: null, differs: [] };
    const differs = [...new Set([...Object.keys(a), ...Object.keys(b)])]
      .filter((k) => a[k] !== b[k])
      .map((output) => ({ output, original: a[output], rerun: b[output] }));
    return { stage: id, kind, same: differs.length === 0, differs };
  });
  const trainedWithDiffers = runtimeDiff(original.trainedWith, rerun.trainedWith);
  const reproduced = !!original.modelHash && original.modelHash === rerun.modelHash;
  const out: Reproduction = { reproduced, original, rerun, stages, trainedWithDiffers, verdict: '' };
  if (reproduced) {
    out.verdict = `reproduced: same model bytes (sha256 ${original.modelHash})`;
    return out;
  }
  const firstData = stages.find((s) => s.same === false);
  const unknown = stages.find((s) => s.same === null);
  if (firstData) {
    out.divergedAt = { stage: firstData.stage, kind: firstData.kind, what: 'data' };
    const d = firstData.differs[0]!;
    // Ingest's dataHash is over the source files' bytes: the clearest way to say the source changed.
    const which = firstData.differs.find((x) => x.output === 'dataHash') ?? d;
    const name = which.output === 'dataHash' ? 'data hash' : `${which.output} hash`;
    out.verdict = `NOT reproduced: the data diverged at stage ${firstData.stage} (${firstData.kind}): its ${name} was ${short(which.original)}, the rerun's is ${short(which.rerun)}; the model's sha256 ${short(original.modelHash)} → ${short(rerun.modelHash)}`;
  } else if (unknown) {
    out.divergedAt = { stage: unknown.stage, kind: unknown.kind, what: 'unknown' };
    out.verdict = `NOT reproduced: other model bytes (sha256 ${short(original.modelHash)} → ${short(rerun.modelHash)}); the trail has no record of stage ${unknown.stage}'s data in ${original.data[unknown.stage] ? 'the rerun' : `run ${original.runId}`}, so where it diverged is not known`;
  } else {
    out.divergedAt = { stage: o.train.id, kind: o.train.kind, what: 'training' };
    out.verdict = `NOT reproduced: the training diverged: stage ${o.train.id} had the same data and made other model bytes (sha256 ${short(original.modelHash)} → ${short(rerun.modelHash)})`;
  }
  const threadsOrCpus = trainedWithDiffers.filter((d) => d.field === 'runtime.threads' || d.field === 'runtime.cpus');
  if (!o.train.threadsPinned && threadsOrCpus.length) {
    const cpus = (t: TrainedWith | undefined) => (rt(t).cpus === undefined ? '?' : String(rt(t).cpus));
    out.threadsNote =
      `likely cause: stage ${o.train.id} does not pin \`threads\`, so onnxruntime used its default (one per physical core), ` +
      `and the original trained on ${threadsText(original.trainedWith)} with ${cpus(original.trainedWith)} cpus, the rerun on ` +
      `${threadsText(rerun.trainedWith)} with ${cpus(rerun.trainedWith)}; the thread count can change a model's bytes. ` +
      `Pin it: set \`threads: N\` under stages.${o.train.id}.with in the pipeline (the same N wherever it trains)`;
  }
  return out;
}

function rt(t: TrainedWith | undefined): Record<string, unknown> {
  return t?.runtime && typeof t.runtime === 'object' ? (t.runtime as Record<string, unknown>) : {};
}

function threadsText(t: TrainedWith | undefined): string {
  const n = rt(t).threads;
  return typeof n === 'number' ? `${n} thread${n === 1 ? '' : 's'}` : "onnxruntime's default threads";
}

/** The fields of two trainings' device and runtime that differ (`device`, `runtime.threads`, …). */
function runtimeDiff(a: TrainedWith | undefined, b: TrainedWith | undefined): Reproduction['trainedWithDiffers'] {
  if (!a || !b) return [];
  const flat = (t: TrainedWith) => ({
    device: t.device,
    ...Object.fromEntries(Object.entries(rt(t)).map(([k, v]) => [`runtime.${k}`, v])),
    ...(t.resumedFromStep !== undefined ? { resumedFromStep: t.resumedFromStep } : {}),
  });
  const [x, y] = [flat(a), flat(b)] as Record<string, unknown>[];
  return [...new Set([...Object.keys(x!), ...Object.keys(y!)])]
    .filter((k) => canonicalJson(x![k] ?? null) !== canonicalJson(y![k] ?? null))
    .map((field) => ({ field, original: x![field], rerun: y![field] }));
}
