/**
 * Scheduled retraining on Temporal Schedules. A schedule's action starts `pipelineRun` with a
 * pipeline planned once, from spec bytes that are also kept in the artifact store, so every run of
 * the schedule executes exactly the spec that was scheduled until `update` is given a new file.
 *
 * Temporal never lets a schedule's own memo change after creation, so the current spec, params and
 * timing text also travel in the action's workflow memo, which `update` rewrites; `describe` reads
 * that one.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { dirname, extname, resolve } from 'node:path';
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  WorkflowFailedError,
  type Client,
  type ScheduleDescription,
  type ScheduleOptions,
  type ScheduleOptionsStartWorkflowAction,
  type ScheduleSpec,
} from '@temporalio/client';
import { openAudit, type AuditLog } from '../src/audit/log.ts';
import { keptScheduleDetails } from '../src/audit/redact-spec.ts';
import { useOpen, type KeptOpen } from '../src/db/kept-open.ts';
import { InputError } from '../src/errors.ts';
import { formatDuration } from '../src/spec/duration.ts';
import { forEachInFlight } from '../src/util/in-flight.ts';
import { decodeSource, loadSpecText, parseParamOverrides, type KindRegistry, type SpecError } from '../src/spec/index.ts';
import type { ArtifactStore } from '../src/store/artifact-store.ts';
import { currentVersion } from '../src/registry/current.ts';
import { missingMetricText, productionReading } from '../src/triggers/run-gate.ts';
import type { RunBackends, RunGateResult, RunGateSpec, RunInput, RunStatus } from '../workflows/types.ts';
import { PayloadKeyError } from '../infra/payload-codec.ts';
import { WORKFLOW_TYPE } from './runs.ts';
import { ENCRYPTED_FIELD, listingClient, orMarked, unreadableReason } from './payloads.ts';
import { pipelineAttributes } from './pipeline-attribute.ts';
import { specCron } from './calendar-text.ts';

/** A schedule's timing where Temporal's spec is not one cron expression or interval (changed outside tempered). */
export const NO_TIMING_TEXT = 'not one cron or interval (temporal schedule describe shows it)';

/** Overlap policies by their command-line names. */
export const OVERLAP_POLICIES = {
  skip: 'SKIP',
  'buffer-one': 'BUFFER_ONE',
  'buffer-all': 'BUFFER_ALL',
  'cancel-other': 'CANCEL_OTHER',
  'terminate-other': 'TERMINATE_OTHER',
  'allow-all': 'ALLOW_ALL',
} as const;
export type OverlapName = keyof typeof OVERLAP_POLICIES;
type OverlapPolicy = (typeof OVERLAP_POLICIES)[OverlapName];

/** When a schedule fires: exactly one of `cron` / `everyMs`. */
export interface ScheduleTiming {
  cron?: string;
  everyMs?: number;
  jitterMs?: number;
  catchupWindowMs?: number;
  overlap: OverlapName;
}

/** A cron expression that names no time zone of its own (CRON_TZ=... or TZ=...): Temporal reads it as UTC. */
export function cronInUtc(cron: string | undefined): boolean {
  return !!cron && !/^(CRON_TZ|TZ)=/.test(cron);
}

/** The spec a schedule runs, as recorded in its memo. */
export interface ScheduledSpec {
  pipeline: string;
  /** The planned pipeline's hash (resolved spec with params), the same hash runs and the audit log carry. */
  specHash: string;
  /** The spec file's exact bytes in the artifact store. */
  specUri: string;
  /** Absolute path the spec was read from; relative data paths resolve against its folder. */
  file: string;
  /** `--param k=v` overrides as given, so `update` can replan the stored bytes. */
  params: string[];
}

export interface ScheduleConfig {
  name: string;
  taskQueue: string;
  input: RunInput;
  spec: ScheduledSpec;
  timing: ScheduleTiming;
  paused?: boolean;
  note?: string;
}

export interface RecentAction {
  /** Workflow id: the schedule name plus the action's time to the second. */
  runId: string;
  /**
   * Temporal's id of this execution. Two actions in the same second (two triggers, say) share a
   * workflow id, so this is what tells them apart.
   */
  executionRunId: string;
  scheduledAt: string;
  takenAt: string;
}

