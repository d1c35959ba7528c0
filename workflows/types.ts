/**
 * Shapes that cross the workflow boundary (inputs, status, results). Plain JSON, imported by both
 * workflow code and clients, so this file imports types only (erased before bundling).
 */
import type { PlannedPipeline, TriggerSpec } from '../src/spec/types.ts';

export interface RunOptions {
  /** Directory that relative paths in the spec are resolved against (the spec file's folder). */
  baseDir: string;
  /** Who submitted the run (TEMPERED_ACTOR or the OS user). */
  actor: string;
  noCache?: boolean;
  /**
   * Training starts from step 0: checkpoints that earlier runs of the same work left (a run killed mid-training) are
   * ignored, not resumed (`models reproduce`, whose rerun must owe nothing to another run's weights).
   */
  freshTraining?: boolean;
  /**
   * Set by submitRun on a run submitted with noCache (`--no-cache`): what names the checkpoint folders its trainings
   * write and resume (`<cache key>.fresh-<this>-<stage>`), beside the work's, so that it trains from step 0 and resumes
   * no checkpoint another run of the same work left. A resume copies the run's options, this included, so it continues
   * from the checkpoints of the run it resumes (and of that run's own resumes). The run's id and a random part: a run id
   * used again (`submit --run-id`) names another training. Absent in runs submitted before 7 Dec 2026 (README, Upgrading).
   */
  ownCheckpoints?: string;
  /**
   * Set by submitRun on a run without noCache whose plan has a stage with `cache: false`: what names the checkpoint
   * folder of such a train stage, as ownCheckpoints names a `--no-cache` run's (the workflow passes it as that stage's
   * ownCheckpoints), so its retry resumes no checkpoint another run of the same work left in the work's folder, and a
   * resume (which copies it) continues its own. Absent in runs submitted before 8 Dec 2026: they train in the work's folder.
   */
  uncachedCheckpoints?: string;
  /**
   * Set on the input of a schedule (created or updated since 8 Dec 2026) whose plan has a train stage with `cache:
   * false`: each run it starts names its uncachedCheckpoints from its own workflow id (runCheckpointName in
   * workflows/run-checkpoints.ts), since the schedule's input is the same for all of them. A resume of such a run
   * gets the name itself (client/resume-input.ts). Absent in schedules made before: their runs train in the work's folder.
   */
  uncachedCheckpointsFromRunId?: boolean;
  /**
   * Set on a resume of a `--no-cache` run (which keeps noCache): the stages the run it resumes finished, which this
   * one may take from the stage cache; every other stage runs again, as noCache says. Absent otherwise (and in
   * resumes made before 8 Dec 2026, which set noCache false and read the cache for every stage).
   */
  cachedStages?: string[];
  /** Run this one resumes, for lineage. */
  resumeOf?: string;
  /** Path of the spec file as submitted, for the audit trail. */
  specFile?: string;
  /**
   * The spec file's text as submitted, for the audit trail (`run.submitted` keeps it): once the server's history is
   * gone (the dev server keeps it for a day) the hash alone gives no spec back. Absent for runs submitted before it was
   * kept and for runs a schedule starts. Never sent to Temporal since 7 Dec (submitRun leaves it out of the workflow's
   * input; the workflow never read it), so the history does not keep the file's credentials; runs submitted before
   * carry it in their input, which a resume passes on to its own `run.submitted` record.
   */
  specText?: string;
  /** Task queue for stages that name none. */
  defaultQueue?: string;
  /** Retrain-only-when-it-matters checks, evaluated once every ingest stage has finished. */
  gate?: RunGateSpec;
  /** Schedule that started the run, for the audit trail. */
  scheduleId?: string;
  /**
   * The store and database of the process that submitted (or resumed) the run: a worker whose own differ refuses its
   * stages (activities/backends.ts). Absent in runs submitted before it was recorded.
   */
  backends?: RunBackends;
}

/**
 * Which store and database a process uses, by name: `local` for this host's folder and SQLite file, else the bucket
 * and prefix (`s3://tempered/team`) or `shared folder`, and the database (`postgres:tempered`). Not by host, port or
 * mount path: workers may reach the same servers and share under other names. A shared store or database also has
 * an id kept in it (src/store/instance-id.ts, src/db/instance-id.ts), which is what is compared when both sides know
 * it: two servers' buckets or databases may have one name, and one database may have two (a pooler's alias).
 */
