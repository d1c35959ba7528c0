/** `tempered schedule`: retrain on a timetable with Temporal Schedules. */
import type { Client } from '@temporalio/client';
import {
  auditScheduleChange,
  backfillSchedule,
  checkMetricTrigger,
  createSchedule,
  deleteSchedule,
  lastOutcome,
  listScheduleViews,
  pauseSchedule,
  planScheduledRun,
  readSchedule,
  recentRuns,
  replanStoredSpec,
  scheduleView,
  SpecLoadError,
  triggerSchedule,
  cronInUtc,
  triggerOutcome,
  unpauseSchedule,
  updateSchedule,
  viewedChangeAudit,
  type LastOutcome,
  type PlannedRun,
  type RecentRun,
  type ScheduleChange,
  type ScheduleConfig,
  type ScheduleTiming,
  type ScheduleView,
  NO_TIMING_TEXT,
} from '../../client/schedules.ts';
import { ENCRYPTED_FIELD } from '../../client/payloads.ts';
import { readNeedingKey } from './key-needed.ts';
import {
  checkCron,
  checkScheduleName,
  parseDriftTrigger,
  parseDurationOption,
  parseInstant,
  parseMetricTrigger,
  parseOverlap,
} from '../schedule-flags.ts';
import { InputError } from '../../src/errors.ts';
import { forEachInFlight } from '../../src/util/in-flight.ts';
import { formatSpecErrors } from '../../src/spec/index.ts';
import type { RunGateSpec, RunInput } from '../../workflows/types.ts';
import { actor, parse, UsageError } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { hasWorkers } from '../../client/runs.ts';
import { runIndexFor } from '../../src/triggers/shared-run-index.ts';
import { runBackends } from './sharing.ts';
import type { RunBackends } from '../../workflows/types.ts';

const TIMING_USAGE =
  '(--cron "<expr>" | --every <duration>) [--jitter <d>] [--catchup-window <d>] [--overlap skip|buffer-one|buffer-all|cancel-other|terminate-other|allow-all]';
const GATE_USAGE = '[--skip-if-unchanged] [--trigger-metric <model>:<metric>:<threshold>] [--trigger-drift <threshold>]';
const USAGE: Record<string, string> = {
  create: `tempered schedule create <name> --pipeline <file> ${TIMING_USAGE} [--param k=v ...] [--paused] [--note <text>] ${GATE_USAGE} [--json]`,
  list: 'tempered schedule list [--json]',
  describe: 'tempered schedule describe <name> [--json]',
  pause: 'tempered schedule pause <name> [--note <text>]',
  unpause: 'tempered schedule unpause <name> [--note <text>]',
  trigger: 'tempered schedule trigger <name> [--overlap <policy>] [--json]',
  backfill: 'tempered schedule backfill <name> --from <iso> --to <iso> [--overlap <policy>]',
  update: `tempered schedule update <name> [--pipeline <file>] [--param k=v ...] [--cron "<expr>" | --every <d>] [--jitter <d>] [--catchup-window <d>] [--overlap <policy>] [--clear-params] [--note <text>] [--no-gate] ${GATE_USAGE} [--json]`,
  delete: 'tempered schedule delete <name>',
};

function help(): string {
  return `usage:\n${Object.values(USAGE)
    .map((u) => `  ${u}`)
    .join(
      '\n',
    )}\n\nDurations: 30s, 10m, 2h, 1h30m, 1d. Cron: 5 fields (minute hour day-of-month month day-of-week) in UTC, or @daily, @hourly, ...`;
}

const TIMING_OPTIONS = {
  cron: { type: 'string' },
  every: { type: 'string' },
  jitter: { type: 'string' },
  'catchup-window': { type: 'string' },
  overlap: { type: 'string' },
} as const;
const GATE_OPTIONS = {
  'skip-if-unchanged': { type: 'boolean' },
  'trigger-metric': { type: 'string' },
  'trigger-drift': { type: 'string' },
} as const;
const SPEC_OPTIONS = { pipeline: { type: 'string' }, param: { type: 'string', multiple: true } } as const;

