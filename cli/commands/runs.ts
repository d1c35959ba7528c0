/** validate, submit, status, runs, cancel, logs, resume. */
import { dirname, resolve } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Payload, PayloadConverter } from '@temporalio/common';
import { runUrl } from '../../infra/connection.ts';
import {
  auditRunSubmitted,
  followRun,
  type ClientRunStatus,
  getRunStatus,
  endedRunStatus,
  hasWorkers,
  listRuns,
  ENCRYPTED_FIELD,
  firstTask,
  runInput,
  runningRunRefusal,
  stagesRunningOn,
  submitRun,
  cancelRequestedKey,
} from '../../client/runs.ts';
import type { RunInput, RunStatus, StageResult } from '../../workflows/types.ts';
import type { PlannedPipeline } from '../../src/spec/types.ts';
import { missingSources } from '../../src/stages/ingest.ts';
import { actor, parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { commandRun } from '../errors.ts';
import { busyWithText, formatRunStatus, progressText, runJson, runLine, stageLine } from '../format.ts';
import { retryStateWords } from '../../client/failure-notes.ts';
import { decodeOrMark, fetchHistoryOrMarked, listingClient, orMarked } from '../../client/payloads.ts';
import { readNeedingKey } from './key-needed.ts';
import { redactSecrets } from '../../src/util/redact.ts';
import { startLocalWorker } from './worker.ts';
import { notOnServerOr, runNotOnServer } from './run-gone.ts';
import { loadPlanOrExit, planOrExit } from './validate.ts';
import { runBackends } from './sharing.ts';
import { resumePreview } from './resume-preview.ts';
import { printQuarantine } from './quarantine.ts';
import { resumeInput } from '../../client/resume-input.ts';

export { loadPlanOrExit, planOrExit };

/**
 * Until `restore`, what this process writes to stdout goes to stderr: for a `--json` command whose own worker runs the
 * stages (`--local-worker`), so its stdout is the JSON alone, whatever a stage run inline prints (console.log looks
 * up its stream's write at each call).
 */
function stdoutToStderr(): { restore(): void } {
  const write = process.stdout.write;
  process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;
  return {
    restore: () => {
      process.stdout.write = write;
    },
  };
}

/**
 * What a run no worker has picked up yet says, once: where to start a worker of `waitingQueue`. Nothing when `ownQueue`
 * is that queue: this process runs that worker itself (submit --wait's local worker), which had not polled yet when
 * the first status was read, and the hint to start one was wrong.
 */
export function runWaitingNote(waitingQueue: string, ownQueue?: string): string | undefined {
  if (!waitingQueue || waitingQueue === ownQueue) return undefined;
  return `  waiting: no worker has picked this run up yet; it starts when a worker serving task queue '${waitingQueue}' runs (\`tempered worker --queue ${waitingQueue}\`)`;
}

/**
 * Follows the run, printing stage transitions, and a running stage's progress when it changed (at most every few
 * seconds), unless `json`. `ownQueue`: the queue this process's own worker serves, if it runs one.
 */
function followAndPrint(client: Client, runId: string, json = false, signal?: AbortSignal, ownQueue?: string): Promise<ClientRunStatus> {
  let noted = false;
  const seen = new Map<string, string>();
  const shown = new Map<string, string>();
  let lastProgressAt = 0;
  let runWaiting = '';
  return followRun(
    client,
    runId,
    (st) => {
      if (json) return;
      if (st.encrypted && !noted) {
        noted = true;
        console.error(lockedNote(st.encrypted));
      }
      // A run no worker has picked up yet (none serves its queue, or only dead ones are still listed) says so once.
      if ((st.waitingForWorker ?? '') !== runWaiting) {
        runWaiting = st.waitingForWorker ?? '';
        const note = runWaitingNote(runWaiting, ownQueue);
        if (note) console.log(note);
      }
      const now = Date.now();
      const progressDue = now - lastProgressAt > 5000;
      for (const s of st.stages) {
        // A stage that waited for a worker of its queue prints again when one takes it.
        // And again when what holds its queue changes (another run's stage ended, a third run's took the slot).
        const key = `${s.state}:${s.attempt ?? 1}:${s.waitingForWorker ?? ''}:${(s.waitingBehindRuns ?? []).map((b) => `${b.runId}/${b.stage}`).join(',')}`;
        // A long step reports nothing new for minutes: the same line again would only scroll the terminal.
        const progress = s.state === 'running' && progressDue && !!s.progress && progressText(s) !== shown.get(s.id);
        if (seen.get(s.id) !== key || progress) {
          console.log(stageLine(s));
          shown.set(s.id, progressText(s));
        }
        seen.set(s.id, key);
      }
      if (progressDue) lastProgressAt = now;
    },
    1000,
    signal,
  );
}

/** A shell's exit status for a command stopped by the signal: 128 + its number. */
const INTERRUPTED_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

/** Whether `code` is what startAndReport returns when Ctrl-C (or SIGTERM) stopped the wait. */
export function interruptedExit(code: number): boolean {
  return code === INTERRUPTED_EXIT.SIGINT || code === INTERRUPTED_EXIT.SIGTERM;
}

/**
 * The first SIGINT or SIGTERM while a command waits on a run: `signal` aborts, `name` says which. A
 * second one exits at once, for a worker that does not stop.
 */
function untilInterrupted(): { signal: AbortSignal; name(): keyof typeof INTERRUPTED_EXIT | undefined; dispose(): void } {
  const ac = new AbortController();
  let got: keyof typeof INTERRUPTED_EXIT | undefined;
  const again = (sig: keyof typeof INTERRUPTED_EXIT) => process.exit(INTERRUPTED_EXIT[sig]);
  const first = (sig: keyof typeof INTERRUPTED_EXIT) => {
    got = sig;
    for (const s of ['SIGINT', 'SIGTERM'] as const) {
      process.off(s, first);
      process.once(s, again);
    }
    ac.abort();
  };
  for (const s of ['SIGINT', 'SIGTERM'] as const) process.on(s, first);
  return {
    signal: ac.signal,
    name: () => got,
    dispose() {
      for (const s of ['SIGINT', 'SIGTERM'] as const) {
        process.off(s, first);
        process.off(s, again);
      }
    },
  };
}

export async function submitCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage =
    'tempered submit <file> [--param k=v ...] [--sweep] [--queue Q] [--wait [--local-worker|--no-local-worker]] [--no-cache] [--run-id ID] [--json]';
  const { values, positionals } = parse(
    argv,
    {
      param: { type: 'string', multiple: true },
      wait: { type: 'boolean' },
      'local-worker': { type: 'boolean' },
      'no-local-worker': { type: 'boolean' },
      'no-cache': { type: 'boolean' },
      json: { type: 'boolean' },
      'run-id': { type: 'string' },
      queue: { type: 'string' },
      sweep: { type: 'boolean' },
    },
    usage,
  );
  if (positionals.length !== 1) throw new CliError(`submit takes one pipeline file\nusage: ${usage}`, 2);
  const localWorker = localWorkerFlag(values, usage);
  const file = positionals[0]!;
  if (values.sweep)
    return (await import('./sweep.ts')).submitSweep(ctx, file, {
      params: values.param ?? [],
      wait: !!values.wait,
      json: !!values.json,
      noCache: !!values['no-cache'],
      queue: values.queue,
      localWorker,
      runId: values['run-id'],
    });
  const { plan, text } = await loadPlanOrExit(ctx, file, values.param ?? [], !!values.json);
  const baseDir = dirname(resolve(file));
  await refuseMissingSources(ctx, plan, baseDir);
  const client = await ctx.client({ startServer: true });
  const input: RunInput = {
    plan,
    options: { baseDir, actor: actor(), noCache: !!values['no-cache'], specFile: resolve(file), specText: text },
  };
  return startAndReport(ctx, client, input, {
    wait: !!values.wait,
    json: !!values.json,
    runId: values['run-id'],
    queue: values.queue,
    localWorker,
  });
}

