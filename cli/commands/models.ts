/** `tempered models list|show|pull|diff|promote|rollback|history`: the model registry. */
import { readFile } from 'node:fs/promises';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { InputError, IntegrityError } from '../../src/errors.ts';
import { modelHashOf } from '../../src/audit/model-hash.ts';
import { databaseExists } from '../../src/db/database.ts';
import { diskFullError, isDiskFull } from '../../src/util/disk-full.ts';
import { changeAlias, GateRefused } from '../../src/registry/alias-change.ts';
import { modelCard } from '../../src/registry/card.ts';
import { diffModelVersions, productionComparisonNote } from '../../src/registry/diff.ts';
import { productionNote } from '../../src/registry/production.ts';
import { openRegistry, type Registry } from '../../src/registry/registry.ts';
import type { DataRef, ModelVersion, VersionDiff } from '../../src/registry/types.ts';
import { plannedScheduleSpec, recordedSpec, scheduleSpec, stageRecords, trainedOn, trainedWith } from '../../src/audit/run-spec.ts';
import { jsonDiff, type SpecDiffLine } from '../../src/util/json-diff.ts';
import { keptSpec } from '../../src/audit/redact-spec.ts';
import { specBody } from '../../src/spec/plan.ts';
import { actor, helpAsked, parse } from '../args.ts';
import { sharingHint } from './sharing.ts';
import { writeTransformersWeights, type TransformersExport } from '../../src/models/transformers-folder.ts';
import { pullNotes } from './models-pull.ts';
import { CliError, type CliContext } from '../context.ts';
import { paramsText, humanBytes, printable, terminalSafe, terminalTextFor } from '../format.ts';

async function withRegistry<T>(ctx: CliContext, fn: (r: Registry) => Promise<T>): Promise<T> {
  if (!databaseExists(ctx.paths.registryDb))
    throw new CliError(`no model registry at ${ctx.paths.registryDb} yet; a pipeline's register stage creates it${sharingHint(ctx)}`);
  const reg = await openRegistry(ctx.paths.registryDb);
  try {
    return await fn(reg);
  } finally {
    await reg.close();
  }
}

/** `name@3`, `name@production` or `name` (latest). */
export function parseModelRef(ref: string): { name: string; at: string | number } {
  const [name, at, ...more] = ref.split('@');
  if (!name || more.length) throw new CliError(`bad model reference '${ref}'; write name, name@version or name@alias`, 2);
  if (at === undefined || at === '') return { name, at: 'latest' };
  return { name, at: /^\d+$/.test(at) ? Number(at) : at };
}

/** Metric names padded to the longest (28 at least), so long ones such as production.candidate.* stay in the column. */
const nameWidth = (names: string[]) => Math.max(28, ...names.map((n) => n.length));

/** Says which scores are training's validation ones (register records them as val_*) and which evaluate's test ones. */
function validationNote(names: string[]): string[] {
  return names.some((n) => n.startsWith('val_'))
    ? [
        "  (val_*: the exported weights' on the validation rows (early stopping's best step, else the last evaluation), what a sweep's trials are chosen on; the others: evaluate's)",
      ]
    : [];
}

/** Counts (production.rows), version numbers and 0/1 flags read as integers; scores with four decimals. */
function fmtMetric(name: string, x: number): string {
  if (name === 'production.version') return `v${x}`;
  return Number.isInteger(x) ? String(x) : x.toFixed(4);
}

/**
 * A base model's identity (src/models/sources.ts ModelIdentity) in one line: where from, which revision,
 * its files. It was JSON cut at 160 characters, mid-hash; `--json` keeps it whole.
 */
export function describeBaseModel(b: Record<string, unknown>): string {
  const files = Array.isArray(b.files) ? (b.files as { bytes?: unknown }[]) : [];
  const bytes = files.reduce((n, f) => n + (typeof f.bytes === 'number' ? f.bytes : 0), 0);
  const rev = typeof b.revision === 'string' ? (/^[0-9a-f]{40,64}$/.test(b.revision) ? b.revision.slice(0, 12) : b.revision) : undefined;
  return printable(
    `${typeof b.source === 'string' ? b.source : '?'}${rev ? ` (revision ${rev})` : ''}${files.length ? `, ${files.length} file${files.length === 1 ? '' : 's'}, ${humanBytes(bytes)}` : ''}`,
  );
}

