/** Registry versions as tests register them, so each test states only what it is about, and a count of what reading them costs. */
import type { Queryable, WriteLock } from '../db/database.ts';
import type { Registry } from './registry.ts';
import type { RegisterInput } from './types.ts';

/**
 * A version of `name` whose model artifact is named by `mark` (its sha256 is `mark` 64 times, so two marks
 * are two models), from run `r-<mark>`, with no data or metrics unless `over` gives them.
 */
export function testVersion(name: string, mark: string, over: Partial<RegisterInput> = {}): RegisterInput {
  return {
    name,
    runId: `r-${mark}`,
    stageId: 'register',
    specHash: 's',
    data: [],
    artifacts: [{ role: 'model', uri: 'u', sha256: mark.repeat(64), bytes: 1 }],
    ...over,
  };
}

/**
 * Counts the queries a registry makes (in its snapshots, its write transactions and outside both) and the rows
 * they hand back, until `stop`; `sql` lists the reads' statements and parameters.
 */
export function countingQueries(reg: Registry): { queries: number; rows: number; sql: [string, unknown[]][]; stop(): void } {
  const db = reg.db;
  const { snapshot, write, all, get, run } = db;
  const c = {
    queries: 0,
    rows: 0,
    sql: [] as [string, unknown[]][],
    stop: () => void Object.assign(db, { snapshot, write, all, get, run }),
  };
  const rows = async <T>(r: Promise<T>) => {
    const got = await r;
    c.rows += Array.isArray(got) ? got.length : got === undefined ? 0 : 1;
    return got;
  };
  const counted = (q: Queryable): Queryable => ({
    dialect: q.dialect,
    all: (sql, params) => (c.queries++, c.sql.push([sql, [...(params ?? [])]]), rows(q.all(sql, params))),
    get: (sql, params) => (c.queries++, c.sql.push([sql, [...(params ?? [])]]), rows(q.get(sql, params))),
    run: (sql, params) => (c.queries++, q.run(sql, params)),
  });
  const direct = counted({ dialect: db.dialect, all: all.bind(db), get: get.bind(db), run: run.bind(db) } as Queryable);
  Object.assign(db, {
    snapshot: <T>(fn: (q: Queryable) => Promise<T>) => snapshot.call(db, (q) => fn(counted(q))),
    write: <T>(lock: WriteLock, fn: (q: Queryable) => Promise<T>) => write.call(db, lock, (q) => fn(counted(q))),
    all: direct.all,
    get: direct.get,
    run: direct.run,
  });
  return c;
}

/**
 * Points `alias` at `version` as setAlias did before a version with the holder's model bytes was refused as held
 * (the rows a registry written then keeps): a `set` in the history from the holder, whatever the bytes.
 */
export async function setAliasAsBefore(reg: Registry, name: string, alias: string, version: number, actor = 'then'): Promise<void> {
  await reg.db.write('registry', async (q) => {
    const cur = await q.get<{ version: number }>('SELECT version FROM aliases WHERE model = ? AND alias = ?', [name, alias]);
    await q.run(
      'INSERT INTO aliases (model, alias, version) VALUES (?, ?, ?) ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version',
      [name, alias, version],
    );
    await q.run('INSERT INTO alias_history (model, alias, kind, from_version, to_version, actor, reason, at) VALUES (?,?,?,?,?,?,?,?)', [
      name,
      alias,
      'set',
      cur?.version ?? null,
      version,
      actor,
      null,
      new Date().toISOString(),
    ]);
  });
}
