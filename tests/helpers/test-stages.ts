/**
 * A controllable stage kind for orchestration tests: it writes a real artifact, can sleep, fail a
 * number of attempts, raise an input error or block until cancelled, and logs each execution so
 * tests can see exactly which activities ran and when.
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { InputError } from '../../src/errors.ts';
import type { StageKind } from '../../src/stages/types.ts';

export interface ProbeConfig {
  value: string;
  inputs?: unknown[];
  sleepMs?: number;
  failUntilAttempt?: number;
  inputError?: boolean;
  blockUntilCancelled?: boolean;
  /**
   * Its sleep stops when ctx.signal aborts (a cancellation, or a heartbeat timeout the worker learned
   * of), recorded as 'cancelled'. Without it the sleep goes on, like a long onnxruntime run.
   */
  stopOnAbort?: boolean;
}

export interface ExecutionRecord {
  stageId: string;
  runId: string;
  attempt: number;
  start: number;
  end: number;
  outcome: 'ok' | 'failed' | 'cancelled';
}

export function probeKind(logFile: string): StageKind<ProbeConfig> {
  return {
    kind: 'probe',
    description: 'test stage',
    codeVersion: '1',
    withSchema: {
      type: 'object',
      required: ['value'],
      additionalProperties: false,
      properties: {
        value: { type: 'string' },
        inputs: { type: 'array' },
        sleepMs: { type: 'integer', minimum: 0 },
        failUntilAttempt: { type: 'integer', minimum: 0 },
        inputError: { type: 'boolean' },
        blockUntilCancelled: { type: 'boolean' },
        stopOnAbort: { type: 'boolean' },
      },
    },
    outputs: { out: { type: 'artifact' }, value: { type: 'string' } },
    async run(cfg, ctx) {
      const start = Date.now();
      const record = (outcome: ExecutionRecord['outcome']) =>
        appendFileSync(
          logFile,
          JSON.stringify({ stageId: ctx.stageId, runId: ctx.runId, attempt: ctx.attempt, start, end: Date.now(), outcome }) + '\n',
        );
      try {
        if (cfg.inputError)
          throw new InputError(`bad value ${JSON.stringify(cfg.value)}`, {
            where: `stages.${ctx.stageId}.with.value`,
            hint: 'fix the value',
          });
        if (cfg.failUntilAttempt && ctx.attempt < cfg.failUntilAttempt) throw new Error(`transient failure on attempt ${ctx.attempt}`);
        if (cfg.blockUntilCancelled) {
          while (!ctx.signal.aborted) await sleep(50);
          record('cancelled');
          throw new Error('cancelled');
        }
        // A worker process may sleep less than another (TEMPERED_PROBE_SLEEP_SCALE): a test that stops one worker
        // under a long stage lets the worker after it finish that stage soon.
        const sleepMs = (cfg.sleepMs ?? 0) * Number(process.env.TEMPERED_PROBE_SLEEP_SCALE ?? 1);
        const steps = Math.max(1, Math.ceil(sleepMs / 100));
        for (let i = 0; i < steps && sleepMs; i++) {
          await sleep(sleepMs / steps, undefined, cfg.stopOnAbort ? { signal: ctx.signal } : {}).catch(() => {});
          if (cfg.stopOnAbort && ctx.signal.aborted) {
            record('cancelled');
            throw new Error('cancelled');
          }
          ctx.progress({ fraction: (i + 1) / steps, message: `step ${i + 1}/${steps}` });
        }
        const out = await ctx.store.putJson({ value: cfg.value, inputs: cfg.inputs ?? [] });
        record('ok');
        return { out, value: cfg.value };
      } catch (e) {
        if (!ctx.signal.aborted) record('failed');
        throw e;
      }
    },
  };
}