/**
 * A change as 4 decimals, or 2 significant digits where those show none: a line among the metrics that differ read
 * `0.8500 → 0.8500  (+0.0000)`, as if it were the same in both.
 */
function signedDelta(d: number): string {
  const fixed = d.toFixed(4);
  const shown = d !== 0 && Number(fixed) === 0 ? d.toPrecision(2) : fixed;
  return `${d >= 0 ? '+' : ''}${shown}`;
}

/**
 * The metrics that differ, one a line with the change, then those the same in both on one line, a group whose every
 * metric is the same as `group.*`: two trials share their base model's scores (baseline.*, a dozen for a causal LM),
 * which were a dozen lines of `(+0.0000)` around the few that differ.
 */
export function metricDiffLines(metrics: VersionDiff['metrics']): string[] {
  const same = (m: VersionDiff['metrics'][number]) => m.delta !== undefined && m.a === m.b;
  const changed = metrics.filter((m) => !same(m));
  const width = nameWidth(changed.map((m) => m.name));
  const lines = changed.map(
    (m) =>
      `  ${m.name.padEnd(width)} ${m.a === undefined ? '-' : fmtMetric(m.name, m.a)} → ${m.b === undefined ? '-' : fmtMetric(m.name, m.b)}${m.delta !== undefined ? `  (${signedDelta(m.delta)})` : ''}`,
  );
  // A group is summed up as group.* only where every metric under it, however deep, is the same: baseline's direct
  // scores alike did not make baseline.per_class.spam.f1, listed above as changed, the same in both.
  const prefixes = (name: string) =>
    name
      .split('.')
      .slice(0, -1)
      .map((_, i, parts) => parts.slice(0, i + 1).join('.'));
  const allSame = (g: string) => metrics.every((o) => !o.name.startsWith(`${g}.`) || same(o));
  const unchanged = [
    ...new Set(
      metrics.filter(same).map((m) => {
        // The outermost group that is the same throughout: baseline.*, not baseline.per_class.* and baseline.*.
        const outer = prefixes(m.name).find(allSame);
        return outer === undefined ? m.name : `${outer}.*`;
      }),
    ),
  ];
  if (unchanged.length > 0) lines.push(`  the same in both: ${unchanged.join(', ')}`);
  return lines;
}

/** Data sets by name: changed (same name, other bytes), added, removed, unchanged, with short hashes and rows. */
function dataLines(d: VersionDiff): string[] {
  const ref = (r: DataRef) => `${r.sha256.slice(0, 12)}…${r.rows !== undefined ? ` (${r.rows} rows)` : ''}`;
  const paired = new Set(d.data.changed.flatMap((c) => [c.a, c.b]));
  const lines = [
    ...d.data.changed.map((c) => `  changed    ${c.name.padEnd(16)} ${ref(c.a)} → ${ref(c.b)}`),
    ...d.data.added.filter((r) => !paired.has(r)).map((r) => `  added      ${r.name.padEnd(16)} ${ref(r)}`),
    ...d.data.removed.filter((r) => !paired.has(r)).map((r) => `  removed    ${r.name.padEnd(16)} ${ref(r)}`),
    ...d.data.unchanged.map((r) => `  unchanged  ${r.name.padEnd(16)} ${ref(r)}`),
  ];
  return lines.length ? lines.map(printable) : ['  (none recorded)'];
}

/**
 * `models show NAME@V --spec`: the spec file of the run that registered V, from its `run.submitted` record, on stdout
 * exactly as submitted (so `> pipeline.yaml` gives a file to submit again), and on stderr what a rerun also needs: the
 * params it ran with and the source files its ingest read, by hash. Without the text (a run recorded before it was
 * kept, a schedule's run), the resolved plan the run followed, as JSON.
 */
