/**
 * `tempered models reproduce NAME@V`: reruns the plan the version's run followed, as recorded in its `run.submitted`
 * audit record, as a new run with the cache off and without the stages that act on the registry (register, deploy and
 * what needs them: src/audit/reproduce.ts), then compares the rerun's model bytes with the version's `modelHash`, and
 * the data of each stage upstream of training with the original run's records, so a mismatch says where the rerun
 * went another way. The check is written to the audit trail (`model.reproduced` / `model.not_reproduced`).
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { modelHashOf } from '../../src/audit/model-hash.ts';
import { judgeRerun, modelSource, planProblem, reproductionPlan, stageOutputHashes, type Reproduction } from '../../src/audit/reproduce.ts';
import {
  plannedScheduleSpec,
  recordedSpec,
  scheduleSpec,
  stageRecords,
  trainedOn,
  trainedWith,
  type TrainedWith,
} from '../../src/audit/run-spec.ts';
import type { AuditLog } from '../../src/audit/log.ts';
import { databaseExists } from '../../src/db/database.ts';
import { InputError, IntegrityError } from '../../src/errors.ts';
import { openRegistry } from '../../src/registry/registry.ts';
import type { ModelVersion } from '../../src/registry/types.ts';
import { specBody } from '../../src/spec/plan.ts';
import type { PlannedPipeline } from '../../src/spec/types.ts';
import { modelArtifacts } from '../../src/stages/register.ts';
import { isArtifactRef } from '../../src/types.ts';
import { codeVersion } from '../../src/util/code-version.ts';
import type { RunInput, RunStatus } from '../../workflows/types.ts';
import { actor, parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { formatRunStatus, printable } from '../format.ts';
import { parseModelRef } from './models.ts';
import { localWorkerFlag, refuseMissingSources, startAndReport } from './runs.ts';
import { sharingHint } from './sharing.ts';

const USAGE = 'tempered models reproduce <name@version> [--queue Q] [--local-worker|--no-local-worker] [--json]';

export async function reproduceCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { json: { type: 'boolean' }, queue: { type: 'string' }, 'local-worker': { type: 'boolean' }, 'no-local-worker': { type: 'boolean' } },
    USAGE,
  );
  if (positionals.length !== 1) throw new CliError(`models reproduce takes one version, as name@version\nusage: ${USAGE}`, 2);
  // The run waits for its end here, so the local-worker flags go as with `submit --wait`.
  const localWorker = localWorkerFlag({ ...values, wait: true }, USAGE);
  const v = await versionOf(ctx, positionals[0]!);
  const id = `${v.name}@${v.version}`;
  const modelHash = modelHashOf(v.artifacts);
  if (!modelHash) throw new CliError(`${id} has no model artifact in the registry, so there are no bytes to compare a rerun with`, 2);
  if (!databaseExists(ctx.paths.auditDb))
    throw new CliError(
      `${id}: no audit log at ${ctx.paths.auditDb}, which keeps the spec its run was submitted with${sharingHint(ctx)}`,
      2,
    );
  const audit = await ctx.auditLog().get();
  const { runId, specHash, stageId } = v.lineage;
  const recorded = await recordedPlan(ctx, audit, id, runId, specHash);
  const register = recorded.plan.stages.find((s) => s.id === stageId);
  if (register?.uses !== 'register')
    throw new CliError(
      `${id} was not registered by a pipeline's register stage: its lineage names stage '${stageId}' of run ${runId}, which the run's plan ${register ? `has as a ${register.uses} stage` : 'does not have'}; there is no pipeline run to repeat`,
      2,
    );
  const source = modelSource(register);
  const trainStage = source && recorded.plan.stages.find((s) => s.id === source.stage);
  if (!source || !trainStage)
    throw new CliError(
      `${id}: stages.${stageId}.with.model of run ${runId} is not one stage's output (\`\${{ stages.ID.outputs.model }}\`), so the stage that made the model is not known`,
      2,
    );
  const { plan, dropped } = reproductionPlan(recorded.plan, source.stage);
  await refuseMissingSources(ctx, plan, recorded.baseDir);
  const input: RunInput = {
    plan,
    options: {
      baseDir: recorded.baseDir,
      actor: actor(),
      noCache: true,
      // A checkpoint another run of this work left (one killed mid-training) would make the rerun half that run's.
      freshTraining: true,
      ...(recorded.specFile ? { specFile: recorded.specFile } : {}),
    },
  };
  if (!values.json)
    console.log(
      printable(
        `reproducing ${id} (run ${runId}, model sha256 ${modelHash.slice(0, 12)}…): its plan${Object.keys(plan.params).length ? ` with params ${JSON.stringify(plan.params)}` : ''}, the cache off, without ${dropped.join(', ') || 'no stage'}`,
      ),
    );
  const client = await ctx.client({ startServer: true });
  let rerunId = '';
  return startAndReport(ctx, client, input, {
    wait: true,
    json: !!values.json,
    ...(values.queue ? { queue: values.queue } : {}),
    localWorker,
    onSubmitted: (r) => (rerunId = r),
    onEnd: async (final) => {
      const facts = { id, v, modelHash, audit, rerunId, dropped, trainStage: source.stage, modelOutput: source.output };
      const threadsPinned = trainStage.with.threads !== undefined;
      const fresh = freshTraining(final, source.stage);
      const result =
        final.state === 'succeeded'
          ? await compare(ctx, facts, plan, final, threadsPinned)
          : { reproduced: false, verdict: `NOT reproduced: the rerun ${final.state}${failedStage(final)}`, failed: true as const };
      await audit.append({
        action: result.reproduced ? 'model.reproduced' : 'model.not_reproduced',
        subject: id,
        model: id,
        runId: rerunId,
        actor: actor(),
        specHash,
        modelHash,
        details: {
          originalRun: runId,
          rerunRun: rerunId,
          rerunState: final.state,
          ...('rerun' in result ? { rerunModelHash: result.rerun.modelHash ?? null, divergedAt: result.divergedAt ?? null } : {}),
          leftOut: dropped,
          ...fresh,
          verdict: result.verdict,
        },
        dedupeKey: `${rerunId}/reproduce`,
      });
      // The registry keeps the code a version was made with; the rerun's is its workers', this checkout's when they run here.
      const code = { original: v.lineage.codeVersion ?? null, here: codeVersion() };
      if (values.json)
        console.log(
          JSON.stringify(
            {
              model: id,
              rerunRun: rerunId,
              leftOut: dropped,
              ...fresh,
              ...result,
              codeVersion: code,
            },
            null,
            2,
          ),
        );
      else {
        if (final.state !== 'succeeded') console.log(`\n${formatRunStatus(final)}`);
        const codeLine =
          !result.reproduced && code.original !== code.here
            ? [
                `  code: ${id} was made by ${code.original ?? 'code not recorded'}; this checkout is ${code.here} (the rerun ran on its workers' code)`,
              ]
            : [];
        const fromLine =
          fresh.trainedFromStep === undefined
            ? []
            : [
                `  rerun trained from step 0 (checkpoints other runs of this work left were not resumed)${fresh.resumedOwnCheckpointAt ? `; a retry of its own resumed its own checkpoint of step ${fresh.resumedOwnCheckpointAt}` : ''}`,
              ];
        console.log(
          ['', result.verdict, ...('rerun' in result ? details(result) : []), ...fromLine, ...codeLine].map(printable).join('\n'),
        );
      }
      return result.reproduced ? 0 : 1;
    },
  });
}

/** The version a reference names; an unknown model or version is bad input (exit 2). */
async function versionOf(ctx: CliContext, ref: string): Promise<ModelVersion> {
  const { name, at } = parseModelRef(ref);
  // A bare name would check whichever version is newest now: the check is of one version, named.
  if (!ref.includes('@')) throw new CliError(`models reproduce takes a version, as ${name}@N (or ${name}@ALIAS)\nusage: ${USAGE}`, 2);
  if (!databaseExists(ctx.paths.registryDb))
    throw new CliError(`no model registry at ${ctx.paths.registryDb}; a pipeline's register stage creates it${sharingHint(ctx)}`, 2);
  const reg = await openRegistry(ctx.paths.registryDb);
  try {
    return await reg.getVersion(name, at);
  } catch (e) {
    if (e instanceof InputError) throw new CliError(`${e.message}${e.hint ? `; ${e.hint}` : ''}`, 2);
    throw e;
  } finally {
    await reg.close();
  }
}

