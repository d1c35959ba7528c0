/**
 * Client-side run operations over Temporal: submit (and its audit record), status (the workflow's
 * status query merged with the live heartbeat of each running stage), follow, list, wait, the input
 * a run was started with, and whether any worker polls a task queue.
 */
import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  Client,
  ServiceError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type WorkflowHandle,
  type WorkflowHandleWithFirstExecutionRunId,
} from '@temporalio/client';
import { openAudit, type AuditLog } from '../src/audit/log.ts';
import { useOpen, type KeptOpen } from '../src/db/kept-open.ts';
import { forEachInFlight } from '../src/util/in-flight.ts';
import { sha256Hex } from '../src/util/canonical-json.ts';
import { redactJson } from '../src/util/redact.ts';
import { specBody } from '../src/spec/plan.ts';
import { keptSpec } from '../src/audit/redact-spec.ts';
import { InputError } from '../src/errors.ts';
import type { RunGateResult, RunInput, RunStatus, StageResult, StageStatus } from '../workflows/types.ts';
import { pendingStatus } from '../workflows/pending-status.ts';
import { PayloadKeyError } from '../infra/payload-codec.ts';
import { retryStateName } from './failure-notes.ts';
import { EndedGates } from './ended-gates.ts';
import { hasPipelineAttribute, listedPipeline, PIPELINE_ATTRIBUTE, pipelineAttributes } from './pipeline-attribute.ts';
import {
  decodePayloadsIn,
  ENCRYPTED_FIELD,
  fetchDecodedHistory,
  fetchHistoryOrMarked,
  listingClient,
  memoEncrypted,
  orMarked,
} from './payloads.ts';

export const WORKFLOW_TYPE = 'pipelineRun';

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

/**
 * The audit dedupe key of a request to cancel one execution: `tempered cancel` and the dashboard's Cancel write the
 * same, so two that both read "not requested yet" keep one run.cancel_requested record.
 */
export const cancelRequestedKey = (runId: string, execution: string) => `${runId}/${execution}/cancel_requested`;

export function newRunId(name: string): string {
  return `${name}-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}-${randomBytes(3).toString('hex')}`;
}

/**
 * The names of the checkpoint folders a run's trainings write and resume apart from the work's, so that they start
 * from step 0 and resume only their own checkpoints, not those another run of the same work left (a run killed
 * mid-training): RunOptions.ownCheckpoints, for every train stage of a run submitted with noCache, else
 * RunOptions.uncachedCheckpoints, for its train stages with `cache: false`. A resume keeps the one its options have, so it
 * continues that run's training; one of a run submitted before these names were given gets none, and trains as that
 * run did. Only file-name-safe characters: it names folders and bucket keys, and is short: a folder name holds 255
 * bytes, the cache key, stage id and gc's aside suffix (local-checkpoints.ts) included.
 */
function checkpointNamesOf(workflowId: string, input: RunInput): Pick<RunInput['options'], 'ownCheckpoints' | 'uncachedCheckpoints'> {
  const { options } = input;
  if (options.ownCheckpoints || options.uncachedCheckpoints || options.resumeOf) return {};
  const name = () => `${workflowId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}-${randomBytes(6).toString('hex')}`;
  if (options.noCache) return { ownCheckpoints: name() };
  // Only train stages name checkpoint folders (register and deploy are `cache: false` in every plan).
  return input.plan.stages.some((s) => s.uses === 'train' && s.cache === false) ? { uncachedCheckpoints: name() } : {};
}

/** A started run's handle, with the checkpoint names submitRun gave it (for its `run.submitted` record). */
export type SubmittedRun = WorkflowHandleWithFirstExecutionRunId & {
  checkpointNames: Pick<RunInput['options'], 'ownCheckpoints' | 'uncachedCheckpoints'>;
};

export async function submitRun(client: Client, input: RunInput, opts: { taskQueue: string; runId?: string }): Promise<SubmittedRun> {
  const { scheduleId } = input.options;
  // A run of a schedule (a resume of one) is named as the schedule's own runs are, after the
  // schedule, so that listing the schedule's runs finds it (visibility cannot query the memo).
  const workflowId = opts.runId ?? newRunId(scheduleId ?? input.plan.name);
  // The spec file's text is for the audit trail (auditRunSubmitted, from this same input), never read by the workflow:
  // kept out of the history, where it would sit, credentials and all, for whoever reads the namespace.
  const { specText: _kept, ...submitted } = input.options;
  const checkpointNames = checkpointNamesOf(workflowId, input);
  const options = { ...submitted, ...checkpointNames };
  const handle = await client.workflow.start(WORKFLOW_TYPE, {
    workflowId,
    taskQueue: opts.taskQueue,
    args: [{ ...input, options }],
    // What the Runs page's pipeline filter asks Temporal for, where the namespace has it (client/pipeline-attribute.ts).
    ...(await pipelineAttributes(client, input.plan.name)),
    // The keys a schedule's runs carry too (client/schedules.ts), scheduleId where a schedule's run is resumed.
    memo: {
      pipeline: input.plan.name,
      specHash: input.plan.specHash,
      actor: input.options.actor,
      resumeOf: input.options.resumeOf ?? '',
      ...(scheduleId ? { scheduleId } : {}),
      // What tells a sweep's trials apart in a list of runs; a secret-named one is not kept.
      params: redactJson(input.plan.params, [], { secretKeys: true }),
    },
  });
  return Object.assign(handle, { checkpointNames });
}

/**
 * A retry not started yet: waiting out its backoff, or for a worker to take it (none polls, or the one that ran the
 * attempt before was killed, which the server keeps listing as a poller for minutes).
 */
function retryWaitText(pa: PendingActivityInfo, now: number): string {
  const next = timeMs(pa.nextAttemptScheduleTime);
  const when =
    next !== undefined && next > now
      ? `starts in ${Math.ceil((next - now) / 1000)}s (retry backoff)`
      : 'has not started: no worker has taken it (none polls its task queue, each is busy with other stages, or the one that ran the attempt before was killed and the server still lists it)';
  return `attempt ${pa.attempt} ${when}; attempt ${(pa.attempt ?? 2) - 1} ended: ${pa.lastFailure?.message ?? 'failed'}`;
}

interface PendingActivityInfo {
  activityId?: string | null;
  /** 1: scheduled, no worker has taken it; 2: started; 3: cancel requested. */
  state?: number | null;
  attempt?: number | null;
  scheduledTime?: { seconds?: unknown; nanos?: number | null } | null;
  lastStartedTime?: { seconds?: unknown; nanos?: number | null } | null;
  lastHeartbeatTime?: { seconds?: unknown; nanos?: number | null } | null;
  heartbeatDetails?: { payloads?: unknown[] | null } | null;
  lastFailure?: { message?: string | null } | null;
  nextAttemptScheduleTime?: { seconds?: unknown; nanos?: number | null } | null;
  /** Set by `temporal activity pause` (server 1.28 and later); state 4 (paused) or 5 (pause requested, an attempt still runs). */
  paused?: boolean | null;
  pauseInfo?: {
    pauseTime?: { seconds?: unknown; nanos?: number | null } | null;
    manual?: { identity?: string | null; reason?: string | null } | null;
  } | null;
  activityOptions?: { heartbeatTimeout?: { seconds?: unknown; nanos?: number | null } | null } | null;
}

/**
 * How long a running run's status query may wait for a worker to answer. A worker answers in
 * milliseconds; the server holds a query no worker takes for about half a minute, and a worker that
 * was killed stays listed as a poller of its queue for minutes, so the poller list alone cannot say.
 */
export const STATUS_QUERY_WAIT_MS = 5_000;

/**
 * Set by the client (never the workflow) when no worker answered the status query and the status was
 * rebuilt from the run's history: the workflow's task queue, and whether any worker polls it now.
 */
export interface NoWorkerAnswer {
  taskQueue: string;
  /** false: no worker polls the queue; true: one is listed (a worker killed lately stays listed for minutes) but none answered. */
  pollersListed: boolean;
}

/** A run's status as the client reports it. */
export type ClientRunStatus = RunStatus & {
  noWorkerAnswered?: NoWorkerAnswer;
  /**
   * Set where this process lacks the key the run's payloads were encrypted with (TEMPERED_PAYLOAD_KEY): the codec's
   * error, naming the key id and the variable. The status is then what Temporal keeps in clear (lockedRunStatus):
   * name, spec hash and actor read ENCRYPTED_FIELD, params are empty, the stages are those whose activity was
   * scheduled, their outputs absent and their errors' messages ENCRYPTED_FIELD.
   */
  encrypted?: string;
};

