/**
 * Runs one attempt of a stage kind in a child Node process, so that onnxruntime's blocking runs, a
 * native crash or an out-of-memory kill stay in the child: the caller's event loop keeps answering
 * (heartbeats, cancellation, other stages) and the caller survives the child.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { withMallocTuning } from '../../scripts/malloc-tuning.mjs';
import type { StageContext, AnyStageKind } from '../stages/types.ts';
import type { StageOutputs, StageProgress } from '../types.ts';
import { fromWire, type ChildMessage, type ParentMessage } from './protocol.ts';
import type { ChildLimits } from './limits.ts';
import { processForDevice } from '../engine/cuda.ts';
import { pluginFileOf } from '../stages/plugin-kinds.ts';

const CHILD_MAIN = fileURLToPath(new URL('./child-main.ts', import.meta.url));
const TSX = import.meta.resolve('tsx');
const STDERR_LINES = 20;

/** The child ended without a result: it crashed, was killed (OOM killer, the RSS watchdog) or exited early. Worth retrying. */
export class ChildProcessDied extends Error {
  override name = 'ChildProcessDied';
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly stderrTail: string[],
  ) {
    super(message);
  }
}

/** The stage was cancelled and its child stopped. */
export class ChildCancelled extends Error {
  override name = 'ChildCancelled';
}

/** Resident set of a process in MiB, from /proc (Linux); undefined elsewhere or once it is gone. */
function rssMb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Keeps the last lines of a stream (what a crash report shows) and passes everything on. */
function tailLines(stream: NodeJS.ReadableStream, into: string[], passTo: NodeJS.WritableStream): void {
  let partial = '';
  stream.on('data', (d: Buffer) => {
    passTo.write(d);
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    into.push(...lines);
    if (into.length > STDERR_LINES) into.splice(0, into.length - STDERR_LINES);
  });
  stream.on('end', () => {
    if (partial) into.push(partial);
    if (into.length > STDERR_LINES) into.splice(0, into.length - STDERR_LINES);
  });
}

export interface ChildHandle {
  pid?: number;
}

/**
 * Runs `kind` (which must name the module it comes from in `kind.isolation`) on `config` in a new
 * child process and resolves with its outputs. Progress, checkpoints and log lines come back to
 * `ctx` as the child reports them; `ctx.signal` stops the child (SIGTERM, then SIGKILL after
 * `killGraceMs`). Errors keep their class across the boundary (an InputError stays one).
 */
