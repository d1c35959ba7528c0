/**
 * Opt-in benchmark (not part of npm test): the dashboard's Models page (`listModelViews`, GET /api/models)
 * on a registry a team has after a year, `models` models of `versions` versions each with metrics, tags
 * and alias moves, on SQLite and on PostgreSQL (a local server; TEMPERED_TEST_POSTGRES_URL or the one
 * postgres.testing.ts starts). It prints the page's time and registry queries, and the same versions read
 * one by one (getVersion, four queries each: what listVersions did per version before it read a model's
 * versions in four queries), with the ratio; then `GET /api/models` from the real dashboard server: the
 * answer's bytes and its time as the browser waits for it (each model's newest 20 versions without cards since
 * they are paged: 837 KB before for 30 × 10). Alternating rounds, medians.
 *
 *   nice node --import tsx bench/models-page.bench.ts [models=30] [versions=10] [rounds=5]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Queryable } from '../src/db/database.ts';
import { postgresUnavailable, startPostgres } from '../src/db/postgres.testing.ts';
import { openRegistry, type Registry } from '../src/registry/registry.ts';
import { statePaths } from '../src/state-paths.ts';
import { listModelViews, UiDatabases } from '../ui/data.ts';
import { testUiServer } from '../ui/dashboard.testing.ts';
import { median } from './common.ts';

const MODELS = Number(process.argv[2] ?? 30);
const VERSIONS = Number(process.argv[3] ?? 10);
const ROUNDS = Number(process.argv[4] ?? 5);

async function fill(location: string): Promise<void> {
  const reg = await openRegistry(location);
  try {
    for (let v = 1; v <= VERSIONS; v++)
      for (let m = 0; m < MODELS; m++) {
        const name = `model-${String(m).padStart(2, '0')}`;
        const sha = `${m}-${v}`.replace('-', 'a').padEnd(64, '0');
        await reg.registerVersion({
          name,
          runId: `run-${m}-${v}`,
          stageId: 'register',
          specHash: 'ab'.repeat(32),
          data: [{ name: 'train', sha256: 'cd'.repeat(32), rows: 100 }],
          artifacts: [
            { role: 'model', uri: `artifact://sha256/${sha}`, sha256: sha, bytes: 1000 },
            { role: 'tokenizer', uri: `artifact://sha256/${'e'.repeat(64)}`, sha256: 'e'.repeat(64), bytes: 10 },
          ],
          metrics: { accuracy: 0.5 + v / 100, f1: 0.4 + v / 100, per_class: { a: { f1: 0.3 }, b: { f1: 0.6 } } },
          params: { lr: 1e-4 * v, epochs: 3 },
          tags: { team: 'nlp' },
        });
        await reg.setAlias(name, 'staging', v);
        await reg.setAlias(name, 'production', v);
      }
  } finally {
    await reg.close();
  }
}

/** Counts the registry's queries, in and out of snapshots. */
function counting(reg: Registry): { n: number } {
  const c = { n: 0 };
  const db = reg.db;
  const wrap = (q: Queryable): Queryable =>
    ({
      dialect: q.dialect,
      all: (sql, params) => (c.n++, q.all(sql, params)),
      get: (sql, params) => (c.n++, q.get(sql, params)),
      run: (sql, params) => (c.n++, q.run(sql, params)),
    }) as Queryable;
  const snapshot = db.snapshot.bind(db);
  db.snapshot = <T>(fn: (q: Queryable) => Promise<T>) => snapshot((q) => fn(wrap(q)));
  const all = db.all.bind(db);
  db.all = <T>(sql: string, params?: never) => (c.n++, all<T>(sql, params));
  const get = db.get.bind(db);
  db.get = <T>(sql: string, params?: never) => (c.n++, get<T>(sql, params));
  return c;
}

async function measure(label: string, location: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-models-page-'));
  const dbs = new UiDatabases({ ...statePaths(dir, {}), registryDb: location, auditDb: join(dir, 'audit.db') });
  try {
    const reg = await dbs.registry.get();
    const c = counting(reg);
    const page: number[] = [];
    const oneByOne: number[] = [];
    let pageQueries = 0;
    let oneQueries = 0;
    for (let r = 0; r <= ROUNDS; r++) {
      c.n = 0;
      let t0 = performance.now();
      await listModelViews(dbs);
      if (r) page.push(performance.now() - t0);
      pageQueries = c.n;
      c.n = 0;
      t0 = performance.now();
      for (const m of await reg.listModels()) for (let v = 1; v <= m.latestVersion; v++) await reg.getVersion(m.name, v);
      if (r) oneByOne.push(performance.now() - t0);
      oneQueries = c.n;
    }
    const a = median(page);
    const b = median(oneByOne);
    console.log(
      `${label}: Models page ${a.toFixed(0)} ms (${pageQueries} queries); the versions one by one ${b.toFixed(0)} ms (${oneQueries} queries); ${(a / b).toFixed(2)}x`,
    );
  } finally {
    await dbs.close();
    rmSync(dir, { recursive: true, force: true });
  }
  await measureAnswer(label, location);
}

/** `GET /api/models` from the real server: what the page waits for (read, serialised, sent) and its size. */
async function measureAnswer(label: string, location: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-models-page-'));
  const paths = { ...statePaths(dir, {}), registryDb: location, auditDb: join(dir, 'audit.db') };
  const ui = await testUiServer(paths, 'bench-token-0123456789');
  try {
    const url = await ui.listen(0, '127.0.0.1');
    const times: number[] = [];
    let bytes = 0;
    for (let r = 0; r <= ROUNDS; r++) {
      const t0 = performance.now();
      const res = await fetch(`${url}/api/models`);
      bytes = (await res.arrayBuffer()).byteLength;
      if (!res.ok) throw new Error(`GET /api/models answered ${res.status}`);
      if (r) times.push(performance.now() - t0);
    }
    console.log(`${label}: GET /api/models ${(bytes / 1000).toFixed(0)} KB in ${median(times).toFixed(0)} ms`);
  } finally {
    await ui.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`${MODELS} models x ${VERSIONS} versions, ${ROUNDS} rounds, load ${loadavg()[0]!.toFixed(1)}`);
const dir = mkdtempSync(join(tmpdir(), 'tempered-models-page-'));
try {
  const file = join(dir, 'registry.db');
  await fill(file);
  await measure('SQLite', file);
  const why = postgresUnavailable();
  if (why) console.log(`PostgreSQL skipped: ${why}`);
  else {
    const pg = await startPostgres();
    try {
      const url = await pg.createDatabase();
      await fill(url);
      await measure('PostgreSQL', url);
    } finally {
      await pg.stop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