async function printSpec(ctx: CliContext, v: ModelVersion, json: boolean): Promise<number> {
  const { runId, specHash } = v.lineage;
  const id = `${v.name}@${v.version}`;
  // A read: an audit database is not made where there is none.
  if (!databaseExists(ctx.paths.auditDb))
    throw new CliError(`${id}: no audit log at ${ctx.paths.auditDb}, which keeps the spec a run was submitted with${sharingHint(ctx)}`);
  const audit = await ctx.auditLog().get();
  const s = await recordedSpec(audit, runId, specHash);
  // No text in the trail: a schedule's run (no run.submitted), or a resume of one (whose run.submitted has the plan but
  // no text, as the schedule's run it resumes had none): the file the schedule keeps, when it plans to the spec hash.
  if (!s || s.text === undefined) {
    const fromSchedule = await printScheduledSpec(ctx, await scheduleSpec(audit, specHash), id, runId, specHash, json, !!s);
    if (fromSchedule !== undefined) return fromSchedule;
  }
  if (!s || (s.text === undefined && !s.plan))
    throw new CliError(
      `${id}: the audit trail keeps ${s ? 'only the hash' : 'no submission'} of the spec of run ${runId} (spec ${specHash.slice(0, 12)})` +
        `${s ? ': it was submitted before the trail kept specs' : ''}; the run's history on the Temporal server holds its plan until the namespace's retention deletes it (the dashboard compares runs' specs from it)`,
    );
  const bad = [
    ...(s.planMatches === false ? [`the recorded plan does not hash to the version's spec hash ${specHash}`] : []),
    ...(s.textMatches === false ? [`the recorded text does not hash to its recorded sha256 ${s.textSha256 ?? '?'}`] : []),
  ];
  if (json) {
    console.log(JSON.stringify({ model: id, ...s, problems: bad }, null, 2));
    return bad.length ? 1 : 0;
  }
  const params = Object.entries(s.params ?? {}).map(
    ([k, x]) => ` --param ${shellWord(`${k}=${typeof x === 'string' ? x : JSON.stringify(x)}`)}`,
  );
  const notes = [
    `# ${id}: the spec of run ${runId}, submitted by ${s.actor} at ${s.time}${s.specFile ? ` from ${s.specFile}` : ''} (spec ${specHash.slice(0, 12)})`,
    ...(s.text === undefined
      ? ['# the trail keeps the resolved plan this run followed, not its file: printed as JSON']
      : s.textFrom !== runId
        ? [`# the text is the one run ${s.textFrom ?? '?'} was submitted with (run ${runId} resumed it)`]
        : []),
    ...(s.redacted?.length
      ? [
          `# credentials were hidden when the trail recorded this spec, so it is not the file submitted (${s.textSha256 ? `sha256 ${s.textSha256}` : 'its hash is not kept'}): put them back where it says REDACTED before submitting it again (${s.redacted.join('; ')})`,
        ]
      : []),
    `# rerun: tempered submit ${s.specFile ? shellWord(s.specFile.split('/').pop()!) : 'FILE'}${params.join('')}`,
    ...s.sources.map((x) => `# data: ${x.stage} read ${x.path} sha256 ${x.sha256}${x.bytes !== undefined ? ` (${x.bytes} bytes)` : ''}`),
    ...bad.map((b) => `# warning: ${b}`),
  ];
  console.error(notes.map(printable).join('\n'));
  // The text as submitted, which may hold escape sequences (YAML takes them in a comment): shown on a terminal, not sent.
  process.stdout.write(terminalTextFor(process.stdout)(s.text ?? JSON.stringify(s.plan, null, 2) + '\n'));
  return bad.length ? 1 : 0;
}

/**
 * How two versions were made beyond what the registry compares: the fields of the spec that differ (from the plans
 * their runs' `run.submitted` records keep; only when the spec hashes differ) and what their train stages ran with
 * (device, threads, onnxruntime, CPUs: the thread count was measured to change a model's bytes). null: not recorded.
 */
async function howMadeDiff(
  ctx: CliContext,
  a: ModelVersion,
  b: ModelVersion,
  specChanged: boolean,
): Promise<{ spec?: SpecDiffLine[] | null; trainedWith: SpecDiffLine[] | null }> {
  // A read: an audit database is not made where there is none (nothing is recorded then).
  if (!databaseExists(ctx.paths.auditDb)) return { ...(specChanged ? { spec: null } : {}), trainedWith: null };
  const audit = await ctx.auditLog().get();
  // The dashboard's comparison of runs' specs, where stages are keyed by id so a line reads stages.train.with.threads.
  const byId = (plan: Record<string, unknown>) => ({
    ...plan,
    stages: Object.fromEntries((plan.stages as { id: string }[]).map((st) => [st.id, st])),
  });
  // Each run's stage records read once, for its spec's sources and for what it trained with.
  const stages = await Promise.all([a, b].map((v) => stageRecords(audit, v.lineage.runId)));
  const plans = await Promise.all(
    [a, b].map(
      async (v, i) =>
        (await recordedSpec(audit, v.lineage.runId, v.lineage.specHash, stages[i]))?.plan ??
        (await scheduledPlan(ctx, audit, v.lineage.specHash)),
    ),
  );
  const trained = await Promise.all([a, b].map((v, i) => trainedWith(audit, v.lineage.runId, stages[i])));
  return {
    ...(specChanged ? { spec: plans[0] && plans[1] ? jsonDiff(plans.map((p) => byId(p!))) : null } : {}),
    trainedWith: trained.every((t) => Object.keys(t).length) ? jsonDiff(trained) : null,
  };
}