export interface ScheduleView {
  name: string;
  spec: ScheduledSpec;
  /** Timing as given (cron text or interval), for people; Temporal stores a compiled form. */
  timing: { cron?: string; every?: string; jitter?: string; catchupWindow: string; overlap: OverlapName };
  /**
   * The schedule's own gate (its flags). `{}` is an explicit "no gate" (`update --no-gate`): the
   * pipeline file's `triggers` are off too. Absent: runs use the file's triggers, if any.
   */
  gate?: RunGateSpec;
  /** The pipeline file's own `triggers`, which gate every run unless the schedule has a gate of its own. */
  pipelineTriggers?: RunGateSpec;
  taskQueue: string;
  actor: string;
  paused: boolean;
  note?: string;
  nextRuns: string[];
  recentActions: RecentAction[];
  runningRuns: string[];
  actionsTaken: number;
  skippedOverlap: number;
  missedCatchupWindow: number;
  createdAt: string;
  updatedAt?: string;
  /**
   * Set where this process lacks the key the schedule's action and memo were encrypted with (TEMPERED_PAYLOAD_KEY):
   * the codec's error, naming the key id and the variable. The view is then what Temporal keeps in clear
   * (lockedView): the spec's fields and the actor read ENCRYPTED_FIELD, params are empty and the gates absent, though
   * not known to be none; a cron's text is Temporal's calendar written back as cron.
   */
  encrypted?: string;
}

export interface RecentRun extends RecentAction {
  /** Workflow state: running, succeeded, failed, cancelled, terminated, timed_out. */
  state: string;
  /** The run gate's verdict when the run had one. */
  gate?: RunGateResult;
  error?: string;
  /** Set where the run's result (its gate) or error is encrypted with a key this process lacks: the codec's error. */
  encrypted?: string;
}

// ---------------------------------------------------------------------------------------------
// Planning what a schedule runs.

export class SpecLoadError extends Error {
  override name = 'SpecLoadError';
  constructor(
    readonly errors: SpecError[],
    file: string,
  ) {
    super(`${errors.length} error${errors.length === 1 ? '' : 's'} in ${file}`);
  }
}

function mediaTypeOf(file: string): string {
  return extname(file).toLowerCase() === '.json' ? 'application/json' : 'application/yaml';
}

/** What planning a scheduled run needs besides the spec source. */
interface PlanContext {
  params: string[];
  registry: KindRegistry;
  store: ArtifactStore;
  actor: string;
  name: string;
  /** Passed on as given: `{}` is an explicit "no gate", which also turns off the file's `triggers`. */
  gate?: RunGateSpec;
  /** The scheduling process's store and database, recorded in every run the schedule starts (RunOptions.backends). */
  backends?: RunBackends;
  /**
   * Params the pipeline does not declare are dropped instead of refused (params kept from the
   * schedule when `update` gives it another file); the dropped ones come back in `dropped`.
   */
  dropUndeclared?: boolean;
}

export interface PlannedRun {
  input: RunInput;
  spec: ScheduledSpec;
  /** `--param` values left out because the pipeline declares no such parameter (with `dropUndeclared`). */
  dropped?: string[];
}

/**
 * Reads the spec file once, stores those bytes and plans from the same bytes, so the stored spec
 * is exactly the one that runs even if the file changes meanwhile.
 */
export async function planScheduledRun(o: PlanContext & { file: string }): Promise<PlannedRun> {
  const file = resolve(o.file);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? 'no such file' : `cannot read the file: ${(e as Error).message}`, {
      where: o.file,
      hint: 'give the path of a pipeline .yaml or .json file',
    });
  }
  return planFromBytes({ ...o, file, bytes });
}

/** Replans stored spec bytes with other params (an `update` without a new file). */
export async function replanStoredSpec(o: PlanContext & { spec: ScheduledSpec }): Promise<PlannedRun> {
  const bytes = await readFile(await o.store.localPath(o.spec.specUri));
  return planFromBytes({ ...o, file: o.spec.file, bytes, storedUri: o.spec.specUri });
}

async function planFromBytes(o: PlanContext & { file: string; bytes: Buffer; storedUri?: string }): Promise<PlannedRun> {
  const parsed = parseParamOverrides(o.params);
  if (parsed.errors.length > 0) throw new SpecLoadError(parsed.errors, '--param');
  const text = decodeSource(o.bytes, o.file);
  if (!text.ok) throw new SpecLoadError([text.error], o.file);
  const load = (overrides: Record<string, string>) =>
    loadSpecText(text.text, o.file, { ...o.registry, paramOverrides: overrides, baseDir: dirname(o.file) });
  let params = [...o.params];
  let dropped: string[] = [];
  let res = load(parsed.overrides);
  if (!res.ok && o.dropUndeclared) {
    const undeclared = new Set(
      res.errors.filter((e) => e.code === 'unknown-param' && e.path.startsWith('params.')).map((e) => e.path.slice('params.'.length)),
    );
    if (undeclared.size > 0) {
      const name = (p: string) => p.slice(0, p.indexOf('='));
      dropped = params.filter((p) => undeclared.has(name(p)));
      params = params.filter((p) => !undeclared.has(name(p)));
      res = load(Object.fromEntries(Object.entries(parsed.overrides).filter(([k]) => !undeclared.has(k))));
    }
  }
  if (!res.ok) throw new SpecLoadError(res.errors, o.file);
  const specUri = o.storedUri ?? (await o.store.putBytes(o.bytes, { mediaType: mediaTypeOf(o.file) })).uri;
  const input: RunInput = {
    plan: res.plan,
    options: {
      baseDir: dirname(o.file),
      actor: o.actor,
      specFile: o.file,
      scheduleId: o.name,
      ...(o.gate ? { gate: o.gate } : {}),
      ...(o.backends ? { backends: o.backends } : {}),
    },
  };
  return {
    input,
    spec: { pipeline: res.plan.name, specHash: res.plan.specHash, specUri, file: o.file, params },
    ...(dropped.length ? { dropped } : {}),
  };
}