/** Library input errors are usage errors here: exit code 2, with the hint. */
async function asUsage<T>(f: () => Promise<T> | T): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof SpecLoadError) {
      console.error(formatSpecErrors(e.errors));
      throw new CliError(e.message, 2);
    }
    if (e instanceof InputError) throw new CliError(`${e.message}${e.hint ? `\n  hint: ${e.hint}` : ''}`, 2);
    throw e;
  }
}

function oneName(positionals: string[], sub: string): string {
  if (positionals.length !== 1) throw new UsageError(`schedule ${sub} takes one schedule name\nusage: ${USAGE[sub]}`);
  return positionals[0]!;
}

interface TimingFlags {
  cron?: string;
  every?: string;
  jitter?: string;
  'catchup-window'?: string;
  overlap?: string;
}

/** The timing the flags ask for, starting from `base` (an update changes only what it names). */
function timingFrom(v: TimingFlags, base: ScheduleTiming | undefined, sub: string): ScheduleTiming {
  if (v.cron !== undefined && v.every !== undefined) throw new UsageError(`give --cron or --every, not both\nusage: ${USAGE[sub]}`);
  if (!base && v.cron === undefined && v.every === undefined)
    throw new UsageError(`say when to run with --cron "<expr>" or --every <duration>\nusage: ${USAGE[sub]}`);
  const t: ScheduleTiming = base ? { ...base } : { overlap: 'skip' };
  if (v.cron !== undefined) {
    t.cron = checkCron(v.cron);
    delete t.everyMs;
  }
  if (v.every !== undefined) {
    t.everyMs = parseDurationOption(v.every, '--every', { minMs: 1000, wholeSeconds: true });
    delete t.cron;
  }
  if (v.jitter !== undefined) t.jitterMs = parseDurationOption(v.jitter, '--jitter');
  if (v['catchup-window'] !== undefined)
    t.catchupWindowMs = parseDurationOption(v['catchup-window'], '--catchup-window', { minMs: 10_000 });
  if (v.overlap !== undefined) t.overlap = parseOverlap(v.overlap);
  return t;
}

interface GateFlags {
  'skip-if-unchanged'?: boolean;
  'trigger-metric'?: string;
  'trigger-drift'?: string;
}

/**
 * The schedule's gate after the flags. `noGate` drops the earlier gate; with no gate flags beside it,
 * the result is `{}`, an explicit "no gate" that the run also prefers to the pipeline file's
 * `triggers` (the workflow uses `options.gate ?? plan.triggers`, and an empty gate lets every run on).
 */
export function gateFrom(v: GateFlags, base: RunGateSpec | undefined, noGate = false): RunGateSpec | undefined {
  const flags = !!v['skip-if-unchanged'] || v['trigger-metric'] !== undefined || v['trigger-drift'] !== undefined;
  if (!flags) return noGate ? {} : base;
  const g: RunGateSpec = { ...(noGate ? {} : (base ?? {})) };
  if (v['skip-if-unchanged']) g.skipIfUnchanged = true;
  if (v['trigger-metric'] !== undefined) g.metricBelow = parseMetricTrigger(v['trigger-metric']);
  if (v['trigger-drift'] !== undefined) g.labelDrift = parseDriftTrigger(v['trigger-drift']);
  return g;
}

/**
 * Refuses a `--trigger-metric` on a registered model that lacks the metric (every run would
 * retrain); the same found in the pipeline file's `triggers` is a warning. A model not registered
 * yet is a note.
 */