/**
 * The plan a schedule's run followed: it has no `run.submitted`, so the schedule's stored spec file planned again with its
 * params, as `show --spec` prints it, where that gives the version's spec hash. Without it `diff` of a scheduled version
 * said the trail kept only spec hashes, though `show --spec` printed the file. Undefined when the store lost the file.
 */
async function scheduledPlan(
  ctx: CliContext,
  audit: Parameters<typeof scheduleSpec>[0],
  specHash: string,
): Promise<Record<string, unknown> | undefined> {
  const sched = await scheduleSpec(audit, specHash);
  if (!sched) return undefined;
  let text: string;
  try {
    text = await readFile(await ctx.store().localPath(sched.specUri), 'utf8');
  } catch (e) {
    if (e instanceof IntegrityError) return undefined;
    throw e;
  }
  const { plan } = plannedScheduleSpec(text, sched, specHash, ctx.registry);
  // As run.submitted keeps a plan: its body, credentials hidden, so both sides of the diff read alike.
  return plan ? (keptSpec(specBody(plan), undefined).plan as Record<string, unknown>) : undefined;
}

function diffLines(lines: SpecDiffLine[] | null, unrecorded: string): string[] {
  if (lines === null) return [`  (${unrecorded})`];
  if (!lines.length) return ['  (same)'];
  const show = (x: unknown) => (x === undefined ? '-' : JSON.stringify(x));
  const width = Math.max(28, ...lines.map((l) => l.path.length));
  return lines.map((l) => printable(`  ${l.path.padEnd(width)} ${show(l.values[0])} → ${show(l.values[1])}`));
}

/**
 * A run a schedule started has no `run.submitted`: its spec file is the one the schedule keeps in the store, named by
 * the schedule's newest record with that spec hash, and planned again here to check it gives the version's spec hash.
 * `recorded`: the run has a `run.submitted` with the plan but no text (a resume of a schedule's run); the file is then
 * printed only when it plans to the hash (undefined otherwise: the recorded plan is printed instead).
 */
async function printScheduledSpec(
  ctx: CliContext,
  sched: Awaited<ReturnType<typeof scheduleSpec>>,
  id: string,
  runId: string,
  specHash: string,
  json: boolean,
  recorded = false,
): Promise<number | undefined> {
  if (!sched) return undefined;
  let text: string;
  try {
    text = await readFile(await ctx.store().localPath(sched.specUri), 'utf8');
  } catch (e) {
    // Gone from the store (a `store gc` before 6 Dec 2026 did not keep schedules' spec files) or damaged: a resume's
    // recorded plan is printed instead; a schedule's own run has nothing else.
    if (!(e instanceof IntegrityError)) throw e;
    if (recorded) return undefined;
    throw new CliError(
      `${id}: run ${runId} was started by schedule ${sched.schedule}, whose spec file ${sched.file ?? ''} (${sched.specUri}) the store no longer has: ${e.message}`,
    );
  }
  const { params, problem } = plannedScheduleSpec(text, sched, specHash, ctx.registry);
  const planMatches = problem === undefined;
  if (recorded && !planMatches) return undefined;
  const problems = problem === undefined ? [] : [problem];
  if (json) {
    console.log(
      JSON.stringify(
        { model: id, runId, specHash, schedule: sched.schedule, specUri: sched.specUri, specFile: sched.file, text, planMatches, problems },
        null,
        2,
      ),
    );
    return problems.length ? 1 : 0;
  }
  const notes = [
    `# ${id}: run ${runId} ${recorded ? `was submitted without its file's text (a resume of a schedule's run); the spec file schedule ${sched.schedule} keeps, which plans to its spec hash` : `was started by schedule ${sched.schedule}; its spec file as the schedule keeps it`} (${sched.specUri}${sched.file ? `, from ${sched.file}` : ''}; set by ${sched.actor} at ${sched.time}; spec ${specHash.slice(0, 12)})`,
    `# rerun: tempered submit ${sched.file ? shellWord(sched.file.split('/').pop()!) : 'FILE'}${params.map((p) => ` --param ${shellWord(p)}`).join('')}`,
    ...problems.map((b) => `# warning: ${b}`),
  ];
  console.error(notes.map(printable).join('\n'));
  // Someone else's file: escape sequences in it are shown on a terminal, not sent to it; a pipe gets its bytes.
  process.stdout.write(terminalTextFor(process.stdout)(text));
  return problems.length ? 1 : 0;
}

