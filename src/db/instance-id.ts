/**
 * A shared database's identity: a random id in its own one-row table, created once by whichever process first asks.
 * A database's name says little: `tempered` on two clusters' servers is two databases, and one database reached
 * through a pooler (PgBouncer) may go by an alias. A run's workers are checked against the database the run was
 * submitted to by this id (activities/backends.ts).
 */
import { randomUUID } from 'node:crypto';
import { openDatabase, type Schema } from './database.ts';

const TABLE = `CREATE TABLE tempered_instance (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), instance_id TEXT NOT NULL, created_at TEXT NOT NULL);`;

export const INSTANCE_SCHEMA: Schema = {
  scope: 'instance',
  sqlite: [{ version: 1, name: 'the database instance id', sql: TABLE }],
  postgres: [{ version: 1, name: 'the database instance id', sql: TABLE }],
};

/** The database's id; the first asker's insert wins and every other asker reads it. */
export async function databaseInstanceId(location: string): Promise<string> {
  const db = await openDatabase(location, INSTANCE_SCHEMA, { retryForMs: 0 });
  try {
    await db.run('INSERT INTO tempered_instance (singleton, instance_id, created_at) VALUES (1, ?, ?) ON CONFLICT (singleton) DO NOTHING', [
      randomUUID(),
      new Date().toISOString(),
    ]);
    const row = await db.get<{ instance_id: string }>('SELECT instance_id FROM tempered_instance WHERE singleton = 1');
    if (!row) throw new Error(`${db.where} has no row in tempered_instance after inserting one`);
    return row.instance_id;
  } finally {
    await db.close();
  }
}