/**
 * A local ingest source that is not on this machine. With the embedded dev server the workers are this
 * machine's, so a first stage reading it would only fail: nothing is submitted. Against a cluster a
 * worker elsewhere may see the path (a shared mount), and an ingest after other stages may read what
 * they write: the run goes ahead with a warning.
 */
export async function refuseMissingSources(ctx: CliContext, plan: PlannedPipeline, baseDir: string): Promise<void> {
  const missing = await missingSources(plan, baseDir, ctx.paths.root);
  if (missing.length === 0) return;
  const refuse = ctx.settings().embedded && missing.some((m) => m.first);
  for (const m of missing) console.error(`${refuse && m.first ? 'error' : 'warning'}: stages.${m.stage}.with.path: ${m.message}`);
  if (refuse)
    throw new CliError(
      `nothing submitted: the run's first stage would fail on a source that is not there; fix the path (relative paths are resolved against ${baseDir}) or put the data there`,
      2,
    );
  console.error(
    '  submitting anyway: the stage reads the path on the worker that takes it, which may see it (a shared mount at the same path) or find it written by an earlier stage',
  );
}

/**
 * `--local-worker` / `--no-local-worker`, or undefined for the default: a worker in this process
 * for the wait only on the embedded dev server, where no other worker would run the stages. On a
 * given TEMPORAL_ADDRESS this process would otherwise become one of a team's workers, taking other
 * people's stages and workflow tasks with this checkout's code and this machine's files (a store
 * that is only a local folder here), so it is asked for, not assumed.
 */
