/**
 * Training points for the dashboard: the same contract from the local files and from the shared
 * database (SQLite and a real PostgreSQL), which is how a `tempered ui` on another host sees a
 * worker's live curves.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../db/database.ts';
import { KeptOpen } from '../db/kept-open.ts';
import { migratePostgres } from '../db/postgres.ts';
import { BACKENDS, postgresUnavailable, useDatabases } from '../db/postgres.testing.ts';
import { progressLogPath, type ProgressPoint } from './progress-log.ts';
import { DatabasePoints, FilePoints, openProgressPoints, PROGRESS_SCHEMA, type ProgressPoints } from './progress-points.ts';

const point = (step: number, attempt = 1): ProgressPoint => ({ attempt, t: 1000 + step, metrics: { step, loss: 1 / step } });

async function contract(writer: ProgressPoints, reader: ProgressPoints): Promise<void> {
  assert.deepEqual(await reader.read('run-1', 'exec-1', 'train'), { points: [], offset: 0 }, 'nothing yet');
  assert.deepEqual(await reader.stages('run-1', 'exec-1'), []);
  for (let s = 1; s <= 3; s++) writer.append('run-1', 'exec-1', 'train', point(s));
  writer.append('run-1', 'exec-1', 'train-2', point(1));
  writer.append('run-1', 'exec-2', 'train', point(9));
  await writer.flush();
  const first = await reader.read('run-1', 'exec-1', 'train');
  assert.deepEqual(
    first.points.map((p) => p.metrics.step),
    [1, 2, 3],
  );
  assert.deepEqual(await reader.stages('run-1', 'exec-1'), ['train', 'train-2']);
  // From the offset on: each point once.
  writer.append('run-1', 'exec-1', 'train', point(4));
  writer.append('run-1', 'exec-1', 'train', point(2, 2));
  await writer.flush();
  const next = await reader.read('run-1', 'exec-1', 'train', first.offset);
  assert.deepEqual(
    next.points.map((p) => [p.metrics.step, p.attempt]),
    [
      [4, 1],
      [2, 2],
    ],
  );
  assert.deepEqual((await reader.read('run-1', 'exec-1', 'train', next.offset)).points, [], 'nothing after the last');
  // A step reported twice in one attempt (a plugin trainer's loss, then its validation metrics): both points, the later
  // read after the earlier, so the dashboard, which draws a step's newest point, shows the validation.
  writer.append('run-1', 'exec-1', 'train', { attempt: 2, t: 2000, metrics: { step: 5, loss: 0.5 } });
  writer.append('run-1', 'exec-1', 'train', { attempt: 2, t: 2000, metrics: { step: 5, loss: 0.5, val_loss: 0.7 } });
  await writer.flush();
  assert.deepEqual(
    (await reader.read('run-1', 'exec-1', 'train', next.offset)).points.map((p) => p.metrics),
    [
      { step: 5, loss: 0.5 },
      { step: 5, loss: 0.5, val_loss: 0.7 },
    ],
  );
}

describe('training points in files', () => {
  it('append, flush, read from an offset, list the stages', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tempered-points-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    await contract(new FilePoints(dir), new FilePoints(dir));
  });

  it('prune counts, then deletes, the stage files last written before the time, and their empty folders', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'tempered-points-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const points = new FilePoints(dir);
    points.append('old-run', 'exec-1', 'train', point(1));
    points.append('new-run', 'exec-1', 'train', point(1));
    const old = new Date(Date.now() - 40 * 86400_000);
    utimesSync(progressLogPath(dir, 'old-run', 'exec-1', 'train'), old, old);
    const before = Date.now() - 30 * 86400_000;
    assert.equal(await points.prune(before, true), 1);
    assert.equal((await points.read('old-run', 'exec-1', 'train')).points.length, 1, 'a dry run deletes nothing');
    assert.equal(await points.prune(before, false), 1);
    assert.equal((await points.read('old-run', 'exec-1', 'train')).points.length, 0);
    assert.equal(existsSync(join(dir, 'old-run')), false, 'its empty folders go');
    assert.equal((await points.read('new-run', 'exec-1', 'train')).points.length, 1);
  });
});

for (const backend of BACKENDS)
  describe(`training points in the database (${backend})`, { skip: backend === 'postgres' ? postgresUnavailable() : undefined }, () => {
    const dbs = useDatabases(backend);
    const open = (location: string, flushEveryMs?: number, onError?: (e: unknown) => void) =>
      new DatabasePoints(new KeptOpen(() => openDatabase(location, PROGRESS_SCHEMA)), { flushEveryMs, onError });

    it('the same contract, a writer and a reader in different processes sharing the database', async (t) => {
      const location = await dbs.fresh(t, 'points.db');
      const [writer, reader] = [open(location), open(location)];
      try {
        await contract(writer, reader);
      } finally {
        await writer.close();
        await reader.close();
      }
    });

    it('queued points go in on their own after flushEveryMs, in batches, and close stores the rest', async (t) => {
      const location = await dbs.fresh(t, 'points.db');
      const writer = open(location, 50);
      const reader = open(location);
      try {
        for (let s = 1; s <= 1203; s++) writer.append('run-1', 'exec-1', 'train', point(s));
        let seen: number[] = [];
        let offset = 0;
        for (let i = 0; i < 200 && seen.length < 1203; i++) {
          const r = await reader.read('run-1', 'exec-1', 'train', offset);
          seen = seen.concat(r.points.map((p) => p.metrics.step!));
          offset = r.offset;
          if (seen.length < 1203) await new Promise((res) => setTimeout(res, 25));
        }
        assert.deepEqual(
          seen,
          Array.from({ length: 1203 }, (_, i) => i + 1),
          'every point, once, in order, with no flush called',
        );
        writer.append('run-1', 'exec-1', 'train', point(1204));
        await writer.close();
        assert.deepEqual(
          (await reader.read('run-1', 'exec-1', 'train', offset)).points.map((p) => p.metrics.step),
          [1204],
        );
      } finally {
        await reader.close();
      }
    });

    it('prune counts, then deletes, the points of stages whose newest point is before the time; a longer training keeps its whole curve', async (t) => {
      const location = await dbs.fresh(t, 'points.db');
      const points = open(location);
      try {
        // run-1 trained for longer than the horizon and still writes; run-2 stopped before it.
        points.append('run-1', 'exec-1', 'train', { attempt: 1, t: 1_000, metrics: { step: 1 } });
        points.append('run-1', 'exec-1', 'train', { attempt: 1, t: 5_000, metrics: { step: 2 } });
        points.append('run-2', 'exec-1', 'train', { attempt: 1, t: 1_000, metrics: { step: 1 } });
        points.append('run-2', 'exec-1', 'train', { attempt: 1, t: 1_500, metrics: { step: 2 } });
        points.append('run-2', 'exec-1', 'evaluate', { attempt: 1, t: 1_800, metrics: { step: 1 } });
        await points.flush();
        assert.equal(await points.prune(2_000, true), 2, 'two stages');
        assert.equal((await points.read('run-2', 'exec-1', 'train')).points.length, 2, 'a dry run deletes nothing');
        assert.equal(await points.prune(2_000, false), 2);
        assert.deepEqual(
          (await points.read('run-1', 'exec-1', 'train')).points.map((p) => p.metrics.step),
          [1, 2],
        );
        assert.equal((await points.read('run-2', 'exec-1', 'train')).points.length, 0);
        assert.equal((await points.read('run-2', 'exec-1', 'evaluate')).points.length, 0);
        assert.equal(await points.prune(2_000, false), 0);
      } finally {
        await points.close();
      }
    });

    it("a point written again (a write tried again after its answer was lost) is stored once; another attempt's step is its own", async (t) => {
      const location = await dbs.fresh(t, 'points.db');
      const [writer, reader] = [open(location), open(location)];
      try {
        for (let s = 1; s <= 3; s++) writer.append('run-1', 'exec-1', 'train', point(s));
        await writer.flush();
        // The same rows again, as the same write tried twice sends them, and one twice in one batch.
        for (let s = 1; s <= 3; s++) writer.append('run-1', 'exec-1', 'train', point(s));
        writer.append('run-1', 'exec-1', 'train', point(4));
        writer.append('run-1', 'exec-1', 'train', point(4));
        // A retried attempt resumes from a checkpoint and reports its steps again: those are points of their own.
        writer.append('run-1', 'exec-1', 'train', point(3, 2));
        // The same step in another execution of the run, or another stage, is another point too.
        writer.append('run-1', 'exec-2', 'train', point(1));
        writer.append('run-1', 'exec-1', 'train-2', point(1));
        await writer.flush();
        assert.deepEqual(
          (await reader.read('run-1', 'exec-1', 'train')).points.map((p) => [p.metrics.step, p.attempt]),
          [
            [1, 1],
            [2, 1],
            [3, 1],
            [4, 1],
            [3, 2],
          ],
        );
        assert.equal((await reader.read('run-1', 'exec-2', 'train')).points.length, 1);
        assert.equal((await reader.read('run-1', 'exec-1', 'train-2')).points.length, 1);
      } finally {
        await writer.close();
        await reader.close();
      }
    });

    it('a table of the first version migrates: its rows stay, and points written after are stored once', async (t) => {
      const location = await dbs.fresh(t, 'points.db');
      const v1 = { ...PROGRESS_SCHEMA, sqlite: PROGRESS_SCHEMA.sqlite.slice(0, 1), postgres: PROGRESS_SCHEMA.postgres.slice(0, 1) };
      const old = await openDatabase(location, v1);
      for (let i = 0; i < 2; i++)
        await old.run('INSERT INTO progress_points (run_id, execution, stage_id, at_ms, point_json) VALUES (?, ?, ?, ?, ?)', [
          'run-1',
          'exec-1',
          'train',
          1001,
          JSON.stringify(point(1)),
        ]);
      await old.close();
      // A SQLite file is migrated by the first process that opens it; PostgreSQL by `tempered db migrate`.
      if (backend === 'postgres') {
        await assert.rejects(openDatabase(location, PROGRESS_SCHEMA), /tempered db migrate/);
        await migratePostgres(location, [PROGRESS_SCHEMA]);
      }
      const points = open(location);
      try {
        points.append('run-1', 'exec-1', 'train', point(2));
        points.append('run-1', 'exec-1', 'train', point(2));
        await points.flush();
        assert.deepEqual(
          (await points.read('run-1', 'exec-1', 'train')).points.map((p) => p.metrics.step),
          [1, 1, 2],
          'the old rows as they were (a unique key counts their missing step as no step), the new point once',
        );
      } finally {
        await points.close();
      }
    });

    it('a table of the second version migrates: its rows stay, and a step reported twice after is kept twice', async (t) => {
      const location = await dbs.fresh(t, 'points.db');
      const v2 = { ...PROGRESS_SCHEMA, sqlite: PROGRESS_SCHEMA.sqlite.slice(0, 2), postgres: PROGRESS_SCHEMA.postgres.slice(0, 2) };
      const old = await openDatabase(location, v2);
      await old.run(
        'INSERT INTO progress_points (run_id, execution, stage_id, attempt, step, at_ms, point_json) VALUES (?, ?, ?, ?, ?, ?, ?)',
        ['run-1', 'exec-1', 'train', 1, 1, 1001, JSON.stringify(point(1))],
      );
      await old.close();
      if (backend === 'postgres') await migratePostgres(location, [PROGRESS_SCHEMA]);
      const points = open(location);
      try {
        points.append('run-1', 'exec-1', 'train', { attempt: 1, t: 1001, metrics: { step: 1, val_loss: 2 } });
        points.append('run-1', 'exec-1', 'train', point(2));
        points.append('run-1', 'exec-1', 'train', point(2));
        await points.flush();
        assert.deepEqual(
          (await points.read('run-1', 'exec-1', 'train')).points.map((p) => p.metrics),
          [point(1).metrics, { step: 1, val_loss: 2 }, point(2).metrics],
          'the old row, the second report of its step, and a point written twice once',
        );
      } finally {
        await points.close();
      }
    });

    it('a database that cannot be written reports through onError and never throws to the stage', async (t) => {
      const location = await dbs.fresh(t, 'points.db');
      const errors: unknown[] = [];
      const points = open(location, undefined, (e) => errors.push(e));
      try {
        points.append('run-1', 'exec-1', 'train', point(1));
        await points.flush();
        assert.deepEqual(errors, []);
        // The table taken away behind its back (a restore, an operator): the real database refuses the insert.
        const db = await openDatabase(location, PROGRESS_SCHEMA);
        await db.run('DROP TABLE progress_points');
        await db.close();
        points.append('run-1', 'exec-1', 'train', point(2));
        await points.flush();
        assert.equal(errors.length, 1);
        assert.match(String((errors[0] as Error).message), /progress_points/);
      } finally {
        await points.close();
      }
    });
  });

describe('openProgressPoints', () => {
  it('files for a registry file, the database for a PostgreSQL URL', () => {
    assert.ok(openProgressPoints('/tmp/x', '/tmp/registry.db') instanceof FilePoints);
    assert.ok(openProgressPoints('/tmp/x', 'postgres://u@127.0.0.1:1/db') instanceof DatabasePoints);
  });
});
