/**
 * Whether this process's store and database are shared alike. A team shares both; a worker, or a
 * CLI, with only one of them keeps the other half where no other host sees it.
 */
import { isDatabaseUrl, redactUrl } from '../../src/db/database.ts';
import { databaseInstanceId } from '../../src/db/instance-id.ts';
import { storeInstanceId } from '../../src/store/instance-id.ts';
import { FolderBackend } from '../../src/store/folder-backend.ts';
import type { BackendsToRead } from '../../activities/backends.ts';
import type { RunBackends } from '../../workflows/types.ts';
import type { CliContext } from '../context.ts';

/**
 * A worker whose store is shared but whose registry is a file of its own host (or the reverse) splits
 * a team's state without a word: the models it registers and promotes, or the artifacts it writes,
 * are seen by no other host. Said, naming what to set; undefined when both are shared or neither is.
 */
export function sharingMismatch(ctx: CliContext): string | undefined {
  const store = ctx.store().remote;
  const db = isDatabaseUrl(ctx.paths.registryDb);
  if (store && !db)
    return `the store ${store.url} is shared, but this worker's registry and audit log would be files of this host (${ctx.paths.registryDb}): the models it registers and promotes would be seen by no other host. Set TEMPERED_DATABASE_URL as on the other workers`;
  if (!store && db)
    return `the registry and audit log are the shared database ${redactUrl(ctx.paths.registryDb)}, but this worker's artifacts would stay in this host's folder (${ctx.store().root}): other hosts could not read what it writes. Set TEMPERED_STORE (and AWS_*) as on the other workers`;
  return undefined;
}

/** For a CLI that finds no registry or audit log: the likely reason when its store is shared and its database is not. */
export function sharingHint(ctx: CliContext): string {
  return ctx.store().remote && !isDatabaseUrl(ctx.paths.registryDb)
    ? ` (the store ${ctx.store().remote!.url} is shared: a team's registry and audit log are its database; set TEMPERED_DATABASE_URL as on the workers)`
    : '';
}

/**
 * This process's store and database (workflows/types.ts RunBackends), with the instance ids kept in the shared ones:
 * recorded in the runs it submits, and checked by a worker against its own (activities/backends.ts). An id that cannot
 * be read (a database user without CREATE before `tempered db migrate` made its table, a store that is away) is left
 * out with a warning: the names are compared then, as for runs from before ids. `which` leaves one of them unread (a
 * worker reading its ids again for a run's new one: KnownBackendIds).
 */
export async function runBackends(
  ctx: CliContext,
  warn: (m: string) => void = (m) => console.error(`warning: ${m}`),
  which: BackendsToRead = { store: true, database: true },
): Promise<RunBackends> {
  const named = backendNames(ctx);
  const store = ctx.store();
  const [storeId, databaseId] = await Promise.all([
    // A local store has an id too: two TEMPERED_HOMEs on one host are both 'local' by name.
    which.store
      ? storeInstanceId(store.remote ?? new FolderBackend(store.root)).catch((e: Error) => {
          warn(`could not read the store's instance id (${e.message}); workers will be checked against its name, ${named.store}`);
          return undefined;
        })
      : undefined,
    which.database && isDatabaseUrl(ctx.paths.registryDb)
      ? databaseInstanceId(ctx.paths.registryDb).catch((e: Error) => {
          warn(`could not read the database's instance id (${e.message}); workers will be checked against its name, ${named.database}`);
          return undefined;
        })
      : undefined,
  ]);
  return { ...named, ...(storeId ? { storeId } : {}), ...(databaseId ? { databaseId } : {}) };
}

/** This process's store and database by name alone. */
export function backendNames(ctx: CliContext): RunBackends {
  const db = ctx.paths.registryDb;
  let database = 'local';
  if (isDatabaseUrl(db)) {
    const name = decodeURIComponent(new URL(db).pathname.replace(/^\//, ''));
    database = `postgres:${name || '(default)'}`;
  }
  // A shared folder by kind only: hosts may mount one share at different paths.
  const url = ctx.store().remote?.url;
  return { store: url === undefined ? 'local' : url.startsWith('s3://') ? url : 'shared folder', database };
}
