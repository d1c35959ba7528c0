/**
 * A worker that keeps artifacts or records elsewhere than the run's submitter takes its stages all the same, unless
 * it checks: a worker started in a shell without TEMPERED_STORE and TEMPERED_DATABASE_URL joins a team's cluster, takes
 * their stages, answers cache lookups from its own folder, writes outputs no other host can read (the next stage fails
 * "not in the store") and audit records into its own file. Every activity of a run compares the run's backends with
 * its worker's and refuses a run of other ones, saying which setting differs; the attempt fails retryably, so another
 * worker of the queue takes the next one.
 */
import { hostname } from 'node:os';
import { ApplicationFailure, ApplicationFailureCategory } from '@temporalio/common';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import type { RunBackends } from '../workflows/types.ts';

/** The store (`local`, or `s3://bucket/prefix`) in words. */
function storeWords(store: string): string {
  return store === 'local' ? "this host's folder (no TEMPERED_STORE)" : store === 'shared folder' ? 'a shared folder' : store;
}

function databaseWords(database: string): string {
  return database === 'local' ? "this host's SQLite file (no TEMPERED_DATABASE_URL)" : `the database ${database.replace(/^postgres:/, '')}`;
}

/**
 * How a run's store (or database) is not the worker's, in words; undefined when it is the same. By name, and, where
 * the names agree and both sides know them, by instance id (two servers' databases of one name are two). An id never
 * overrules names that differ: a copy (a bucket synced from another, a database restored from another's dump) carries
 * the original's id under its own name, and is not the original.
 */
function difference(
  keeps: string,
  what: 'store' | 'database',
  marker: string,
  words: (name: string) => string,
  runName: string,
  myName: string,
  runId: string | undefined,
  myId: string | undefined,
): string | undefined {
  if (runName !== myName) return `${keeps} ${words(myName)}, the run in ${words(runName)}`;
  if (runId === undefined || myId === undefined || runId === myId) return undefined;
  // Two hosts' folders, or two TEMPERED_HOMEs' on one host: a worker of one home whose dev server went away reconnects
  // to the address, where another home's dev server may now answer, and took that home's stages.
  // The worker read its own marker again for this id before refusing (KnownBackendIds; unless that read failed), so
  // "it was replaced" is ruled out.
  if (myName === 'local')
    return `${keeps} ${words(myName)} under its TEMPERED_HOME, and the run in another one (another TEMPERED_HOME or another host: instance ${runId} there, ${myId} here, as this home's store/${marker} says)`;
  return `${keeps} ${words(myName)}, and the run in another ${what} of that name (instance ${runId} there, ${myId} here, as this worker's ${marker} says)`;
}

/** Runs already warned about on this worker's stderr, so a run's every stage and retry does not repeat it. */
const warned = new Set<string>();

/**
 * Throws a `BackendMismatch` failure when the run's store or database is not this worker's: retryable for a stage,
 * which another worker may take; not for the run's local activities (`local`), which run on the run's own worker and
 * would only fail there again. Nothing to check when either is unknown: a run submitted before runs recorded it, or a
 * worker built without them (tests, embedded).
 */
export function checkBackends(
  run: RunBackends | undefined,
  mine: RunBackends | undefined,
  runId: string,
  o: {
    local?: boolean;
    /**
     * Told when this worker lacks a shared store or database that the run has: the worker, not the run, is the one
     * misconfigured (started without the exports), and an idle one would otherwise take every retry of the stage. The
     * worker command stops polling then (cli/commands/worker.ts).
     */
    onLacks?: (message: string) => void;
  } = {},
): void {
  const local = o.local ?? false;
  if (!run || !mine) return;
  const differ = [
    difference('keeps artifacts in', 'store', 'instance.json', storeWords, run.store, mine.store, run.storeId, mine.storeId),
    difference(
      'keeps the registry and audit log in',
      'database',
      'tempered_instance row',
      databaseWords,
      run.database,
      mine.database,
      run.databaseId,
      mine.databaseId,
    ),
  ].filter((d) => d !== undefined);
  if (differ.length === 0) return;
  const message =
    `worker ${hostname()} (pid ${process.pid}) refused run ${runId}: this worker ${differ.join('; ')}. ` +
    'Start the worker with the TEMPERED_HOME (where nothing is shared), or the TEMPERED_STORE, TEMPERED_DATABASE_URL and AWS_*, of the submitter (or resubmit with the ' +
    "workers' settings; a schedule's run: delete the schedule and create it again with them)" +
    (local ? '' : '; another worker of the queue takes the next attempt');
  const lacks = (mine.store === 'local' && run.store !== 'local') || (mine.database === 'local' && run.database !== 'local');
  if (lacks) o.onLacks?.(message);
  if (!warned.has(runId)) {
    warned.add(runId);
    if (warned.size > 1000) warned.clear();
    console.error(`worker: ${message}`);
  }
  // Benign: the SDK logs it at debug level instead of a 30-line warning with its stack each time; the one line above
  // says it (the journey's log had 36 lines a refusal).
  throw ApplicationFailure.create({ type: 'BackendMismatch', message, nonRetryable: local, category: ApplicationFailureCategory.BENIGN });
}

/** Which of this worker's backends a read of its ids reads (KnownBackendIds): the others' ids are left out of its answer. */
export interface BackendsToRead {
  store: boolean;
  database: boolean;
}

type BackendKind = keyof BackendsToRead;

/** A worker's two backends: the RunBackends field of each one's id, and what holds that id. */
const BACKENDS = [
  { kind: 'store', id: 'storeId', marker: 'instance.json' },
  { kind: 'database', id: 'databaseId', marker: 'tempered_instance row' },
] as const satisfies readonly { kind: BackendKind; id: keyof RunBackends; marker: string }[];