async function checkMetric(ctx: CliContext, input: RunInput, v: GateFlags): Promise<void> {
  const own = input.options.gate;
  const gate = own ?? input.plan.triggers;
  const found = await checkMetricTrigger(ctx.paths.registryDb, gate);
  const fromFlags = !!own?.metricBelow;
  if (found.problem && fromFlags && v['trigger-metric'] !== undefined)
    throw new InputError(found.problem, { where: '--trigger-metric', hint: found.hint });
  if (found.problem)
    console.error(
      `warning: ${fromFlags ? "the schedule's --trigger-metric" : "the pipeline file's triggers.metricBelow"}: ${found.problem}; every run will retrain`,
    );
  else if (found.note) console.error(`note: ${found.note}`);
}

/** A schedule with no next run would never fire: refuse it (exit 2) rather than report success. */
function neverFires(view: ScheduleView): InputError | undefined {
  if (view.nextRuns.length > 0) return undefined;
  const what = view.timing.cron ? `cron "${view.timing.cron}"` : `every ${view.timing.every}`;
  return new InputError(`${what} has no next run: the schedule would never fire`, {
    where: view.timing.cron ? '--cron' : '--every',
    hint: 'check the day-of-month and month fields (e.g. "0 3 31 2 *" asks for February 31st)',
  });
}

function withGate(input: RunInput, gate: RunGateSpec | undefined, who: string): RunInput {
  const { gate: _old, ...options } = input.options;
  return { plan: input.plan, options: { ...options, actor: who, ...(gate ? { gate } : {}) } };
}

/** Options as given, for the audit record (absent ones left out). */
function given(values: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([k, v]) => v !== undefined && k !== 'json'));
}

/** Schedules start runs whether or not a worker listens; say so when none does, or the runs just wait. */
async function noteMissingWorker(ctx: CliContext, client: Client): Promise<void> {
  if (!(await hasWorkers(client, ctx.settings().namespace, ctx.taskQueue).catch(() => true))) {
    console.error(
      `note: no worker is polling task queue '${ctx.taskQueue}' yet; scheduled runs wait until one does (\`tempered worker\`).`,
    );
  }
}

function audit(
  ctx: CliContext,
  change: ScheduleChange,
  name: string,
  who: string,
  specHash: string | undefined,
  details: Record<string, unknown>,
): Promise<void> {
  return auditScheduleChange(ctx.paths.auditDb, change, { name, actor: who, specHash, details });
}

/**
 * The schedule's definition, for a change that needs it whole: update writes it back (without the key its action
 * would go to Temporal unencrypted), delete records in the trail what it ran. Without the key that is refused, saying
 * why and what can be done without it: pause, unpause, trigger and backfill change no payload (scheduleView).
 */
function readForChange(client: Client, name: string, sub: 'update' | 'delete'): ReturnType<typeof readSchedule> {
  return readNeedingKey(client, (c) => asUsage(() => readSchedule(c, name)), {
    what: `schedule ${sub} '${name}'`,
    whose: 'the schedule',
    because:
      sub === 'update'
        ? "it writes the schedule's definition back, which without the key would go to Temporal unencrypted"
        : 'the audit record of a deletion keeps the pipeline and spec the schedule ran, which only its encrypted definition holds',
    hint: `pause, unpause, trigger and backfill work without the key (\`tempered schedule pause ${name}\` stops its runs)`,
  });
}

export async function scheduleCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    // As a bare `tempered`: the usage is output when asked for, a usage error's text (stderr, exit 2) when not.
    (sub ? console.log : console.error)(help());
    return sub ? 0 : 2;
  }
  switch (sub) {
    case 'create':
      return createCmd(ctx, rest);
    case 'update':
      return updateCmd(ctx, rest);
    case 'list':
      return listCmd(ctx, rest);
    case 'describe':
      return describeCmd(ctx, rest);
    case 'pause':
    case 'unpause':
      return pauseCmd(ctx, rest, sub);
    case 'trigger':
      return triggerCmd(ctx, rest);
    case 'backfill':
      return backfillCmd(ctx, rest);
    case 'delete':
      return deleteCmd(ctx, rest);
    default:
      throw new UsageError(`unknown schedule command '${sub}'\n${help()}`);
  }
}