export function localWorkerFlag(
  values: { wait?: boolean; 'local-worker'?: boolean; 'no-local-worker'?: boolean },
  usage: string,
): boolean | undefined {
  if (values['local-worker'] && values['no-local-worker'])
    throw new CliError(`--local-worker and --no-local-worker contradict each other; pass one\nusage: ${usage}`, 2);
  if (!values.wait && (values['local-worker'] || values['no-local-worker']))
    throw new CliError(`--local-worker and --no-local-worker go with --wait (a worker in this process for the wait)\nusage: ${usage}`, 2);
  return values['local-worker'] ? true : values['no-local-worker'] ? false : undefined;
}

export async function startAndReport(
  ctx: CliContext,
  client: Client,
  input: RunInput,
  o: {
    wait: boolean;
    json: boolean;
    runId?: string;
    queue?: string;
    localWorker?: boolean;
    onSubmitted?: (runId: string) => void;
    /** With `wait`: what the command says and returns once the run has ended, instead of the run's status and 0 or 1. */
    onEnd?: (final: RunStatus) => Promise<number>;
    /**
     * With `json`: takes the document the command would print (the submitted run; with `wait`, its final status, its
     * secrets hidden as runJson hides them) instead of printing it, for a command that prints several runs as one.
     */
    onJson?: (doc: unknown) => void;
  },
): Promise<number> {
  const queue = o.queue ?? ctx.taskQueue;
  const local = o.wait && (o.localWorker ?? ctx.settings().embedded) ? await startLocalWorker(ctx, queue) : undefined;
  try {
    // Opened first: a database this release cannot use (not migrated yet, or migrated by a newer one)
    // is refused before a run starts, not after, when a retried submit would start a second one.
    const audit = ctx.auditLog();
    await audit.get();
    // Its workers must keep artifacts and records where this process does (activities/backends.ts); a resumed run takes the resumer's.
    input = { ...input, options: { ...input.options, backends: await runBackends(ctx) } };
    const handle = await submitRun(client, input, { taskQueue: queue, runId: o.runId });
    commandRun.id = handle.workflowId;
    const submitted = { ...input, options: { ...input.options, ...handle.checkpointNames } };
    await auditRunSubmitted(audit, handle.workflowId, submitted, handle.firstExecutionRunId).catch((e: Error) => {
      throw new CliError(`run ${handle.workflowId} started, but its submission could not be written to the audit log: ${e.message}`);
    });
    o.onSubmitted?.(handle.workflowId);
    const url = runUrl(ctx.settings(), handle.workflowId);
    if (o.json && !o.wait) {
      if (o.onJson) o.onJson({ runId: handle.workflowId, url });
      else console.log(JSON.stringify({ runId: handle.workflowId, url }));
    } else if (!o.json) console.log(`submitted run ${handle.workflowId}${url ? `\n  web ui: ${url}` : ''}`);
    if (!local && !(await hasWorkers(client, ctx.settings().namespace, queue).catch(() => true)))
      console.error(
        `note: no worker is polling task queue '${queue}' yet; the run starts when one does (\`tempered worker --queue ${queue}\`${o.wait ? ', or pass --local-worker to run its stages in this process' : ''}). If your workers serve another queue, submit with --queue NAME (or set TEMPERED_TASK_QUEUE).`,
      );
    // A stage routed to a queue nobody serves would read "running" with no end (the README's own `queue: gpu`).
    for (const q of new Set(input.plan.stages.flatMap((s) => (s.queue && s.queue !== queue ? [s.queue] : []))))
      if (!(await hasWorkers(client, ctx.settings().namespace, q, true).catch(() => true))) {
        const ids = input.plan.stages.filter((s) => s.queue === q).map((s) => s.id);
        const which = ids.length === 1 ? `stage ${ids[0]} waits` : `stages ${ids.join(', ')} wait`;
        // A worker busy with a long stage of another run has dropped off the poller list by now.
        const busy = (await stagesRunningOn(client, new Set([q]), handle.firstExecutionRunId).catch(() => undefined))?.get(q);
        console.error(
          busy?.length
            ? `note: task queue '${q}' is busy with ${busyWithText(busy)}: ${which} for a worker slot there`
            : `note: no worker of task queue '${q}' has asked for work lately (none runs, or all are busy): ${which} for one there (\`tempered worker --queue ${q}\`)`,
        );
      }
    if (!o.wait) return 0;
    const interrupt = untilInterrupted();
    // Stages this process's worker runs inline write where it does: a plugin kind's console.log came out above the JSON.
    const answerOnly = o.json && local ? stdoutToStderr() : undefined;
    let final: RunStatus;
    try {
      final = await followAndPrint(client, handle.workflowId, o.json, interrupt.signal, local ? queue : undefined);
    } catch (e) {
      const sig = interrupt.name();
      if (!sig) throw e;
      // The run lives on the server, not in this process: stopping the wait does not cancel it.
      console.error(
        `\n${sig}: stopped waiting for run ${handle.workflowId}; it is not cancelled. ${
          local
            ? `This process was its worker, so it waits for one now: \`tempered worker --queue ${queue}\` carries it on, \`tempered cancel ${handle.workflowId}\` ends it. Stopping this process's worker (Ctrl-C again to exit at once).`
            : `Follow it with \`tempered status ${handle.workflowId} --watch\`, or end it with \`tempered cancel ${handle.workflowId}\`.`
        }`,
      );
      return INTERRUPTED_EXIT[sig];
    } finally {
      answerOnly?.restore();
      interrupt.dispose();
    }
    if (o.onEnd) return await o.onEnd(final);
    if (o.json) {
      if (o.onJson) o.onJson(redactSecrets(final));
      else console.log(runJson(final));
    } else {
      await ctx.fetchReports(final);
      console.log(`\n${formatRunStatus(final, { readReport: (r) => ctx.readReport(r), readMetrics: (r) => ctx.readMetrics(r) })}`);
    }
    return final.state === 'succeeded' ? 0 : 1;
  } finally {
    await local?.stop();
  }
}

/** A line to stdout, waiting while the pipe is full: a quarantine of millions of rows is not buffered whole in memory. */
function writeLine(line: string): Promise<void> | void {
  const out = process.stdout;
  // A reader that went away (`| head`): the rest is nobody's to read.
  if (out.destroyed || !out.writable) return;
  if (!out.write(`${line}\n`))
    return new Promise((done) => {
      const end = () => {
        for (const e of ['drain', 'close', 'error']) out.off(e, end);
        done();
      };
      for (const e of ['drain', 'close', 'error']) out.once(e, end);
    });
}

export async function statusCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered status <run> [--json] [--watch] | status <run> --quarantine [--json]';
  const { values, positionals } = parse(
    argv,
    { json: { type: 'boolean' }, watch: { type: 'boolean' }, quarantine: { type: 'boolean' } },
    usage,
  );
  if (positionals.length !== 1) throw new CliError(`status takes one run id\nusage: ${usage}`, 2);
  if (values.quarantine && values.watch)
    throw new CliError(`status --quarantine takes no --watch: it prints the quarantine tables of the stages finished\nusage: ${usage}`, 2);
  const runId = (commandRun.id = positionals[0]!);
  const client = await ctx.client();
  if (values.quarantine) {
    const st = await getRunStatus(client, runId).catch(async (e: Error) => {
      throw /not found/i.test(e.message) ? await runNotOnServer(ctx, client, runId) : new CliError(e.message);
    });
    await printQuarantine(ctx.store(), runId, st.stages, !!values.json, writeLine);
    return 0;
  }
  // --json: the stage lines a watch prints as they change would come out above the JSON.
  const st = await (values.watch ? followAndPrint(client, runId, !!values.json) : getRunStatus(client, runId, { showClear: true })).catch(
    async (e: Error) => {
      throw /not found/i.test(e.message) ? await runNotOnServer(ctx, client, runId) : new CliError(e.message);
    },
  );
  if (values.json) console.log(runJson(st));
  else {
    // --watch said so with the first status.
    if (st.encrypted && !values.watch) console.error(lockedNote(st.encrypted));
    await ctx.fetchReports(st);
    console.log(
      formatRunStatus(st, {
        uiUrl: runUrl(ctx.settings(), runId),
        readReport: (r) => ctx.readReport(r),
        readMetrics: (r) => ctx.readMetrics(r),
      }),
    );
  }
  // --watch waits for the end as `submit --wait` does (whose Ctrl-C points here), so it exits as that does: a script
  // that follows a run with `status --watch && …` must not go on after a failed one. A bare look answers 0 whatever
  // the run's state: the command did what it was asked.
  return values.watch && st.state !== 'succeeded' ? 1 : 0;
}

/** What a status read without the key lacks, said once beside it; `why`: the codec's error (which key, which variable). */
function lockedNote(why: string): string {
  return `note: pipeline, submitter, params, outputs and error messages read ${ENCRYPTED_FIELD} or are left out, and stages not started yet are not listed, as only the run's encrypted payloads hold them: ${why}`;
}

export async function runsCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered runs [--limit N] [--json] | runs --compare RUN RUN [RUN …] [--json]';
  const { values, positionals } = parse(
    argv,
    { json: { type: 'boolean' }, limit: { type: 'string' }, compare: { type: 'boolean' } },
    usage,
  );
  if (values.compare) {
    // It compares the runs named, all of them: a --limit was ignored without a word.
    if (values.limit !== undefined) throw new CliError(`runs --compare takes no --limit: it compares the runs named\nusage: ${usage}`, 2);
    return (await import('./runs-compare.ts')).compareTrialsCmd(ctx, positionals, !!values.json);
  }
  // Number('x') listed nothing and said "no runs yet", exit 0, of a server full of runs.
  if (values.limit !== undefined && !/^[1-9]\d*$/.test(values.limit))
    throw new CliError(`--limit takes how many runs to list, a whole number from 1, not '${values.limit}'\nusage: ${usage}`, 2);
  if (positionals.length)
    throw new CliError(`runs takes no run id (\`tempered status ${positionals[0]}\` shows one run)\nusage: ${usage}`, 2);
  const client = await ctx.client();
  const runs = await listRuns(client, Number(values.limit ?? 20));
  if (values.json) console.log(runJson(runs));
  else if (runs.length === 0) console.log('no runs yet; submit one with `tempered submit <pipeline.yaml>`');
  else for (const r of runs) console.log(runLine(r));
  // One line per key lacked, however many runs: which key, and the variable that would show their fields.
  const lacked = new Map<string, number>();
  for (const r of runs) if (r.memoEncrypted) lacked.set(r.memoEncrypted, (lacked.get(r.memoEncrypted) ?? 0) + 1);
  for (const [why, n] of lacked)
    console.error(`note: ${n} run(s) listed as ${ENCRYPTED_FIELD}, without submitter and params, which their memo keeps: ${why}`);
  return 0;
}

export async function cancelCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered cancel <run>';
  const { positionals } = parse(argv, {}, usage);
  if (positionals.length !== 1) throw new CliError(`cancel takes one run id\nusage: ${usage}`, 2);
  const client = await ctx.client();
  const handle = client.workflow.getHandle(positionals[0]!);
  // Stopping a run needs nothing of its payloads: described through the listing client, whose codec marks a memo this
  // process cannot decrypt instead of failing, an on-call operator without TEMPERED_PAYLOAD_KEY can still cancel it.
  const desc = await listingClient(client)
    .workflow.getHandle(positionals[0]!)
    .describe()
    .catch(async (e: Error) => {
      throw await notOnServerOr(ctx, client, positionals[0]!, e);
    });
  if (desc.status.name !== 'RUNNING') throw new CliError(`run ${positionals[0]} is already ${desc.status.name.toLowerCase()}`);
  // Asked again (the run has not ended yet): said so, and not recorded again, as the dashboard's Cancel does; a second
  // run.cancel_requested in the trail read as a second operator's decision.
  const again = !!desc.raw.workflowExtendedInfo?.cancelRequested;
  if (!again) {
    await handle.cancel();
    // Who asked goes in the trail (the run's own end is recorded by its workflow as run.cancelled).
    await (
      await ctx.auditLog().get()
    ).append({
      action: 'run.cancel_requested',
      subject: positionals[0]!,
      runId: positionals[0]!,
      actor: actor(),
      details: { execution: desc.runId },
      // Two cancels (here, the dashboard) that both read "not requested yet" keep one record: an execution is
      // cancelled once.
      dedupeKey: cancelRequestedKey(positionals[0]!, desc.runId),
    });
  }
  // Cancelling is the workflow's own work: a run no worker has picked up stays open until one does. Whether one took it
  // is in its history's event types, which the listing client reads without the key too; should that read fail (the
  // request is made by then), both outcomes are said.
  const first = await firstTask(listingClient(client), positionals[0]!, desc.historyLength).catch(() => undefined);
  const ends = `it ends (cancelled, nothing run) once a worker serving task queue '${desc.taskQueue}' does`;
  const running = 'running stages stop at their next heartbeat';
  const what =
    first === undefined
      ? `${running}; if no worker has picked it up yet, ${ends}`
      : first.state === 'queued'
        ? `no worker has picked it up yet, so ${ends}`
        : running;
  console.log(`${again ? 'cancellation was requested already' : 'cancellation requested'} for ${positionals[0]}; ${what}`);
  return 0;
}

