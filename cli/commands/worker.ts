/** `tempered worker`, and the in-process worker that `submit --wait` and `demo` start when none runs. */
import type { Worker } from '@temporalio/worker';
import { connectWorker } from '../../infra/connection.ts';
import { createWorker } from '../../infra/worker.ts';
import { installRuntime } from '../../infra/runtime.ts';
import { parse } from '../args.ts';
import type { CliContext } from '../context.ts';
import { stageCompletedHook } from '../../activities/audit.ts';

export async function buildWorker(ctx: CliContext, queue: string, opts: { workflows?: boolean; maxActivities?: number } = {}): Promise<Worker> {
  const s = ctx.settings();
  const connection = await connectWorker(s);
  return createWorker({
    connection,
    namespace: s.namespace,
    taskQueue: queue,
    kinds: ctx.kinds,
    workflows: opts.workflows,
    maxConcurrentActivities: opts.maxActivities,
    deps: { store: ctx.store(), cache: ctx.cache(), stateDir: ctx.paths.root, onStageCompleted: stageCompletedHook(ctx.paths.root) },
  });
}

/**
 * A worker inside this process for the length of a `--wait`. It does not ask whether other workers
 * poll: the server keeps listing pollers for a while after they die, so that answer can be stale,
 * and an extra worker next to live ones only shares the work.
 */
export async function startLocalWorker(ctx: CliContext, queue: string): Promise<{ stop(): Promise<void> }> {
  installRuntime('ERROR');
  const worker = await buildWorker(ctx, queue);
  const running = worker.run();
  return {
    async stop() {
      worker.shutdown();
      await running.catch(() => undefined);
    },
  };
}

export async function workerCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered worker [--queue NAME] [--activities-only] [--max-activities N]';
  const { values } = parse(argv, { queue: { type: 'string' }, 'activities-only': { type: 'boolean' }, 'max-activities': { type: 'string' } }, usage);
  const queue = values.queue ?? ctx.taskQueue;
  await ctx.client({ startServer: true });
  const worker = await buildWorker(ctx, queue, { workflows: !values['activities-only'], maxActivities: values['max-activities'] ? Number(values['max-activities']) : undefined });
  const s = ctx.settings();
  console.error(`worker polling '${queue}' on ${s.address} (namespace ${s.namespace}); stage kinds: ${[...ctx.kinds.keys()].join(', ')}. Ctrl-C stops it.`);
  const stop = () => worker.shutdown();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await worker.run();
  return 0;
}