async function createCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...SPEC_OPTIONS,
      ...TIMING_OPTIONS,
      ...GATE_OPTIONS,
      paused: { type: 'boolean' },
      note: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE.create!,
  );
  const name = oneName(positionals, 'create');
  if (!values.pipeline) throw new UsageError(`name the pipeline file with --pipeline <file>\nusage: ${USAGE.create}`);
  const who = actor();
  const cfg = await asUsage(async (): Promise<ScheduleConfig> => {
    checkScheduleName(name);
    const timing = timingFrom(values, undefined, 'create');
    const gate = gateFrom(values, undefined);
    const planned = await planScheduledRun({
      file: values.pipeline!,
      params: values.param ?? [],
      registry: ctx.registry,
      store: ctx.store(),
      actor: who,
      name,
      gate,
      backends: await runBackends(ctx),
    });
    await checkMetric(ctx, planned.input, values);
    const { input, spec } = planned;
    return { name, taskQueue: ctx.taskQueue, input, spec, timing, paused: !!values.paused, note: values.note };
  });
  const client = await ctx.client({ startServer: true });
  await asUsage(() => createSchedule(client, cfg));
  const never = neverFires((await readSchedule(client, name)).view);
  if (never) {
    await deleteSchedule(client, name);
    await asUsage(() => {
      throw never;
    });
  }
  await audit(ctx, 'created', name, who, cfg.spec.specHash, {
    ...given(values),
    pipeline: cfg.spec.pipeline,
    file: cfg.spec.file,
    specUri: cfg.spec.specUri,
    taskQueue: cfg.taskQueue,
    gate: cfg.input.options.gate,
  });
  const { view } = await readSchedule(client, name);
  if (values.json) console.log(JSON.stringify(view, null, 2));
  else {
    console.log(
      `created schedule '${name}': pipeline ${view.spec.pipeline} (spec ${view.spec.specHash.slice(0, 12)}), ${whenText(view)}${view.paused ? ', paused' : ''}`,
    );
    if (view.nextRuns[0] && !view.paused) console.log(`  next run ${view.nextRuns[0]}`);
  }
  await noteMissingWorker(ctx, client);
  return 0;
}

