/**
 * The name of a training's checkpoint folder (under TEMPERED_HOME/checkpoints, and of its copy in a shared store's
 * bucket): the work's cache key, or a run's own name beside it. Its parts come from the run's input
 * (RunOptions.ownCheckpoints, the run id), which whoever can start a workflow on the namespace writes: joined to the
 * checkpoints folder, `x/../../../srv/data` would have the training write, and clear at its end, a folder out of it.
 */
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { sha256Hex } from '../util/canonical-json.ts';
import { sharedCheckpointExists } from '../store/shared-checkpoints.ts';
import { OWN_CHECKPOINTS } from './own-checkpoints.ts';
import type { StageContext } from './types.ts';

/**
 * The longest checkpoint folder name kept as it is: a folder name holds 255 bytes, and gc renames a folder aside as
 * `.<name>.gc-<pid>-<8 hex>` (src/store/local-checkpoints.ts, up to 21 bytes more) before deleting it.
 */
export const MAX_CHECKPOINT_NAME_BYTES = 234;

/**
 * The longest name a train stage kept as it was before 8 Dec 2026 (9a3fd75): its lock, `<name>.lock`, is a folder
 * entry too, so a longer one failed the training before it wrote anything.
 */
const MAX_LEGACY_NAME_BYTES = 250;

/**
 * A name past MAX_CHECKPOINT_NAME_BYTES by its sha256, readable part first: the run id in models reproduce's legacy
 * folder (freshTraining) is as long as `submit --run-id` made it, and failed the training with ENAMETOOLONG. Names
 * that fit are as before, so a run in flight keeps finding its checkpoints.
 */
function boundedName(name: string): string {
  if (Buffer.byteLength(name) <= MAX_CHECKPOINT_NAME_BYTES) return name;
  return `${name.slice(0, 64).replace(/[^A-Za-z0-9._-]/g, '_')}.h-${sha256Hex(name)}`;
}

/**
 * Not one folder name under the checkpoints folder: a path, `.` or `..`, or a name beginning with a dot, which `store
 * gc` would take for its own aside folders (`.<name>.gc-<pid>-<hex>`, deleted without the folder's lock).
 */
function notOneFolderName(name: string): boolean {
  return /[/\\\0]/.test(name) || name.startsWith('.');
}

/** The name as `ctx`'s training is named now, and the one a train stage gave it before names were bounded, if other. */
function checkpointNamesOf(ctx: StageContext): { name: string; unbounded: string } {
  if (ctx.ownCheckpoints !== undefined && !OWN_CHECKPOINTS.test(ctx.ownCheckpoints))
    throw new InputError(
      `the run's own checkpoint name ${JSON.stringify(ctx.ownCheckpoints.slice(0, 80))} is not 1 to 64 letters, digits, '_' or '-': it names a folder under the checkpoints folder`,
      {
        where: 'RunOptions.ownCheckpoints',
        hint: 'submit the pipeline again with `tempered submit --no-cache`, which names it (a run started by other means must leave it out)',
      },
    );
  const workName = ctx.cacheKey ?? `${ctx.runId}-${ctx.stageId}`;
  const unbounded = ctx.ownCheckpoints
    ? `${workName}.fresh-${ctx.ownCheckpoints}-${ctx.stageId}`
    : ctx.freshTraining
      ? `${workName}.fresh-${ctx.runId}-${ctx.stageId}`
      : workName;
  const name = boundedName(unbounded);
  if (notOneFolderName(name))
    throw new InputError(`the checkpoint folder name ${JSON.stringify(name.slice(0, 200))} is not one folder name`, {
      where: `run ${ctx.runId} stage ${ctx.stageId}`,
      hint: "a run id, stage id or cache key with '/' or '\\', or beginning with '.', cannot name a checkpoint folder: submit the run under another id",
    });
  return { name, unbounded };
}

/**
 * The name of `ctx`'s training's checkpoint folder under `checkpointsDir`. A training in flight when its worker was
 * upgraded past 9a3fd75 has its checkpoints under the name as it was (235 to 250 bytes, a long `--run-id`), which is
 * now hashed: that name is kept where its folder is there (a folder, not a link) or, with no link or file of it here,
 * the shared store holds a checkpoint of it, so the training resumes from them instead of from step 0, and a finished one's record is found. The old name
 * passes the same checks as the new.
 */
export async function checkpointNameFor(ctx: StageContext, checkpointsDir: string): Promise<string> {
  const { name, unbounded } = checkpointNamesOf(ctx);
  if (unbounded === name || Buffer.byteLength(unbounded) > MAX_LEGACY_NAME_BYTES || notOneFolderName(unbounded)) return name;
  let entry: 'folder' | 'other' | undefined;
  try {
    entry = lstatSync(join(checkpointsDir, unbounded)).isDirectory() ? 'folder' : 'other';
  } catch {
    /* none */
  }
  // A link (or a file) under the old name was no train stage's: the training would write, and clear at its end, what
  // it leads to, also where the shared store holds that name's checkpoint (which would be pulled into it).
  if (entry === 'other') return name;
  if (entry === 'folder' || (await sharedCheckpointExists(ctx.store, unbounded))) {
    ctx.log(`resuming in the checkpoint folder named before long names were hashed: ${unbounded}`);
    return unbounded;
  }
  return name;
}
