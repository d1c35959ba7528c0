/**
 * Faults a test can ask a stage for, through the environment, and only when TEMPERED_TESTING=1 (the
 * test runner sets it): a slow step, standing in for a long onnxruntime run that blocks the thread,
 * and a native crash after a given step on the first attempt. They act wherever the stage runs (its
 * child process, or the worker itself with TEMPERED_STAGE_ISOLATION=inline), so a test shows both.
 * A step gate (TEMPERED_TEST_STEP_GATE=<file>) holds step N's report until the file holds a number >= N, so a
 * test can watch training mid-way (the dashboard's live curves) without guessing how long steps take.
 */
import { readFileSync, writeSync } from 'node:fs';
import type { StageContext } from '../stages/types.ts';

export function withTestHooks(ctx: StageContext, env = process.env): StageContext {
  if (env.TEMPERED_TESTING !== '1') return ctx;
  const blockMs = Number(env.TEMPERED_TEST_STEP_BLOCK_MS ?? 0);
  const abortAt = Number(env.TEMPERED_TEST_ABORT_AT_STEP ?? 0);
  const gate = env.TEMPERED_TEST_STEP_GATE;
  if (!blockMs && !abortAt && !gate) return ctx;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  return {
    ...ctx,
    progress(p) {
      const step = p.metrics?.step;
      // A gated step is held before it is reported, so the gate's number is the count of steps seen.
      while (gate && step !== undefined && gateOpenTo(gate) < step) Atomics.wait(sleeper, 0, 0, 20);
      ctx.progress(p);
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

function gateOpenTo(file: string): number {
  try {
    return Number(readFileSync(file, 'utf8').trim()) || 0;
  } catch {
    return 0;
  }
}