/**
 * A `--trigger-metric` (or the file's `metricBelow`) on a model that exists but lacks the metric
 * would retrain on every run; returns what is wrong (with the metrics the version has), a note
 * when the model is not registered yet, or nothing when the metric is there.
 */
export async function checkMetricTrigger(
  registryDb: string,
  gate: RunGateSpec | undefined,
): Promise<{ problem?: string; hint?: string; note?: string }> {
  const below = gate?.metricBelow;
  if (!below) return {};
  const alias = below.alias ?? 'production';
  const reading = productionReading(await currentVersion(registryDb, below.model, alias), below.metric);
  if (!reading) return { note: `no model ${below.model}@${alias} is registered yet; until one is, every run retrains (the trigger fires)` };
  const { version, value, metrics } = reading;
  if (value !== undefined) return {};
  const asked = below.metric.toLowerCase();
  const like = metrics.find((m) => m.toLowerCase().startsWith(asked)) ?? metrics.find((m) => m.toLowerCase().includes(asked)) ?? metrics[0];
  return {
    problem: missingMetricText(below.model, alias, version, below.metric, metrics),
    hint: metrics.length
      ? `name one of its metrics, e.g. ${below.model}${below.alias ? `@${below.alias}` : ''}:${like}:${below.threshold}; otherwise every run would retrain`
      : 'the version records no metrics; every run would retrain',
  };
}

// ---------------------------------------------------------------------------------------------
// Talking to Temporal.

function timingSpec(t: ScheduleTiming): ScheduleSpec {
  const spec: ScheduleSpec = t.cron ? { cronExpressions: [t.cron] } : { intervals: [{ every: t.everyMs! }] };
  if (t.jitterMs) spec.jitter = t.jitterMs;
  return spec;
}

function timingText(t: ScheduleTiming): Record<string, string> {
  const out: Record<string, string> = t.cron ? { cron: t.cron } : { every: formatDuration(t.everyMs!) };
  if (t.jitterMs) out.jitter = formatDuration(t.jitterMs);
  return out;
}

/**
 * Every run of the schedule gets this same input: a `cache: false` training names its own checkpoint folder from its
 * run's id (RunOptions.uncachedCheckpointsFromRunId), as submitRun names one for a submitted run, not the work's, where
 * another run's checkpoint may be. Set on every create and update, so a schedule made before 8 Dec 2026 has it once updated.
 */
function withRunCheckpoints(input: RunInput): RunInput {
  if (!input.plan.stages.some((s) => s.uses === 'train' && s.cache === false)) return input;
  return { ...input, options: { ...input.options, uncachedCheckpointsFromRunId: true } };
}

function action(cfg: ScheduleConfig): ScheduleOptionsStartWorkflowAction<never> {
  return {
    type: 'startWorkflow',
    workflowType: WORKFLOW_TYPE,
    taskQueue: cfg.taskQueue,
    // Temporal appends the scheduled time, giving run ids like `nightly-2026-01-01T03:00:00Z`.
    workflowId: cfg.name,
    args: [withRunCheckpoints(cfg.input)] as never,
    // Same keys as submitted runs (so `tempered runs` lists these too), plus what the schedule runs.
    memo: {
      pipeline: cfg.spec.pipeline,
      specHash: cfg.spec.specHash,
      actor: cfg.input.options.actor,
      resumeOf: '',
      scheduleId: cfg.name,
      specUri: cfg.spec.specUri,
      file: cfg.spec.file,
      params: cfg.spec.params,
      timing: timingText(cfg.timing),
    },
  };
}

