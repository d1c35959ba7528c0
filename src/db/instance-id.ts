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

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The database's id; the first asker's insert wins and every other asker reads it. Read first, so that a role that
 * may only read it (or a read replica) gets it without a write.
 */
export async function databaseInstanceId(location: string): Promise<string> {
  const db = await openDatabase(location, INSTANCE_SCHEMA, { retryForMs: 0 });
  try {
    const read = () => db.get<{ instance_id: string }>('SELECT instance_id FROM tempered_instance WHERE singleton = 1');
    let row = await read();
    if (!row) {
      await db.run(
        'INSERT INTO tempered_instance (singleton, instance_id, created_at) VALUES (1, ?, ?) ON CONFLICT (singleton) DO NOTHING',
        [randomUUID(), new Date().toISOString()],
      );
      row = await read();
    }
    if (!row) throw new Error(`${db.where} has no row in tempered_instance after inserting one`);
    // It goes into every run's input and onto workers' stderr: only an id of the form written here.
    if (!ID.test(row.instance_id))
      throw new Error(`${db.where}: tempered_instance holds ${JSON.stringify(row.instance_id.slice(0, 40))}, not an instance id`);
    return row.instance_id;
  } finally {
    await db.close();
  }
}
