/**
 * A finished training's record, so that a retry of the very attempt that finished returns its outputs instead of
 * training again. A stage's completion can be lost after it returned: the worker or the Temporal server dies before
 * the workflow's history holds it, and the activity is retried. With the stage cache that retry is a cache hit; without
 * it (`--no-cache`, `cache: false`) nothing else remembers the result, and the finished stage has already deleted its
 * checkpoints, so the retry would start from step 0 (hours for an LLM).
 *
 * The record (a few hundred bytes: the outputs are store references) is the content of the checkpoint folder's
 * COMPLETE mark and, with a shared store, of the checkpoint's pointer in the bucket, so a retry on another worker finds
 * it too. It names the run's execution and stage: a later run of the same work, which the folder is shared with,
 * trains afresh as before, and clears it.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IntegrityError } from '../errors.ts';
import { COMPLETE } from '../store/local-checkpoints.ts';
import { readSharedFinished } from '../store/shared-checkpoints.ts';
import type { StageKindInfo } from '../spec/types.ts';
import { isArtifactRef, type StageOutputs } from '../types.ts';
import { outputProblems } from './output-check.ts';
import type { StageContext } from './types.ts';

export interface FinishedTraining {
  finishedAt: string;
  runId: string;
  executionId: string | null;
  stageId: string;
  outputs: StageOutputs;
}

/** What to record for `ctx`'s attempt, which returned `outputs`. */
export function finishedRecord(ctx: StageContext, outputs: StageOutputs): FinishedTraining {
  return { finishedAt: new Date().toISOString(), runId: ctx.runId, executionId: ctx.executionId ?? null, stageId: ctx.stageId, outputs };
}

/** Writes the COMPLETE mark into `checkpointDir` with `record` in it, whole or not at all. */
export function writeFinishedMark(checkpointDir: string, record: FinishedTraining): void {
  const tmp = join(checkpointDir, `.${COMPLETE}.tmp-${process.pid}`);
  writeFileSync(tmp, JSON.stringify(record) + '\n');
  renameSync(tmp, join(checkpointDir, COMPLETE));
}

/**
 * The outputs an earlier attempt of `ctx`'s stage, in this execution of its run, finished with: from the local mark,
 * else from the shared store's. Undefined when there is none, when the record is another run's (or a mark of before
 * 7 Dec 2026, a bare date), or when its outputs are not `kind`'s as declared, every artifact whole in the store (the
 * stage then trains again). A record is a file on a worker's disk or an object in the bucket: one a broken or hostile
 * writer left under this execution's name must cost a training, not fail the stage for good (outputs that break the
 * declaration are a StageContractError, never retried, and every retry would return the same record).
 *
 * With the record, `unshared` when a shared store's pointer does not hold it yet: the attempt that finished died (or was
 * cancelled) between its local mark and replacing the shared checkpoint, whose files (gigabytes for an LLM) then stayed
 * in the bucket until `store gc`'s horizon; the retry that returns the record replaces them.
 */
export async function finishedTraining(
  ctx: StageContext,
  checkpointDir: string,
  checkpointName: string,
  kind: Pick<StageKindInfo, 'outputs'>,
): Promise<{ record: FinishedTraining; unshared: boolean } | undefined> {
  const local = ours(ctx, readLocal(checkpointDir));
  const shared = ctx.store.remote && ours(ctx, await readSharedFinished(ctx.store, checkpointName));
  const rec = local ?? shared;
  if (!rec) return undefined;
  let problems: string[];
  try {
    // A finished training returns every artifact it declares (its model, checkpoint and history).
    problems = Object.entries(kind.outputs)
      .filter(([name, d]) => (d.type === 'artifact' || d.type === 'table') && rec.outputs[name] === undefined)
      .map(([name]) => `'${name}' is missing`);
    problems.push(...(await outputProblems(kind, rec.outputs, ctx.store)));
    if (!problems.length) for (const v of Object.values(rec.outputs)) if (isArtifactRef(v)) await ctx.store.verifyDeep(v);
  } catch (e) {
    if (!(e instanceof IntegrityError)) throw e;
    problems = [e.message];
  }
  if (problems.length) {
    ctx.log(
      `an earlier attempt finished this training, but its outputs are not all in the store as recorded (${problems.join('; ')}): training again`,
    );
    return undefined;
  }
  return { record: rec, unshared: !!ctx.store.remote && !shared };
}

function readLocal(checkpointDir: string): unknown {
  try {
    return JSON.parse(readFileSync(join(checkpointDir, COMPLETE), 'utf8'));
  } catch {
    return undefined;
  }
}

function ours(ctx: StageContext, rec: unknown): FinishedTraining | undefined {
  if (typeof rec !== 'object' || rec === null) return undefined;
  const r = rec as Partial<FinishedTraining>;
  const mine = r.runId === ctx.runId && r.stageId === ctx.stageId && r.executionId === (ctx.executionId ?? null);
  return mine && typeof r.outputs === 'object' && r.outputs !== null ? (r as FinishedTraining) : undefined;
}