/** The options `client.schedule.create` receives. */
export function scheduleOptions(cfg: ScheduleConfig): ScheduleOptions<ScheduleOptionsStartWorkflowAction<never>> {
  if (!cfg.timing.cron === !cfg.timing.everyMs)
    throw new InputError('give exactly one of a cron expression or an interval', { where: 'timing' });
  return {
    scheduleId: cfg.name,
    spec: timingSpec(cfg.timing),
    action: action(cfg),
    policies: {
      overlap: OVERLAP_POLICIES[cfg.timing.overlap],
      ...(cfg.timing.catchupWindowMs !== undefined ? { catchupWindow: cfg.timing.catchupWindowMs } : {}),
    },
    memo: { tempered: 1, pipeline: cfg.spec.pipeline, specHash: cfg.spec.specHash, specUri: cfg.spec.specUri, file: cfg.spec.file },
    state: { paused: !!cfg.paused, ...(cfg.note ? { note: cfg.note } : {}) },
  };
}

/**
 * Server-side rejections of bad values (a cron minute of 61, a bad time zone) are input errors too;
 * the SDK raises an invalid schedule spec as TypeError and other invalid arguments as ServiceError.
 */
function rethrowInvalid(e: unknown, where: string): never {
  const hint = 'check --cron, --every, --jitter and --catchup-window';
  if (e instanceof TypeError) throw new InputError(`invalid schedule: ${e.message}`, { where, hint });
  const cause = (e as { cause?: { code?: number; details?: string } }).cause;
  if (cause?.code === 3 /* INVALID_ARGUMENT */)
    throw new InputError(`Temporal rejected the schedule: ${cause.details ?? (e as Error).message}`, { where, hint });
  throw e;
}

export async function createSchedule(client: Client, cfg: ScheduleConfig): Promise<void> {
  try {
    const opts = scheduleOptions(cfg);
    // Its runs carry the pipeline's name for the Runs page's filter, where the namespace has the attribute.
    await client.schedule.create({ ...opts, action: { ...opts.action, ...(await pipelineAttributes(client, cfg.spec.pipeline)) } });
  } catch (e) {
    if (e instanceof ScheduleAlreadyRunning) {
      throw new InputError(`a schedule named '${cfg.name}' already exists`, {
        hint: `change it with \`tempered schedule update ${cfg.name}\`, or delete it first`,
      });
    }
    rethrowInvalid(e, cfg.name);
  }
}

async function describeRaw(client: Client, name: string): Promise<ScheduleDescription> {
  try {
    return await client.schedule.getHandle(name).describe();
  } catch (e) {
    if (e instanceof ScheduleNotFoundError) throw notFound(name);
    throw e;
  }
}

function notFound(name: string): InputError {
  return new InputError(`no schedule named '${name}'`, { hint: 'list schedules with `tempered schedule list`' });
}

const OVERLAP_BY_POLICY = Object.fromEntries(Object.entries(OVERLAP_POLICIES).map(([k, v]) => [v, k])) as Record<
  OverlapPolicy,
  OverlapName
>;

function iso(d: Date | undefined): string | undefined {
  return d ? d.toISOString() : undefined;
}

/**
 * Temporal needs a note to pause or unpause; without `--note` tempered writes one of these, which
 * are not notes anyone wrote, so they are not shown (nor kept by `update`).
 */
const DEFAULT_NOTES = new Set([
  'paused with tempered',
  'unpaused with tempered',
  'Paused via TypeScript SDK"',
  'Unpaused via TypeScript SDK"',
]);

function shownNote(note: string | undefined): string | undefined {
  return note && !DEFAULT_NOTES.has(note) ? note : undefined;
}

/** The schedule's current definition and state, read back from Temporal. */
export async function readSchedule(
  client: Client,
  name: string,
): Promise<{ view: ScheduleView; config: ScheduleConfig; raw: ScheduleDescription }> {
  return fromDescription(await describeRaw(client, name), name);
}

/**
 * The schedule's view (readSchedule's); where this process lacks the key its action and memo were encrypted with, what
 * Temporal keeps in clear (lockedView) instead of failing. For showing a schedule, not for changing it: a definition
 * written back without the key would go to Temporal unencrypted.
 */
export async function scheduleView(client: Client, name: string): Promise<ScheduleView> {
  const d = await orMarked(client, (c) => describeRaw(c, name));
  const why = encryptedReason(d);
  return why ? lockedView(d, name, why) : fromDescription(d, name).view;
}

/** Why the description's action or memo is not there: the codec's error, where listingClient marked one; else undefined. */
function encryptedReason(d: ScheduleDescription): string | undefined {
  const marked = [d.action.args?.[0], ...Object.values(d.action.memo ?? {}), ...Object.values(d.memo ?? {})];
  return marked.map(unreadableReason).find((r) => r !== undefined);
}

