/**
 * The last successful run of each pipeline, where every workflow worker sees it: a run gate
 * (`skipIfUnchanged`, `labelDrift`) compares a run's data with it, and the worker that decides may
 * not be the one that recorded. With a shared database (`TEMPERED_DATABASE_URL`) the records live in
 * its `run_index` table; on one machine, in `TEMPERED_HOME/runs` as before (`RunIndex`).
 *
 * Rows are keyed `schedule:<name>` or `pipeline:<name>` (`runOwnerKey`). Rows keyed on the bare name
 * (before owners had namespaces) are read when they provably belong to the owner asked about.
 */
import { isDatabaseUrl, keyedRecordsSchema, openDatabase, type Schema } from '../db/database.ts';
import { legacyRecordBelongs, legacyRunKey, RunIndex, runOwnerKey, type RunOwner, type RunRecord } from './run-gate.ts';

export const RUN_INDEX_SCHEMA: Schema = keyedRecordsSchema('run_index', 'run_index', 'pipeline', 'last successful run per pipeline');

export interface SharedRunIndex {
  last(owner: RunOwner): Promise<RunRecord | undefined>;
  record(owner: RunOwner, rec: RunRecord): Promise<void>;
  /** Drops the owner's record (e.g. when its schedule is deleted); true when there was one. */
  forget(owner: RunOwner): Promise<boolean>;
}

/** `database`: the registry's location (a PostgreSQL URL shares the index; a file path keeps it in `localDir`). */
export function runIndexFor(database: string, localDir: string): SharedRunIndex {
  const local = () => new RunIndex(localDir);
  if (!isDatabaseUrl(database))
    return {
      last: async (owner) => local().last(owner),
      record: async (owner, rec) => local().record(owner, rec),
      forget: async (owner) => local().forget(owner),
    };
  const withDb = async <T>(fn: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<T>): Promise<T> => {
    const db = await openDatabase(database, RUN_INDEX_SCHEMA);
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  };
  const row = async (db: Awaited<ReturnType<typeof openDatabase>>, key: string) => {
    const r = await db.get<{ record_json: string }>('SELECT record_json FROM run_index WHERE pipeline = ?', [key]);
    return r ? (JSON.parse(r.record_json) as RunRecord) : undefined;
  };
  const legacyRow = async (db: Awaited<ReturnType<typeof openDatabase>>, owner: RunOwner) => {
    const rec = await row(db, legacyRunKey(owner));
    return rec && legacyRecordBelongs(owner, rec) ? rec : undefined;
  };
  return {
    last: (owner) =>
      withDb(async (db) => {
        // A worker upgraded from one host keeps its record until the first run recorded here.
        return (await row(db, runOwnerKey(owner))) ?? (await legacyRow(db, owner)) ?? local().last(owner);
      }),
    record: (owner, rec) =>
      withDb(async (db) => {
        await db.run(
          'INSERT INTO run_index (pipeline, record_json, updated_at) VALUES (?, ?, ?) ON CONFLICT (pipeline) DO UPDATE SET record_json = excluded.record_json, updated_at = excluded.updated_at',
          [runOwnerKey(owner), JSON.stringify(rec), rec.time],
        );
      }),
    forget: (owner) =>
      withDb(async (db) => {
        let had = !!(await row(db, runOwnerKey(owner)));
        await db.run('DELETE FROM run_index WHERE pipeline = ?', [runOwnerKey(owner)]);
        if (await legacyRow(db, owner)) {
          await db.run('DELETE FROM run_index WHERE pipeline = ?', [legacyRunKey(owner)]);
          had = true;
        }
        return local().forget(owner) || had;
      }),
  };
}