async function updateCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...SPEC_OPTIONS,
      ...TIMING_OPTIONS,
      ...GATE_OPTIONS,
      'no-gate': { type: 'boolean' },
      'clear-params': { type: 'boolean' },
      note: { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE.update!,
  );
  const name = oneName(positionals, 'update');
  const changes = given(values);
  if (Object.keys(changes).length === 0) throw new UsageError(`nothing to change; give at least one option\nusage: ${USAGE.update}`);
  const who = actor();
  const client = await ctx.client();
  if (values['clear-params'] && values.param)
    throw new UsageError(`give --param (replaces all params) or --clear-params (back to the defaults), not both\nusage: ${USAGE.update}`);
  const cur = (await readForChange(client, name, 'update')).config;
  let dropped: string[] = [];
  let adopted: RunBackends | undefined;
  const next = await asUsage(async (): Promise<ScheduleConfig> => {
    const timing = timingFrom(values, cur.timing, 'update');
    const gate = gateFrom(values, cur.input.options.gate, !!values['no-gate']);
    const params = values['clear-params'] ? [] : (values.param ?? cur.spec.params);
    // Params kept from the schedule that the new file does not declare are dropped (and said so), not refused.
    const inherited = !values.param && !values['clear-params'];
    // The schedule keeps the store and database it was created with: an update from a shell without the team's settings
    // (a --note from a laptop) must not rebind every later run to that shell's.
    const common = { params, registry: ctx.registry, store: ctx.store(), actor: who, name, gate, backends: cur.input.options.backends };
    // A new file is read and stored afresh; new params alone replan the stored bytes, never the file on disk.
    const planned: PlannedRun = values.pipeline
      ? await planScheduledRun({ ...common, file: values.pipeline, dropUndeclared: inherited })
      : values.param || values['clear-params']
        ? await replanStoredSpec({ ...common, spec: cur.spec })
        : { input: withGate(cur.input, gate, who), spec: cur.spec };
    dropped = planned.dropped ?? [];
    if (values['trigger-metric'] !== undefined || values.pipeline) await checkMetric(ctx, planned.input, values);
    // A schedule created before runs recorded their store and database has none, so its runs are never checked: an
    // update from a shell with shared settings records that shell's (one without, a laptop's, records nothing).
    let input = planned.input;
    if (!cur.input.options.backends) {
      const mine = await runBackends(ctx);
      if (mine.store !== 'local' || mine.database !== 'local') {
        input = { ...input, options: { ...input.options, backends: mine } };
        adopted = mine;
      }
    }
    return { ...cur, timing, input, spec: planned.spec, note: values.note ?? cur.note };
  });
  await asUsage(() => updateSchedule(client, next));
  const never = neverFires((await readSchedule(client, name)).view);
  if (never) {
    // Put the earlier definition back: an update must not leave a schedule that never fires.
    await updateSchedule(client, cur);
    await asUsage(() => {
      throw never;
    });
  }
  if (adopted)
    console.error(
      `note: schedule ${name} recorded no store or database (it was created before runs recorded them); its runs now record this shell's, ${adopted.store} and ${adopted.database}, and workers with others refuse them`,
    );
  if (dropped.length)
    console.error(
      `note: dropped the schedule's --param ${dropped.join(' ')}: pipeline ${next.spec.pipeline} declares no such parameter${dropped.length > 1 ? 's' : ''}`,
    );
  await audit(ctx, 'updated', name, who, next.spec.specHash, {
    ...changes,
    previousSpecHash: cur.spec.specHash,
    specUri: next.spec.specUri,
    file: next.spec.file,
    gate: next.input.options.gate,
    ...(dropped.length ? { droppedParams: dropped } : {}),
  });
  const { view } = await readSchedule(client, name);
  if (values.json) console.log(JSON.stringify(view, null, 2));
  else {
    const specNote =
      cur.spec.specHash === view.spec.specHash
        ? 'spec unchanged'
        : `spec ${cur.spec.specHash.slice(0, 12)} → ${view.spec.specHash.slice(0, 12)}`;
    console.log(`updated schedule '${name}': ${specNote}, ${whenText(view)}`);
  }
  return 0;
}

async function listCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, USAGE.list!);
  if (positionals.length > 0) throw new UsageError(`schedule list takes no arguments\nusage: ${USAGE.list}`);
  const client = await ctx.client();
  const views = await listScheduleViews(client);
  const outcomes: LastOutcome[] = new Array(views.length);
  await forEachInFlight(views.keys(), 8, async (i) => void (outcomes[i] = await lastOutcome(client, views[i]!.view)));
  const items = views.map(({ item }, i) => {
    const { last, failedInARow, failedInARowAtLeast } = outcomes[i]!;
    return {
      ...item,
      ...(last
        ? {
            lastRun: {
              runId: last.runId,
              state: last.state,
              takenAt: last.takenAt,
              ...(last.error ? { error: last.error } : {}),
              ...(last.gate && !last.gate.proceed ? { skipped: last.gate.outcome } : {}),
            },
          }
        : {}),
      failedInARow,
      ...(failedInARowAtLeast ? { failedInARowAtLeast } : {}),
    };
  });
  if (values.json) console.log(JSON.stringify(items, null, 2));
  else if (items.length === 0) console.log('no schedules; create one with `tempered schedule create <name> --pipeline <file> --every 1d`');
  else {
    for (const s of items) {
      const state = s.paused ? `paused${s.note ? ` (${s.note})` : ''}` : `next ${s.nextRun ?? '-'}`;
      console.log(
        `${s.name.padEnd(24)} ${s.pipeline.padEnd(20)} ${s.specHash.slice(0, 12).padEnd(12)}  ${s.timing.padEnd(20)} ${state}${lastText(s)}`,
      );
    }
    noteEncrypted([...views.map(({ item }) => item.encrypted), ...outcomes.map((o) => o.last?.encrypted)], 'schedules list');
  }
  return 0;
}

