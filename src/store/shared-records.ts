/**
 * Where a stage cache keeps the records every worker shares (stage-cache.ts keeps a local copy of
 * each beside them). Two places:
 *
 * - the object store: `cache/<ab>/<key>.json` objects, when artifacts are shared through
 *   `TEMPERED_STORE` and there is no shared database;
 * - the database (`stage_cache` table), when there is also `TEMPERED_DATABASE_URL`: a lookup, which
 *   every stage makes before it runs, is then a database round trip instead of a GET to the store.
 *   An S3 service answers in tens of milliseconds where a database in the same network answers in
 *   one (README, *Orchestration with shared backends*).
 */
import { insertRows, keyedRecordsSchema, type Database, type Queryable, type Schema } from '../db/database.ts';
import type { KeptOpen } from '../db/kept-open.ts';
import { readText, type ObjectBackend } from './object-backend.ts';
import { mapReadAhead } from '../util/in-flight.ts';
import { KEY_PREFIXES } from './key-layout.ts';

export interface SharedRecords {
  /** The record's JSON text, or undefined when there is none. */
  get(key: string): Promise<string | undefined>;
  /** Stores or replaces the record. */
  put(key: string, text: string): Promise<void>;
  /** Removes the record; an absent one is fine. */
  delete(key: string): Promise<void>;
  /** Removes the record only while its text is still `text` (garbage collection must not take a newer one). */
  deleteIf(key: string, text: string): Promise<boolean>;
  /**
   * Every record, for scans (garbage collection; evicting the records that name a damaged object).
   * `readAhead`: records fetched at once where each is a request of its own (default RECORDS_READ_AHEAD).
   */
  entries(readAhead?: number): AsyncIterable<{ key: string; text: string }>;
}

/** Records read at once from an object store, one GET each (garbage collection's REQUESTS_IN_FLIGHT). */
export const RECORDS_READ_AHEAD = 8;

export class ObjectStoreRecords implements SharedRecords {
  constructor(private readonly backend: ObjectBackend) {}

  private objectKey(key: string): string {
    return `${KEY_PREFIXES.cacheRecords}${key.slice(0, 2)}/${key}.json`;
  }

  get(key: string): Promise<string | undefined> {
    return readText(this.backend, this.objectKey(key));
  }

  async put(key: string, text: string): Promise<void> {
    await this.backend.putBytes(this.objectKey(key), Buffer.from(text), { ifAbsent: false });
  }

  delete(key: string): Promise<void> {
    return this.backend.delete(this.objectKey(key));
  }

  async deleteIf(key: string, text: string): Promise<boolean> {
    // S3 has no portable conditional delete: a record replaced between this read and the delete is
    // lost, which costs one rerun of its stage, never a wrong hit.
    if ((await this.get(key)) !== text) return false;
    await this.delete(key);
    return true;
  }

  async *entries(readAhead = RECORDS_READ_AHEAD): AsyncIterable<{ key: string; text: string }> {
    // A GET per record: a few at once, or a bucket of many records is read one round trip at a time.
    const reads = mapReadAhead(this.keys(), readAhead, async ({ key, objectKey }) => ({
      key,
      text: await readText(this.backend, objectKey),
    }));
    for await (const { key, text } of reads) if (text !== undefined) yield { key, text };
  }

  private async *keys(): AsyncIterable<{ key: string; objectKey: string }> {
    for await (const k of this.backend.list(KEY_PREFIXES.cacheRecords)) {
      const key = /([0-9a-f]{64})\.json$/.exec(k)?.[1];
      if (key) yield { key, objectKey: k };
    }
  }
}

export const STAGE_CACHE_SCHEMA: Schema = keyedRecordsSchema('stage_cache', 'stage_cache', 'cache_key', 'stage cache records');

/** Records read per query while scanning, so a large cache is walked without holding it in memory. */
const SCAN_PAGE = 500;

export class DatabaseRecords implements SharedRecords {
  /** `db` opened with STAGE_CACHE_SCHEMA, kept open by the caller (one per worker process). */
  constructor(private readonly db: KeptOpen<Database>) {}

  async get(key: string): Promise<string | undefined> {
    const row = await (await this.db.get()).get<{ record_json: string }>('SELECT record_json FROM stage_cache WHERE cache_key = ?', [key]);
    return row?.record_json;
  }

  async put(key: string, text: string): Promise<void> {
    await (
      await this.db.get()
    ).run(
      'INSERT INTO stage_cache (cache_key, record_json, updated_at) VALUES (?, ?, ?) ON CONFLICT (cache_key) DO UPDATE SET record_json = excluded.record_json, updated_at = excluded.updated_at',
      [key, text, new Date().toISOString()],
    );
  }

  async delete(key: string): Promise<void> {
    await (await this.db.get()).run('DELETE FROM stage_cache WHERE cache_key = ?', [key]);
  }

  async deleteIf(key: string, text: string): Promise<boolean> {
    return (await (await this.db.get()).run('DELETE FROM stage_cache WHERE cache_key = ? AND record_json = ?', [key, text])) > 0;
  }

  async *entries(): AsyncIterable<{ key: string; text: string }> {
    const db = await this.db.get();
    let after = '';
    for (;;) {
      const rows = await db.all<{ cache_key: string; record_json: string }>(
        'SELECT cache_key, record_json FROM stage_cache WHERE cache_key > ? ORDER BY cache_key LIMIT ?',
        [after, SCAN_PAGE],
      );
      for (const r of rows) yield { key: r.cache_key, text: r.record_json };
      if (rows.length < SCAN_PAGE) return;
      after = rows[rows.length - 1]!.cache_key;
    }
  }
}

/**
 * Adds records to the `stage_cache` table inside the caller's transaction (`tempered import-home`, which carries a
 * one-machine stage cache into a shared database with the registry): a key the table holds already keeps its record,
 * which is the one the team's workers use now.
 */
export async function insertRecordsIfAbsent(
  q: Queryable,
  records: readonly { key: string; text: string }[],
  updatedAt: string,
): Promise<void> {
  await insertRows(
    q,
    'stage_cache',
    ['cache_key', 'record_json', 'updated_at'],
    records.map((r) => [r.key, r.text, updatedAt]),
    'ON CONFLICT (cache_key) DO NOTHING',
  );
}