/**
 * The plan the version's run followed, where its files are resolved from, and its spec file: the plan its `run.submitted`
 * keeps (through a resume, as `models show --spec` reads it), or for a schedule's run, the file the schedule keeps,
 * planned again with its params, when that gives the version's spec hash. Anything else cannot be rerun (exit 2).
 */
async function recordedPlan(
  ctx: CliContext,
  audit: AuditLog,
  id: string,
  runId: string,
  specHash: string,
): Promise<{ plan: Omit<PlannedPipeline, 'specHash'>; baseDir: string; specFile?: string }> {
  const s = await recordedSpec(audit, runId, specHash);
  if (s?.plan && s.planMatches === false)
    throw new CliError(`${id}: the plan run ${runId}'s run.submitted record keeps does not hash to the version's spec hash ${specHash}`, 2);
  // Where the record hid credentials (src/audit/redact-spec.ts), its plan is not the one the run followed.
  const redacted = (s as { redacted?: unknown } | undefined)?.redacted;
  if (Array.isArray(redacted) && redacted.length)
    throw new CliError(
      `${id}: run ${runId}'s run.submitted record hides credentials in its spec (${redacted.join(', ')}), so its plan cannot be run again as it ran; submit its pipeline file again with --no-cache and compare the modelHash`,
      2,
    );
  const specFile = s?.specFile;
  const bad = s?.plan && planProblem(s.plan, (kind) => ctx.kinds.get(kind) !== undefined);
  if (bad)
    throw new CliError(
      `${id}: the plan run ${runId}'s run.submitted record keeps is not one a run can follow (${printable(bad)}); nothing was submitted. \`tempered audit --verify\` checks the trail; to reproduce, submit its pipeline file again with --no-cache and compare the modelHash`,
      2,
    );
  if (s?.plan)
    return { plan: s.plan as Omit<PlannedPipeline, 'specHash'>, baseDir: specFile ? dirname(specFile) : process.cwd(), specFile };
  const sched = await scheduleSpec(audit, specHash);
  if (sched) {
    let text: string;
    try {
      text = await readFile(await ctx.store().localPath(sched.specUri), 'utf8');
    } catch (e) {
      if (!(e instanceof IntegrityError)) throw e;
      throw new CliError(
        `${id}: run ${runId} was started by schedule ${sched.schedule}, whose spec file the store no longer has: ${e.message}`,
        2,
      );
    }
    const file = resolve(sched.file ?? 'pipeline.yaml');
    const planned = plannedScheduleSpec(text, { ...sched, file }, specHash, ctx.registry);
    if (planned.plan) return { plan: specBody(planned.plan), baseDir: dirname(file), specFile: file };
    throw new CliError(
      `${id}: run ${runId} was started by schedule ${sched.schedule}, and ${printable(planned.problem)}; nothing was submitted. To reproduce, submit ${file} again with its params (${planned.params.join(' ') || 'none'}, the hidden ones as the schedule has them) and --no-cache, and compare the modelHash`,
      2,
    );
  }
  throw new CliError(
    s
      ? `${id}: the audit trail keeps only the hash of the spec of run ${runId} (spec ${specHash.slice(0, 12)}): it was registered before the trail kept specs, so there is no plan to rerun; submit its pipeline file again with --no-cache and compare the modelHash by hand (\`tempered models show ${id}\`)`
      : `${id}: the audit trail has no submission of run ${runId}, which registered it: it was not registered by a pipeline run submitted through tempered (or its trail is kept elsewhere${sharingHint(ctx)}), so there is no plan to rerun`,
    2,
  );
}