/** What a schedule's view holds that Temporal keeps in clear: its state, policies, timetable and actions. */
function clearView(d: ScheduleDescription, name: string): Omit<ScheduleView, 'spec' | 'timing' | 'actor' | 'gate' | 'pipelineTriggers'> {
  return {
    name,
    taskQueue: d.action.taskQueue,
    paused: d.state.paused,
    note: shownNote(d.state.note),
    nextRuns: d.info.nextActionTimes.map((t) => t.toISOString()),
    recentActions: d.info.recentActions.map((a) => ({
      runId: a.action.workflow.workflowId,
      executionRunId: a.action.workflow.firstExecutionRunId,
      scheduledAt: a.scheduledAt.toISOString(),
      takenAt: a.takenAt.toISOString(),
    })),
    runningRuns: d.info.runningActions.map((a) => a.workflow.workflowId),
    actionsTaken: d.info.numActionsTaken,
    skippedOverlap: d.info.numActionsSkippedOverlap,
    missedCatchupWindow: d.info.numActionsMissedCatchupWindow,
    createdAt: d.info.createdAt.toISOString(),
    updatedAt: iso(d.info.lastUpdatedAt),
  };
}

/** A schedule's view from a description whose action and memo this process could not decrypt (`why`). */
function lockedView(d: ScheduleDescription, name: string, why: string): ScheduleView {
  if (d.action.workflowType !== WORKFLOW_TYPE) throw notTempered(name, d.action.workflowType);
  return {
    ...clearView(d, name),
    spec: { pipeline: ENCRYPTED_FIELD, specHash: ENCRYPTED_FIELD, specUri: ENCRYPTED_FIELD, file: ENCRYPTED_FIELD, params: [] },
    timing: {
      ...clearTiming(d),
      ...(d.spec.jitter ? { jitter: formatDuration(d.spec.jitter) } : {}),
      catchupWindow: formatDuration(d.policies.catchupWindow),
      overlap: OVERLAP_BY_POLICY[d.policies.overlap as OverlapPolicy] ?? 'skip',
    },
    actor: ENCRYPTED_FIELD,
    encrypted: why,
  };
}

/**
 * The timing in Temporal's spec as tempered writes one, one interval or one cron expression; neither for a spec
 * changed outside tempered (several of them, an offset, exclusions, a start or end), which one such text would misstate.
 */
function clearTiming(d: ScheduleDescription): { every?: string; cron?: string } {
  const raw = d.raw.schedule?.spec;
  const intervals = d.spec.intervals ?? [];
  if (raw?.excludeStructuredCalendar?.length || raw?.startTime || raw?.endTime) return {};
  if (intervals.length === 0) {
    const cron = specCron(raw);
    return cron ? { cron } : {};
  }
  return intervals.length === 1 && !intervals[0]!.offset && !raw?.structuredCalendar?.length
    ? { every: formatDuration(intervals[0]!.every) }
    : {};
}

function notTempered(name: string, workflowType: string): InputError {
  return new InputError(`schedule '${name}' exists but does not run a tempered pipeline (it starts ${workflowType})`, {
    hint: 'manage it with the temporal CLI instead',
  });
}

function fromDescription(d: ScheduleDescription, name: string): { view: ScheduleView; config: ScheduleConfig; raw: ScheduleDescription } {
  const why = encryptedReason(d);
  if (why) throw new PayloadKeyError(why);
  const input = d.action.args?.[0] as RunInput | undefined;
  const memo = (d.action.memo ?? {}) as Record<string, unknown>;
  const created = (d.memo ?? {}) as Record<string, unknown>;
  if (d.action.workflowType !== WORKFLOW_TYPE || !input?.plan) throw notTempered(name, d.action.workflowType);
  const spec: ScheduledSpec = {
    pipeline: input.plan.name,
    specHash: input.plan.specHash,
    specUri: String(memo.specUri ?? created.specUri ?? ''),
    file: String(memo.file ?? created.file ?? input.options.specFile ?? ''),
    params: Array.isArray(memo.params) ? (memo.params as string[]) : [],
  };
  const text = (memo.timing ?? {}) as { cron?: string; every?: string; jitter?: string };
  const overlap = OVERLAP_BY_POLICY[d.policies.overlap as OverlapPolicy] ?? 'skip';
  const everyMs = d.spec.intervals?.[0]?.every;
  const timing: ScheduleTiming = {
    ...(text.cron ? { cron: text.cron } : { everyMs }),
    jitterMs: d.spec.jitter || undefined,
    catchupWindowMs: d.policies.catchupWindow,
    overlap,
  };
  const view: ScheduleView = {
    ...clearView(d, name),
    spec,
    timing: {
      ...(text.cron ? { cron: text.cron } : everyMs ? { every: formatDuration(everyMs) } : {}),
      ...(d.spec.jitter ? { jitter: formatDuration(d.spec.jitter) } : {}),
      catchupWindow: formatDuration(d.policies.catchupWindow),
      overlap,
    },
    gate: input.options.gate,
    ...(input.plan.triggers ? { pipelineTriggers: input.plan.triggers } : {}),
    actor: input.options.actor,
  };
  const config: ScheduleConfig = {
    name,
    taskQueue: d.action.taskQueue,
    input,
    spec,
    timing,
    paused: d.state.paused,
    note: shownNote(d.state.note),
  };
  return { view, config, raw: d };
}

