/**
 * Opt-in benchmark (not part of npm test): the audit log filtered by a run (AuditLog.query({ run })), as the
 * dashboard's Audit page reads it (the newest 500, every 5 s) and `tempered audit --run` (pages of 1000 in seq
 * order), also with an action, on a log of `records` records (runs of 40: submitted, 36 stages, a registration,
 * a cancel request naming the run only as its subject, completed), on SQLite and on PostgreSQL (a local server;
 * TEMPERED_TEST_POSTGRES_URL or the one postgres.testing.ts starts; ANALYZEd, as autovacuum leaves a table
 * that grew). It times the query this release sends on the version-2 schema against the one releases before
 * sent, `(run_id = ? OR subject = ?)`, on the version-1 schema (no index on `subject`), for runs spread over
 * the log. Alternating rounds, medians. Then the version-1 log's upgrade, timed (SQLite: opened by this release;
 * PostgreSQL: `migratePostgres`, what `tempered db migrate` runs).
 *
 *   nice node --import tsx bench/audit-run-filter.bench.ts [records=100000] [rounds=3]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AUDIT_SCHEMA, AuditLog, type AuditQuery } from '../src/audit/log.ts';
import { openDatabase, type Schema } from '../src/db/database.ts';
import { migratePostgres } from '../src/db/postgres.ts';
import { postgresUnavailable, startPostgres } from '../src/db/postgres.testing.ts';
import { median } from './common.ts';

const RECORDS = Number(process.argv[2] ?? 100_000);
const ROUNDS = Number(process.argv[3] ?? 3);
const PER_RUN = 40;
/** Runs queried each round, spread from the oldest to the newest. */
const SAMPLE = 10;

const V1: Schema = {
  ...AUDIT_SCHEMA,
  sqlite: AUDIT_SCHEMA.sqlite.filter((m) => m.version === 1),
  postgres: AUDIT_SCHEMA.postgres.filter((m) => m.version === 1),
};

const COLUMNS = 'seq, time, actor, action, subject, details_json, run_id, model, data_hashes_json, dedupe_key, prev_hash, hash';

/** The log's rows, written straight into the table (a chain appended one record at a time would take an hour to build). */
async function fill(log: AuditLog): Promise<void> {
  const hex = (n: number) => n.toString(16).padStart(64, '0');
  const BATCH = 500;
  await log.db.write('audit', async (q) => {
    for (let start = 1; start <= RECORDS; start += BATCH) {
      const values: unknown[] = [];
      const n = Math.min(BATCH, RECORDS - start + 1);
      for (let seq = start; seq < start + n; seq++) {
        const run = `run-${Math.floor((seq - 1) / PER_RUN)}`;
        const i = (seq - 1) % PER_RUN;
        const [action, subject, runId, model] =
          i === 0
            ? ['run.submitted', run, run, null]
            : i < 37
              ? ['stage.completed', `${run}/stage-${i}`, run, null]
              : i === 37
                ? ['model.registered', `clf@${seq}`, run, `clf@${seq}`]
                : i === 38
                  ? ['run.cancel_requested', run, null, null]
                  : ['run.completed', run, run, null];
        values.push(
          seq,
          new Date(Date.UTC(2026, 0, 1) + seq * 1000).toISOString(),
          'worker',
          action,
          subject,
          JSON.stringify({ attempt: 1, rows: seq % 5000, durationMs: seq % 977 }),
          runId,
          model,
          action === 'stage.completed' ? JSON.stringify({ [`in:data`]: hex(seq * 7), [`out:table`]: hex(seq * 11) }) : null,
          action === 'stage.completed' ? `${run}/exec/stage-${i}/completed` : null,
          hex(seq - 1),
          hex(seq),
        );
      }
      await q.run(
        `INSERT INTO audit_log (${COLUMNS}) VALUES ${Array(n)
          .fill(`(${Array(12).fill('?').join(',')})`)
          .join(',')}`,
        values,
      );
    }
  });
  if (log.db.dialect === 'postgres') await log.db.run('ANALYZE audit_log');
}