/**
 * One note, whatever the number of schedules and runs read without their key: which key and which variable (the
 * codec's error, the first met), beside fields that read ENCRYPTED_FIELD.
 */
function noteEncrypted(reasons: (string | undefined)[], what: 'schedules list' | 'describe'): void {
  const why = reasons.find((r) => r !== undefined);
  if (!why) return;
  const fields =
    what === 'describe'
      ? "the spec, params, gate and submitter, and its runs' errors and gate verdicts,"
      : "pipelines, spec hashes and the last runs' errors";
  console.error(`note: ${fields} read ${ENCRYPTED_FIELD} or are left out, as only encrypted payloads hold them: ${why}`);
}

/** The latest ended run, and a failing streak with the first line of the latest error: what an operator scans for. */
function lastText(s: {
  lastRun?: { state: string; takenAt: string; error?: string; skipped?: string };
  failedInARow: number;
  failedInARowAtLeast?: boolean;
}): string {
  if (!s.lastRun) return '';
  const streak = s.failedInARow > 1 ? ` (${s.failedInARow}${s.failedInARowAtLeast ? '+' : ''} in a row)` : '';
  // On the schedule's one line: an ingest error's first line only counts the bad rows, its next names them.
  const oneLine = s.lastRun.error?.replace(/\s*\n\s*/g, ' ');
  const error = oneLine ? `: ${oneLine.length > 240 ? `${oneLine.slice(0, 240)}…` : oneLine}` : '';
  // A run its gate ended before training succeeded too: "last succeeded" said it retrained.
  const state = s.lastRun.skipped ? `skipped (${s.lastRun.skipped})` : s.lastRun.state;
  return `  last ${state} ${s.lastRun.takenAt}${streak}${error}`;
}

function whenText(v: ScheduleView): string {
  const zone = cronInUtc(v.timing.cron) ? ' (UTC)' : '';
  const parts = [v.timing.cron ? `cron "${v.timing.cron}"${zone}` : v.timing.every ? `every ${v.timing.every}` : NO_TIMING_TEXT];
  if (v.timing.jitter) parts.push(`jitter ${v.timing.jitter}`);
  parts.push(`overlap ${v.timing.overlap}`);
  return parts.join(', ');
}

/** The gate that applies to the schedule's runs: its own (flags), else the pipeline file's `triggers`. */
export function gateText(v: Pick<ScheduleView, 'gate' | 'pipelineTriggers'>): string {
  const file = v.pipelineTriggers && Object.keys(v.pipelineTriggers).length > 0 ? v.pipelineTriggers : undefined;
  if (v.gate && Object.keys(v.gate).length === 0)
    return file ? "none (--no-gate: every run retrains; the pipeline file's triggers are off)" : 'none (every run retrains)';
  if (v.gate) return specText(v.gate) + (file ? " (the schedule's own; the pipeline file's triggers do not apply)" : '');
  return file ? `${specText(file)} (from the pipeline file's triggers)` : 'none (every run retrains)';
}

function specText(g: RunGateSpec): string {
  const parts: string[] = [];
  if (g.metricBelow)
    parts.push(
      `retrain when ${g.metricBelow.model}@${g.metricBelow.alias ?? 'production'} ${g.metricBelow.metric} < ${g.metricBelow.threshold}`,
    );
  if (g.labelDrift) parts.push(`retrain when label drift (Jensen-Shannon) > ${g.labelDrift.threshold}`);
  if (g.skipIfUnchanged)
    parts.push(
      g.metricBelow || g.labelDrift ? 'skip-if-unchanged is set, but the triggers decide' : 'skip when spec and data are unchanged',
    );
  return parts.join('; ');
}

