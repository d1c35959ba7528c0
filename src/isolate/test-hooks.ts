/**
 * Faults a test can ask a stage for, through the environment, and only when TEMPERED_TESTING=1 (the
 * test runner sets it): a slow step, standing in for a long onnxruntime run that blocks the thread,
 * and a native crash after a given step on the first attempt. They act wherever the stage runs (its
 * child process, or the worker itself with TEMPERED_STAGE_ISOLATION=inline), so a test shows both.
 */
import { writeSync } from 'node:fs';
import type { StageContext } from '../stages/types.ts';

export function withTestHooks(ctx: StageContext, env = process.env): StageContext {
  if (env.TEMPERED_TESTING !== '1') return ctx;
  const blockMs = Number(env.TEMPERED_TEST_STEP_BLOCK_MS ?? 0);
  const abortAt = Number(env.TEMPERED_TEST_ABORT_AT_STEP ?? 0);
  if (!blockMs && !abortAt) return ctx;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  return {
    ...ctx,
    progress(p) {
      ctx.progress(p);
      const step = p.metrics?.step;
      if (step === undefined) return;
      if (abortAt && ctx.attempt === 1 && step >= abortAt) {
        writeSync(2, `test hook: aborting at step ${step}\n`);
        process.abort();
      }
      // Blocks the thread the way a synchronous onnxruntime run does: no timers, no IPC, no signals handled.
      if (blockMs) Atomics.wait(sleeper, 0, 0, blockMs);
    },
  };
}
