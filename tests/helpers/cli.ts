/** Runs the real `tempered` entry point in a child process, or in this process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { startDevServer, stopProcess, type DevServerHandle } from '../../infra/dev-server.ts';

export const BIN = fileURLToPath(new URL('../../bin/tempered.js', import.meta.url));

/** A real dev server for the CLI under test, its database in a fresh state folder (`home`) that `close` removes. */
export async function startCliServer(prefix: string): Promise<{ server: DevServerHandle; home: string; close(): Promise<void> }> {
  const home = mkdtempSync(join(tmpdir(), prefix));
  const server = await startDevServer({ dbFile: join(home, 'temporal.db'), logFile: join(home, 'server.log'), headless: true });
  return {
    server,
    home,
    async close() {
      await stopProcess(server.pid);
      rmSync(home, { recursive: true, force: true });
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  env: Record<string, string | undefined>,
  opts: { cwd?: string; timeoutMs?: number; /** Piped to its stdin, which is closed after it. */ input?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, ...env },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    child.stdin?.end(opts.input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tempered ${args.join(' ')} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/**
 * The CLI on a terminal of its own (script(1), TERM=dumb), as a person at one runs it: what it wrote there, stdout and
 * stderr together, each line ending in \r\n as the terminal turns \n; and its exit status.
 */
export async function runCliOnTerminal(
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ code: number | null; out: string }> {
  const child = spawn('script', ['-qfec', [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' '), '/dev/null'], {
    env: { ...process.env, ...env, TERM: 'dumb' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  return { code, out };
}

/**
 * Starts `tempered worker` in the background; resolves once it polls. Its output is drained (into
 * `logFile` when given): a worker writing to a full pipe nobody reads would block its event loop.
 */
export function startCliWorker(
  args: string[],
  env: Record<string, string | undefined>,
  opts: { logFile?: string } = {},
): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'worker', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
    child.stdout.on('data', (d: Buffer) => log?.write(d));
    child.once('exit', () => log?.end());
    let err = '';
    let started = false;
    // Not started in time (its workflow bundle takes long on a loaded machine): killed, or it went on polling after the
    // test failed and held the test file's process open (a multi-host run sat 47 minutes so).
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`worker did not start in 120 s: ${err}`));
    }, 120_000);
    child.stderr.on('data', (d: Buffer) => {
      log?.write(d);
      if (started) return;
      err += d.toString();
      if (err.includes('worker polling')) {
        started = true;
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`worker exited with ${code}: ${err}`));
    });
  });
}

/** Whether any process of group `pgid` is alive. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Starts a `tempered worker` through a launcher (`npm run …`, `npx …`) in a process group of its own, whatever is left
 * of which `t` kills after the test; resolves once the worker polls. `stderr()` is the group's output so far.
 */
export async function startWorkerGroup(
  t: TestContext,
  command: string,
  args: string[],
  env: Record<string, string | undefined>,
): Promise<{ child: ChildProcess; exited: Promise<void>; stderr(): string }> {
  const child = spawn(command, args, {
    cwd: join(import.meta.dirname, '..', '..'),
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  t.after(() => {
    if (groupAlive(child.pid!)) process.kill(-child.pid!, 'SIGKILL');
  });
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.includes('worker polling')) resolve();
    });
    child.once('exit', () => reject(new Error(`the worker exited before polling: ${stderr}`)));
  });
  return { child, exited, stderr: () => stderr };
}

/** Stops a worker started by startCliWorker; returns at once if it already exited (e.g. SIGKILLed). */
export async function stopCliWorker(w: ChildProcess): Promise<void> {
  if (w.exitCode !== null || w.signalCode !== null) return;
  const exited = new Promise((r) => w.once('exit', r));
  w.kill('SIGTERM');
  await exited;
}

/**
 * The real command, in this process (a child process costs seconds of startup per call). A CliError
 * becomes its exit code and message; any other throw is a bug and reaches the test.
 */
export async function runCliInProcess(args: string[], env: Record<string, string>): Promise<CliResult> {
  // Loaded here, not at the top, so the child-process helpers above do not load the whole CLI.
  const [{ main }, { CliError }] = await Promise.all([import('../../cli/main.ts'), import('../../cli/context.ts')]);
  const saved = { log: console.log, env: { ...process.env } };
  let stdout = '';
  console.log = (...a: unknown[]) => void (stdout += a.join(' ') + '\n');
  Object.assign(process.env, env);
  try {
    return { code: await main(args), stdout, stderr: '' };
  } catch (e) {
    if (e instanceof CliError) return { code: e.exitCode, stdout, stderr: e.message };
    throw e;
  } finally {
    console.log = saved.log;
    for (const k of Object.keys(env)) if (saved.env[k] === undefined) delete process.env[k];
    Object.assign(process.env, saved.env);
  }
}