export interface RunBackends {
  store: string;
  database: string;
  /** The shared store's instance id; absent for a local store, or where it could not be read (then names are compared). */
  storeId?: string;
  /** The shared database's instance id; likewise. */
  databaseId?: string;
}

/** Retrain-only-when-it-matters checks; the spec's `triggers` (type-only import: erased before bundling). */
export type RunGateSpec = TriggerSpec;

export interface IngestFingerprint {
  stageId: string;
  dataHash: string;
  /** The ingest report artifact (label counts live there). */
  report: unknown;
}

export interface RunGateRequest {
  pipeline: string;
  runId: string;
  specHash: string;
  actor: string;
  scheduleId?: string;
  gate: RunGateSpec;
  ingest: IngestFingerprint[];
  /** The run's store and database (RunOptions.backends), which the worker checks against its own. */
  backends?: RunBackends;
}

export interface RunGateResult {
  proceed: boolean;
  /** 'unchanged' and 'not-triggered' end the run early; 'changed' and 'triggered' go on. */
  outcome: 'changed' | 'unchanged' | 'triggered' | 'not-triggered' | 'first-run';
  reason: string;
}

export interface RunOutcomeRecord {
  pipeline: string;
  /** Schedules keep their own history: two schedules of one pipeline must not overwrite each other. */
  scheduleId?: string;
  runId: string;
  specHash: string;
  ingest: IngestFingerprint[];
  /** The run's store and database (RunOptions.backends), which the worker checks against its own. */
  backends?: RunBackends;
}

/** How a run ended, for the audit trail (`run.completed` / `run.failed` / `run.cancelled`). */
export interface RunEndRecord {
  runId: string;
  /** The workflow execution: a run id reused later (`submit --run-id`, schedules) is another execution. */
  execution: string;
  state: 'succeeded' | 'failed' | 'cancelled';
  actor: string;
  specHash: string;
  pipeline: string;
  /** Each stage's final state, by id. */
  stages: Record<string, string>;
  /** The first failed stage's error, when it failed. */
  error?: string;
  /** The schedule that started the run (or the run it resumes), for the worker's run metrics. */
  scheduleId?: string;
  /** The run's store and database (RunOptions.backends), which the worker checks against its own. */
  backends?: RunBackends;
}

export interface RunInput {
  /** As the spec planner made it (`planPipeline`). */
  plan: PlannedPipeline;
  options: RunOptions;
}

export type StageState = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'cached' | 'cancelled';

export interface StageStatus {
  id: string;
  uses: string;
  needs: string[];
  state: StageState;
  /** Attempt number of the last activity attempt the workflow knows of (1-based). */
  attempt?: number;
  startedAt?: string;
  endedAt?: string;
  outputs?: Record<string, unknown>;
  error?: {
    message: string;
    type?: string;
    nonRetryable?: boolean;
    hint?: string;
    /** An InputError's kind (src/errors.ts InputErrorCode), so the CLI can add advice without reading the message. */
    code?: string;
    /**
     * Why Temporal stopped retrying the stage's activity, as the ActivityFailure says (`retryState`):
     * 'MAXIMUM_ATTEMPTS_REACHED', 'NON_RETRYABLE_FAILURE', 'TIMEOUT', … Absent in runs recorded before it was kept.
     */
    retryState?: string;
    /** Set by the client for display (client/failure-notes.ts): how the retries went, and hints Temporal's own messages lack. */
    note?: string;
    moreHints?: string[];
  };
  /**
   * Set by the client (never the workflow) for a running stage no worker has taken: its task queue, when
   * no worker polls that queue, or when stages of this run (`waitingBehind`) or of other runs
   * (`waitingBehindRuns`) hold the queue's worker.
   */
  waitingForWorker?: string;
  /** Set by the client with `waitingForWorker`: stages of this run running on that queue meanwhile, which its worker is busy with. */
  waitingBehind?: string[];
  /**
   * Set by the client with `waitingForWorker`, where no stage of this run holds the queue: stages of other
   * running runs started on that queue, which its worker is busy with (the longest running first).
   */
  waitingBehindRuns?: { runId: string; stage: string; silentSec?: number }[];
  cacheKey?: string;
  /** Run that produced a cached output. */
  cachedFrom?: { runId: string; stageId: string };
  /** Filled by the client from the pending activity's last heartbeat. */
  progress?: Record<string, unknown>;
  /**
   * Set by the client for a started stage whose worker has not heartbeaten for this many seconds (it beats every
   * 2 s or sooner): its worker was likely killed or cut off. The server retries the stage only once the stage's
   * heartbeat timeout has passed; until then the stage still reads running.
   */
  silentSec?: number;
  /**
   * Set by the client for a running stage whose activity an operator paused (`temporal activity pause`): Temporal runs
   * no attempt of it until it is unpaused (an attempt running when the pause came is stopped at its next heartbeat), so
   * the last attempt's progress is not live. `pending`: the pause is asked for and that attempt still runs.
   */
  paused?: { since?: string; by?: string; reason?: string; pending?: boolean; unpause: string };
  /**
   * Set by the client for a started stage whose task queue no worker has polled for longer than a live worker's long
   * poll lasts (POLL_SILENT_AFTER_SEC): the worker running it may be gone (or busy in every slot). `retryAt`: when its
   * heartbeat timeout passes and the server retries it, from its last heartbeat.
   */
  queueUnpolled?: { queue: string; since?: string; retryAt?: string };
  skippedBecause?: string;
}

