/**
 * `tempered audit` prints the trail a page at a time: every query it makes to the log is bounded, and
 * the pages put together are the whole trail in order, across page boundaries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit, type AuditQuery } from '../../src/audit/log.ts';
import { pagesOf } from './audit.ts';

test('the trail is read in pages of at most 1,000 records, and nothing is lost between them', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-audit-pages-'));
  const log = await openAudit(join(dir, 'audit.db'));
  try {
    for (let i = 0; i < 2500; i++)
      await log.append({ action: i % 2 ? 'stage.completed' : 'run.submitted', subject: `run-${i % 7}`, runId: `run-${i % 7}` });
    const asked: AuditQuery[] = [];
    const query = log.query.bind(log);
    const counted = Object.assign(Object.create(log) as typeof log, {
      query: (q: AuditQuery) => (asked.push(q), query(q)),
    });
    const pages: number[][] = [];
    for await (const page of pagesOf(counted, {})) pages.push(page.map((r) => r.seq));
    assert.deepEqual(
      pages.flat(),
      Array.from({ length: 2500 }, (_, i) => i + 1),
    );
    assert.ok(
      asked.every((q) => q.limit !== undefined && q.limit <= 1000),
      JSON.stringify(asked),
    );
    assert.ok(pages.every((p) => p.length <= 1000));

    const byRun: number[] = [];
    for await (const page of pagesOf(log, { run: 'run-3', action: 'stage.completed' })) byRun.push(...page.map((r) => r.seq));
    assert.deepEqual(
      byRun,
      (await log.query({ run: 'run-3', action: 'stage.completed' })).map((r) => r.seq),
    );
  } finally {
    await log.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