/**
 * Replaces the schedule's definition with `next` (what runs, timing, policies) and keeps its
 * paused state and note unless `next` sets them.
 */
export async function updateSchedule(client: Client, next: ScheduleConfig): Promise<void> {
  const handle = client.schedule.getHandle(next.name);
  const opts = scheduleOptions(next);
  const attributes = await pipelineAttributes(client, next.spec.pipeline);
  try {
    await handle.update((prev) => ({
      spec: opts.spec,
      action: { ...opts.action, ...attributes },
      policies: { ...prev.policies, ...opts.policies },
      state: {
        paused: next.paused ?? prev.state.paused,
        note: next.note ?? prev.state.note,
        remainingActions: prev.state.remainingActions,
      },
    }));
  } catch (e) {
    if (e instanceof ScheduleNotFoundError) throw notFound(next.name);
    rethrowInvalid(e, next.name);
  }
}

async function onHandle(client: Client, name: string, f: (h: ReturnType<Client['schedule']['getHandle']>) => Promise<void>): Promise<void> {
  try {
    await f(client.schedule.getHandle(name));
  } catch (e) {
    if (e instanceof ScheduleNotFoundError || /not found/i.test((e as Error).message)) throw notFound(name);
    throw e;
  }
}

export const pauseSchedule = (client: Client, name: string, note?: string) =>
  onHandle(client, name, (h) => h.pause(note ?? 'paused with tempered'));
export const unpauseSchedule = (client: Client, name: string, note?: string) =>
  onHandle(client, name, (h) => h.unpause(note ?? 'unpaused with tempered'));
export const deleteSchedule = (client: Client, name: string) => onHandle(client, name, (h) => h.delete());

/** Starts one run now; without `overlap` the schedule's own policy applies (so `skip` still holds). */
export async function triggerSchedule(client: Client, name: string, overlap?: OverlapName): Promise<void> {
  // Its policies are in clear: read without the key too (orMarked), as a trigger writes no payload.
  const policy = overlap ? OVERLAP_POLICIES[overlap] : (await orMarked(client, (c) => describeRaw(c, name))).policies.overlap;
  await onHandle(client, name, (h) => h.trigger(policy));
}

/** What became of a trigger: the run it started, that the overlap policy skipped it, or neither yet (`{}`). */
export interface TriggerOutcome {
  runId?: string;
  skipped?: boolean;
}

/**
 * Waits briefly (up to 10 s) for the server to act on a trigger of the schedule `before` was read from, for the trail
 * and the person who asked: the run it started, or that the overlap policy skipped it. Read as scheduleView reads, so
 * without the key too (its actions and counts are in clear): the dashboard's trigger without the key recorded no run.
 */
export async function triggerOutcome(client: Client, name: string, before: ScheduleView): Promise<TriggerOutcome> {
  for (let i = 0; i < 40; i++) {
    // The trigger happened whatever this read meets (the schedule deleted meanwhile, the server away): an outcome not
    // known must not keep the trigger out of the trail, so it is recorded without one.
    const view = await scheduleView(client, name).catch(() => undefined);
    if (!view) return {};
    if (view.actionsTaken > before.actionsTaken) return { runId: view.recentActions.at(-1)?.runId };
    if (view.skippedOverlap > before.skippedOverlap) return { skipped: true };
    await sleep(250);
  }
  return {};
}

/** Takes the actions the schedule would have taken in [from, to], under `overlap` or the schedule's policy. */
export async function backfillSchedule(client: Client, name: string, from: Date, to: Date, overlap?: OverlapName): Promise<void> {
  if (!(from.getTime() < to.getTime()))
    throw new InputError(`--from ${from.toISOString()} is not before --to ${to.toISOString()}`, {
      where: '--from',
      hint: 'give a time range that starts before it ends',
    });
  // A range reaching into the future would start those runs at once, not when their time comes.
  if (to.getTime() > Date.now())
    throw new InputError(`--to ${to.toISOString()} is in the future`, {
      where: '--to',
      hint: 'backfill only takes actions whose time has passed; give a --to no later than now (the timetable takes the later ones)',
    });
  // Whether it exists (a clear error if not), without the key too: a backfill writes no payload.
  await orMarked(client, (c) => describeRaw(c, name));
  await onHandle(client, name, (h) => h.backfill({ start: from, end: to, ...(overlap ? { overlap: OVERLAP_POLICIES[overlap] } : {}) }));
}