export type RunState = 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface RunStatus {
  runId: string;
  name: string;
  specHash: string;
  state: RunState;
  startedAt: string;
  endedAt?: string;
  actor: string;
  resumeOf?: string;
  params: Record<string, unknown>;
  stages: StageStatus[];
  /** Set when a run gate ended the run early or let it go on. */
  gate?: RunGateResult;
  /**
   * Set by the workflow while it writes the run's end record to the audit log (which waits up to half an hour for a
   * database that does not answer) and then its outcome for later runs' gates: the state is final, but the run has not
   * closed, and lists still call it running.
   */
  recordingEnd?: boolean;
  /** Set (by the client, never the workflow) while no worker has picked the run up: its task queue. */
  waitingForWorker?: string;
  /**
   * Set by the client: a cancellation was asked for and the run has not ended yet (with `waitingForWorker`:
   * it ends when a worker takes it; else when its running stages stop).
   */
  cancelRequested?: boolean;
}

/** What an activity for a stage kind receives. */
export interface StageRequest {
  runId: string;
  stageId: string;
  kind: string;
  /** `with`, with params and upstream outputs substituted. */
  config: Record<string, unknown>;
  baseDir: string;
  specHash: string;
  actor: string;
  /** Precomputed by the cache lookup; the activity records its outputs under it. */
  cacheKey?: string;
  /**
   * The code version `cacheKey` was computed with, by the worker that looked it up. One that runs other code
   * (a plugin edited and only some workers restarted) records its outputs under a key of its own.
   */
  cacheKeyCodeVersion?: string;
  /** Whether to record the outputs in the cache. */
  writeCache: boolean;
  /** RunOptions.freshTraining; absent when not set, so requests of runs without it are as before. */
  freshTraining?: true;
  /** RunOptions.ownCheckpoints; absent when not set. */
  ownCheckpoints?: string;
  /** The run's store and database (RunOptions.backends), which the worker checks against its own. */
  backends?: RunBackends;
  /**
   * Set when the workflow did no cache lookup of its own: the activity computes the key first and,
   * with `reuse`, returns a hit's recorded outputs without running the stage.
   */
  lookup?: { reuse: boolean };
}

export interface StageResult {
  outputs: Record<string, unknown>;
  cacheKey?: string;
  /** Set when the activity found the outputs in the cache (`lookup`) instead of running the stage. */
  cachedFrom?: { runId: string; stageId: string };
  /** The attempt that produced the outputs, when it was not the first (the workflow learns it from nowhere else). */
  attempt?: number;
}

export interface CacheLookupRequest {
  kind: string;
  config: Record<string, unknown>;
  baseDir: string;
  /**
   * false: the key only, for a run that will not reuse (`--no-cache`): reading the record would count
   * as a use and keep its outputs from garbage collection for another horizon. Absent: read it.
   */
  read?: boolean;
  /** The run's store and database (RunOptions.backends), which the worker checks against its own. */
  backends?: RunBackends;
  /**
   * The run's stage looked up: a hit is written to the run's trail as its `stage.reused` record. Absent in lookups
   * recorded before 6 Dec 2026, and sent by no older release, whose hits record nothing.
   */
  stage?: Pick<StageRequest, 'runId' | 'stageId' | 'specHash' | 'actor'>;
}

export interface CacheLookupResult {
  key: string;
  /** The code version the key was computed with (the looking-up worker's kind), absent in lookups recorded before. */
  codeVersion?: string;
  hit?: { outputs: Record<string, unknown>; producedBy: { runId: string; stageId: string } };
}
