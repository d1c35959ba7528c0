/**
 * The dashboard's audit page reads a page of the log, not the log: the records the SQL hands back are
 * counted (the log's database wrapped), and the model filter's query is planned on its index.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { statePaths } from '../src/state-paths.ts';
import { auditView, UiDatabases } from './data.ts';
import { modelRecords } from '../src/registry/model-filter.ts';
import type { AuditRecord } from '../src/audit/log.ts';

const RECORDS = 1200;
let dir: string;
let dbs: UiDatabases;
const seen = { rows: 0, sql: [] as { sql: string; params: unknown[] }[] };

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tempered-audit-page-'));
  dbs = new UiDatabases(statePaths(dir, {}));
  const log = await dbs.audit.get();
  for (let i = 0; i < RECORDS; i++) {
    const model = i % 3 === 0 ? `clf@${(i % 4) + 1}` : undefined;
    await log.append({
      action: i % 50 === 0 ? 'serve.swapped' : model ? 'model.promoted' : 'stage.completed',
      subject: model ?? `run-${i}`,
      runId: model ? undefined : `run-${i}`,
      model,
      actor: i % 10 === 0 ? 'ann' : 'bob',
      details: i % 50 === 0 ? { from: 'clf@1' } : {},
    });
  }
  // Every row the log's SQL reads back is counted from here on.
  const db = log.db;
  const all = db.all.bind(db);
  db.all = async <T>(sql: string, params?: unknown[]) => {
    const rows = await all<T>(sql, params as never);
    if (/FROM audit_log/.test(sql)) {
      seen.rows += rows.length;
      seen.sql.push({ sql, params: params ?? [] });
    }
    return rows;
  };
});

after(async () => {
  await dbs.close();
  rmSync(dir, { recursive: true, force: true });
});

const reading = async <T>(fn: () => Promise<T>): Promise<{ value: T; rows: number }> => {
  seen.rows = 0;
  seen.sql = [];
  const value = await fn();
  return { value, rows: seen.rows };
};

describe("the dashboard's audit page", () => {
  it('reads the newest `limit` records, not the whole log', async () => {
    const { value, rows } = await reading(() => auditView(dbs, {}, 50));
    assert.equal(value.records.length, 50);
    assert.deepEqual(
      value.records.map((r) => r.seq),
      Array.from({ length: 50 }, (_, i) => RECORDS - i),
    );
    assert.equal(rows, 50);
  });

  it('an actor filter is a page of that actor read in SQL', async () => {
    const { value, rows } = await reading(() => auditView(dbs, { actor: 'ann' }, 20));
    assert.equal(value.records.length, 20);
    assert.ok(value.records.every((r) => r.actor === 'ann'));
    assert.equal(value.records[0]!.seq, RECORDS - 9);
    assert.equal(rows, 20);
  });

  it("a version's page keeps the serve.swapped records that swapped it out, newest first, bounded", async () => {
    const log = await dbs.audit.get();
    const every: AuditRecord[] = await modelRecords(log, 'clf@1');
    const { value } = await reading(() => auditView(dbs, { model: 'clf@1' }, 30));
    assert.deepEqual(
      value.records.map((r) => r.seq),
      every
        .slice(-30)
        .reverse()
        .map((r) => r.seq),
    );
    assert.ok(value.records.some((r) => r.action === 'serve.swapped' && r.model !== 'clf@1'));
  });

  it("a model's every version is read through the model index, not a scan of the log", async () => {
    await reading(() => auditView(dbs, { model: 'clf' }, 500));
    assert.ok(seen.sql.length > 0);
    const file = new BetterSqlite3(statePaths(dir, {}).auditDb, { readonly: true });
    try {
      for (const { sql, params } of seen.sql) {
        const plan = (file.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...(params as never[])) as { detail: string }[]).map((p) => p.detail);
        assert.ok(!plan.some((d) => /^SCAN audit_log/.test(d)), `${sql}\n${plan.join('\n')}`);
        assert.ok(
          plan.some((d) => /USING INDEX audit_by_model/.test(d)),
          plan.join('\n'),
        );
      }
    } finally {
      file.close();
    }
  });
});