export interface ScheduleListItem {
  name: string;
  pipeline: string;
  specHash: string;
  timing: string;
  paused: boolean;
  note?: string;
  nextRun?: string;
  /** ScheduleView.encrypted: pipeline and specHash read ENCRYPTED_FIELD. */
  encrypted?: string;
}

/**
 * Tempered's schedules. Listing is eventually consistent in Temporal, so each listed schedule is
 * described for its current spec and state; ones deleted in between are left out.
 */
export async function listSchedules(client: Client): Promise<ScheduleListItem[]> {
  return (await listScheduleViews(client)).map((s) => s.item);
}

/** Schedules described at once while listing them. */
const DESCRIBED_AT_ONCE = 8;

/**
 * Every tempered schedule, by name, with its view: one describe each, a few at a time. The dashboard's
 * Schedules page (polled every 3 s) described each schedule twice, one after another.
 */
export async function listScheduleViews(client: Client): Promise<{ item: ScheduleListItem; view: ScheduleView }[]> {
  const names: string[] = [];
  // Through listingClient: a memo this process cannot decrypt is marked, not failing the listing; such a schedule is
  // tempered's by the workflow its action starts, which Temporal keeps in clear.
  for await (const s of listingClient(client).schedule.list()) {
    const tempered = (s.memo as Record<string, unknown> | undefined)?.tempered;
    if (unreadableReason(tempered) !== undefined ? s.action?.workflowType === WORKFLOW_TYPE : tempered) names.push(s.scheduleId);
  }
  names.sort();
  const views: (ScheduleView | undefined)[] = new Array(names.length);
  await forEachInFlight(names.keys(), DESCRIBED_AT_ONCE, async (i) => {
    try {
      views[i] = await scheduleView(client, names[i]!);
    } catch (e) {
      // Deleted since it was listed, or not a tempered pipeline's schedule after all.
      if (!(e instanceof InputError)) throw e;
    }
  });
  return views.flatMap((view) =>
    view
      ? [
          {
            item: {
              name: view.name,
              pipeline: view.spec.pipeline,
              specHash: view.spec.specHash,
              timing: view.timing.cron ? `cron ${view.timing.cron}` : view.timing.every ? `every ${view.timing.every}` : NO_TIMING_TEXT,
              paused: view.paused,
              note: view.note,
              nextRun: view.nextRuns[0],
              ...(view.encrypted ? { encrypted: view.encrypted } : {}),
            },
            view,
          },
        ]
      : [],
  );
}

/** What became of the schedule's recent runs, newest first; reads results from history, so no worker is needed. */
export async function recentRuns(client: Client, view: ScheduleView, limit = 10, closed?: ClosedRuns): Promise<RecentRun[]> {
  const actions = [...view.recentActions].reverse().slice(0, limit);
  return Promise.all(
    actions.map(async (a): Promise<RecentRun> => {
      if (!closed) return recentRun(client, a);
      const key = `${a.runId}/${a.executionRunId}`;
      const known = closed.get(key);
      if (known) return { ...a, ...known };
      const run = await recentRun(client, a);
      if (run.state !== 'running' && run.state !== 'unknown') closed.remember(key, run);
      return run;
    }),
  );
}

/** A schedule's latest ended run, and how many of its latest ended runs in a row did not succeed. */
export interface LastOutcome {
  last?: RecentRun;
  /** Counted among the runs Temporal remembers (its last 10 actions): `failedInARowAtLeast` when older ones may have failed too. */
  failedInARow: number;
  failedInARowAtLeast: boolean;
}

const NOT_SUCCEEDED = new Set(['failed', 'terminated', 'timed_out', 'cancelled']);

/**
 * How the schedule's runs have been ending, for a list of schedules: a schedule failing night after night shows there,
 * not only in its own describe. The ended runs are read newest first, one at a time, until one did not fail, so a
 * healthy schedule costs one run's look-up and a running one is passed over. Only the latest ended run's error or gate
 * is shown: the others are described, their results not read.
 */
