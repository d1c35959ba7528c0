/**
 * `tempered import-home DIR`: carries a one-machine TEMPERED_HOME into the shared backends this process is set up
 * for (TEMPERED_STORE, TEMPERED_DATABASE_URL); the work is src/registry/import-home.ts.
 */
import { isDatabaseUrl } from '../../src/db/database.ts';
import { importHome, ImportRefused, type ImportHomeReport } from '../../src/registry/import-home.ts';
import { actor, parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { humanBytes } from '../format.ts';

export async function importHomeCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage =
    'tempered import-home DIR [--dry-run] [--json]   (with TEMPERED_STORE and TEMPERED_DATABASE_URL set to the shared backends)';
  const { values, positionals } = parse(argv, { 'dry-run': { type: 'boolean' }, json: { type: 'boolean' } }, usage);
  if (positionals.length !== 1) throw new CliError(`usage: ${usage}`, 2);
  const backend = ctx.store().remote;
  if (!backend || !isDatabaseUrl(ctx.paths.registryDb))
    throw new CliError(
      `import-home copies a home into the shared backends, and ${backend ? 'TEMPERED_DATABASE_URL' : 'TEMPERED_STORE'} is not set: set TEMPERED_STORE=s3://bucket/prefix (with AWS_*) and TEMPERED_DATABASE_URL=postgres://… as on the shared workers\nusage: ${usage}`,
      2,
    );
  let report: ImportHomeReport;
  try {
    report = await importHome({
      home: positionals[0]!,
      database: ctx.paths.registryDb,
      backend,
      actor: actor(),
      dryRun: values['dry-run'] === true,
      log: (line) => console.error(line),
    });
  } catch (e) {
    if (e instanceof ImportRefused) throw new CliError(`${e.message}${e.hint ? `\n  ${e.hint}` : ''}`, 1);
    throw e;
  }
  console.log(values.json ? JSON.stringify(report) : describe(report));
  return 0;
}

function describe(r: ImportHomeReport): string {
  const o = r.objects;
  const verb = r.dryRun ? 'would copy' : 'copied';
  return [
    `${r.home} → ${r.database} and ${r.store}${r.dryRun ? ' (dry run: nothing written)' : ''}`,
    `  registry: ${verb} ${r.models} model(s), ${r.versions} version(s), ${r.aliasChanges} alias change(s)${r.outbox ? `, ${r.outbox} audit record(s) still to deliver` : ''}`,
    `  audit log: ${verb} ${r.audit.records} record(s)${r.audit.head ? `, head ${r.audit.head.seq}:${r.audit.head.hash}` : ''}${r.imported ? `; home.imported appended as ${r.imported.seq}:${r.imported.hash}` : ''}`,
    `  objects: ${o.count} (${humanBytes(o.bytes)}): ${o.uploaded} ${r.dryRun ? 'to store' : 'stored'} (${humanBytes(o.uploadedBytes)}), ${o.present} already there`,
    `  stage-cache records: ${verb} ${r.cacheRecords.copied}${r.cacheRecords.skipped ? `, ${r.cacheRecords.skipped} left out (they name objects neither store has)` : ''}`,
  ].join('\n');
}
