/**
 * `tempered db migrate`: brings the tables of the shared PostgreSQL database (TEMPERED_DATABASE_URL)
 * up to this release. Processes never migrate a team's database on their own (src/db/postgres.ts):
 * a migration locks out every older worker, so it is a step someone takes, and the audit trail says who.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { sayEvery } from './say-every.ts';
import { AUDIT_SCHEMA } from '../../src/audit/log.ts';
import { isDatabaseUrl, redactUrl, type Schema } from '../../src/db/database.ts';
import type { Migrated } from '../../src/db/postgres.ts';
import { InputError } from '../../src/errors.ts';
import { REGISTRY_SCHEMA } from '../../src/registry/schema.ts';
import { PROGRESS_SCHEMA } from '../../src/store/progress-points.ts';
import { STAGE_CACHE_SCHEMA } from '../../src/store/shared-records.ts';
import { INSTANCE_SCHEMA } from '../../src/db/instance-id.ts';
import { RUN_INDEX_SCHEMA } from '../../src/triggers/shared-run-index.ts';
import { actor, parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';

/** Every scope tempered keeps in a shared database (tests/db-cli.test.ts checks that none is missing). */
export const SHARED_SCHEMAS: readonly Schema[] = [
  REGISTRY_SCHEMA,
  AUDIT_SCHEMA,
  STAGE_CACHE_SCHEMA,
  RUN_INDEX_SCHEMA,
  PROGRESS_SCHEMA,
  INSTANCE_SCHEMA,
];

export async function dbCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered db migrate|status [--json]';
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, usage);
  if (!['migrate', 'status'].includes(positionals[0] ?? '') || positionals.length !== 1) throw new CliError(`usage: ${usage}`, 2);
  const url = ctx.paths.registryDb;
  if (positionals[0] === 'status') return dbStatus(url, ctx.paths.root, !!values.json);
  if (!isDatabaseUrl(url)) {
    if (values.json) console.log(JSON.stringify({ database: null, scopes: [] }));
    else
      console.log(
        `TEMPERED_DATABASE_URL is not set: the registry and audit log are SQLite files under ${ctx.paths.root}, brought up to date by whatever opens them; nothing to migrate`,
      );
    return 0;
  }
  const { migratePostgres } = await import('../../src/db/postgres.ts');
  // What was applied before a failure is audited too.
  const done: Migrated[] = [];
  const failure = await migratePostgres(url, SHARED_SCHEMAS, {}, (m) => done.push(m)).then(
    () => undefined,
    (e: unknown) => e,
  );
  const applied = done.filter((m) => m.from !== m.to);
  if (applied.length)
    await (
      await ctx.auditLog().get()
    ).append({
      action: 'db.migrated',
      subject: redactUrl(url),
      actor: actor(),
      details: {
        ...Object.fromEntries(applied.map((m) => [m.scope, `${m.from} -> ${m.to}`])),
        ...(failure ? { error: (failure as Error).message } : {}),
      },
    });
  if (values.json) console.log(JSON.stringify({ database: redactUrl(url), scopes: done }));
  else {
    console.log(`${redactUrl(url)}:`);
    for (const m of done)
      console.log(
        m.from === m.to
          ? `  ${m.scope}: at version ${m.to}, up to date`
          : m.from === 0
            ? `  ${m.scope}: created (version ${m.to})`
            : `  ${m.scope}: migrated from version ${m.from} to ${m.to}`,
      );
  }
  if (failure) {
    const e = failure as Error & { hint?: string };
    const stoppedAt = SHARED_SCHEMAS[done.length]!.scope;
    throw new CliError(
      `the migration stopped at ${stoppedAt}${done.length ? ' (the scopes above are done)' : ''}: ${e.message}${e.hint ? `\n  ${e.hint}` : ''}`,
      1,
    );
  }
  return 0;
}

/**
 * `tempered db status`: each scope's version in the shared database against the one this release needs, read only
 * (no lock, no CREATE): what an operator checks with the new release before an upgrade, since `db migrate` applies at
 * once and a migration locks out every older process.
 */
