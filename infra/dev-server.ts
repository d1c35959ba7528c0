/**
 * Starts and stops a local `temporal server start-dev` with SQLite persistence.
 * Used by `tempered server`, `npm run demo` and the integration tests (on free ports, temp db).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { ensureDir, statePaths } from './state.ts';
import { findTemporalCli } from './temporal-cli.ts';
import { PIPELINE_ATTRIBUTE } from '../client/pipeline-attribute.ts';
import { freePort, portFree, PortTaken, retryPortRace, saysPortTaken } from '../src/util/port-race.ts';
import { InputError } from '../src/errors.ts';

export interface DevServerOptions {
  port?: number;
  uiPort?: number;
  /** SQLite file; runs survive a server restart because they live here. */
  dbFile: string;
  logFile: string;
  headless?: boolean;
  /** More `KEY=VALUE` dynamic config (tests: a server with a feature off, as a team's cluster may have it). */
  dynamicConfig?: string[];
  ip?: string;
  /** How long to wait for the frontend to answer. */
  timeoutMs?: number;
}

export interface DevServerHandle {
  pid: number;
  address: string;
  port: number;
  uiPort?: number;
  uiUrl?: string;
  dbFile: string;
  logFile: string;
}

/** True once the frontend answers a gRPC health check. */
export async function isHealthy(address: string, timeoutMs = 2000): Promise<boolean> {
  let conn: Connection | undefined;
  try {
    conn = await Connection.connect({ address, connectTimeout: timeoutMs });
    await conn.workflowService.getSystemInfo({});
    return true;
  } catch {
    return false;
  } finally {
    await conn?.close().catch(() => undefined);
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function logTail(path: string, lines = 20): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/**
 * The dev server has one history shard, and the shard reads its queue of tasks to hand out (the next
 * workflow task after an activity completes, an activity not dispatched eagerly) at most 20 times a
 * second by default: every step of every run on the server then waited for the next 50 ms tick once
 * steps came faster than that. A bare activity chain took 51-52 ms a step; at 1000 reads a second,
 * 18-26 ms (bench/orchestration.bench.ts; README, Benchmarks). A cluster sets its own dynamic config.
 */
const DEV_SERVER_TUNING = ['history.transferProcessorMaxPollRPS=1000'];

/** Why no dev server can start on a machine without the Temporal CLI, and the ways to install it. */
export const TEMPORAL_CLI_MISSING =
  'the Temporal CLI is not installed; run `npx tempered setup` (it installs the pinned, hash-checked CLI into .tempered/bin of this checkout; `npm run demo` and `npm test` run it first too), or set TEMPORAL_CLI_PATH to a temporal binary';

/**
 * Spawns the dev server detached from this process and waits until it is healthy. Its ports are free
 * when chosen but not held: another process (a parallel test's server, say) can take one before the
 * server binds it, including the HTTP API port the CLI picks itself. Such a start-up is tried again,
 * on a new port unless the caller named one.
 */
export async function startDevServer(opts: DevServerOptions): Promise<DevServerHandle> {
  const cli = findTemporalCli();
  if (!cli) throw new Error(TEMPORAL_CLI_MISSING);
  return retryPortRace(async () => launchDevServer(cli, opts, opts.port ?? (await freePort())));
}

async function launchDevServer(cli: string, opts: DevServerOptions, port: number): Promise<DevServerHandle> {
  const ip = opts.ip ?? '127.0.0.1';
  if (!(await portFree(port, ip))) {
    throw new Error(`port ${port} is already in use; stop what holds it or choose another port`);
  }
  const args = [
    'server',
    'start-dev',
    '--db-filename',
    opts.dbFile,
    '--port',
    String(port),
    '--ip',
    ip,
    '--log-level',
    'warn',
    // Registered at every start (the CLI keeps an existing one): the Runs page's pipeline filter is then one list query.
    '--search-attribute',
    `${PIPELINE_ATTRIBUTE}=Keyword`,
    ...[...DEV_SERVER_TUNING, ...(opts.dynamicConfig ?? [])].flatMap((kv) => ['--dynamic-config-value', kv]),
  ];
  let uiPort: number | undefined;
  if (opts.headless) {
    args.push('--headless');
  } else {
    uiPort = opts.uiPort ?? port + 1000;
    args.push('--ui-port', String(uiPort));
  }
  // Where this start-up's lines begin in a log that earlier starts appended to.
  const logStart = existsSync(opts.logFile) ? statSync(opts.logFile).size : 0;
  const fd = openSync(opts.logFile, 'a');
  const child = spawn(cli, args, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  const pid = child.pid!;
  const address = `${ip}:${port}`;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let exited = false;
  child.once('exit', () => (exited = true));
  while (Date.now() < deadline) {
    if (exited || !pidAlive(pid)) {
      const message = `the Temporal dev server exited during start-up; its log (${opts.logFile}) ends with:\n${logTail(opts.logFile)}`;
      throw saysPortTaken(logSince(opts.logFile, logStart)) ? new PortTaken(message) : new Error(message);
    }
    if (await isHealthy(address, 1000)) {
      return {
        pid,
        address,
        port,
        uiPort,
        uiUrl: uiPort ? `http://${ip}:${uiPort}` : undefined,
        dbFile: opts.dbFile,
        logFile: opts.logFile,
      };
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
  throw new Error(`the Temporal dev server did not become healthy within ${(opts.timeoutMs ?? 60_000) / 1000}s; log: ${opts.logFile}`);
}

/** What a log holds from byte `from` on (this start-up's lines), or '' when it cannot be read. */
function logSince(logFile: string, from: number): string {
  try {
    return readFileSync(logFile).subarray(from).toString('utf8');
  } catch {
    return '';
  }
}

/** SIGTERM, then SIGKILL after a grace period. Resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  if (!pidAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (pidAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  if (pidAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    while (pidAlive(pid)) await new Promise((r) => setTimeout(r, 50));
  }
}

// ---- the project's embedded server, as managed by `tempered server start|stop|status` ----

const DEFAULT_PORT = 7233;

function serverFile(): string {
  return join(statePaths().temporal, 'server.json');
}

export function embeddedServerInfo(): DevServerHandle | undefined {
  const file = serverFile();
  if (!existsSync(file)) return undefined;
  const info = JSON.parse(readFileSync(file, 'utf8')) as DevServerHandle;
  return pidAlive(info.pid) ? info : undefined;
}

/** `raw` as a port number, 1 to 65535; undefined when it is not one (Node and the Temporal CLI said only NaN). */
export function portNumber(raw: string): number | undefined {
  const port = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * TEMPERED_DEV_PORT, or 7233 (set but empty: unset). Checked here, where every command reads it: `abc` reached the
 * SDK as the address `127.0.0.1:abc` and Node's listen as NaN, neither error naming the variable.
 */
export function devServerPort(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.TEMPERED_DEV_PORT;
  if (raw === undefined || raw === '') return DEFAULT_PORT;
  const port = portNumber(raw.trim());
  if (port === undefined)
    // An InputError: the user's setting to fix, said with what to do, so no stack trace is offered (cli/main.ts).
    throw new InputError(`TEMPERED_DEV_PORT=${raw} is not a port number (1 to 65535); unset it for the default, ${DEFAULT_PORT}`);
  return port;
}

/** Starts the project's dev server unless it already runs; returns its handle. */
export async function ensureEmbeddedServer(
  opts: { port?: number; uiPort?: number; log?: (m: string) => void } = {},
): Promise<DevServerHandle & { started: boolean }> {
  const running = embeddedServerInfo();
  if (running && (await isHealthy(running.address))) return { ...running, started: false };
  const dir = ensureDir(statePaths().temporal);
  const port = opts.port ?? devServerPort();
  opts.log?.(`starting the Temporal dev server on 127.0.0.1:${port} (state in ${dir})`);
  const handle = await startDevServer({ port, uiPort: opts.uiPort, dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log') });
  writeFileSync(serverFile(), JSON.stringify(handle, null, 2));
  return { ...handle, started: true };
}

export async function stopEmbeddedServer(): Promise<boolean> {
  const info = embeddedServerInfo();
  if (!info) return false;
  await stopProcess(info.pid);
  rmSync(serverFile(), { force: true });
  return true;
}
