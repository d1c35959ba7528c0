/**
 * `tempered db migrate`: brings the tables of the shared PostgreSQL database (TEMPERED_DATABASE_URL)
 * up to this release. Processes never migrate a team's database on their own (src/db/postgres.ts):
 * a migration locks out every older worker, so it is a step someone takes, and the audit trail says who.
 */
import { AUDIT_SCHEMA } from '../../src/audit/log.ts';
import { isDatabaseUrl, redactUrl, type Schema } from '../../src/db/database.ts';
import { REGISTRY_SCHEMA } from '../../src/registry/schema.ts';
import { PROGRESS_SCHEMA } from '../../src/store/progress-points.ts';
import { STAGE_CACHE_SCHEMA } from '../../src/store/shared-records.ts';
import { RUN_INDEX_SCHEMA } from '../../src/triggers/shared-run-index.ts';
import { actor, parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';

/** Every scope tempered keeps in a shared database. */
export const SHARED_SCHEMAS: readonly Schema[] = [REGISTRY_SCHEMA, AUDIT_SCHEMA, STAGE_CACHE_SCHEMA, RUN_INDEX_SCHEMA, PROGRESS_SCHEMA];

export async function dbCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered db migrate [--json]';
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, usage);
  if (positionals[0] !== 'migrate' || positionals.length !== 1) throw new CliError(`usage: ${usage}`, 2);
  const url = ctx.paths.registryDb;
  if (!isDatabaseUrl(url)) {
    console.log(
      `TEMPERED_DATABASE_URL is not set: the registry and audit log are SQLite files under ${ctx.paths.root}, brought up to date by whatever opens them; nothing to migrate`,
    );
    return 0;
  }
  const { migratePostgres } = await import('../../src/db/postgres.ts');
  const done = await migratePostgres(url, SHARED_SCHEMAS);
  const applied = done.filter((m) => m.from !== m.to);
  if (applied.length)
    await (
      await ctx.auditLog().get()
    ).append({
      action: 'db.migrated',
      subject: redactUrl(url),
      actor: actor(),
      details: Object.fromEntries(applied.map((m) => [m.scope, `${m.from} -> ${m.to}`])),
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
  return 0;
}
