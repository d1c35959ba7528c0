/**
 * What the engine benches share: the MiniLM-size encoder they train, a median, running with glibc malloc
 * tuned as `npm run demo` runs tempered, reading onnxruntime's profile, CPU time from /proc, and
 * writing a new file from memory.
 */
import { spawnSync } from 'node:child_process';
import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withMallocTuning } from '../scripts/malloc-tuning.mjs';

/** all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12 heads, vocab 30522) at seq 128, two classes. */
export const MINILM_SIZE = { vocab: 30522, hidden: 384, heads: 12, intermediate: 1536, layers: 6, seq: 128, classes: 2, seed: 1 };

/** The value after `--name` on the command line, or `dflt`. */
export function flag(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : dflt;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
}

/**
 * glibc reads its tunables only at process start, so on Linux this runs the script again with the
 * tuning set (scripts/malloc-tuning.mjs) and exits with its status. BENCH_MALLOC=default skips that.
 */
export function reexecWithMallocTuning(): void {
  if (process.platform !== 'linux' || process.env.GLIBC_TUNABLES || process.env.BENCH_MALLOC === 'default') return;
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...withMallocTuning(), BENCH_MALLOC_ADDED: '1' },
  });
  process.exit(r.status ?? 1);
}

/** This process's malloc setting, for reports. */
export function mallocSetting(): string {
  return process.env.GLIBC_TUNABLES ? `GLIBC_TUNABLES=${process.env.GLIBC_TUNABLES}` : 'glibc default';
}

/** The environment as the user gave it (without the tuning reexecWithMallocTuning added), for reference runs. */
export function referenceEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (env.BENCH_MALLOC_ADDED) delete env.GLIBC_TUNABLES;
  delete env.BENCH_MALLOC_ADDED;
  return env;
}

/** One event of onnxruntime's profile (chrome-tracing JSON, written with TEMPERED_ORT_PROFILE). */
export interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
}

export function readProfile(file: string): ProfileEvent[] {
  return JSON.parse(readFileSync(file, 'utf8')) as ProfileEvent[];
}

/** Durations (ms) of every session run in the one profile written to `dir`. */
export function modelRunMs(dir: string): number[] {
  const file = readdirSync(dir).find((f) => f.endsWith('.json'));
  if (!file) throw new Error(`no onnxruntime profile in ${dir}`);
  return readProfile(join(dir, file))
    .filter((e) => e.name === 'model_run')
    .map((e) => e.dur / 1000);
}

/**
 * The fields of a /proc stat file after the command name (`/proc/PID/stat`, or a thread's
 * `/proc/PID/task/TID/stat`): [0] state, [1] parent pid, [11] user and [12] system CPU in clock ticks.
 * Undefined where the file cannot be read (gone, or not Linux).
 */
export function procStatFields(path: string): string[] | undefined {
  try {
    const stat = readFileSync(path, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** User + system CPU seconds from procStatFields (clock ticks are 1/100 s on Linux); NaN when unreadable. */
export function procCpuSec(path: string): number {
  const f = procStatFields(path);
  return f ? (Number(f[11]) + Number(f[12])) / 100 : NaN;
}

/**
 * Writes `bytes` into a new file at `path` from `buf` (reused for every write, so only the file's
 * pages are new memory), `writers` positional writes in flight at a time, each `buf.length` long:
 * 1 is how the store's ranged download writes now, 8 how it wrote before. No fsync.
 */
export async function writeNewFile(path: string, bytes: number, buf: Uint8Array, writers = 1): Promise<void> {
  const fh = await fsp.open(path, 'wx');
  try {
    let next = 0;
    const writer = async () => {
      for (let at = next; at < bytes; at = next) {
        next += buf.length;
        await fh.write(buf, 0, Math.min(buf.length, bytes - at), at);
      }
    };
    await Promise.all(Array.from({ length: writers }, writer));
  } finally {
    await fh.close();
  }
}

/**
 * Asks `${url}/health` every 20 ms, one request at a time, until `stop()`, which resolves to each answer's latency
 * in ms: how long the server's thread keeps a cheap route waiting while it works.
 */
export function probeHealth(url: string): { stop(): Promise<number[]> } {
  const health: number[] = [];
  let done = false;
  const prober = (async () => {
    while (!done) {
      const t = performance.now();
      await (await fetch(`${url}/health`)).arrayBuffer();
      health.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      done = true;
      await prober;
      return health;
    },
  };
}
