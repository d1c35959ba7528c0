/**
 * Entry point of a stage's child process (see run-in-child.ts): waits for its job, loads the stage
 * kind from the module the job names, runs it and reports back over the IPC channel.
 */
import { pathToFileURL } from 'node:url';
import { isAbsolute, join } from 'node:path';
import { INPUT_PINS } from '../store/artifact-store.ts';
import { openArtifactStore } from '../store/open-store.ts';
import { checkPluginFile } from '../stages/plugin-file.ts';
import type { AnyStageKind, StageContext } from '../stages/types.ts';
import type { StageProgress } from '../types.ts';
import { toWire, type ChildJob, type ChildMessage, type ParentMessage } from './protocol.ts';
import { withTestHooks } from './test-hooks.ts';

function send(m: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) return resolve();
    process.send!(m, undefined, {}, () => resolve());
  });
}

// SIGTERM is how the parent cancels. A JS handler runs only between synchronous stretches, so it can
// never cut a checkpoint write (those are synchronous) in half; a child stuck in a long native run
// gets SIGKILL from the parent instead, and checkpoints are written under a temp name and renamed.
process.on('SIGTERM', () => process.exit(143));
// The parent is gone (killed or crashed): nobody will read the result, and a retry elsewhere may
// already be training from the same checkpoints.
process.on('disconnect', () => process.exit(1));

async function run(job: ChildJob): Promise<void> {
  // The plugin's module is imported here afresh, where the worker imported it once: checked before and after the
  // import, which reads it in between.
  if (job.pluginFile) checkPluginFile(job.pluginFile);
  const mod = (await import(isAbsolute(job.module) ? pathToFileURL(job.module).href : job.module)) as { stageKinds?: () => AnyStageKind[] };
  if (job.pluginFile) checkPluginFile(job.pluginFile);
  const kind = mod.stageKinds?.().find((k) => k.kind === job.kind);
  if (!kind) throw new Error(`${job.module} has no stage kind ${job.kind}`);
  const ctx: StageContext = {
    runId: job.runId,
    ...(job.executionId !== undefined ? { executionId: job.executionId } : {}),
    stageId: job.stageId,
    attempt: job.attempt,
    baseDir: job.baseDir,
    specHash: job.specHash,
    actor: job.actor,
    cacheKey: job.cacheKey,
    ...(job.freshTraining ? { freshTraining: true } : {}),
    ...(job.ownCheckpoints ? { ownCheckpoints: job.ownCheckpoints } : {}),
    store: openArtifactStore(job.storeRoot, job.storeUrl).pinningInto(join(job.workDir, INPUT_PINS)),
    workDir: job.workDir,
    stateDir: job.stateDir,
    ownProcess: true,
    signal: new AbortController().signal,
    resumeFrom: job.resumeFrom,
    progress(p) {
      const { resume, ...progress } = p as StageProgress & { resume?: unknown };
      if (resume !== undefined) void send({ type: 'checkpoint', resume });
      void send({ type: 'progress', progress });
    },
    log(message) {
      void send({ type: 'log', message });
    },
  };
  const outputs = await kind.run(job.config, withTestHooks(ctx));
  await send({ type: 'result', outputs });
}

process.once('message', (m: ParentMessage) => {
  run(m.job).then(
    () => process.exit(0),
    async (err) => {
      await send({ type: 'error', error: toWire(err) });
      process.exit(1);
    },
  );
});
void send({ type: 'ready' });