/** What query() sent before the version-2 schema: the two lookups as one OR. */
function beforeSql(q: AuditQuery): { sql: string; args: unknown[] } {
  const where = ['(run_id = ? OR subject = ?)'];
  const args: unknown[] = [q.run, q.run];
  if (q.action !== undefined) {
    where.push('action = ?');
    args.push(q.action);
  }
  const sql = `SELECT * FROM audit_log WHERE ${where.join(' AND ')} ORDER BY seq${q.newestFirst ? ' DESC' : ''} LIMIT ?`;
  return { sql, args: [...args, q.limit] };
}

const SHAPES: { label: string; q: Omit<AuditQuery, 'run'> }[] = [
  { label: 'Audit page by run (newest 500)', q: { newestFirst: true, limit: 500 } },
  { label: 'audit --run (a page of 1000)', q: { limit: 1000 } },
  { label: 'by run and action stage.completed', q: { action: 'stage.completed', newestFirst: true, limit: 500 } },
];

async function measure(label: string, now: AuditLog, before: AuditLog): Promise<void> {
  const runs = Array.from({ length: SAMPLE }, (_, i) => `run-${Math.floor((i * (RECORDS / PER_RUN - 1)) / (SAMPLE - 1))}`);
  const times = SHAPES.map(() => ({ now: [] as number[], before: [] as number[] }));
  for (let r = 0; r <= ROUNDS; r++)
    for (const [s, shape] of SHAPES.entries())
      for (const run of runs) {
        const q = { ...shape.q, run };
        let t0 = performance.now();
        const a = await now.query(q);
        if (r) times[s]!.now.push(performance.now() - t0);
        const { sql, args } = beforeSql(q);
        t0 = performance.now();
        const b = await before.db.all<{ seq: number }>(sql, args);
        if (r) times[s]!.before.push(performance.now() - t0);
        if (a.map((x) => x.seq).join() !== b.map((x) => x.seq).join()) throw new Error(`${label}: ${JSON.stringify(q)} differs`);
      }
  for (const [s, shape] of SHAPES.entries()) {
    const a = median(times[s]!.now);
    const b = median(times[s]!.before);
    console.log(`${label}: ${shape.label}: ${a.toFixed(2)} ms now, ${b.toFixed(2)} ms before (version 1, OR); ${(b / a).toFixed(0)}x`);
  }
}

async function bench(label: string, nowAt: string, beforeAt: string): Promise<void> {
  const now = new AuditLog(await openDatabase(nowAt, AUDIT_SCHEMA));
  const before = new AuditLog(await openDatabase(beforeAt, V1));
  try {
    await fill(now);
    await fill(before);
    await measure(label, now, before);
  } finally {
    await now.close();
    await before.close();
  }
  // The upgrade of the version-1 log, as the project runs it: SQLite when the file is opened, PostgreSQL by `db migrate`.
  const t0 = performance.now();
  if (label === 'SQLite') await (await openDatabase(beforeAt, AUDIT_SCHEMA)).close();
  else await migratePostgres(beforeAt, [AUDIT_SCHEMA]);
  console.log(`${label}: migrating the version-1 log to version 2: ${(performance.now() - t0).toFixed(0)} ms`);
}

console.log(`${RECORDS} records (runs of ${PER_RUN}), ${SAMPLE} runs x ${ROUNDS} rounds, load ${loadavg()[0]!.toFixed(1)}`);
const dir = mkdtempSync(join(tmpdir(), 'tempered-audit-run-filter-'));
try {
  await bench('SQLite', join(dir, 'now.db'), join(dir, 'before.db'));
  const why = postgresUnavailable();
  if (why) console.log(`PostgreSQL skipped: ${why}`);
  else {
    const pg = await startPostgres();
    try {
      await bench('PostgreSQL', await pg.createDatabase(), await pg.createDatabase());
    } finally {
      await pg.stop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(`load ${loadavg()[0]!.toFixed(1)} at the end`);
