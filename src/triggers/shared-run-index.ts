/**
 * The last successful run of each pipeline, where every workflow worker sees it: a run gate
 * (`skipIfUnchanged`, `labelDrift`) compares a run's data with it, and the worker that decides may
 * not be the one that recorded. With a shared database (`TEMPERED_DATABASE_URL`) the records live in
 * its `run_index` table; on one machine, in `TEMPERED_HOME/runs` as before (`RunIndex`).
 */
import { isDatabaseUrl, keyedRecordsSchema, openDatabase, type Schema } from '../db/database.ts';
import { RunIndex, type RunRecord } from './run-gate.ts';

export const RUN_INDEX_SCHEMA: Schema = keyedRecordsSchema('run_index', 'run_index', 'pipeline', 'last successful run per pipeline');

export interface SharedRunIndex {
  last(pipeline: string): Promise<RunRecord | undefined>;
  record(pipeline: string, rec: RunRecord): Promise<void>;
}

/** `database`: the registry's location (a PostgreSQL URL shares the index; a file path keeps it in `localDir`). */
export function runIndexFor(database: string, localDir: string): SharedRunIndex {
  const local = () => new RunIndex(localDir);
  if (!isDatabaseUrl(database))
    return {
      last: async (pipeline) => local().last(pipeline),
      record: async (pipeline, rec) => local().record(pipeline, rec),
    };
  const withDb = async <T>(fn: (db: Awaited<ReturnType<typeof openDatabase>>) => Promise<T>): Promise<T> => {
    const db = await openDatabase(database, RUN_INDEX_SCHEMA);
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  };
  return {
    last: (pipeline) =>
      withDb(async (db) => {
        const row = await db.get<{ record_json: string }>('SELECT record_json FROM run_index WHERE pipeline = ?', [pipeline]);
        // A worker upgraded from one host keeps its record until the first run recorded here.
        return row ? (JSON.parse(row.record_json) as RunRecord) : local().last(pipeline);
      }),
    record: (pipeline, rec) =>
      withDb(async (db) => {
        await db.run(
          'INSERT INTO run_index (pipeline, record_json, updated_at) VALUES (?, ?, ?) ON CONFLICT (pipeline) DO UPDATE SET record_json = excluded.record_json, updated_at = excluded.updated_at',
          [pipeline, JSON.stringify(rec), rec.time],
        );
      }),
  };
}