/**
 * Why a run that is still running cannot be resumed, and what to do instead. With no worker answering for it (all of
 * its queue's workers gone, or its dev server restarted under it), "wait for it" did nothing: a worker carries it on.
 */
export async function runningRunRefusal(client: Client, runId: string, desc: Description): Promise<{ message: string; hint: string }> {
  // The caller's describe, and only whether a worker answers: not the whole status (its stages' lookups through every
  // other running run included, up to RUNS_LOOKUP_WAIT_MS) to print one line.
  const queue = (await queriedOrFromHistory(client, runId, desc).catch(() => undefined))?.noWorkerAnswered?.taskQueue;
  if (queue === undefined) return { message: `run ${runId} is still running`, hint: 'cancel it first or wait for it' };
  return {
    message: `run ${runId} is still running, but no worker answers for it on task queue '${queue}'`,
    hint: `start \`tempered worker --queue ${queue}\` and it carries the run on from where it stopped (resume is for a run that ended), or cancel it first and then resume it`,
  };
}

/** Runs (by id) whose payloads a client could not decrypt: its next status of one (`status --watch`, every second) reads what is in clear at once. */
const lockedRuns = new WeakMap<Client, Set<string>>();

/**
 * The run's status; for running stages, attempt and progress come from the server's view of the activity. Where this
 * process lacks the key the run's payloads were encrypted with, the codec's error (PayloadKeyError); with `showClear`,
 * what Temporal keeps in clear instead (lockedRunStatus), `encrypted` saying which key and variable: for a caller that
 * shows the status to a person (`status`), not one that needs its params or outputs (comparing trials).
 */
export async function getRunStatus(client: Client, runId: string, o: { showClear?: boolean; now?: number } = {}): Promise<ClientRunStatus> {
  if (o.showClear) return (await describedRunStatus(client, runId)).status;
  return readRunStatus(client, runId, await client.workflow.getHandle(runId).describe(), o.now);
}

/**
 * getRunStatus with `showClear`, and the description it was read from, for a caller that shows the run's execution or
 * Temporal's status beside it (the dashboard's run page): the run is described once, with the key or without. Through
 * listingClient, which reads a description as the client does (its codecs are the client's: a description holds no
 * payload but its memo and search attributes) and marks a memo this process cannot decrypt instead of failing on it:
 * one describe with the key, two on a keyless process's first read of a run (its client's, refused), one after.
 */
export async function describedRunStatus(client: Client, runId: string): Promise<{ status: ClientRunStatus; desc: Description }> {
  const locked = lockedRuns.get(client) ?? new Set<string>();
  lockedRuns.set(client, locked);
  // Through the caller's client first, as every read with the key is (a stand-in client is no connection to list
  // through); a memo it cannot decrypt sends this read, and every later one of this run, through listingClient.
  const desc = locked.has(runId)
    ? await listingClient(client).workflow.getHandle(runId).describe()
    : await orMarked(client, (c) => c.workflow.getHandle(runId).describe());
  const inClear = (why?: string): Promise<ClientRunStatus> => {
    if (locked.size > 1000) locked.clear();
    locked.add(runId);
    return lockedRunStatus(client, runId, desc, why);
  };
  const memoWhy = memoEncrypted(desc);
  // A memo that reads does not make the rest readable: a run submitted without the key whose worker has it encrypts
  // its stages' results (the codec's error says so, once; the run's next status reads what is in clear at once).
  const status =
    memoWhy || locked.has(runId) ? await inClear(memoWhy) : await orMarked(client, () => readRunStatus(client, runId, desc), inClear);
  return { status, desc };
}

/**
 * A run's status from what Temporal keeps in clear, for a process without the key its payloads were encrypted with:
 * its state and times, and each stage whose activity was scheduled (its id and kind, state, attempts, times, whether
 * its worker is silent or none takes it, its error's type and retry state), read through listingClient, which marks
 * what it cannot decrypt. Not in clear, so not here: the plan (the stages not scheduled yet, `needs`), params, actor,
 * outputs (and so whether a stage's came from the cache), progress, error messages and hints, the run gate's verdict.
 * The workflow is not queried: its answer is encrypted too.
 */
async function lockedRunStatus(client: Client, runId: string, desc: Description, why?: string): Promise<ClientRunStatus> {
  const lister = listingClient(client);
  const { history, encrypted } = await fetchHistoryOrMarked(client, runId, desc.runId);
  const events = history.events ?? [];
  const status: ClientRunStatus = {
    runId,
    name: ENCRYPTED_FIELD,
    specHash: ENCRYPTED_FIELD,
    state: endedState(desc.status.name) ?? 'running',
    startedAt: desc.startTime.toISOString(),
    ...(desc.closeTime ? { endedAt: desc.closeTime.toISOString() } : {}),
    actor: ENCRYPTED_FIELD,
    params: {},
    stages: [],
    // A run whose history happens to read (no payload written yet under that key) still lacks the key its query needs.
    encrypted: encrypted ?? why ?? 'its payloads are encrypted with a key this process lacks: set TEMPERED_PAYLOAD_KEY',
  };
  applyActivityEvents(lister, status, events, { unplanned: true });
  if (status.state !== 'running') {
    for (const st of status.stages) if (st.state === 'running') st.state = 'cancelled';
    return status;
  }
  const first = await firstTask(lister, runId, desc.historyLength);
  if (first.state === 'queued')
    return {
      ...status,
      ...((await firstTaskWaits(lister, desc.taskQueue, first.events)) ? { waitingForWorker: desc.taskQueue } : {}),
      ...(first.cancelRequested ? { cancelRequested: true } : {}),
    };
  const pending = (desc.raw.pendingActivities ?? []) as PendingActivityInfo[];
  await decodePayloadsIn(lister, pending);
  const now = Date.now();
  for (const pa of pending) {
    const st = status.stages.find((s) => s.id === pa.activityId?.replace(/^stage-/, ''));
    if (!st || st.state !== 'running') continue;
    if (pa.attempt) st.attempt = pa.attempt;
    if (pa.lastFailure?.message) st.error = { message: `retrying after: ${pa.lastFailure.message}` };
    const silent = silentSec(pa, now);
    if (silent !== undefined) st.silentSec = silent;
  }
  await markStagesNobodyTakes(lister, runId, desc.runId, status, pending);
  if (desc.raw.workflowExtendedInfo?.cancelRequested) status.cancelRequested = true;
  return status;
}

/** A closed workflow's status as a run's state (a cancelled or terminated one: cancelled); undefined while it runs. */
function endedState(name: string): RunStatus['state'] | undefined {
  if (name === 'RUNNING') return undefined;
  return name === 'COMPLETED' ? 'succeeded' : name === 'CANCELLED' || name === 'TERMINATED' ? 'cancelled' : 'failed';
}

/** `now`: the time the status is read at (a test's later one, so that a worker's silence need not be waited out). */
async function readRunStatus(client: Client, runId: string, desc: Description, now = Date.now()): Promise<ClientRunStatus> {
  if (desc.status.name !== 'RUNNING') return endedRunStatus(client, runId, desc);
  // No worker has run the workflow's first task: a query would wait for one (and time out). Its
  // stages are all still pending, as the run's input says; and where it waits is worth saying.
  const first = await firstTask(client, runId, desc.historyLength);
  if (first.state === 'queued')
    return {
      ...pendingStatus(inputOf(client, runId, first.events), runId, desc.startTime.toISOString()),
      ...((await firstTaskWaits(client, desc.taskQueue, first.events)) ? { waitingForWorker: desc.taskQueue } : {}),
      ...(first.cancelRequested ? { cancelRequested: true } : {}),
    };
  if (first.state === 'failing')
    throw new Error(
      `run ${runId}: a worker of task queue '${desc.taskQueue}' took it, but its first workflow task failed (${first.message}); see that worker's log`,
    );
  const status = await queriedOrFromHistory(client, runId, desc);
  const pending = (desc.raw.pendingActivities ?? []) as PendingActivityInfo[];
  // Their heartbeats, and the last failure of a stage being retried (its message opened where the key encoded it).
  await decodePayloadsIn(client, pending);
  const silentStages: { st: StageStatus; pa: PendingActivityInfo }[] = [];
  for (const pa of pending) {
    const id = pa.activityId?.replace(/^stage-/, '');
    const st = status.stages.find((s) => s.id === id);
    if (!st) continue;
    if (pa.attempt) st.attempt = pa.attempt;
    const paused = st.state === 'running' ? pauseOf(pa, runId, client.options.namespace) : undefined;
    if (paused) st.paused = paused;
    // A retry no worker has taken yet keeps the heartbeat of the attempt before it (for it to resume from): shown as
    // this attempt's, a killed worker's stage read "running 64% … eta 14s" for as long as no worker came. So did a
    // paused stage's, whose attempt was stopped by the pause.
    const retryNotTaken = (pa.state === 1 && (pa.attempt ?? 1) > 1) || (paused !== undefined && !paused.pending);
    const payloads = retryNotTaken ? undefined : pa.heartbeatDetails?.payloads;
    if (payloads && payloads.length > 0) {
      const details = client.options.loadedDataConverter.payloadConverter.fromPayload<{ progress?: Record<string, unknown> }>(
        payloads[0] as never,
      );
      if (details?.progress) st.progress = details.progress;
    }
    if (pa.lastFailure?.message && st.state === 'running' && !paused)
      st.error = { message: retryNotTaken ? retryWaitText(pa, now) : `retrying after: ${pa.lastFailure.message}` };
    const silent = silentSec(pa, now);
    if (silent !== undefined && st.state === 'running') {
      st.silentSec = silent;
      silentStages.push({ st, pa });
    }
  }
  if (silentStages.length > 0) await markUnpolledQueues(client, runId, desc.runId, silentStages, now);
  await markStagesNobodyTakes(client, runId, desc.runId, status, pending);
  // A cancellation asked for while stages run: the run ends once its running stage stops. Said, so a
  // second `cancel` (or the dashboard's button after a reload) does not look like the first went nowhere.
  if (desc.raw.workflowExtendedInfo?.cancelRequested) status.cancelRequested = true;
  return status;
}