/** A word the shell reads as it is: quoted when it holds anything beyond letters, digits and `_.,:/=@+-`. */
function shellWord(w: string): string {
  return /^[\w.,:/=@+-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`;
}

async function resolveLatest(reg: Registry, name: string, at: string | number): Promise<number | string> {
  if (at !== 'latest') return at;
  const m = (await reg.listModels()).find((x) => x.name === name);
  if (!m) throw new CliError(`no registered model '${name}'; list them with \`tempered models list\``);
  return m.latestVersion;
}

export async function modelsCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage =
    'tempered models list | show <name[@v|@alias]> [--card | --spec] | pull <name[@v|@alias]> <dir> | diff <name> <a> <b> | promote <name@v> [--alias production] [--reason R] [--gate EXPR] | rollback <name> [--alias production] [--reason R] | history <name> [--json] | reproduce <name@v> [--queue Q] [--local-worker|--no-local-worker] [--json]';
  helpAsked(argv, usage);
  const [sub, ...rest] = argv;
  if (!sub)
    throw new CliError(`models takes a command: list, show, pull, diff, promote, rollback, history or reproduce\nusage: ${usage}`, 2);
  // Its own flags (a run's queue and worker, as submit --wait has): parsed there.
  if (sub === 'reproduce') return (await import('./models-reproduce.ts')).reproduceCmd(ctx, rest);
  const { values, positionals } = parse(
    rest,
    {
      json: { type: 'boolean' },
      alias: { type: 'string' },
      reason: { type: 'string' },
      card: { type: 'boolean' },
      spec: { type: 'boolean' },
      gate: { type: 'string' },
    },
    usage,
  );
  const out = (v: unknown, human: () => string) => console.log(values.json ? JSON.stringify(v, null, 2) : human());
  switch (sub) {
    case 'list':
      return withRegistry(ctx, async (reg) => {
        const models = await reg.listModels();
        out(models, () =>
          models.length === 0
            ? 'no registered models'
            : models
                .map(
                  (m) =>
                    `${m.name.padEnd(24)} latest v${m.latestVersion}  ${m.versions} version(s)  ${Object.entries(m.aliases)
                      .map(([a, v]) => `${a}→v${v}`)
                      .join(' ')}`,
                )
                .map(printable)
                .join('\n'),
        );
        return 0;
      });
    case 'show': {
      if (positionals.length !== 1) throw new CliError(`usage: ${usage}`, 2);
      const { name, at } = parseModelRef(positionals[0]!);
      return withRegistry(ctx, async (reg) => {
        const v = await reg.getVersion(name, await resolveLatest(reg, name, at));
        const note = productionNote(v);
        if (values.spec) return printSpec(ctx, v, !!values.json);
        // Labels (metric names) come from the data and the actor from whoever registered: shown, not sent to the terminal.
        if (values.card) console.log(terminalSafe(modelCard(v)));
        else {
          // A read: no audit database is made where there is none.
          const trained =
            values.json || !databaseExists(ctx.paths.auditDb) ? {} : await trainedWith(await ctx.auditLog().get(), v.lineage.runId);
          out(v, () =>
            [
              `${v.name}@${v.version}  created ${v.createdAt} by ${v.createdBy}${v.aliases.length ? `  aliases: ${v.aliases.join(', ')}` : ''}`,
              `lineage: run ${v.lineage.runId} stage ${v.lineage.stageId}, spec ${v.lineage.specHash.slice(0, 12)}, code ${v.lineage.codeVersion ?? '?'}`,
              // The run's parameters: which trial of a sweep this version is (a secret-named one hidden).
              Object.keys(v.params).length > 0 ? `  params: ${paramsText(v.params)}` : '',
              ...v.lineage.data.map((d) => `  data ${d.name}: ${d.sha256.slice(0, 16)}…${d.rows !== undefined ? ` (${d.rows} rows)` : ''}`),
              v.lineage.baseModel ? `  base model: ${describeBaseModel(v.lineage.baseModel)}` : '',
              // From the trail: how the model was trained, which the registry does not keep and its bytes may depend on.
              ...Object.entries(trained).map(([stage, t]) => `  ${stage}: ${trainedOn(t)}`),
              `  spec: \`tempered models show ${v.name}@${v.version} --spec\` prints the file it was submitted with`,
              'metrics:',
              ...Object.entries(v.metrics).map(([k, x]) => `  ${k.padEnd(nameWidth(Object.keys(v.metrics)))} ${fmtMetric(k, x)}`),
              // production.* are another version's scores: say which (src/registry/production.ts).
              ...(note ? [`  (${note})`] : []),
              ...validationNote(Object.keys(v.metrics)),
              'artifacts:',
              ...v.artifacts.map((a) => `  ${a.role.padEnd(28)} ${a.sha256.slice(0, 16)}…  ${a.bytes} bytes`),
            ]
              .filter(Boolean)
              .map(printable)
              .join('\n'),
          );
        }
        return 0;
      });
    }
    case 'pull': {
      if (positionals.length !== 2) throw new CliError(`usage: ${usage}`, 2);
      const { name, at } = parseModelRef(positionals[0]!);
      const dest = resolve(positionals[1]!);
      // Never over files of the user's: a folder that exists must be empty, and a link is not followed.
      const there = lstatSync(dest, { throwIfNoEntry: false });
      if (there?.isSymbolicLink())
        throw new CliError(`${dest} is a symbolic link; name a new folder (or the folder it leads to) instead`, 2);
      if (there && (!there.isDirectory() || readdirSync(dest).length > 0))
        throw new CliError(`${dest} exists and is not an empty folder; name a new one`, 2);
      const v = await withRegistry(ctx, async (reg) => reg.getVersion(name, await resolveLatest(reg, name, at)));
      const tree = v.artifacts.find((a) => a.role === 'model');
      if (!tree) throw new CliError(`${v.name}@${v.version} has no model artifact`);
      const checkedOut = await ctx
        .store()
        .checkoutTree({ uri: tree.uri, sha256: tree.sha256, bytes: tree.bytes, mediaType: tree.mediaType ?? '' }, ctx.paths.serving);
      // Copied beside the destination, then renamed: an interrupted pull leaves no half folder under the name asked for,
      // and a failed one (a full disk, weights that cannot be written) leaves nothing at all.
      mkdirSync(dirname(dest), { recursive: true });
      // A name no other folder has (a fixed <dest>.tmp-<pid> was emptied first, whoever's it was).
      const tmp = mkdtempSync(`${dest}.tmp-`);
      let hf: TransformersExport | undefined;
      let copied = false;
      try {
        cpSync(checkedOut, tmp, { recursive: true });
        copied = true;
        hf = await writeTransformersWeights(tmp);
        // Onto nothing or the empty folder checked above, in one step: what appeared there meanwhile is not replaced.
        try {
          renameSync(tmp, dest);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw e;
          throw new CliError(
            `${dest} was made or filled while the pull copied (another pull to it?); nothing was written there, name a new folder`,
          );
        }
      } catch (e) {
        rmSync(tmp, { recursive: true, force: true });
        // The disk of DIR, named without the copy (gone): the CLI's own hint would send a full disk to TEMPERED_HOME and a run to resume.
        if (isDiskFull(e)) {
          const full = diskFullError(e, [dirname(dest)], {
            at: dirname(dest),
            ...(copied ? {} : { neededBytes: folderBytes(checkedOut) }),
          });
          throw new CliError(`${full.message}\n  free space there or pull into a folder on another disk; nothing was written to ${dest}`);
        }
        // The copy named is gone and was never the user's: the version's file is what is wrong.
        if (e instanceof InputError && e.where?.startsWith(tmp + sep))
          throw new InputError(e.bareMessage, {
            where: `${v.name}@${v.version}'s ${e.where.slice(tmp.length + 1)}`,
            ...(e.hint ? { hint: e.hint } : {}),
            ...(e.code ? { code: e.code } : {}),
            cause: e,
          });
        throw e;
      }
      // Weights leaving the registry for a folder of someone's are part of the trail: who took which model, where.
      const modelHash = modelHashOf(v.artifacts);
      await (
        await ctx.auditLog().get()
      ).append({
        action: 'model.pulled',
        subject: `${v.name}@${v.version}`,
        model: `${v.name}@${v.version}`,
        actor: actor(),
        ...(modelHash ? { modelHash } : {}),
        details: { dir: dest, host: hostname() },
      });
      const files = readdirSync(dest, { recursive: true }).map(String).sort();
      out({ name: v.name, version: v.version, dir: dest, files }, () =>
        // File names come from the folder the model was registered from (a base model's files among them).
        [`${v.name}@${v.version} → ${dest}`, ...files.map((f) => `  ${f}`), ...pullNotes(dest, files, hf)].map(printable).join('\n'),
      );
      return 0;
    }
    case 'diff': {
      if (positionals.length !== 3) throw new CliError(`usage: ${usage}`, 2);
      const [name, a, b] = positionals as [string, string, string];
      const num = (x: string) => (/^\d+$/.test(x) ? Number(x) : x);
      return withRegistry(ctx, async (reg) => {
        // Read once: the registry's diff and the trail's (howMadeDiff) are of the same two versions.
        const [va, vb] = [await reg.getVersion(name, num(a)), await reg.getVersion(name, num(b))];
        const d = diffModelVersions(va, vb);
        const how = await howMadeDiff(ctx, va, vb, d.specHashChanged);
        out({ ...d, ...how }, () =>
          [
            // Which code: "(code changed)" alone left the reader to find both versions, one of them perhaps a -dirty tree.
            `${name}: v${d.a} → v${d.b}${d.specHashChanged ? '  (spec changed)' : ''}${d.codeVersionChanged ? `  (code changed: ${va.lineage.codeVersion ?? 'unrecorded'} → ${vb.lineage.codeVersion ?? 'unrecorded'})` : ''}${d.baseModelChanged ? '  (base model changed)' : ''}`,
            'metrics:',
            ...metricDiffLines(d.metrics),
            ...[productionComparisonNote(d)].flatMap((note) => (note ? [`  (${note})`] : [])),
            ...validationNote(d.metrics.map((m) => m.name)),
            'params:',
            ...(d.params.length ? d.params.map((p) => `  ${p.key}: ${JSON.stringify(p.a)} → ${JSON.stringify(p.b)}`) : ['  (same)']),
            'data:',
            ...dataLines(d),
            ...d.artifacts.filter((x) => x.changed).map((x) => `  artifact ${x.role} changed`),
            ...(how.spec === undefined
              ? []
              : ['spec:', ...diffLines(how.spec, "the trail keeps only the spec hashes of these versions' runs")]),
            'trained with:',
            ...diffLines(how.trainedWith, "not recorded for these versions' runs (before train's audit record kept it)"),
          ]
            .map(printable)
            .join('\n'),
        );
        return 0;
      });
    }
    case 'promote':
    case 'rollback': {
      if (positionals.length !== 1) throw new CliError(`usage: ${usage}`, 2);
      const { name, at } = parseModelRef(positionals[0]!);
      // A rollback goes back along the alias's history: a version in the reference would be ignored.
      if (sub === 'rollback' && positionals[0]!.includes('@'))
        throw new CliError(
          `rollback takes a model name, not ${positionals[0]}: it moves the alias back to where it was before\nusage: ${usage}`,
          2,
        );
      const alias = values.alias ?? 'production';
      const who = actor();
      if (!databaseExists(ctx.paths.registryDb))
        throw new CliError(`no model registry at ${ctx.paths.registryDb} yet; a pipeline's register stage creates it${sharingHint(ctx)}`);
      // The audit record commits with the alias move (registry outbox) and is then delivered, so
      // a crash in between leaves it pending for the next delivery instead of losing it.
      // A rollback names the version it rolls back from, as read now: two operators rolling back at
      // once roll back once, not twice.
      // A promote names the version the alias held when read, too: of two promotes at once, the second
      // fails (moved since read) instead of overwriting the first and both saying they promoted.
      if (values.gate !== undefined && sub !== 'promote') throw new CliError(`--gate goes with promote\nusage: ${usage}`, 2);
      const holder = await withRegistry(ctx, (reg) => reg.aliasVersion(name, alias));
      const { change, version, auditPending, gate, already, sameModel } = await changeAlias(ctx.paths.registryDb, ctx.paths.auditDb, {
        op: sub,
        name,
        at,
        alias,
        actor: who,
        reason: values.reason ?? (sub === 'promote' ? 'promoted by hand' : undefined),
        ...(sub === 'promote'
          ? { expect: holder, ...(values.gate !== undefined ? { gate: values.gate } : {}) }
          : holder !== null
            ? { expect: holder }
            : {}),
      }).catch((e: unknown) => {
        // A refusal is the gate's verdict, not a fault: said as such, without "gate: gate refused" and a stack-trace hint.
        if (e instanceof GateRefused)
          throw new CliError(
            `${positionals[0]!} was not promoted to ${alias}: the gate refused it: ${e.explanation}\n  ${e.hint ?? ''}`,
            1,
          );
        throw e;
      });
      if (auditPending)
        console.error(
          `warning: the ${sub} is done, but its audit record could not be written yet (${auditPending}); it waits in the registry's outbox for the next register, deploy, promote or rollback`,
        );
      if (gate && !values.json) console.log(`gate passed: ${gate.explanation}${gate.compared ? ` (${gate.compared})` : ''}`);
      if (!change) {
        // --json: a document here too (it printed this line, which a script cannot parse).
        out(
          { name, alias, version, changed: false, ...(already ? { already } : {}) },
          () => `${name}@${alias} already points at v${version}${already ? ` (${already})` : ''}`,
        );
        return 0;
      }
      out(
        // The gate's verdict is in the document, which otherwise kept it from a script (said only without --json).
        gate
          ? { ...change, gate: { passed: true, explanation: gate.explanation, ...(gate.compared ? { compared: gate.compared } : {}) } }
          : sameModel
            ? { ...change, sameModel }
            : change,
        () =>
          `${name}@${alias}: v${change.fromVersion ?? '-'} → v${change.toVersion} (${sub === 'promote' ? 'promoted' : 'rolled back'} by ${who})` +
          // Back to a twin, the model left still serves (and no hold is put on it): the hold's line would be false.
          (sameModel
            ? `\n${sameModel}`
            : sub === 'rollback' && change.fromVersion !== null
              ? `\nno run's deploy promotes v${change.fromVersion} to ${alias} again (a rerun on the same data registers the same version); \`tempered models promote ${name}@${change.fromVersion}${alias === 'production' ? '' : ` --alias ${alias}`}\` does, by hand`
              : ''),
      );
      return 0;
    }
    case 'history': {
      if (positionals.length !== 1) throw new CliError(`usage: ${usage}`, 2);
      return withRegistry(ctx, async (reg) => {
        if (!(await reg.listModels()).some((m) => m.name === positionals[0]))
          throw new CliError(`no registered model '${positionals[0]}'; list them with \`tempered models list\``);
        const h = await reg.aliasHistory(positionals[0]!, values.alias);
        out(
          h,
          () =>
            h
              .map((c) =>
                printable(
                  `${c.at}  ${c.alias.padEnd(12)} ${c.kind.padEnd(8)} v${c.fromVersion ?? '-'} → v${c.toVersion}  by ${c.actor}${c.reason ? `  (${c.reason})` : ''}`,
                ),
              )
              .join('\n') || 'no alias changes',
        );
        return 0;
      });
    }
    case 'compare':
      // What the dashboard and other tools call it: say which command compares what.
      throw new CliError(
        `there is no 'models compare': \`tempered models diff NAME A B\` compares two versions (metrics, params, data, spec), \`tempered runs --compare RUN RUN\` the runs that made them (validation, test scores, times)\nusage: ${usage}`,
        2,
      );
    default:
      throw new CliError(`unknown models command '${sub ?? ''}'\nusage: ${usage}`, 2);
  }
}

/** The bytes of the files under `dir`: what a copy of it needs. */
function folderBytes(dir: string): number {
  // Names, not Dirents: Dirent.parentPath is from Node 20.12, and package.json takes any Node 20.
  let bytes = 0;
  for (const name of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    const st = statSync(join(dir, name));
    if (st.isFile()) bytes += st.size;
  }
  return bytes;
}