/** The run a stage activity's outputs came from, when it found them in the stage cache instead of running. */
function reusedFrom(converter: PayloadConverter, payload: Payload | null | undefined): StageResult['cachedFrom'] {
  if (!payload) return undefined;
  try {
    // The client's own converter, as everything else that reads this history's payloads uses.
    return (converter.fromPayload(payload) as Partial<StageResult> | undefined)?.cachedFrom;
  } catch {
    return undefined;
  }
}

/** PendingActivityState STARTED and CANCEL_REQUESTED (temporal.api.enums.v1): an attempt is running. */
const RUNNING_ACTIVITY = new Set([2, 3]);

export async function logsCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered logs <run> [--json]';
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, usage);
  if (positionals.length !== 1) throw new CliError(`logs takes one run id\nusage: ${usage}`, 2);
  const client = await ctx.client();
  // Without the key its payloads are marked, not failing: what Temporal keeps in clear (which stages were scheduled,
  // started, completed or failed, when, on which queue, by which worker, at which attempt) is the log's substance.
  const { history, encrypted } = await fetchHistoryOrMarked(client, positionals[0]!).catch(async (e: Error) => {
    if (/not found/i.test(e.message)) throw await runNotOnServer(ctx, client, positionals[0]!);
    throw e;
  });
  const events = history.events ?? [];
  const scheduled = new Map<string, string>();
  const byActivityId = new Map<string, string>();
  const lines: Record<string, unknown>[] = [];
  for (const ev of events) {
    const time = ev.eventTime?.seconds
      ? new Date(Number(ev.eventTime.seconds) * 1000 + Math.floor((ev.eventTime.nanos ?? 0) / 1e6)).toISOString()
      : '';
    const id = String(ev.eventId);
    if (ev.activityTaskScheduledEventAttributes) {
      const a = ev.activityTaskScheduledEventAttributes;
      scheduled.set(id, `${a.activityId} (${a.activityType?.name} on ${a.taskQueue?.name})`);
      byActivityId.set(String(a.activityId), scheduled.get(id)!);
      lines.push({ time, event: 'scheduled', activity: scheduled.get(id) });
    } else if (ev.activityTaskStartedEventAttributes) {
      const a = ev.activityTaskStartedEventAttributes;
      // Temporal keeps only the last attempt's start; the attempt before it left its error there.
      lines.push({
        time,
        event: 'started',
        activity: scheduled.get(String(a.scheduledEventId)),
        attempt: a.attempt,
        worker: a.identity,
        previous: a.lastFailure?.message ? `attempt ${(a.attempt ?? 2) - 1} failed: ${a.lastFailure.message}` : undefined,
      });
    } else if (ev.activityTaskCompletedEventAttributes) {
      const a = ev.activityTaskCompletedEventAttributes;
      const cachedFrom = reusedFrom(client.options.loadedDataConverter.payloadConverter, a.result?.payloads?.[0]);
      lines.push({
        time,
        event: cachedFrom ? 'cached' : 'completed',
        activity: scheduled.get(String(a.scheduledEventId)),
        from: cachedFrom && `${cachedFrom.runId}/${cachedFrom.stageId}`,
      });
    } else if (ev.activityTaskFailedEventAttributes || ev.activityTaskTimedOutEventAttributes) {
      const a = (ev.activityTaskFailedEventAttributes ?? ev.activityTaskTimedOutEventAttributes)!;
      lines.push({
        time,
        event: ev.activityTaskFailedEventAttributes ? 'failed' : 'timed out',
        activity: scheduled.get(String(a.scheduledEventId)),
        error: a.failure?.message,
        retries: retryStateWords(a.retryState),
      });
    } else if (ev.activityTaskCanceledEventAttributes) {
      lines.push({ time, event: 'cancelled', activity: scheduled.get(String(ev.activityTaskCanceledEventAttributes.scheduledEventId)) });
    } else if (ev.workflowExecutionStartedEventAttributes) {
      lines.push({ time, event: 'run started' });
    } else if (ev.workflowExecutionCompletedEventAttributes) {
      lines.push({ time, event: 'run succeeded' });
    } else if (ev.workflowExecutionFailedEventAttributes) {
      lines.push({ time, event: 'run failed', error: ev.workflowExecutionFailedEventAttributes.failure?.message });
    } else if (ev.workflowExecutionCanceledEventAttributes) {
      lines.push({ time, event: 'run cancelled' });
    } else if (ev.workflowExecutionCancelRequestedEventAttributes) {
      lines.push({ time, event: 'cancel requested', by: ev.workflowExecutionCancelRequestedEventAttributes.identity });
    }
  }
  // Temporal writes an attempt's "started" event only when the attempt ends: a running stage shows
  // from the server's view of it, and every line goes in the order things happened, not were written.
  // Its pending activities are all that is read of the description: its memo, encrypted with the rest, is marked.
  const desc = await listingClient(client).workflow.getHandle(positionals[0]!).describe();
  // A retried stage's last failure, its message opened where TEMPERED_PAYLOAD_KEY encoded it, as the history's are.
  const pendingEncrypted = await decodeOrMark(client, desc.raw.pendingActivities);
  for (const pa of desc.raw.pendingActivities ?? []) {
    if (!pa.lastStartedTime?.seconds || !RUNNING_ACTIVITY.has(Number(pa.state))) continue;
    const t = new Date(Number(pa.lastStartedTime.seconds) * 1000 + Math.floor((pa.lastStartedTime.nanos ?? 0) / 1e6)).toISOString();
    lines.push({
      time: t,
      event: 'started',
      activity: byActivityId.get(String(pa.activityId)),
      attempt: pa.attempt,
      worker: pa.lastWorkerIdentity,
      state: 'running',
      previous: pa.lastFailure?.message ? `attempt ${(pa.attempt ?? 2) - 1} failed: ${pa.lastFailure.message}` : undefined,
    });
  }
  lines.sort((a, b) => String(a.time).localeCompare(String(b.time)));
  const lacked = encrypted ?? pendingEncrypted;
  if (lacked)
    console.error(
      `note: error messages read ${ENCRYPTED_FIELD}, and a stage reused from the cache reads completed, as its payloads that say more are encrypted: ${lacked}`,
    );
  if (values.json) console.log(JSON.stringify(lines, null, 2));
  else
    for (const l of lines)
      console.log(
        Object.values(l)
          .filter((v) => v !== undefined && v !== null && v !== '')
          .join('  '),
      );
  return 0;
}

