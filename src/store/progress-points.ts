/**
 * Where a training stage's per-step points (its curves as they grow) are kept for the dashboard.
 *
 * On one machine, a JSON-lines file per stage under `TEMPERED_HOME/progress` (progress-log.ts), which
 * the dashboard tails by byte offset. With a shared database (`TEMPERED_DATABASE_URL`), its
 * `progress_points` table: the worker that trains and the `tempered ui` process are then on other
 * hosts, and the only things they share are Temporal, the store and the database. There a point
 * read from is a row id instead of a byte offset, and a worker writes its points in batches (every
 * `flushEveryMs`, and when the stage ends), since a small model steps many times a second. A point is
 * stored once per (run, execution, stage, point text): a write tried again after its answer was lost
 * (it may have committed) adds nothing, so a failed write can be tried again, while a step reported
 * again with other metrics is kept, and read after the first, as in the files.
 */
import { insertRows, isDatabaseUrl, openDatabase, type Database, type Schema } from '../db/database.ts';
import { KeptOpen } from '../db/kept-open.ts';
import { appendProgressPoint, progressLogPath, readProgressPoints, type ProgressPoint } from './progress-log.ts';
import { createHash } from 'node:crypto';
import { existsSync, promises as fsp, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface PointsRead {
  points: ProgressPoint[];
  /** Where the next read starts: a byte offset in a file, a row id in the database. */
  offset: number;
}

export interface ProgressPoints {
  /** Records a point; may only queue it (see `flush`). Never throws: a curve must not fail a training. */
  append(runId: string, execution: string, stageId: string, point: ProgressPoint): void;
  /** Resolves once every point appended so far is stored (or dropped after a failure, reported through onError). */
  flush(): Promise<void>;
  /** A stage's points after `offset` (0: from the start). */
  read(runId: string, execution: string, stageId: string, offset?: number): Promise<PointsRead>;
  /** The stages of an execution that have points. */
  stages(runId: string, execution: string): Promise<string[]>;
  /** Deletes (or with `dryRun` counts) the points written before `beforeMs`: files by mtime, rows by their time. */
  prune(beforeMs: number, dryRun: boolean): Promise<number>;
  close(): Promise<void>;
}

/** One machine: the JSON-lines files of progress-log.ts. */
export class FilePoints implements ProgressPoints {
  /** Files whose last append failed: told once, not once a step (a full disk, a training of 100k steps). */
  private readonly failing = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly onError: (e: unknown) => void = () => {},
  ) {}

  append(runId: string, execution: string, stageId: string, point: ProgressPoint): void {
    const path = progressLogPath(this.dir, runId, execution, stageId);
    try {
      appendProgressPoint(path, point);
      this.failing.delete(path);
    } catch (e) {
      if (this.failing.has(path)) return;
      this.failing.add(path);
      this.onError(e);
    }
  }

  async flush(): Promise<void> {}

  /** Counts files, each a stage's points; a file still written to after `beforeMs` stays whole. */
  async prune(beforeMs: number, dryRun: boolean): Promise<number> {
    let n = 0;
    const walk = async (dir: string): Promise<void> => {
      for (const e of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const p = join(dir, e.name);
        if (e.isDirectory()) {
          await walk(p);
          if (!dryRun) await fsp.rmdir(p).catch(() => undefined); // only once empty
        } else if (e.name.endsWith('.jsonl') && ((await fsp.lstat(p).catch(() => undefined))?.mtimeMs ?? Infinity) < beforeMs) {
          n++;
          if (!dryRun) await fsp.rm(p, { force: true });
        }
      }
    };
    await walk(this.dir);
    return n;
  }

  async read(runId: string, execution: string, stageId: string, offset = 0): Promise<PointsRead> {
    return readProgressPoints(progressLogPath(this.dir, runId, execution, stageId), offset);
  }

  async stages(runId: string, execution: string): Promise<string[]> {
    const dir = dirname(progressLogPath(this.dir, runId, execution, 'x'));
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((n) => n.endsWith('.jsonl'))
      .map((n) => decodeURIComponent(n.slice(0, -'.jsonl'.length)))
      .sort();
  }

  async close(): Promise<void> {}
}

/** The table, with each dialect's auto-numbered id column: the offset a dashboard reads on from. */
function pointsTable(idColumn: string): string {
  return `
    CREATE TABLE progress_points (
      id ${idColumn},
      run_id TEXT NOT NULL,
      execution TEXT NOT NULL,
      stage_id TEXT NOT NULL,
      at_ms BIGINT NOT NULL,
      point_json TEXT NOT NULL
    );
    CREATE INDEX progress_points_stage ON progress_points (run_id, execution, stage_id, id);
    CREATE INDEX progress_points_age ON progress_points (at_ms);
  `;
}

/**
 * A point's key, so that a write tried again stores nothing twice. Rows written before have no attempt or step (NULL),
 * which a unique index never counts as equal: they stay as they are.
 */
function pointKey(number: string): string {
  return `
    ALTER TABLE progress_points ADD COLUMN attempt INTEGER;
    ALTER TABLE progress_points ADD COLUMN step ${number};
    CREATE UNIQUE INDEX progress_points_once ON progress_points (run_id, execution, stage_id, attempt, step);
  `;
}

/**
 * Each report once, not each step: a step reported twice in an attempt (a plugin trainer's loss, then its validation
 * metrics for the same step) is two points, of which the dashboard draws the later, as it does from the files; keyed by
 * step, the later was dropped. A write tried again sends the very same rows, so the point's text tells it apart.
 * Rows written before have no hash (NULL), never equal to another: they stay as they are.
 */
