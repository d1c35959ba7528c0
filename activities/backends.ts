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
  if (myName === 'local')
    return `${keeps} ${words(myName)} under its TEMPERED_HOME, and the run in another one (another TEMPERED_HOME or another host: instance ${runId} there, ${myId} here; if it is this one, its store/${marker} was deleted or replaced since this worker started, as with the store folder deleted to free space: restart the workers)`;
  return `${keeps} ${words(myName)}, and the run in another ${what} of that name (instance ${runId} there, ${myId} here; if it is this one, its ${marker} was replaced since this worker started: restart the workers)`;
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

/**
 * The worker's interceptor that runs checkBackends before every activity, on the `backends` of its request (the
 * workflow puts the run's in each): one place for the stages and the run's local activities alike, so an activity
 * added later is checked without being told to.
 */
export function backendsCheck(mine: RunBackends, onLacks?: (message: string) => void): ActivityInterceptorsFactory {
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const req = input.args[0] as { backends?: RunBackends } | undefined;
        checkBackends(req?.backends, mine, ctx.info.workflowExecution?.workflowId ?? '(unknown)', { local: ctx.info.isLocal, onLacks });
        return next(input);
      },
    },
  });
}