/** A recent run of `schedule describe`: an error of several lines (an ingest error names its bad rows) continues under its first. */
export function runLine(r: RecentRun): string {
  let outcome = r.state;
  if (r.gate && !r.gate.proceed) outcome += `, skipped: ${r.gate.outcome} (${r.gate.reason})`;
  else if (r.gate) outcome += `, ${r.gate.outcome}: ${r.gate.reason}`;
  if (r.error) outcome += `: ${r.error}`;
  const lead = `    ${r.runId.padEnd(40)} `;
  return lead + outcome.split('\n').join(`\n${' '.repeat(lead.length)}`);
}

async function describeCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, USAGE.describe!);
  const name = oneName(positionals, 'describe');
  const client = await ctx.client();
  // Without the key its action and memo are encrypted: what Temporal keeps in clear is shown (scheduleView).
  const view = await asUsage(() => scheduleView(client, name));
  const runs = await recentRuns(client, view);
  if (values.json) {
    console.log(JSON.stringify({ ...view, recentRuns: runs }, null, 2));
    return 0;
  }
  const locked = view.encrypted !== undefined;
  const lines = [
    `schedule ${name}: ${view.paused ? 'PAUSED' : 'active'}${view.note ? ` (note: ${view.note})` : ''}`,
    `  pipeline    ${view.spec.pipeline}, spec ${view.spec.specHash}`,
    locked ? `  spec file   ${ENCRYPTED_FIELD}` : `  spec file   ${view.spec.file} (stored as ${view.spec.specUri})`,
    `  params      ${locked ? ENCRYPTED_FIELD : view.spec.params.length ? view.spec.params.join(' ') : '(defaults)'}`,
    `  when        ${whenText(view)}, catch-up window ${view.timing.catchupWindow}`,
    `  gate        ${locked ? ENCRYPTED_FIELD : gateText(view)}`,
    `  queue       ${view.taskQueue}   actor ${view.actor}`,
    `  created     ${view.createdAt}${view.updatedAt ? `   updated ${view.updatedAt}` : ''}`,
    `  actions     ${view.actionsTaken} taken, ${view.skippedOverlap} skipped by overlap policy, ${view.missedCatchupWindow} missed (catch-up window)`,
    `  next runs   ${view.paused ? '(paused)' : view.nextRuns.slice(0, 3).join(', ') || '-'}`,
  ];
  if (view.runningRuns.length) lines.push(`  running     ${view.runningRuns.join(', ')}`);
  lines.push(runs.length ? '  recent runs (newest first)' : '  recent runs none yet');
  for (const r of runs) lines.push(runLine(r));
  console.log(lines.join('\n'));
  noteEncrypted([view.encrypted, ...runs.map((r) => r.encrypted)], 'describe');
  return 0;
}

async function pauseCmd(ctx: CliContext, argv: string[], sub: 'pause' | 'unpause'): Promise<number> {
  const { values, positionals } = parse(argv, { note: { type: 'string' } }, USAGE[sub]!);
  const name = oneName(positionals, sub);
  const client = await ctx.client();
  // Pausing writes no payload (a separate call, which keeps the action as it is): it works without the key.
  const view = await asUsage(() => scheduleView(client, name));
  await asUsage(() => (sub === 'pause' ? pauseSchedule : unpauseSchedule)(client, name, values.note));
  const rec = viewedChangeAudit(view, given(values));
  await audit(ctx, sub === 'pause' ? 'paused' : 'unpaused', name, actor(), rec.specHash, rec.details);
  console.log(`${sub}d schedule '${name}'${values.note ? ` (note: ${values.note})` : ''}`);
  return 0;
}

