/**
 * `tempered store gc`: deletes the artifacts nothing keeps (src/store/garbage.ts) and this host's
 * checkpoint folders no run will resume (src/store/local-checkpoints.ts), a dry run unless --collect.
 */
import { databaseExists, isDatabaseUrl } from '../../src/db/database.ts';
import { modelCardSha256 } from '../../src/registry/card.ts';
import { openRegistry } from '../../src/registry/registry.ts';
import { collectGarbage, DEFAULT_HORIZON_DAYS, GarbageIncomplete, MIN_HORIZON_MS, type GarbageReport } from '../../src/store/garbage.ts';
import type { CheckpointGarbageReason } from '../../src/store/local-checkpoints.ts';
import { actor, parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { humanBytes as fmtBytes } from '../format.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

export async function storeCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = `tempered store gc [--older-than DAYS (default ${DEFAULT_HORIZON_DAYS}, at least ${MIN_HORIZON_MS / DAY_MS})] [--collect [--sole-registry]] [--json]`;
  const { values, positionals } = parse(
    argv,
    { 'older-than': { type: 'string' }, collect: { type: 'boolean' }, 'sole-registry': { type: 'boolean' }, json: { type: 'boolean' } },
    usage,
  );
  if (positionals[0] !== 'gc' || positionals.length !== 1) throw new CliError(`usage: ${usage}`, 2);
  const raw = values['older-than'];
  const days = raw === undefined ? DEFAULT_HORIZON_DAYS : Number(raw);
  if (!Number.isFinite(days) || days * DAY_MS < MIN_HORIZON_MS)
    throw new CliError(
      `--older-than takes a number of days of at least ${MIN_HORIZON_MS / DAY_MS}, not ${JSON.stringify(raw)}: it must be longer than any run takes, since a run's outputs are kept by their age until it registers them\nusage: ${usage}`,
      2,
    );
  // A shared bucket with this host's own registry file: other hosts' registries (each its own file)
  // name objects in the same bucket that this collection cannot see, and would lose them.
  const store = ctx.store();
  const collect = values.collect === true;
  if (collect && store.remote && values['sole-registry'] && !databaseExists(ctx.paths.registryDb))
    throw new CliError(
      `--sole-registry says this host's registry is the only one, but there is none at ${ctx.paths.registryDb} (another TEMPERED_HOME?): without it every registered model's files would be garbage`,
      2,
    );
  if (collect && store.remote && !isDatabaseUrl(ctx.paths.registryDb) && !values['sole-registry'])
    throw new CliError(
      `the store ${store.remote.url} is shared, but the registry is this host's file ${ctx.paths.registryDb}: models registered on other hosts name objects this collection cannot see. Set TEMPERED_DATABASE_URL to the shared registry, or pass --sole-registry if this host's registry is the only one.\nusage: ${usage}`,
      2,
    );
  const registryVersions = async function* (): AsyncIterable<string> {
    if (!databaseExists(ctx.paths.registryDb)) return;
    const reg = await openRegistry(ctx.paths.registryDb);
    try {
      // The card its register stage stored too: `status` of that run lists it among the outputs (the registry renders
      // the card again, so nothing else names it).
      for (const m of await reg.listModels())
        for (const v of await reg.listVersions(m.name)) yield `${JSON.stringify(v)} ${modelCardSha256(v)}`;
    } finally {
      await reg.close();
    }
  };
  // A schedule's spec file (`details.specUri` of its records) is read again by `schedule update` and by `models show
  // --spec` for its runs' versions, long after it was stored: kept, also for deleted schedules (they made models).
  const scheduleSpecs = async function* (): AsyncIterable<string> {
    if (!databaseExists(ctx.paths.auditDb)) return;
    const log = await ctx.auditLog().get();
    for (const action of ['schedule.created', 'schedule.updated'])
      for (const r of await log.query({ action })) if (typeof r.details.specUri === 'string') yield r.details.specUri;
  };
  const roots = async function* (): AsyncIterable<string> {
    yield* registryVersions();
    yield* scheduleSpecs();
  };
  const audit = async (r: GarbageReport, error?: string) =>
    (await ctx.auditLog().get()).append({
      action: 'store.collected',
      subject: r.store,
      actor: actor(),
      details: {
        horizon: r.horizon,
        records: r.records.dropped,
        objects: r.objects.deleted,
        bytes: r.objects.deletedBytes,
        quarantined: r.quarantine.deleted,
        points: r.points.deleted,
        checkpoints: r.checkpoints.deleted,
        leases: r.leases.deleted,
        uploads: r.uploads.aborted,
        ...(r.localCheckpoints
          ? { localCheckpoints: r.localCheckpoints.deleted, localCheckpointBytes: r.localCheckpoints.deletedBytes }
          : {}),
        ...(r.baselines ? { baselineMemos: r.baselines.deleted } : {}),
        ...(error ? { error } : {}),
      },
    });
  const report = await collectGarbage({
    store,
    cache: ctx.cache(),
    roots: roots(),
    olderThanMs: days * DAY_MS,
    collect,
    log: (line) => console.error(line),
    points: ctx.progressPoints(),
    checkpointsDir: ctx.paths.checkpoints,
    baselinesDir: ctx.paths.baselines,
  }).catch(async (e: unknown) => {
    // A collection that stopped part-way has still deleted what it says: that goes in the trail too.
    if (e instanceof GarbageIncomplete) await audit(e.report, e.message);
    throw e;
  });
  if (collect) await audit(report);
  console.log(values.json ? JSON.stringify(report) : describeGarbage(report));
  return 0;
}