const reportKey = `
  ALTER TABLE progress_points ADD COLUMN point_hash TEXT;
  DROP INDEX progress_points_once;
  CREATE UNIQUE INDEX progress_points_report_once ON progress_points (run_id, execution, stage_id, point_hash);
`;

export const PROGRESS_SCHEMA: Schema = {
  scope: 'progress_points',
  sqlite: [
    { version: 1, name: 'training points per stage', sql: pointsTable('INTEGER PRIMARY KEY AUTOINCREMENT') },
    { version: 2, name: 'each point once', sql: pointKey('REAL') },
    { version: 3, name: 'each report of a step once', sql: reportKey },
  ],
  postgres: [
    { version: 1, name: 'training points per stage', sql: pointsTable('BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY') },
    { version: 2, name: 'each point once', sql: pointKey('DOUBLE PRECISION') },
    { version: 3, name: 'each report of a step once', sql: reportKey },
  ],
};

/** A point's text, hashed: its key (with run, execution and stage) in the table. 128 bits are plenty for one stage's points. */
function pointHash(json: string): string {
  return createHash('sha256').update(json).digest('hex').slice(0, 32);
}

/** Rows per read, so a long curve is sent in pieces. */
const READ_ROWS = 5000;

const COLUMNS = ['run_id', 'execution', 'stage_id', 'attempt', 'step', 'at_ms', 'point_json', 'point_hash'] as const;
type Row = [
  runId: string,
  execution: string,
  stageId: string,
  attempt: number,
  step: number | null,
  atMs: number,
  json: string,
  hash: string,
];

/** A shared database: the `progress_points` table. */
export class DatabasePoints implements ProgressPoints {
  private queued: Row[] = [];
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: KeptOpen<Database>,
    private readonly opts: { flushEveryMs?: number; onError?: (e: unknown) => void } = {},
  ) {}

  append(runId: string, execution: string, stageId: string, point: ProgressPoint): void {
    const step = point.metrics.step;
    const json = JSON.stringify(point);
    this.queued.push([runId, execution, stageId, point.attempt, Number.isFinite(step) ? step! : null, point.t, json, pointHash(json)]);
    this.timer ??= setTimeout(() => void this.flush(), this.opts.flushEveryMs ?? 1000);
  }

  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const rows = this.queued;
    this.queued = [];
    // One write at a time, in order, so a stage's rows get increasing ids.
    this.writing = this.writing.then(async () => {
      if (rows.length === 0) return;
      // A write whose answer came too late may have committed (postgres.ts does not try it again): the key makes a
      // second try store only what the first did not. Transient failures were tried again by the database already.
      for (let attempt = 1; ; attempt++) {
        try {
          await insertRows(await this.db.get(), 'progress_points', COLUMNS, rows, 'ON CONFLICT DO NOTHING');
          return;
        } catch (e) {
          if (attempt >= 2 || (e as Error)?.name !== 'OutcomeUnknown') return (this.opts.onError ?? (() => {}))(e);
        }
      }
    });
    return this.writing;
  }

  async read(runId: string, execution: string, stageId: string, offset = 0): Promise<PointsRead> {
    const rows = await (
      await this.db.get()
    ).all<{ id: number | string; point_json: string }>(
      'SELECT id, point_json FROM progress_points WHERE run_id = ? AND execution = ? AND stage_id = ? AND id > ? ORDER BY id LIMIT ?',
      [runId, execution, stageId, offset, READ_ROWS],
    );
    const points: ProgressPoint[] = [];
    for (const r of rows) {
      try {
        const p = JSON.parse(r.point_json) as ProgressPoint;
        if (p && typeof p === 'object' && typeof p.metrics === 'object' && p.metrics !== null) points.push(p);
      } catch {
        // Written by this module from JSON.stringify; a row that does not parse is skipped, not fatal.
      }
    }
    // PostgreSQL returns BIGINT as a string.
    return { points, offset: rows.length ? Number(rows[rows.length - 1]!.id) : offset };
  }

  async stages(runId: string, execution: string): Promise<string[]> {
    const rows = await (
      await this.db.get()
    ).all<{ stage_id: string }>('SELECT DISTINCT stage_id FROM progress_points WHERE run_id = ? AND execution = ? ORDER BY stage_id', [
      runId,
      execution,
    ]);
    return rows.map((r) => r.stage_id);
  }

  /**
   * Counts, then deletes, the stages whose newest point is before `beforeMs`, as FilePoints does its
   * files: a training that runs longer than the horizon keeps the start of its curve.
   */
  async prune(beforeMs: number, dryRun: boolean): Promise<number> {
    const db = await this.db.get();
    const old = 'SELECT run_id, execution, stage_id FROM progress_points GROUP BY run_id, execution, stage_id HAVING MAX(at_ms) < ?';
    const n = Number((await db.get<{ n: number | string }>(`SELECT COUNT(*) AS n FROM (${old}) AS stages`, [beforeMs]))?.n ?? 0);
    if (!dryRun && n > 0) await db.run(`DELETE FROM progress_points WHERE (run_id, execution, stage_id) IN (${old})`, [beforeMs]);
    return n;
  }

  async close(): Promise<void> {
    await this.flush();
    await this.db.close();
  }
}

/**
 * The points of a process: in the database when `database` (the registry's location) is a shared
 * one, so that a dashboard on another host sees a worker's curves; else in `progressDir`.
 */
export function openProgressPoints(progressDir: string, database: string, onError?: (e: unknown) => void): ProgressPoints {
  if (isDatabaseUrl(database)) return new DatabasePoints(new KeptOpen(() => openDatabase(database, PROGRESS_SCHEMA)), { onError });
  return new FilePoints(progressDir, onError);
}