async function triggerCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { overlap: { type: 'string' }, json: { type: 'boolean' } }, USAGE.trigger!);
  const name = oneName(positionals, 'trigger');
  const overlap = values.overlap === undefined ? undefined : await asUsage(() => parseOverlap(values.overlap!));
  const client = await ctx.client();
  // The server starts the run from the action it keeps, encrypted as it is: no payload is written, so no key is needed.
  const view = await asUsage(() => scheduleView(client, name));
  await asUsage(() => triggerSchedule(client, name, overlap));
  await noteMissingWorker(ctx, client);
  const out = await triggerOutcome(client, name, view);
  const rec = viewedChangeAudit(view, { ...given(values), overlap: overlap ?? view.timing.overlap, ...out });
  await audit(ctx, 'triggered', name, actor(), rec.specHash, rec.details);
  if (values.json) console.log(JSON.stringify({ schedule: name, ...out }));
  else if (out.runId)
    console.log(
      `triggered schedule '${name}': run ${out.runId}${view.paused ? ` (the schedule stays paused: a trigger runs it once; \`tempered schedule unpause ${name}\` resumes its timetable)` : ''}`,
    );
  else if (out.skipped)
    console.log(
      `triggered schedule '${name}', but the overlap policy (${overlap ?? view.timing.overlap}) skipped it: a run is still in progress, and nothing ran`,
    );
  else console.log(`triggered schedule '${name}'; the server has not started the run yet (see \`tempered schedule describe ${name}\`)`);
  // A script that triggers a run and then reads its result must learn that none started: with 0 it went on as if one
  // had. Not 1 (the command did not fail: the trigger is taken and audited) nor 2 (usage).
  return out.skipped ? TRIGGER_SKIPPED_EXIT : 0;
}

/** `schedule trigger`'s exit code when the schedule's overlap policy skipped the trigger: no run started. */
export const TRIGGER_SKIPPED_EXIT = 3;

async function backfillCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { from: { type: 'string' }, to: { type: 'string' }, overlap: { type: 'string' } },
    USAGE.backfill!,
  );
  const name = oneName(positionals, 'backfill');
  if (!values.from || !values.to) throw new UsageError(`give the time range with --from <iso> and --to <iso>\nusage: ${USAGE.backfill}`);
  const { from, to, overlap } = await asUsage(() => ({
    from: parseInstant(values.from!, '--from'),
    to: parseInstant(values.to!, '--to'),
    overlap: values.overlap === undefined ? undefined : parseOverlap(values.overlap),
  }));
  const client = await ctx.client();
  // As trigger: the server takes the actions from the action it keeps, and no payload is written.
  const view = await asUsage(() => scheduleView(client, name));
  await asUsage(() => backfillSchedule(client, name, from, to, overlap));
  const rec = viewedChangeAudit(view, { from: from.toISOString(), to: to.toISOString(), overlap: overlap ?? view.timing.overlap });
  await audit(ctx, 'backfilled', name, actor(), rec.specHash, rec.details);
  console.log(
    `backfilling schedule '${name}' from ${from.toISOString()} to ${to.toISOString()} (overlap ${overlap ?? view.timing.overlap}); follow it with \`tempered schedule describe ${name}\``,
  );
  return 0;
}

async function deleteCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { positionals } = parse(argv, {}, USAGE.delete!);
  const name = oneName(positionals, 'delete');
  const client = await ctx.client();
  const { config } = await readForChange(client, name, 'delete');
  await asUsage(() => deleteSchedule(client, name));
  // A schedule created again under this name starts afresh: its first run is a first run, not
  // compared with the deleted schedule's last success.
  const forgot = await runIndexFor(ctx.paths.registryDb, ctx.paths.runs).forget({ schedule: name });
  await audit(ctx, 'deleted', name, actor(), config.spec.specHash, {
    pipeline: config.spec.pipeline,
    specUri: config.spec.specUri,
    ...(forgot ? { clearedLastRun: true } : {}),
  });
  console.log(
    `deleted schedule '${name}' (runs it started are not affected${forgot ? '; its last-successful-run record is cleared' : ''})`,
  );
  return 0;
}
