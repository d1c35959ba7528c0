/**
 * Where stage kinds that ask for it run (a child process per attempt, or inline in the worker) and
 * the memory limits of those children, from the environment or the worker's flags.
 */
import { InputError } from '../errors.ts';

export interface ChildLimits {
  /** V8 heap cap of the child (`--max-old-space-size`), MiB. */
  maxOldSpaceMb?: number;
  /** The child is killed when its resident set passes this, MiB (onnxruntime's buffers live outside the V8 heap). */
  maxRssMb?: number;
  /** Between SIGTERM and SIGKILL when a stage is cancelled. */
  killGraceMs?: number;
  /**
   * Set where a worker runs CUDA stages only from some of its queues (`tempered worker --cuda-queues`):
   * whether this queue is one of them, and which they are.
   */
  cudaHere?: { allowed: boolean; queues: string[] };
}

export interface Isolation {
  /** `process`: kinds with `isolation` run in a child process per attempt; `inline`: in the worker's own thread. */
  mode: 'process' | 'inline';
  limits: ChildLimits;
}

function mb(env: Record<string, string | undefined>, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0)
    throw new InputError(`${name}=${JSON.stringify(raw)} is not a positive whole number of MiB`, { where: name, hint: 'e.g. 4096' });
  return n;
}

export function isolationFromEnv(env: Record<string, string | undefined> = process.env): Isolation {
  const mode = env.TEMPERED_STAGE_ISOLATION ?? 'process';
  if (mode !== 'process' && mode !== 'inline')
    throw new InputError(`TEMPERED_STAGE_ISOLATION=${JSON.stringify(mode)} must be process or inline`, {
      where: 'TEMPERED_STAGE_ISOLATION',
    });
  return { mode, limits: { maxOldSpaceMb: mb(env, 'TEMPERED_CHILD_MAX_OLD_SPACE_MB'), maxRssMb: mb(env, 'TEMPERED_CHILD_MAX_RSS_MB') } };
}