const CHECKPOINT_WHY: Record<CheckpointGarbageReason, string> = {
  finished: 'its stage finished',
  'completed elsewhere': 'its stage completed since (a stage-cache record: every run that looks it up is a hit)',
  abandoned: 'nothing written since the horizon',
  'stray temps': 'half-written checkpoints of writers that are gone',
  'interrupted gc': 'left by a collection that was killed',
};

export function describeGarbage(r: GarbageReport): string {
  const o = r.objects;
  const verb = r.collected ? 'deleted' : 'would delete';
  const lines = [
    `${r.store}: objects last written before ${r.horizon} that nothing keeps`,
    `  kept:    ${o.kept} objects (${fmtBytes(o.keptBytes)}) named by the registry, a schedule (its spec file), a stage-cache record after the horizon, a checkpoint or a kept object`,
    `  recent:  ${o.recent} objects (${fmtBytes(o.recentBytes)}) unreferenced but written after the horizon`,
    `  garbage: ${o.garbage} objects (${fmtBytes(o.garbageBytes)}); ${verb} ${r.collected ? `${o.deleted} (${fmtBytes(o.deletedBytes)})` : 'them'}`,
    `  stage-cache records: ${r.records.kept} kept, ${r.records.expired} older than the horizon${r.collected ? `, ${r.records.dropped} dropped (one written again or used meanwhile stays)` : ' to drop'}`,
  ];
  if (r.points.old)
    lines.push(
      `  training points (live curves) of ${r.points.old} stages that wrote none since the horizon: ${r.collected ? 'deleted' : 'to delete'} (files on one machine, rows in a shared database)`,
    );
  if (r.leases.old)
    lines.push(
      `  leases unwritten since the horizon (of finished or abandoned trainings): ${r.leases.old} ${r.collected ? `deleted ${r.leases.deleted}` : 'to delete'}`,
    );
  if (r.checkpoints.abandoned)
    lines.push(
      `  abandoned trainings (checkpoint, files and lease unwritten since the horizon): ${r.checkpoints.abandoned} (${fmtBytes(r.checkpoints.abandonedBytes)}) ${r.collected ? `deleted ${r.checkpoints.deleted} (one taken up again meanwhile stays)` : 'to delete'}`,
    );
  if (r.uploads.abandoned)
    lines.push(
      `  unfinished uploads begun before the horizon (a worker killed mid-upload; S3 keeps their parts until aborted): ${r.uploads.abandoned} ${r.collected ? `aborted ${r.uploads.aborted}` : 'to abort'}`,
    );
  if (r.quarantine.garbage)
    lines.push(
      `  quarantine: ${r.quarantine.garbage} damaged objects (${fmtBytes(r.quarantine.garbageBytes)}) ${verb === 'deleted' ? 'deleted' : 'to delete'}`,
    );
  const c = r.localCheckpoints;
  if (c && (c.garbage || c.kept)) {
    lines.push(
      `  local checkpoints (${c.dir}): ${c.kept} folders kept (${fmtBytes(c.keptBytes)}${c.held ? `; ${c.held} held by a running training` : ''}), garbage ${c.garbage} (${fmtBytes(c.garbageBytes)}); ${r.collected ? `deleted ${c.deleted} (${fmtBytes(c.deletedBytes)})` : 'would delete them'}`,
    );
    for (const i of c.items) lines.push(`    ${i.name}: ${fmtBytes(i.bytes)}, ${CHECKPOINT_WHY[i.why]} (last written ${i.lastWrite})`);
  }
  const b = r.baselines;
  if (b?.old)
    lines.push(
      `  baseline memos (${b.dir}) unused since the horizon: ${b.old} (${fmtBytes(b.oldBytes)}); ${r.collected ? `deleted ${b.deleted}` : 'would delete them'}`,
    );
  if (!r.collected) lines.push('dry run: nothing was deleted; add --collect to delete');
  return lines.join('\n');
}