export async function lastOutcome(client: Client, view: ScheduleView): Promise<LastOutcome> {
  const actions = [...view.recentActions].reverse();
  let last: RecentRun | undefined;
  let failedInARow = 0;
  for (const a of actions) {
    // The latest ended run's gate too: one its gate skipped as unchanged read 'last succeeded', as one that retrained.
    const run = await recentRun(client, a, { gate: !last, error: !last });
    if (run.state === 'running') continue;
    last ??= run;
    if (!NOT_SUCCEEDED.has(run.state)) return { last, failedInARow, failedInARowAtLeast: false };
    failedInARow++;
  }
  // Every remembered run failed: the streak began before them unless they are all the schedule ever took.
  return { last, failedInARow, failedInARowAtLeast: failedInARow > 0 && view.actionsTaken > actions.length };
}

/**
 * What became of runs that have ended, by workflow and execution id: an ended run's state, gate and
 * error never change, so a caller asking again and again (the dashboard's Schedules page, every 3 s)
 * reads each from Temporal once instead of a describe and a history fetch per run per poll.
 */
export class ClosedRuns {
  private readonly runs = new Map<string, RecentRun>();
  constructor(private readonly max = 5000) {}
  get(key: string): RecentRun | undefined {
    return this.runs.get(key);
  }
  remember(key: string, run: RecentRun): void {
    this.runs.set(key, run);
    // The oldest remembered first (a Map keeps insertion order): schedules' recent runs move on.
    for (const k of this.runs.keys()) {
      if (this.runs.size <= this.max) break;
      this.runs.delete(k);
    }
  }
}

/**
 * `gate: false` / `error: false`: a succeeded run's gate, or a failed run's error, is not wanted, so its result (a
 * history read) is not fetched: the state alone is one describe.
 */
async function recentRun(client: Client, a: RecentAction, want: { gate?: boolean; error?: boolean } = {}): Promise<RecentRun> {
  const h = client.workflow.getHandle(a.runId, a.executionRunId);
  try {
    // Its state needs none of its payloads: without the key, described again through listingClient, whose codec marks
    // the memo. Its result (the gate) and error are payloads: without the key, marked.
    const d = await orMarked(client, (c) => c.workflow.getHandle(a.runId, a.executionRunId).describe());
    const state = d.status.name === 'COMPLETED' ? 'succeeded' : d.status.name.toLowerCase();
    try {
      if (d.status.name === 'COMPLETED' && want.gate !== false) {
        const st = (await h.result()) as RunStatus;
        return { ...a, state, ...(st.gate ? { gate: st.gate } : {}) };
      }
      if (d.status.name === 'FAILED' && want.error !== false) {
        const error = await h.result().then(
          () => undefined,
          (e: unknown) => {
            if (e instanceof PayloadKeyError) throw e;
            return e instanceof WorkflowFailedError ? (e.cause?.message ?? e.message) : (e as Error).message;
          },
        );
        return { ...a, state, error };
      }
    } catch (e) {
      if (!(e instanceof PayloadKeyError)) throw e;
      // The state is in clear; the gate's verdict or the error is not.
      return { ...a, state, ...(d.status.name === 'FAILED' ? { error: ENCRYPTED_FIELD } : {}), encrypted: e.message };
    }
    return { ...a, state };
  } catch (e) {
    return { ...a, state: 'unknown', error: (e as Error).message };
  }
}

// ---------------------------------------------------------------------------------------------
// Audit trail.

export type ScheduleChange = 'created' | 'updated' | 'paused' | 'unpaused' | 'triggered' | 'backfilled' | 'deleted';

/**
 * The spec hash and details of the audit record of a change made from what scheduleView read (pause, unpause, trigger,
 * backfill: none writes a payload, so each works without the key). Without the key the spec hash is in the encrypted
 * definition: left out, and the record says which key it lacked (`details.encrypted`). The CLI and the dashboard both.
 */
export function viewedChangeAudit(
  view: ScheduleView,
  details: Record<string, unknown>,
): { specHash?: string; details: Record<string, unknown> } {
  return view.encrypted ? { details: { ...details, encrypted: view.encrypted } } : { specHash: view.spec.specHash, details };
}

/** Appends `schedule.<change>` for the schedule, with who did it, the options and the spec hash. */
export async function auditScheduleChange(
  auditDb: string | KeptOpen<AuditLog>,
  change: ScheduleChange,
  e: { name: string; actor: string; specHash?: string; details: Record<string, unknown> },
): Promise<void> {
  await useOpen(auditDb, openAudit, (audit) =>
    audit.append({
      action: `schedule.${change}`,
      subject: e.name,
      actor: e.actor,
      ...(e.specHash ? { specHash: e.specHash } : {}),
      // Canonical JSON refuses undefined; drop absent options rather than fail the record. The append-only trail keeps
      // no credential given in a --param (src/audit/redact-spec.ts).
      details: keptScheduleDetails(JSON.parse(JSON.stringify(e.details)) as Record<string, unknown>),
    }),
  );
}