export async function resumeCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered resume <run> [--wait [--local-worker|--no-local-worker]] [--json]';
  const { values, positionals } = parse(
    argv,
    { wait: { type: 'boolean' }, 'local-worker': { type: 'boolean' }, 'no-local-worker': { type: 'boolean' }, json: { type: 'boolean' } },
    usage,
  );
  if (positionals.length !== 1) throw new CliError(`resume takes one run id\nusage: ${usage}`, 2);
  // Until the new run is submitted, a failure leaves this one to resume again.
  commandRun.id = positionals[0]!;
  const localWorker = localWorkerFlag(values, usage);
  const client = await ctx.client({ startServer: true });
  const old = positionals[0]!;
  // Whether it is there and still running is in clear: said without the key too, before the key is asked for.
  const desc = await orMarked(client, (c) => c.workflow.getHandle(old).describe()).catch(async (e: Error) => {
    throw await notOnServerOr(ctx, client, old, e, { resume: true });
  });
  if (desc.status.name === 'RUNNING') {
    const { message, hint } = await runningRunRefusal(client, old, desc);
    throw new CliError(`${message}; ${hint}`);
  }
  // Nothing is submitted nor recorded without it: the new run's input is the old one's, which only the key reads.
  const input = await readNeedingKey(client, (c) => runInput(c, old), {
    what: `resume ${old}`,
    whose: 'the run',
    because: "resuming submits the run's input (its plan and params) again, which only the key reads",
    hint: `\`tempered status ${old}\` and \`tempered logs ${old}\` show where it stopped without the key`,
  }).catch((e: Error) => {
    throw e instanceof CliError ? e : new CliError(e.message);
  });
  if (desc.status.name === 'COMPLETED')
    console.error(
      `note: run ${old} succeeded; resuming reruns it from the stage cache: its stages come back as they were, except those whose inputs changed since (an evaluation against a production version that has moved runs again)`,
    );
  // Same spec and params; finished stages come back from the cache and the failed stage's
  // checkpoints are found by its cache key, so only unfinished work runs again (a --no-cache run's by ownCheckpoints,
  // which its options keep: its own folder, never another run's of the work; and only the stages it finished come from
  // the cache: resumeInput). The options keep the
  // run's scheduleId: a schedule's run resumed stays the schedule's (memo, run id, audit, run gate).
  // Read once, if at all: for the new run's input (a --no-cache run's) and the preview below.
  let before: Promise<RunStatus | undefined> | undefined;
  const oldStatus = () => (before ??= endedRunStatus(client, old, desc).catch(() => undefined));
  const next = await resumeInput(old, input, { actor: actor() }, oldStatus);
  if (!values.json)
    console.log(
      `resuming ${old} (pipeline ${input.plan.name}, spec ${input.plan.specHash.slice(0, 12)}${input.options.scheduleId ? `, schedule ${input.options.scheduleId}` : ''})`,
    );
  // Said before the run starts, so whoever resumes at 3 a.m. knows what it will redo; a status that cannot be read
  // leaves the resume as it was.
  if (!values.json && desc.status.name !== 'COMPLETED') {
    const ended = await oldStatus();
    for (const line of ended ? resumePreview(input.plan, ended) : []) console.log(line);
  }
  // On the run's own queue: a run submitted with --queue is picked up by the workers of that queue only.
  return startAndReport(ctx, client, next, {
    wait: !!values.wait,
    json: !!values.json,
    queue: desc.taskQueue,
    localWorker,
  });
}