/**
 * Seconds without a heartbeat after which a started stage's worker is called silent: a stage beats every 2 s or
 * sooner (activities/stage-adapter.ts), which the server sees within a second (the worker's throttle), so 15 s is
 * seven beats missed, not a busy moment.
 */
export const SILENT_AFTER_SEC = 15;

/** How long a started stage's worker has been silent (its last heartbeat, or its start), if over SILENT_AFTER_SEC. */
function silentSec(pa: PendingActivityInfo, now: number): number | undefined {
  if (pa.state !== 2) return undefined;
  const last = Math.max(timeMs(pa.lastHeartbeatTime) ?? 0, timeMs(pa.lastStartedTime) ?? 0);
  if (last === 0) return undefined;
  const sec = Math.floor((now - last) / 1000);
  return sec >= SILENT_AFTER_SEC ? sec : undefined;
}

/** A paused stage's pause, as `status` shows it, with the command that unpauses it; undefined when not paused. */
function pauseOf(pa: PendingActivityInfo, runId: string, namespace: string): StageStatus['paused'] {
  // PENDING_ACTIVITY_STATE_PAUSED (4) and PAUSE_REQUESTED (5); `paused` says the same on servers that set it.
  if (!pa.paused && pa.state !== 4 && pa.state !== 5) return undefined;
  const since = timeMs(pa.pauseInfo?.pauseTime);
  const shell = (v: string) => (/^[\w.@:/-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);
  return {
    ...(since !== undefined ? { since: new Date(since).toISOString() } : {}),
    ...(pa.pauseInfo?.manual?.identity ? { by: pa.pauseInfo.manual.identity } : {}),
    ...(pa.pauseInfo?.manual?.reason ? { reason: pa.pauseInfo.manual.reason } : {}),
    ...(pa.state === 5 ? { pending: true } : {}),
    unpause: `temporal activity unpause --workflow-id ${shell(runId)} --activity-id ${shell(pa.activityId ?? '')}${namespace === 'default' ? '' : ` --namespace ${shell(namespace)}`}`,
  };
}

/**
 * How long a task queue may go without a poll before `status` says no worker has polled it: a live worker's long poll
 * lasts up to a minute before it polls again, idle or not, unless every slot of it is busy (Temporal's `task-queue
 * describe`: "Poll requests can last up to a minute, so a LastAccessTime under a minute is normal"); the margin is
 * for a slow server or network.
 */
export const POLL_SILENT_AFTER_SEC = 90;

/** The longest `status` waits for the history and poller lists behind a silent stage's `queueUnpolled` note. */
const UNPOLLED_LOOKUP_MS = 3_000;

/**
 * Marks the silent started stages (no heartbeat for SILENT_AFTER_SEC) whose task queue no worker has polled for
 * POLL_SILENT_AFTER_SEC (`queueUnpolled`), with when the server retries them (last heartbeat + heartbeat timeout).
 * The server lists a killed worker as a poller for five minutes after its last poll, so the list alone said nothing;
 * its last poll's time does. A live worker whose every slot is busy does not poll either: the note says no worker
 * polled, not that the worker is dead. Read only for silent stages, so a healthy run's status costs nothing more.
 */
async function markUnpolledQueues(
  client: Client,
  runId: string,
  execution: string,
  silent: { st: StageStatus; pa: PendingActivityInfo }[],
  now: number,
): Promise<void> {
  // A note, not the status: a history or poller list that cannot be read (denied on a cluster, a slow server) leaves
  // the stage's silence said without it, within UNPOLLED_LOOKUP_MS, instead of failing or holding `status`.
  const lookup = AbortSignal.timeout(UNPOLLED_LOOKUP_MS);
  if (silent.some(({ pa }) => !scheduledQueues.has(`${execution}/${pa.activityId}`)))
    await client.withAbortSignal(lookup, () => readScheduledQueues(client, runId, execution)).catch(() => undefined);
  const queues = [...new Set(silent.map(({ pa }) => scheduledQueues.get(`${execution}/${pa.activityId}`)).filter((q) => q !== undefined))];
  const lastPolls = new Map(
    await Promise.all(
      queues.map(async (q) => [q, await client.withAbortSignal(lookup, () => lastPollMs(client, q)).catch(() => null)] as const),
    ),
  );
  for (const { st, pa } of silent) {
    const queue = scheduledQueues.get(`${execution}/${pa.activityId}`);
    const last = queue === undefined ? null : lastPolls.get(queue);
    // null: the poller list could not be read (nothing is said); undefined: no poller listed at all.
    if (queue === undefined || last === null || (last !== undefined && now - last <= POLL_SILENT_AFTER_SEC * 1000)) continue;
    const beat = Math.max(timeMs(pa.lastHeartbeatTime) ?? 0, timeMs(pa.lastStartedTime) ?? 0);
    const timeout = timeMs(pa.activityOptions?.heartbeatTimeout);
    st.queueUnpolled = {
      queue,
      ...(last !== undefined ? { since: new Date(last).toISOString() } : {}),
      ...(beat > 0 && timeout ? { retryAt: new Date(beat + timeout).toISOString() } : {}),
    };
  }
}

/** The latest poll of `queue`'s stage pollers as the server lists them (milliseconds), undefined where none is listed. */
async function lastPollMs(client: Client, queue: string): Promise<number | undefined> {
  const times = (await pollersOf(client, queue, 'stages')).map((p) => timeMs(p.lastAccessTime)).filter((t): t is number => t !== undefined);
  return times.length ? Math.max(...times) : undefined;
}

type Description = Awaited<ReturnType<WorkflowHandle['describe']>>;

/** getRunStatus of a run that has ended, for a caller that has described it already (`resume`). */
export async function endedRunStatus(client: Client, runId: string, desc: Description): Promise<ClientRunStatus> {
  // A finished run carries its final status in its result (or failure details), so reading it
  // needs no worker to replay the workflow for a query.
  const final = await closedRunStatus(client, runId);
  if (final) return final;
  // Closed with no status attached: a cancelled run's close event carries none (the SDK does not keep
  // the cancellation's details), nor does a terminated or timed-out one. Read without a worker, its
  // history alone said "running".
  return closedWithoutResult(client, runId, desc);
}

async function closedWithoutResult(client: Client, runId: string, desc: Description): Promise<ClientRunStatus> {
  // The workflow's own last status when a worker answers the query (it replays the history); else
  // the history read here. Either way a closed run waits for no worker, and ended as its close says.
  const { noWorkerAnswered: _, ...status } = await queriedOrFromHistory(client, runId, desc);
  status.state = endedState(desc.status.name) ?? 'failed';
  if (desc.closeTime) status.endedAt = desc.closeTime.toISOString();
  // A stage whose activity never reported an end was stopped with the run.
  for (const st of status.stages) if (st.state === 'running') st.state = 'cancelled';
  return status;
}

/**
 * The workflow's own status, by query; when no worker can answer it (none polls the run's task
 * queue, or none answers in STATUS_QUERY_WAIT_MS: its worker was killed), the status is rebuilt from
 * the run's history instead of failing after the server's half-minute query timeout.
 */
async function queriedOrFromHistory(client: Client, runId: string, desc: Description): Promise<ClientRunStatus> {
  const handle = client.workflow.getHandle(runId);
  // The poller list is read beside the query, not before it: a run whose workers are up pays nothing
  // for it, and one whose queue has no poller at all does not wait out STATUS_QUERY_WAIT_MS.
  const giveUp = new AbortController();
  const timer = setTimeout(() => giveUp.abort(), STATUS_QUERY_WAIT_MS);
  const pollers = pollerCount(client, desc.taskQueue, 'workflows').then(
    (n) => {
      if (n === 0) giveUp.abort();
      return n;
    },
    () => undefined,
  );
  try {
    return await client.withAbortSignal(giveUp.signal, () => handle.query<RunStatus>('status'));
  } catch (e) {
    if (!giveUp.signal.aborted && !unanswered(e)) throw e;
  } finally {
    clearTimeout(timer);
  }
  const events = (await fetchDecodedHistory(client, runId)).events ?? [];
  return {
    ...statusFromHistory(client, runId, desc.startTime.toISOString(), events),
    noWorkerAnswered: { taskQueue: desc.taskQueue, pollersListed: (await pollers) !== 0 },
  };
}

/**
 * A running stage whose activity no worker has taken, on a task queue no worker polls (a `queue:` nobody
 * serves), reads "running" forever otherwise: it gets `waitingForWorker`. Looked up only for a stage
 * in that state, which a served queue leaves within milliseconds, so a run's status costs nothing more.
 * A worker whose slots are all busy stops polling, and the server drops it from the list some minutes
 * later: so the note says none polled lately, not that none exists. Where stages of this same run have
 * started on that queue meanwhile (a `gpu:1` worker training one branch while the other waits), the
 * stage is waiting behind them (`waitingBehind`), whether or not the worker is still listed; where
 * stages of other running runs have (that worker training another run), behind those (`waitingBehindRuns`).
 */
/** `execution/activityId` (a run id can be reused) → the task queue the activity was scheduled on (bounded: cleared past 1,000). */
const scheduledQueues = new Map<string, string>();

/**
 * A stage scheduled this recently is most likely being taken as the status is read: other runs are
 * looked through only for one that waited longer.
 */
export const TAKEN_SOON_MS = 2_000;

async function markStagesNobodyTakes(
  client: Client,
  runId: string,
  execution: string,
  status: RunStatus,
  pending: PendingActivityInfo[],
): Promise<void> {
  // A retry waiting out its backoff is scheduled too, and no worker could take it yet: first attempts only.
  const scheduled = pending.filter((pa) => pa.state === 1 && (pa.attempt ?? 1) <= 1 && pa.activityId);
  if (scheduled.length === 0) return;
  const started = pending.filter((pa) => pa.state === 2 && pa.activityId?.startsWith('stage-'));
  // An activity keeps the queue it was scheduled on: the history is read once per waiting stage, not at
  // every status a `--wait` or the dashboard asks for while it waits. Cleared only while no lookup of other runs is under way.
  if (lookupsRunning === 0 && scheduledQueues.size > 1000) scheduledQueues.clear();
  if ([...scheduled, ...started].some((pa) => !scheduledQueues.has(`${execution}/${pa.activityId}`)))
    await readScheduledQueues(client, runId, execution);
  const undecided: { st: StageStatus; queue: string; waitedLong: boolean }[] = [];
  for (const pa of scheduled) {
    const queue = scheduledQueues.get(`${execution}/${pa.activityId}`);
    const st = status.stages.find((s) => s.id === pa.activityId!.replace(/^stage-/, ''));
    if (!queue || !st || st.state !== 'running') continue;
    const behind = started
      .filter((o) => scheduledQueues.get(`${execution}/${o.activityId}`) === queue)
      .map((o) => o.activityId!.replace(/^stage-/, ''));
    if (behind.length > 0) {
      st.waitingForWorker = queue;
      st.waitingBehind = behind;
      continue;
    }
    const scheduledAt = timeMs(pa.scheduledTime);
    undecided.push({ st, queue, waitedLong: scheduledAt === undefined || Date.now() - scheduledAt > TAKEN_SOON_MS });
  }
  if (undecided.length === 0) return;
  // Other runs are looked through whether or not the queue's worker is listed: a busy one stays listed for
  // minutes after its last poll. The poller list still tells a queue nobody serves from a busy one.
  const longWaits = new Set(undecided.filter((u) => u.waitedLong).map((u) => u.queue));
  const [listed, elsewhere] = await Promise.all([
    Promise.all(
      [...new Set(undecided.map((u) => u.queue))].map(async (q) =>
        pollerCount(client, q, 'stages').then(
          (n) => [q, n > 0] as const,
          () => [q, true] as const,
        ),
      ),
    ).then((pairs) => new Map(pairs)),
    longWaits.size > 0 ? stagesRunningOn(client, longWaits, execution).catch(() => new Map<string, BusyStage[]>()) : undefined,
  ]);
  for (const { st, queue } of undecided) {
    const others = elsewhere?.get(queue);
    if (others?.length) {
      st.waitingForWorker = queue;
      st.waitingBehindRuns = others;
    } else if (!listed.get(queue)) st.waitingForWorker = queue;
  }
}

/** Fills `scheduledQueues` from the execution's history. */
async function readScheduledQueues(client: Client, runId: string, execution: string): Promise<void> {
  for (const ev of (await client.workflow.getHandle(runId, execution).fetchHistory()).events ?? []) {
    const a = ev.activityTaskScheduledEventAttributes;
    if (a?.activityId && a.taskQueue?.name) scheduledQueues.set(`${execution}/${a.activityId}`, a.taskQueue.name);
  }
}

/** A stage of another run that a task queue's worker is busy with. */
export interface BusyStage {
  runId: string;
  stage: string;
  /** Its worker has sent no heartbeat for this many seconds (at least SILENT_AFTER_SEC): likely dead, holding the slot until its heartbeat timeout. */
  silentSec?: number;
}

/** Running runs' summaries asked for in one page of the listing (the server's most, by default). */
const RUNS_LISTED_PER_PAGE = 1000;
/** How many running runs are described at once. */
const DESCRIBED_AT_ONCE = 8;
/**
 * How long looking through other runs may take before the status goes without it, or with what was found by
 * then: what bounds a lookup's cost, whatever the number of running runs (every one of them is looked at, the
 * oldest first, as long as this lasts).
 */
const RUNS_LOOKUP_WAIT_MS = 3_000;
/**
 * How long a lookup's answer serves again: `status --watch`, `submit --wait` and the dashboard ask for a
 * waiting run's status every second or so, and each lookup describes every running run.
 */
const RUNS_LOOKUP_REUSE_MS = 5_000;
/**
 * How long the answer of a lookup cut short by RUNS_LOOKUP_WAIT_MS (or missing a run it could not read) is shown
 * while the next lookup runs. It was not kept at all, so with more running runs than 3 s can describe every status
 * of a waiting run (the dashboard's run page, `status --watch`, each second or so) waited the 3 s again.
 */
const CUT_SHORT_SHOWN_MS = 60_000;

type HeldStage = BusyStage & { since: number; execution: string };
type Answer = { found: Map<string, HeldStage[]>; complete: boolean };
/** The lookup under way for a set of queues, and the last one that ended (`at`: when it started). */
type Lookups = { running?: Promise<Answer>; done?: { at: number; answer: Answer } };
const recentLookups = new WeakMap<Client, Map<string, Lookups>>();

/**
 * Stages of running runs (but the execution `except`) started on each of `queues`, the longest running
 * first: what the queue's worker is busy with. Visibility lists a run some moments after it starts or
 * ends, which the describe of each corrects for the ones it lists; a run of another namespace is not seen.
 * A stage whose worker died still counts until the server times it out (its heartbeat timeout, 60 s by default).
 *
 * A complete answer serves again for RUNS_LOOKUP_REUSE_MS. One cut short is shown at once for CUT_SHORT_SHOWN_MS
 * while a new lookup runs behind it (one at a time), whose answer the next call shows: a holder that lookup
 * finds is hidden for no longer than it takes, and no caller waits out the lookup's time again meanwhile.
 */
export async function stagesRunningOn(client: Client, queues: Set<string>, except?: string): Promise<Map<string, BusyStage[]>> {
  const key = [...queues].sort().join('\n');
  const byKey = recentLookups.get(client) ?? new Map<string, Lookups>();
  recentLookups.set(client, byKey);
  const now = Date.now();
  const shown = (d: Lookups['done']) => d !== undefined && now - d.at <= (d.answer.complete ? RUNS_LOOKUP_REUSE_MS : CUT_SHORT_SHOWN_MS);
  for (const [k, v] of byKey) if (!v.running && !shown(v.done)) byKey.delete(k);
  const lookups = byKey.get(key) ?? {};
  byKey.set(key, lookups);
  const done = shown(lookups.done) ? lookups.done : undefined;
  let answer: Answer;
  if (done?.answer.complete) answer = done.answer;
  else {
    if (!lookups.running) {
      const at = Date.now();
      const running = lookUpHeldStages(client, queues);
      lookups.running = running;
      // A failed lookup is not kept (a cut-short answer before it still shows, until its time is up): the next call tries again.
      running.then(
        (a) => {
          lookups.done = { at, answer: a };
          delete lookups.running;
        },
        () => void delete lookups.running,
      );
    }
    answer = done ? done.answer : await lookups.running!;
  }
  const { found } = answer;
  return new Map(
    [...found]
      .map(
        ([q, held]) =>
          [
            q,
            held
              .filter((h) => h.execution !== except)
              .map(({ runId, stage, silentSec }) => ({ runId, stage, ...(silentSec !== undefined ? { silentSec } : {}) })),
          ] as const,
      )
      .filter(([, held]) => held.length > 0),
  );
}

/** Lookups under way: `scheduledQueues` is cleared only when none is, so that none loses what it just read. */
let lookupsRunning = 0;

async function lookUpHeldStages(client: Client, queues: Set<string>): Promise<{ found: Map<string, HeldStage[]>; complete: boolean }> {
  const found = new Map<string, HeldStage[]>();
  if (lookupsRunning === 0 && scheduledQueues.size > 1000) scheduledQueues.clear();
  lookupsRunning++;
  let complete: boolean;
  try {
    complete = await lookUpInto(client, queues, found);
  } finally {
    lookupsRunning--;
  }
  // In one order from one status to the next, so a display that redraws on change does not flicker.
  for (const held of found.values())
    held.sort((a, b) => a.since - b.since || a.runId.localeCompare(b.runId) || a.stage.localeCompare(b.stage));
  return { found, complete };
}

/** Fills `found`; false when time ran out before every run was looked at (what was found may then be partial). */
async function lookUpInto(client: Client, queues: Set<string>, found: Map<string, HeldStage[]>): Promise<boolean> {
  const deadline = AbortSignal.timeout(RUNS_LOOKUP_WAIT_MS);
  // The SDK adds a listener to it for every call made in its scope and never removes one (one per describe, history
  // read and page of the listing): past Node's default of 10, a `tempered status` that looked through more than a few
  // runs printed a MaxListenersExceededWarning. They live as long as this lookup's signal, which nothing else holds.
  setMaxListeners(0, deadline);
  let missed = false;
  await client.withAbortSignal(deadline, async () => {
    // Every running run, not the first few: a queue's holder can be any of them (before, only the 50 oldest of the
    // 500 newest were looked at, and a holder behind more older runs was never found). The summaries are cheap, a
    // page of a thousand per call; the describes are bounded by the lookup's time, not by a count.
    const listed: { workflowId: string; runId: string; startedAt: number }[] = [];
    const query = `WorkflowType = '${WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'`;
    for await (const wf of client.workflow.list({ query, pageSize: RUNS_LISTED_PER_PAGE }))
      listed.push({ workflowId: wf.workflowId, runId: wf.runId, startedAt: wf.startTime.getTime() });
    // The oldest first: the run whose stage holds a worker slot has usually been running longer than the runs
    // waiting behind it, so a lookup cut short by its time has most likely found it.
    const runs = listed.sort((a, b) => a.startedAt - b.startedAt);
    const lookAt = async ({ workflowId, runId }: { workflowId: string; runId: string }): Promise<void> => {
      const desc = await client.workflow.getHandle(workflowId, runId).describe();
      const started = ((desc.raw.pendingActivities ?? []) as PendingActivityInfo[]).filter(
        (pa) => pa.state === 2 && pa.activityId?.startsWith('stage-'),
      );
      if (started.some((pa) => !scheduledQueues.has(`${runId}/${pa.activityId}`))) await readScheduledQueues(client, workflowId, runId);
      for (const pa of started) {
        const queue = scheduledQueues.get(`${runId}/${pa.activityId}`);
        if (!queue || !queues.has(queue)) continue;
        const silent = silentSec(pa, Date.now());
        const busy: HeldStage = {
          runId: workflowId,
          stage: pa.activityId!.replace(/^stage-/, ''),
          since: timeMs(pa.lastStartedTime) ?? Infinity,
          execution: runId,
          ...(silent !== undefined ? { silentSec: silent } : {}),
        };
        found.set(queue, [...(found.get(queue) ?? []), busy]);
      }
    };
    // A run that closed (or was deleted) since it was listed holds nothing: it is left out, not an error; but an
    // answer missing a run it could not read is not kept for the next status.
    await forEachInFlight(runs, DESCRIBED_AT_ONCE, (run) => lookAt(run).catch(() => void (missed = true)));
  });
  return !deadline.aborted && !missed;
}

/**
 * Whether a run's first workflow task, queued on `queue`, waits for a worker rather than being taken now. Just
 * submitted, a served queue's task is still queued for some milliseconds (more on a dev server without tempered's
 * tuning), and `submit --wait`'s first status read met it there: "no worker has picked this run up yet" while a worker
 * polled (3 of 6 runs, cluster journey of 7 Dec). So a task scheduled under TAKEN_SOON_MS ago waits only where no
 * worker polls the queue (none listed); one scheduled earlier waits, listed or not (a dead worker stays listed minutes).
 * `now`: the time of the status read (a test's, so that which side of TAKEN_SOON_MS it falls does not hang on load).
 */
export async function firstTaskWaits(client: Client, queue: string, events: HistoryEvent[], now = Date.now()): Promise<boolean> {
  const scheduled = events.filter((e) => e.workflowTaskScheduledEventAttributes).pop();
  const at = scheduled ? timeMs(scheduled.eventTime) : undefined;
  if (at === undefined || now - at > TAKEN_SOON_MS) return true;
  return (await pollerCount(client, queue, 'workflows').catch(() => 1)) === 0;
}

/**
 * Workers polling `queue` as the server lists them (a killed one stays listed for minutes): for workflow
 * tasks, or for stages (activities).
 */
async function pollerCount(
  client: Client,
  queue: string,
  of: 'workflows' | 'stages',
  namespace = client.options.namespace,
): Promise<number> {
  return (await pollersOf(client, queue, of, namespace)).length;
}

/** The pollers the server lists for `queue`'s workflow or stage tasks. */
async function pollersOf(client: Client, queue: string, of: 'workflows' | 'stages', namespace = client.options.namespace) {
  const res = await client.workflowService.describeTaskQueue({
    namespace,
    taskQueue: { name: queue },
    taskQueueType: of === 'workflows' ? 1 : 2,
  });
  return res.pollers ?? [];
}

/** A query that no worker answered: the client's deadline passed, or the server gave up waiting for a worker. */
function unanswered(e: unknown): boolean {
  if (!(e instanceof ServiceError)) return false;
  const code = (e.cause as { code?: number } | undefined)?.code;
  // gRPC's DEADLINE_EXCEEDED and CANCELLED.
  return code === 4 || code === 1;
}

/** A protobuf timestamp in milliseconds since the epoch. */
function timeMs(t: { seconds?: unknown; nanos?: number | null } | null | undefined): number | undefined {
  if (!t?.seconds) return undefined;
  return Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6);
}