/** How long an id that a read of this worker's own did not find is taken for another's (KnownBackendIds), unread for. */
export const REREAD_IDS_EVERY_MS = 30_000;

/**
 * Every id this worker's own store and database have had since it started. A marker deleted or replaced (the home's
 * store folder deleted to free space, a bucket emptied, a database restored) gets a new id from the next process that
 * reads it, usually a submit; with only the id read at start, the workers then refused every run submitted after
 * until each was restarted. So a run of this worker's backend names with an id it has not seen makes it read its own
 * again: an id read from its own store is its store's, and runs of the old id and of the new one both pass. Another
 * store's id (another TEMPERED_HOME's, another cluster's server of one name) is never read from this worker's own, so
 * it is never learned; such an id is not read for again within REREAD_IDS_EVERY_MS, which bounds what another home's
 * runs cost. That pause is the id's own, and a read counts for an id only if it began after a run named it: a run
 * names an id only once its submit has written it, so the read sees it if it is this worker's. (One pause for every
 * id, or a read under way that began before the marker was written, refused a run of the new id unread: for good, for
 * a run's local activity.)
 */
export class KnownBackendIds {
  /** Every id of this worker's own store and database that a read has found. */
  private readonly known = { store: new Set<string>(), database: new Set<string>() };
  /** Ids a read of this worker's own did not find, and when that read ended. */
  private readonly foreign = { store: new Map<string, number>(), database: new Map<string, number>() };
  private reading: Promise<void> | undefined;

  constructor(
    private readonly mine: RunBackends,
    private readonly reread?: (which: BackendsToRead) => Promise<RunBackends>,
    private readonly o: { now?: () => number; log?: (m: string) => void } = {},
  ) {
    for (const k of BACKENDS) if (mine[k.id]) this.known[k.kind].add(mine[k.id]!);
  }

  /** This worker's backends to check `run` against: with the run's own ids where they are ids this worker has read. */
  async forRun(run: RunBackends | undefined): Promise<RunBackends> {
    if (run && this.reread) await this.readFor(run);
    const mine = { ...this.mine };
    for (const k of BACKENDS) if (run?.[k.id] && this.known[k.kind].has(run[k.id]!)) mine[k.id] = run[k.id];
    return mine;
  }

  /** Ids of `run`, of this worker's backend names, that it has not read and has not found to be another's lately. */
  private wanted(run: RunBackends): Partial<Record<BackendKind, string>> {
    const now = this.now();
    const ids: Partial<Record<BackendKind, string>> = {};
    for (const { kind, id } of BACKENDS) {
      const runId = run[id];
      if (run[kind] !== this.mine[kind] || runId === undefined || this.known[kind].has(runId)) continue;
      if (!(now - (this.foreign[kind].get(runId) ?? -Infinity) < REREAD_IDS_EVERY_MS)) ids[kind] = runId;
    }
    return ids;
  }

  /** One read at a time; a read under way is waited for, then read again if it was not for this run's ids. */
  private async readFor(run: RunBackends): Promise<void> {
    for (let ids = this.wanted(run); Object.keys(ids).length > 0; ids = this.wanted(run)) {
      if (this.reading) {
        await this.reading;
        continue;
      }
      const reading = this.read(ids);
      this.reading = reading;
      try {
        await reading;
      } finally {
        if (this.reading === reading) this.reading = undefined;
      }
    }
  }

  private async read(ids: Partial<Record<BackendKind, string>>): Promise<void> {
    const log = this.o.log ?? ((m: string) => console.error(`worker: ${m}`));
    try {
      // Only the backend whose id is in question: a store's new id costs no connection to the database, and the reverse.
      const b = await this.reread!({ store: ids.store !== undefined, database: ids.database !== undefined });
      for (const { kind, id, marker } of BACKENDS) {
        const found = b[id];
        if (b[kind] !== this.mine[kind] || !found || this.known[kind].has(found)) continue;
        this.known[kind].add(found);
        log(
          `this worker's ${kind} now has instance id ${found} (its ${marker} was deleted or replaced since the worker started, when it was ${this.mine[id] ?? 'unread'}); runs of either id are taken`,
        );
      }
    } catch {
      // Unreadable now (a store away): the run is refused as before, and a run of that id reads again after the pause.
    }
    // From its end: a read slower than the pause would otherwise be followed by another at once, and so on.
    const ended = this.now();
    for (const { kind } of BACKENDS) {
      const wanted = ids[kind];
      if (wanted !== undefined && !this.known[kind].has(wanted)) this.foreign[kind].set(wanted, ended);
      // Bounded: an id forgotten reads once more.
      if (this.foreign[kind].size > 1000) this.foreign[kind].clear();
    }
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }
}

/**
 * The worker's interceptor that runs checkBackends before every activity, on the `backends` of its request (the
 * workflow puts the run's in each): one place for the stages and the run's local activities alike, so an activity
 * added later is checked without being told to. `reread` reads this worker's backends again (KnownBackendIds).
 */
export function backendsCheck(
  mine: RunBackends,
  onLacks?: (message: string) => void,
  reread?: (which: BackendsToRead) => Promise<RunBackends>,
): ActivityInterceptorsFactory {
  const known = new KnownBackendIds(mine, reread);
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const run = (input.args[0] as { backends?: RunBackends } | undefined)?.backends;
        checkBackends(run, await known.forRun(run), ctx.info.workflowExecution?.workflowId ?? '(unknown)', {
          local: ctx.info.isLocal,
          onLacks,
        });
        return next(input);
      },
    },
  });
}