async function dbStatus(url: string, root: string, json: boolean): Promise<number> {
  if (!isDatabaseUrl(url)) {
    if (json) console.log(JSON.stringify({ database: null, scopes: [], migrate: false }));
    else
      console.log(
        `TEMPERED_DATABASE_URL is not set: the registry and audit log are SQLite files under ${root}, brought up to date by whatever opens them`,
      );
    return 0;
  }
  const { schemaVersions } = await import('../../src/db/postgres.ts');
  const versions = await schemaVersions(url, SHARED_SCHEMAS, { retryForMs: 0 });
  const behind = versions.filter((v) => v.at > 0 && v.at < v.known);
  const newer = versions.filter((v) => v.at > v.known);
  if (json) {
    console.log(JSON.stringify({ database: redactUrl(url), scopes: versions, migrate: behind.length > 0, newer: newer.length > 0 }));
    return 0;
  }
  console.log(`${redactUrl(url)}:`);
  for (const v of versions)
    console.log(
      v.at === 0
        ? `  ${v.scope}: no tables yet (the first process of this release to open it creates them)`
        : v.at === v.known
          ? `  ${v.scope}: at version ${v.at}, up to date`
          : v.at < v.known
            ? `  ${v.scope}: at version ${v.at}, this release needs ${v.known}`
            : `  ${v.scope}: at version ${v.at}, newer than this release knows (${v.known})`,
    );
  if (behind.length)
    console.log(
      'this release needs `tempered db migrate`: stop the processes of the older release first (a migration locks them out), then migrate and start the new ones',
    );
  else if (newer.length) console.log('a newer tempered migrated this database: this release cannot open it; upgrade');
  else console.log('nothing to migrate for this release');
  return 0;
}

/**
 * Before a worker polls: on a shared database that this release cannot use yet (tables behind it,
 * `tempered db migrate` not run) it waits, saying so every minute, so that no stage lands on it to
 * fail; on one a newer release migrated it stops. A database that does not answer is waited for too (a
 * worker that polled would take stages only to fail them); one that answers with an error of its
 * settings (a TLS mode it does not speak) is thrown.
 */
export async function awaitUsableDatabase(
  location: string,
  log: (line: string) => void,
  opts: { schemas?: readonly Schema[]; pollMs?: number; sayEveryMs?: number; signal?: AbortSignal } = {},
): Promise<void> {
  if (!isDatabaseUrl(location)) return;
  const { schemaVersions, isTransient } = await import('../../src/db/postgres.ts');
  // Each kind of wait says its line at most once a minute, and the first line of the other kind at once.
  const sayAway = sayEvery(log, opts.sayEveryMs);
  const sayBehind = sayEvery(log, opts.sayEveryMs);
  let waited = false;
  for (; ; await sleep(opts.pollMs ?? 5000, undefined, { signal: opts.signal })) {
    let versions: Awaited<ReturnType<typeof schemaVersions>>;
    try {
      versions = await schemaVersions(location, opts.schemas ?? SHARED_SCHEMAS, { retryForMs: 0 });
    } catch (e) {
      // Only a server that is away is waited for: anything else (a TLS setting the server does not speak, say) is
      // said at once, as before, instead of read as "did not answer" for ever.
      if (e instanceof InputError || !isTransient((e as Error).cause ?? e)) throw e;
      // Waited for, as the store is: a worker that polled would take stages only to fail them, each after the
      // database's retries, using up their attempts.
      waited = true;
      sayAway(`the database ${redactUrl(location)} did not answer (${(e as Error).message}); waiting for it before polling (Ctrl-C stops)`);
      continue;
    }
    if (waited) log(`the database ${redactUrl(location)} answers now`);
    waited = false;
    const newer = versions.filter((v) => v.at > v.known);
    if (newer.length)
      throw new CliError(
        `the database ${redactUrl(location)} was migrated by a newer tempered (${newer.map((v) => `${v.scope} at version ${v.at}, this release knows ${v.known}`).join('; ')}): upgrade this worker's tempered`,
      );
    const behind = versions.filter((v) => v.at > 0 && v.at < v.known);
    if (!behind.length) return;
    sayBehind(
      `waiting for \`tempered db migrate\` before polling: in ${redactUrl(location)} ${behind.map((v) => `${v.scope} is at version ${v.at}, this release needs ${v.known}`).join('; ')}`,
    );
  }
}