/** Reads an event's time as ISO text. */
function eventTime(ev: HistoryEvent): string | undefined {
  const ms = timeMs(ev.eventTime);
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

/**
 * A running run's status from its history alone, with no worker to ask: each stage's activity
 * (`stage-<id>`) scheduled, completed (or reused from the cache), failed, timed out or cancelled.
 * A stage the workflow found in the cache by its own lookup (one routed to another queue) shows as
 * pending here; the run's gate verdict is not in it either. `events` as fetchDecodedHistory gives them: payloads decoded.
 */
export function statusFromHistory(client: Client, runId: string, startedAt: string, events: HistoryEvent[]): RunStatus {
  return applyActivityEvents(client, pendingStatus(inputOf(client, runId, events), runId, startedAt), events);
}

/**
 * `status`'s stages as the history's activity events leave them. `unplanned`: a stage not in `status` yet is added
 * when its activity is scheduled (its kind from the activity type), for a status whose plan could not be read.
 */
function applyActivityEvents<S extends RunStatus>(client: Client, status: S, events: HistoryEvent[], o: { unplanned?: boolean } = {}): S {
  const byId = new Map(status.stages.map((s) => [s.id, s]));
  const byScheduled = new Map<string, StageStatus>();
  const converter = client.options.loadedDataConverter.payloadConverter;
  const decode = (p: unknown): unknown => {
    try {
      return p ? converter.fromPayload(p as never) : undefined;
    } catch {
      return undefined;
    }
  };
  // A stage whose attempts ran out on stopped workers is scheduled again (workflows/pipeline.ts): the attempts of its
  // earlier schedulings, which the workflow's own status counts in.
  const earlier = new Map<StageStatus, number>();
  for (const ev of events) {
    const time = eventTime(ev);
    // Written when the stage's last attempt ended (Temporal records no earlier attempt's start): its number.
    const started = ev.activityTaskStartedEventAttributes;
    if (started) {
      const st = byScheduled.get(String(started.scheduledEventId ?? ''));
      if (st && started.attempt) st.attempt = (earlier.get(st) ?? 0) + started.attempt;
      continue;
    }
    const a = ev.activityTaskScheduledEventAttributes;
    if (a) {
      const id = a.activityId?.startsWith('stage-') ? a.activityId.slice('stage-'.length) : undefined;
      if (id !== undefined && o.unplanned && !byId.has(id)) {
        const added: StageStatus = { id, uses: a.activityType?.name ?? '?', needs: [], state: 'pending' };
        status.stages.push(added);
        byId.set(id, added);
      }
      const st = id === undefined ? undefined : byId.get(id);
      if (!st) continue;
      byScheduled.set(String(ev.eventId), st);
      if (st.state === 'failed' && st.attempt) earlier.set(st, st.attempt);
      Object.assign(st, {
        state: 'running',
        attempt: (earlier.get(st) ?? 0) + 1,
        startedAt: earlier.has(st) ? st.startedAt : time,
        endedAt: undefined,
        error: undefined,
      });
      continue;
    }
    const done = ev.activityTaskCompletedEventAttributes;
    const failed = ev.activityTaskFailedEventAttributes;
    const timedOut = ev.activityTaskTimedOutEventAttributes;
    const cancelled = ev.activityTaskCanceledEventAttributes;
    const st = byScheduled.get(String((done ?? failed ?? timedOut ?? cancelled)?.scheduledEventId ?? ''));
    if (!st) continue;
    st.endedAt = time;
    if (done) {
      const result = decode(done.result?.payloads?.[0]) as Partial<StageResult> | undefined;
      st.outputs = result?.outputs;
      if (result?.cacheKey) st.cacheKey = result.cacheKey;
      if (result?.cachedFrom) {
        st.state = 'cached';
        st.cachedFrom = result.cachedFrom;
        st.attempt = undefined;
      } else st.state = 'succeeded';
    } else if (failed || timedOut) {
      // ActivityFailure wraps the activity's own failure in `cause`, as the workflow reads it.
      let f = (failed ?? timedOut)!.failure;
      while (f?.cause && f.activityFailureInfo) f = f.cause;
      const details = decode(f?.applicationFailureInfo?.details?.payloads?.[0]) as { hint?: unknown; code?: unknown } | undefined;
      const retryState = retryStateName((failed ?? timedOut)!.retryState);
      st.state = 'failed';
      st.error = {
        message: f?.message ?? (timedOut ? 'timed out' : 'failed'),
        ...(f?.applicationFailureInfo?.type ? { type: f.applicationFailureInfo.type } : {}),
        ...(f?.applicationFailureInfo?.nonRetryable ? { nonRetryable: true } : {}),
        ...(typeof details?.hint === 'string' ? { hint: details.hint } : {}),
        ...(typeof details?.code === 'string' ? { code: details.code } : {}),
        ...(retryState ? { retryState } : {}),
      };
    } else st.state = 'cancelled';
  }
  return status;
}

/**
 * How the run's first workflow task went: `done`; `queued`, no worker has taken it (the run waits in
 * its task queue); or `failing`, a worker took it and failed it (an unknown workflow type, a broken
 * workflow bundle), with the failure. Looked at only while the history is this short: a run that
 * started has more events.
 */
export async function firstTask(
  client: Client,
  runId: string,
  historyLength: number,
): Promise<
  { state: 'done' } | { state: 'queued'; cancelRequested: boolean; events: HistoryEvent[] } | { state: 'failing'; message: string }
> {
  if (historyLength > 5) return { state: 'done' };
  const events = (await fetchDecodedHistory(client, runId)).events ?? [];
  if (events.some((e) => e.workflowTaskCompletedEventAttributes)) return { state: 'done' };
  const failed = events.find((e) => e.workflowTaskFailedEventAttributes || e.workflowTaskTimedOutEventAttributes);
  if (!failed) return { state: 'queued', cancelRequested: events.some((e) => e.workflowExecutionCancelRequestedEventAttributes), events };
  return {
    state: 'failing',
    message: failed.workflowTaskFailedEventAttributes?.failure?.message ?? 'the worker did not finish it in time',
  };
}

async function closedRunStatus(client: Client, runId: string): Promise<RunStatus | undefined> {
  try {
    return (await client.workflow.getHandle(runId).result()) as RunStatus;
  } catch (e) {
    if (e instanceof WorkflowFailedError) {
      const details = (e.cause as { details?: unknown[] } | undefined)?.details;
      if (details && details.length > 0) return details[0] as RunStatus;
    }
    return undefined;
  }
}

export interface RunSummary {
  runId: string;
  pipeline: string;
  status: string;
  startTime: Date;
  closeTime?: Date;
  actor?: string;
  /** Temporal's id of this execution (a run id can be reused once the earlier run closed). */
  execution?: string;
  /** Schedule that started the run, if one did, or whose run this one resumes. */
  scheduleId?: string;
  /** The run this one resumes, if it is a resume. */
  resumeOf?: string;
  /** The parameters it was submitted with (secret-named ones hidden); runs submitted before 7 Dec 2026 have none. */
  params?: Record<string, unknown>;
  /**
   * Set where the run's gate (a schedule's `--skip-if-unchanged` or triggers, a pipeline file's `triggers`) ended it
   * before it trained: Temporal says COMPLETED, as of a run that retrained, and only the run's result says which.
   */
  skipped?: Pick<RunGateResult, 'outcome' | 'reason'>;
  /**
   * Why pipeline, actor, params, resumeOf (and scheduleId, unless a schedule started it) are not there: the run's memo
   * is encrypted (TEMPERED_PAYLOAD_KEY) with a key this process lacks; the codec's error, naming the key id and the
   * variable. `pipeline` then reads ENCRYPTED_FIELD, unless the run carries it in the TemperedPipeline search attribute
   * (client/pipeline-attribute.ts), which is in clear.
   */
  memoEncrypted?: string;
}

export { ENCRYPTED_FIELD };

export interface RunFilters {
  /** Temporal execution status: Running, Completed, Failed, Canceled, Terminated, TimedOut. */
  status?: string;
  /**
   * The pipeline's name or its beginning, in any case (names are lowercase). Matched by Temporal's list query where the
   * namespace has TemperedPipeline (client/pipeline-attribute.ts), in the memo of runs without it.
   */
  pipeline?: string;
  schedule?: string;
  /** Runs started at or after this instant. */
  since?: Date;
  /** The beginning of a run id, as typed: any character, a quote included (`--run-id` takes any). */
  id?: string;
}

const EXECUTION_STATUSES = ['Running', 'Completed', 'Failed', 'Canceled', 'Terminated', 'TimedOut', 'ContinuedAsNew'];

/**
 * `text` as a string in a Temporal list query, matched as typed: a quote is escaped, not dropped (dropping it matched
 * other runs: `--run-id` and schedule names take any text) and cannot end the string. Temporal's list query matches no
 * value holding a backslash, escaped or not: an InputError naming `where` says so instead of listing none.
 */
export function queryString(text: string, field: { what: string; where: string; hint?: string }): string {
  if (text.includes('\\'))
    throw new InputError(`Temporal's run list cannot match a ${field.what} holding a backslash: ${JSON.stringify(text)}`, {
      where: field.where,
      ...(field.hint ? { hint: field.hint } : {}),
    });
  return `'${text.replace(/'/g, "\\'")}'`;
}

/**
 * Newest started first (ties by run id), the same runs in the same order however long the page: the `limit` newest
 * started of those that match, not the first `limit` Temporal lists (see listedBy). Pipeline is kept in the memo, which
 * visibility cannot query, so that filter applies while reading.
 */
export async function listRuns(client: Client, limit = 20, filters: RunFilters = {}): Promise<RunSummary[]> {
  const clauses = [`WorkflowType = '${WORKFLOW_TYPE}'`];
  if (filters.status) {
    const st = EXECUTION_STATUSES.find((s) => s.toLowerCase() === String(filters.status).toLowerCase());
    if (!st) throw new InputError(`unknown run status '${filters.status}'; one of ${EXECUTION_STATUSES.join(', ')}`, { where: 'status' });
    clauses.push(`ExecutionStatus = '${st}'`);
  }
  if (filters.since) {
    // Temporal refuses a time past year 9999 or before year 1 as 'Failed to list workflows' (and an invalid Date has no
    // ISO form): named here instead.
    const t = filters.since.getTime();
    if (!(t >= Date.UTC(1, 0, 1) && t < Date.UTC(10000, 0, 1)))
      throw new InputError(`a start time between the years 1 and 9999, not ${filters.since.toString()}`, { where: 'since' });
    clauses.push(`StartTime >= '${filters.since.toISOString()}'`);
  }
  const id = filters.id?.trim();
  if (id)
    clauses.push(
      `WorkflowId STARTS_WITH ${queryString(id, { what: 'run id', where: 'id', hint: 'give the id up to the backslash, or open the run by its whole id' })}`,
    );
  const pipeline = filters.pipeline?.trim().toLowerCase() || undefined;
  const named = pipeline && queryString(pipeline, { what: 'pipeline name', where: 'pipeline' });
  // Runs that carry the attribute are matched by Temporal; those without it (submitted before it was registered, or by
  // a schedule made before) come too and are matched in their memo. Without it every run's memo is read.
  const byAttribute = !!named && (await hasPipelineAttribute(client));
  if (byAttribute) clauses.push(`(${PIPELINE_ATTRIBUTE} STARTS_WITH ${named} OR ${PIPELINE_ATTRIBUTE} IS NULL)`);
  const schedule = filters.schedule?.trim() || undefined;
  const asSchedule = { what: 'schedule name', where: 'schedule' };
  const scheduleNamed = schedule && queryString(schedule, asSchedule);
  // A resumed run of a schedule was not started by it: it is named after the schedule and says so in
  // its memo. A server whose visibility store has no STARTS_WITH lists the schedule's own runs only.
  const byName = scheduleNamed
    ? [...clauses, `(TemporalScheduledById = ${scheduleNamed} OR WorkflowId STARTS_WITH ${queryString(`${schedule}-`, asSchedule)})`]
    : clauses;
  if (scheduleNamed) clauses.push(`TemporalScheduledById = ${scheduleNamed}`);
  let runs: RunSummary[];
  try {
    runs = await listed(client, byName.join(' AND '), limit, { oneStatus: !!filters.status, id, pipeline, byAttribute, schedule });
  } catch (e) {
    const err = e as { code?: number; cause?: { code?: number } };
    if (!schedule || (err.code ?? err.cause?.code) !== 3) throw e; // gRPC INVALID_ARGUMENT
    runs = await listed(client, clauses.join(' AND '), limit, { oneStatus: !!filters.status, id, pipeline, byAttribute, schedule });
  }
  await markGateSkips(client, runs);
  return runs;
}

/** What became of ended runs' gates (ended-gates.ts): a result never changes (the Runs page asks every 3 s). */
const gateOfEnded = new EndedGates<Pick<RunGateResult, 'outcome' | 'reason'> | null>(5000);

/**
 * Sets `skipped` on the completed runs whose gate ended them before they trained ("unchanged", "not-triggered"): they
 * read COMPLETED, as a nightly run that retrained does. Each such run's result is read once (its close event alone); a
 * result that cannot be read, now or ever (a key this process lacks, a history the server no longer has), leaves the
 * run as listed.
 */
export async function markGateSkips(client: Client, runs: RunSummary[]): Promise<void> {
  const completed = runs.filter((r) => r.status === 'COMPLETED');
  await forEachInFlight(completed, 8, async (r) => {
    const key = `${r.runId}/${r.execution ?? ''}`;
    let gate = gateOfEnded.get(key);
    if (gate === undefined) {
      // Without its key a result stays unreadable, and so does a history the server dropped (its retention ended while
      // the run was still listed): remembered as no gate, not asked for again every 3 s.
      const st = (await client.workflow
        .getHandle(r.runId, r.execution, { followRuns: false })
        .result()
        .catch((e: unknown) => (e instanceof PayloadKeyError || e instanceof WorkflowNotFoundError ? null : undefined))) as
        | RunStatus
        | null
        | undefined;
      if (st === undefined) return;
      gate = st?.gate && !st.gate.proceed ? { outcome: st.gate.outcome, reason: st.gate.reason } : null;
      gateOfEnded.set(key, gate, completed.length);
    }
    if (gate) r.skipped = gate;
  });
}

/**
 * Runs asked for per page of the listing where only the server's query filters them: the page is the
 * list's length, and a few more. Unset, the server sends its largest page (1,000 on the dev server), every run's memo
 * decoded to show 20: the dashboard's Runs page, refreshed every 3 s, read a thousand runs each time. The few more
 * settle the start order (listedBy) in the same request: the run after the newest `limit` started, when they ran one
 * after another, or overlapping ones (a sweep's trials).
 */
function runsPageSize(limit: number, m: Matching): number {
  // A pipeline Temporal cannot match is matched here, in the memo, so more runs are read than shown; pages stay bounded.
  const ordered = Math.min(1000, Math.max(1, limit) + Math.max(10, Math.ceil(limit / 5)));
  return m.pipeline && !m.byAttribute ? Math.max(ordered, FILTERED_PAGE) : ordered;
}
const FILTERED_PAGE = 200;

/**
 * Every listing goes through listingClient: with the key it reads every memo as the client itself would (its codec
 * is the client's, failing over to a mark only where a payload cannot be decrypted), and a run whose memo this process
 * cannot decrypt shows with what Temporal keeps in clear instead of failing the listing. One list request either way:
 * listing first through the client and again on a PayloadKeyError sent two for a one-shot `tempered runs` without the key.
 */
function listed(client: Client, query: string, limit: number, m: Matching): Promise<RunSummary[]> {
  return listedBy(listingClient(client), query, limit, m);
}

/** What a listed run is matched against beside the query: the pipeline (lowercase), unless the query matched it by attribute, and the schedule. */
interface Matching {
  /** The query asks for one execution status: its runs come in one order (listedBy). */
  oneStatus?: boolean;
  /** The beginning of the run id, as typed. */
  id?: string;
  pipeline?: string;
  byAttribute?: boolean;
  schedule?: string;
}

/**
 * A listed run's params, secret-named ones hidden: a submitted run's memo keeps them as an object (hidden already); a
 * schedule's run's keeps the schedule's `--param k=v` overrides as given, a list, which the Runs page showed as
 * `0=lr=0.02 1=api_token=<the token>`.
 */
function listedParams(params: unknown): Record<string, unknown> | undefined {
  const given = Array.isArray(params)
    ? Object.fromEntries(
        params.filter((p): p is string => typeof p === 'string').map((p) => [p.split('=', 1)[0]!, p.slice(p.indexOf('=') + 1)]),
      )
    : params;
  return given && typeof given === 'object' ? (redactJson(given, [], { secretKeys: true }) as Record<string, unknown>) : undefined;
}

/** Newest started first; between runs started in the same millisecond, by run id. */
const byStart = (a: RunSummary, b: RunSummary) =>
  b.startTime.getTime() - a.startTime.getTime() || (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0);

/**
 * The `limit` newest started runs that match, newest first. Temporal lists running runs first (newest started first),
 * then ended ones by when they ended, latest first (the only order SQL visibility has; Elasticsearch's is the same
 * unless asked): taking the first `limit` it lists showed, on one page, a run that ended last but started a week ago
 * and not the one started after it that ended before it, which the next page then put above the first page's rows.
 * Running and ended runs are listed apart (one list where the query asks for one status): in one list, a run running
 * since last week comes before every ended one, one that started yesterday included, so no run read there bounds when
 * the unread ones started. In each list a run not read yet started no later than the last one read started (running)
 * or ended (ended), so reading it stops once `limit` runs read started after that instant: strictly, since one started
 * in the same millisecond is ordered by its run id here and by its execution's there.
 */
async function listedBy(client: Client, query: string, limit: number, m: Matching): Promise<RunSummary[]> {
  const out: RunSummary[] = [];
  const lists = m.oneStatus ? [query] : [`${query} AND ExecutionStatus = 'Running'`, `${query} AND ExecutionStatus != 'Running'`];
  for (const q of lists) await readListed(client, q, limit, m, out);
  return out.sort(byStart).slice(0, limit);
}

/** Adds to `out` the runs of one list (all running, or all ended) that match, until no unread one can be among the newest `limit`. */
async function readListed(client: Client, query: string, limit: number, m: Matching, out: RunSummary[]): Promise<void> {
  const { pipeline, schedule } = m;
  for await (const wf of client.workflow.list({ query, pageSize: runsPageSize(limit, m) })) {
    const unlistedStartedBy = (wf.closeTime ?? wf.startTime).getTime();
    const memoWhy = memoEncrypted(wf);
    const memo = (memoWhy ? {} : (wf.memo ?? {})) as Record<string, string>;
    const startedBy = (wf.searchAttributes as Record<string, unknown[]> | undefined)?.TemporalScheduledById?.[0];
    const scheduled = typeof startedBy === 'string' ? startedBy : memo.scheduleId || undefined;
    const params = memoWhy ? undefined : listedParams(wf.memo?.params);
    // The pipeline in the attribute where the query asked for it, else in the memo; an encrypted memo's cannot be
    // matched: such a run without the attribute is left out of a filtered list. What the query matched is checked again:
    // Temporal's STARTS_WITH drops a quote that begins or ends its value (`a'` listed every run beginning `a`), and
    // SQLite's ignores case where PostgreSQL's does not.
    const matches =
      (!m.id || wf.workflowId.startsWith(m.id)) &&
      (!pipeline || ((m.byAttribute ? listedPipeline(wf) : undefined) ?? memo.pipeline ?? '').startsWith(pipeline)) &&
      (!schedule || scheduled === schedule);
    if (matches)
      out.push({
        runId: wf.workflowId,
        // Without the key, the name its search attribute keeps in clear, where it has one.
        pipeline: memoWhy ? (listedPipeline(wf) ?? ENCRYPTED_FIELD) : (memo.pipeline ?? '?'),
        status: wf.status.name,
        startTime: wf.startTime,
        closeTime: wf.closeTime,
        actor: memo.actor,
        execution: wf.runId,
        ...(scheduled ? { scheduleId: scheduled } : {}),
        ...(memo.resumeOf ? { resumeOf: memo.resumeOf } : {}),
        ...(params ? { params } : {}),
        ...(memoWhy ? { memoEncrypted: memoWhy } : {}),
      });
    if (out.length >= limit && out.filter((r) => r.startTime.getTime() > unlistedStartedBy).length >= limit) break;
  }
}

/** Waits for the run; resolves with the final status whether it succeeded or failed. */
export async function waitForRun(client: Client, runId: string): Promise<RunStatus> {
  const handle = client.workflow.getHandle(runId);
  try {
    return (await handle.result()) as RunStatus;
  } catch (e) {
    if (e instanceof WorkflowFailedError) {
      const st = await closedRunStatus(client, runId);
      if (st) return st;
      return getRunStatus(client, runId);
    }
    throw e;
  }
}

/**
 * Polls the run's status, handing each one to `onStatus`, until the workflow has closed; returns
 * the final status.
 */
export async function followRun(
  client: Client,
  runId: string,
  onStatus: (st: ClientRunStatus) => void = () => {},
  intervalMs = 1000,
  signal?: AbortSignal,
): Promise<ClientRunStatus> {
  for (;;) {
    signal?.throwIfAborted();
    let st: ClientRunStatus;
    try {
      // Followed by a person or a script waiting for its end: what is in clear does for one this process lacks the key of.
      st = await getRunStatus(client, runId, { showClear: true });
    } catch (e) {
      // The run's first workflow task may not have run yet; keep polling. Not a run the server does not have (never
      // was, or deleted after its namespace's retention), which is never found: `status --watch` of one polled for ever.
      if (/query|not found|workflow task/i.test((e as Error).message)) {
        if (
          await listingClient(client)
            .workflow.getHandle(runId)
            .describe()
            .then(
              () => false,
              (d: unknown) => d instanceof WorkflowNotFoundError,
            )
        )
          throw e;
        await sleep(500, undefined, { signal });
        continue;
      }
      throw e;
    }
    signal?.throwIfAborted();
    onStatus(st);
    if (st.state !== 'running') {
      // Whether it has closed needs none of its payloads: read so without the key too (listingClient marks its memo).
      const desc = await listingClient(client).workflow.getHandle(runId).describe();
      if (desc.status.name !== 'RUNNING') return st;
    }
    await sleep(intervalMs, undefined, { signal });
  }
}

/** Whether a worker polls `queue` for workflow tasks (or, with `activities`, for stages). */
export async function hasWorkers(client: Client, namespace: string, queue: string, activities = false): Promise<boolean> {
  return (await pollerCount(client, queue, activities ? 'stages' : 'workflows', namespace)) > 0;
}

/**
 * The input a run was started with, read back from its history. Only the input is decoded: a run submitted without the
 * key whose worker had one (its stages' results encrypted) was refused a keyless resume as if its input needed the key.
 */
export async function runInput(client: Client, runId: string): Promise<RunInput> {
  const events = (await client.workflow.getHandle(runId).fetchHistory()).events ?? [];
  await decodePayloadsIn(
    client,
    events.find((e) => e.workflowExecutionStartedEventAttributes)?.workflowExecutionStartedEventAttributes?.input,
  );
  return inputOf(client, runId, events);
}

/** The input in a run's history that has been read, with its input decoded already. */
function inputOf(client: Client, runId: string, events: HistoryEvent[]): RunInput {
  const started = events.find((e) => e.workflowExecutionStartedEventAttributes)?.workflowExecutionStartedEventAttributes;
  const payload = started?.input?.payloads?.[0];
  if (!payload) throw new Error(`run ${runId} has no recorded input`);
  return client.options.loadedDataConverter.payloadConverter.fromPayload(payload) as RunInput;
}

/**
 * Appends `run.submitted` for a run this client started: who, which spec and params. The run id
 * (workflow id) can be reused once the earlier run closed (`submit --run-id`), so the record is
 * keyed on the execution too; without it a second submission under the same id went unrecorded.
 * The spec itself goes in too, not only its hash: `plan` (the resolved spec the run follows, whose canonical JSON
 * hashes to `specHash`) and `spec` (the file's text and its sha256, when submitted from a file), since the run's
 * history on the server, the only other copy, is deleted after the namespace's retention (a day on the dev server).
 */
export async function auditRunSubmitted(
  auditDb: string | KeptOpen<AuditLog>,
  runId: string,
  input: RunInput,
  executionId?: string,
): Promise<void> {
  // The append-only trail keeps the spec with its credentials hidden, and says where (src/audit/redact-spec.ts).
  const kept = keptSpec(specBody(input.plan), input.options.specText);
  await useOpen(auditDb, openAudit, (audit) =>
    audit.append({
      action: 'run.submitted',
      subject: runId,
      runId,
      actor: input.options.actor,
      specHash: input.plan.specHash,
      details: {
        pipeline: input.plan.name,
        params: kept.params,
        specFile: input.options.specFile,
        ...(kept.spec ? { spec: kept.spec } : {}),
        plan: kept.plan,
        ...(kept.redacted ? { redacted: kept.redacted } : {}),
        resumeOf: input.options.resumeOf,
        ...(input.options.scheduleId ? { scheduleId: input.options.scheduleId } : {}),
        noCache: !!input.options.noCache,
        // What names the run's own checkpoint folders (`<cache key>.fresh-<name>-<stage>` under the checkpoints folder
        // and in a shared store's bucket): ownCheckpoints for every train stage, uncachedCheckpoints for `cache: false` ones.
        ...(input.options.ownCheckpoints ? { ownCheckpoints: input.options.ownCheckpoints } : {}),
        ...(input.options.uncachedCheckpoints ? { uncachedCheckpoints: input.options.uncachedCheckpoints } : {}),
        ...(input.options.cachedStages ? { cachedStages: input.options.cachedStages } : {}),
        execution: executionId ?? null,
      },
      dedupeKey: executionId ? `${runId}/${executionId}/submitted` : `${runId}/submitted`,
    }),
  );
}