/**
 * That the rerun trained from step 0 (it resumes no checkpoint of another run: freshTraining), and where a retry of its
 * own train stage resumed its own checkpoint, as the stage's outputs say; nothing when the stage did not finish.
 */
function freshTraining(final: RunStatus, trainStage: string): { trainedFromStep?: 0; resumedOwnCheckpointAt?: number } {
  const st = final.stages.find((s) => s.id === trainStage);
  const base = st?.state === 'succeeded' ? (st.outputs?.baseModel as { resumedFromStep?: unknown } | undefined) : undefined;
  if (!base || typeof base !== 'object' || !('resumedFromStep' in base)) return {};
  return { trainedFromStep: 0, ...(typeof base.resumedFromStep === 'number' ? { resumedOwnCheckpointAt: base.resumedFromStep } : {}) };
}

function failedStage(final: RunStatus): string {
  const f = final.stages.find((s) => s.state === 'failed');
  return f ? `: stage ${f.id} failed: ${f.error?.message ?? 'unknown error'}` : '';
}

/** The rerun's model and data against the version's and its run's: reads the rerun's model and the original's trail. */
async function compare(
  ctx: CliContext,
  f: { id: string; v: ModelVersion; modelHash: string; audit: AuditLog; rerunId: string; trainStage: string; modelOutput: string },
  plan: PlannedPipeline,
  final: RunStatus,
  threadsPinned: boolean,
): Promise<Reproduction> {
  const outputs = Object.fromEntries(final.stages.map((s) => [s.id, s.outputs ?? {}]));
  const model = outputs[f.trainStage]?.[f.modelOutput];
  const rerunHash = isArtifactRef(model) ? modelHashOf((await modelArtifacts(model, ctx.store())).artifacts) : undefined;
  const runId = f.v.lineage.runId;
  // One read of the run's stage records for both: its data hashes and what its training ran with.
  const records = await stageRecords(f.audit, runId);
  const trained = (await trainedWith(f.audit, runId, records))[f.trainStage];
  return judgeRerun({
    plan,
    trainStage: f.trainStage,
    threadsPinned,
    original: {
      runId,
      modelHash: f.modelHash,
      stageHashes: stageOutputHashes(records),
      ...(trained !== undefined ? { trainedWith: trained } : {}),
    },
    rerun: { runId: f.rerunId, ...(rerunHash !== undefined ? { modelHash: rerunHash } : {}), outputs },
    declaredOutputs: (kind) => ctx.kinds.get(kind)?.outputs,
  });
}

