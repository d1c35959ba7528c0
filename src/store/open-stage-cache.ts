/**
 * The stage cache a worker process uses: with a shared store and a shared database
 * (`TEMPERED_STORE` and `TEMPERED_DATABASE_URL`) its shared records go in the database, where a
 * lookup is one database round trip instead of a GET to the store; with a shared store alone, in the
 * store; otherwise only in the local folder.
 */
import { isDatabaseUrl, openDatabase, type Database } from '../db/database.ts';
import { KeptOpen } from '../db/kept-open.ts';
import type { ArtifactStore } from './artifact-store.ts';
import { DatabaseRecords, STAGE_CACHE_SCHEMA } from './shared-records.ts';
import { StageCache } from './stage-cache.ts';

export interface OpenedStageCache {
  cache: StageCache;
  /** Waits for the records still uploading, then closes the database connection if one was opened. */
  close(): Promise<void>;
}

/** `database`: where the registry and audit log live (a file path, or a PostgreSQL URL). */
export function openStageCache(dir: string, store: ArtifactStore, database: string): OpenedStageCache {
  let db: KeptOpen<Database> | undefined;
  // Only beside a shared store: a record names artifacts, which another host can read only from there.
  if (store.remote && isDatabaseUrl(database)) db = new KeptOpen(() => openDatabase(database, STAGE_CACHE_SCHEMA));
  const cache = new StageCache(dir, store, db ? { shared: new DatabaseRecords(db) } : {});
  return {
    cache,
    async close() {
      await cache.flush();
      await db?.close();
    },
  };
}
