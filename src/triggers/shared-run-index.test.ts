/**
 * Run gates on several workflow workers: with a PostgreSQL database the last successful run is the
 * same for every host (a real server); on one machine it stays in the local folder.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { postgresUnavailable, useDatabases } from '../db/postgres.testing.ts';
import { RunIndex, type RunRecord } from './run-gate.ts';
import { runIndexFor } from './shared-run-index.ts';

const rec = (runId: string, dataHash: string): RunRecord => ({
  runId,
  specHash: 's'.repeat(64),
  data: [{ stageId: 'ingest', dataHash, labels: { ham: 8, spam: 2 } }],
  time: new Date().toISOString(),
});

function home(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-runs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'runs');
}

describe('run index on a shared database', { skip: postgresUnavailable() }, () => {
  const pg = useDatabases('postgres');
  it('what one host records is the last run every host sees; a record left in a host folder counts until then', async (t) => {
    const url = await pg.fresh(t);
    const [a, b] = [home(t), home(t)];
    const nightly = { schedule: 'nightly' };
    const weekly = { pipeline: 'weekly' };
    assert.equal(await runIndexFor(url, a).last(nightly), undefined);
    // Data X recorded by host A, then Y by host B: host A must see Y, or X again would look unchanged to it.
    await runIndexFor(url, a).record(nightly, rec('run-1', 'x'));
    await runIndexFor(url, b).record(nightly, rec('run-2', 'y'));
    for (const h of [a, b]) assert.equal((await runIndexFor(url, h).last(nightly))?.runId, 'run-2');
    assert.equal(await runIndexFor(url, a).last(weekly), undefined, 'per pipeline');
    assert.equal(await runIndexFor(url, a).last({ pipeline: 'nightly' }), undefined, 'schedules and pipelines apart');
    // Upgraded from one machine: the folder's record answers until the database has one.
    const c = home(t);
    new RunIndex(c).record(weekly, rec('run-0', 'w'));
    assert.equal((await runIndexFor(url, c).last(weekly))?.runId, 'run-0');
    await runIndexFor(url, b).record(weekly, rec('run-3', 'v'));
    assert.equal((await runIndexFor(url, c).last(weekly))?.runId, 'run-3');
    assert.equal(await runIndexFor(url, c).forget(nightly), true);
    assert.equal(await runIndexFor(url, a).last(nightly), undefined, 'forgotten for every host');
  });
});

describe('run index on one machine', () => {
  it('without a database URL the records stay in the local folder', async (t) => {
    const dir = home(t);
    const db = join(dir, '..', 'registry.db');
    await runIndexFor(db, dir).record({ schedule: 'nightly' }, rec('run-1', 'x'));
    assert.equal(new RunIndex(dir).last({ schedule: 'nightly' })?.runId, 'run-1');
    assert.equal((await runIndexFor(db, dir).last({ schedule: 'nightly' }))?.runId, 'run-1');
    assert.equal(await runIndexFor(db, dir).last({ pipeline: 'nightly' }), undefined);
  });
});