/** The stage-by-stage lines under the verdict. */
function details(r: Reproduction): string[] {
  const h = (x: string | undefined) => (x ? `${x.slice(0, 12)}…` : '-');
  const trainedLine = (t: TrainedWith | undefined) => (t ? (trainedOn(t) ?? '?') : 'not recorded');
  return [
    `  model sha256: ${r.original.modelHash ?? '-'} (${r.original.runId})`,
    `                ${r.rerun.modelHash ?? '-'} (rerun ${r.rerun.runId})`,
    '  data, stage by stage:',
    ...r.stages.map(
      (s) =>
        `    ${s.stage.padEnd(12)} ${
          s.same === null
            ? `not recorded in ${r.original.data[s.stage] ? 'the rerun' : `run ${r.original.runId}`}`
            : s.same
              ? 'same'
              : `differs: ${s.differs.map((d) => `${d.output} ${h(d.original)} → ${h(d.rerun)}`).join(', ')}`
        }`,
    ),
    `  original: ${trainedLine(r.original.trainedWith)}`,
    `  rerun:    ${trainedLine(r.rerun.trainedWith)}`,
    ...(r.reproduced ? [] : r.trainedWithDiffers.map((d) => `    ${d.field}: ${JSON.stringify(d.original)} → ${JSON.stringify(d.rerun)}`)),
    ...(r.threadsNote ? [`  ${r.threadsNote}`] : []),
  ];
}