export function runStageInChild(
  kind: AnyStageKind,
  config: unknown,
  ctx: StageContext,
  limits: ChildLimits = {},
  handle: ChildHandle = {},
): Promise<StageOutputs> {
  const module = kind.isolation?.module;
  if (!module) throw new Error(`stage kind ${kind.kind} does not say which module to load in a child process (isolation.module)`);
  if (ctx.signal.aborted) return Promise.reject(new ChildCancelled('stage cancelled before it started'));
  // A stage asking for CUDA on a machine that cannot run it fails here, before any work, naming why.
  let device: ReturnType<typeof processForDevice>;
  try {
    device = processForDevice(kind.isolation?.device?.(config), ctx.stateDir, {
      where: `stages.${ctx.stageId}.with.device`,
      ...(limits.cudaHere ? { cudaHere: limits.cudaHere } : {}),
    });
  } catch (e) {
    return Promise.reject(e as Error);
  }
  if (device.note) ctx.log(device.note);
  const execArgv = ['--import', TSX];
  if (limits.maxOldSpaceMb) execArgv.push(`--max-old-space-size=${limits.maxOldSpaceMb}`);
  const child: ChildProcess = fork(CHILD_MAIN, [], {
    execArgv,
    env: withMallocTuning(device.env),
    // What the stage writes to stdout (a plugin's console.log, a library's own output) is the worker's diagnostics: on
    // its stderr, as the child's stderr is. Inherited, it came out on `submit --local-worker --json`'s stdout, above the JSON.
    stdio: ['ignore', 2, 'pipe', 'ipc'],
  });
  handle.pid = child.pid;
  const stderr: string[] = [];
  tailLines(child.stderr!, stderr, process.stderr);

  return new Promise<StageOutputs>((resolve, reject) => {
    let outcome: { ok: StageOutputs } | { err: Error } | undefined;
    let killedFor: string | undefined;
    let lastProgress: StageProgress = {};
    let killTimer: NodeJS.Timeout | undefined;

    const stop = (why: string) => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      killedFor ??= why;
      child.kill('SIGTERM');
      killTimer ??= setTimeout(() => child.kill('SIGKILL'), limits.killGraceMs ?? 750);
    };
    const onAbort = () => stop('cancelled');
    ctx.signal.addEventListener('abort', onAbort, { once: true });

    const watchdog = limits.maxRssMb
      ? setInterval(() => {
          const rss = rssMb(child.pid!);
          if (rss !== undefined && rss > limits.maxRssMb!) {
            killedFor ??= `its resident memory reached ${Math.round(rss)} MiB, over the limit of ${limits.maxRssMb} MiB (TEMPERED_CHILD_MAX_RSS_MB)`;
            child.kill('SIGKILL');
          }
        }, 250)
      : undefined;

    child.on('message', (m: ChildMessage) => {
      switch (m.type) {
        case 'ready':
          child.send({
            type: 'run',
            job: {
              module,
              kind: kind.kind,
              config,
              runId: ctx.runId,
              ...(ctx.executionId !== undefined ? { executionId: ctx.executionId } : {}),
              stageId: ctx.stageId,
              attempt: ctx.attempt,
              baseDir: ctx.baseDir,
              specHash: ctx.specHash,
              actor: ctx.actor,
              cacheKey: ctx.cacheKey,
              ...(ctx.freshTraining ? { freshTraining: true } : {}),
              ...(ctx.ownCheckpoints ? { ownCheckpoints: ctx.ownCheckpoints } : {}),
              storeRoot: ctx.store.root,
              storeUrl: ctx.store.remote?.url,
              pluginFile: pluginFileOf(kind),
              workDir: ctx.workDir,
              stateDir: ctx.stateDir,
              resumeFrom: ctx.resumeFrom,
            },
          } satisfies ParentMessage);
          break;
        case 'progress':
          lastProgress = m.progress;
          ctx.progress(m.progress);
          break;
        case 'checkpoint':
          ctx.progress({ ...lastProgress, resume: m.resume });
          break;
        case 'log':
          ctx.log(m.message);
          break;
        case 'result':
          outcome = { ok: m.outputs };
          break;
        case 'error':
          outcome = { err: fromWire(m.error) };
          break;
      }
    });
    child.on('error', (e) => {
      outcome ??= { err: e };
    });
    // 'close' comes after the exit and after stderr has ended, so the tail is complete.
    child.on('close', (code, signal) => {
      ctx.signal.removeEventListener('abort', onAbort);
      clearTimeout(killTimer);
      clearInterval(watchdog);
      if (killedFor === 'cancelled')
        return reject(new ChildCancelled(`stage cancelled; its process stopped (${signal ?? `exit ${code}`})`));
      if (outcome && 'ok' in outcome) return resolve(outcome.ok);
      if (outcome && !killedFor) return reject(outcome.err);
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      const why = killedFor ? `: ${killedFor}` : signal === 'SIGKILL' ? ' (out of memory? the kernel’s OOM killer sends SIGKILL)' : '';
      const tail = stderr.length ? `\nlast stderr lines:\n${stderr.join('\n')}` : '';
      reject(
        new ChildProcessDied(`stage ${ctx.stageId} (${kind.kind}): its process ${how} before finishing${why}${tail}`, code, signal, [
          ...stderr,
        ]),
      );
    });
  });
}
