/**
 * Opt-in benchmark (not part of npm test): what a train stage's shared lease (src/store/shared-lease.ts)
 * costs, on a folder and on a real SeaweedFS bucket (`weed mini` on this machine, installed by
 * setup). For each, in this one process: the resident memory the keeper thread adds and how long
 * after the lease is taken its first refresh lands, against the same lease kept on this thread (the
 * reference: no thread); and the store requests one refresh makes, counted on the in-process keeper.
 *
 *   nice node --import tsx bench/lease-keeper.bench.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FolderBackend } from '../src/store/folder-backend.ts';
import type { ObjectBackend } from '../src/store/object-backend.ts';
import { acquireSharedLease, leasePrefix } from '../src/store/shared-lease.ts';
import { startTestS3 } from '../tests/helpers/seaweedfs.ts';

const REFRESH_MS = 500;
const MiB = 2 ** 20;

/** Store calls by method, on a backend that forwards everything. */
function counted(remote: ObjectBackend): { backend: ObjectBackend; calls: Map<string, number> } {
  const calls = new Map<string, number>();
  const backend = new Proxy(remote, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || prop === 'reopen') return v;
      return (...args: unknown[]) => {
        calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { backend, calls };
}

async function newestGen(remote: ObjectBackend, name: string): Promise<number> {
  let gen = -1;
  for await (const k of remote.list(leasePrefix(name))) gen = Math.max(gen, Number(k.slice(-17, -5)));
  return gen;
}

/** Takes a lease, waits for its first refresh; the time that took and the RSS it added. */
async function keep(remote: ObjectBackend, name: string, inProcess: boolean) {
  global.gc?.();
  const before = process.memoryUsage().rss;
  const started = Date.now();
  const lease = await acquireSharedLease(remote, name, { what: 'bench', staleMs: 8 * REFRESH_MS * 4, refreshMs: REFRESH_MS, inProcess });
  while ((await newestGen(remote, name)) < 1) await new Promise((r) => setTimeout(r, 10));
  const firstRefreshMs = Date.now() - started;
  const rssMiB = (process.memoryUsage().rss - before) / MiB;
  return { lease, firstRefreshMs, rssMiB };
}

async function measure(label: string, remote: ObjectBackend) {
  const own = await keep(remote, `bench-own-${Date.now()}`, true);
  await own.lease.release();
  const thread = await keep(remote, `bench-thread-${Date.now()}`, false);
  await thread.lease.release();
  // Requests per refresh: an in-process keeper over a counting backend, over 4 refresh periods.
  const { backend, calls } = counted(remote);
  const lease = await acquireSharedLease(backend, `bench-count-${Date.now()}`, { what: 'bench', refreshMs: REFRESH_MS, inProcess: true });
  calls.clear();
  await new Promise((r) => setTimeout(r, 4 * REFRESH_MS + REFRESH_MS / 2));
  const perRefresh = [...calls].map(([k, n]) => `${k} ${n / 4}`).join(', ');
  await lease.release();
  console.log(
    `${label}: first refresh ${thread.firstRefreshMs} ms after the take with a keeper thread, ${own.firstRefreshMs} ms on this thread (refresh every ${REFRESH_MS} ms); ` +
      `RSS +${thread.rssMiB.toFixed(1)} MiB with the thread against +${own.rssMiB.toFixed(1)} MiB without; requests per refresh: ${perRefresh}`,
  );
}

const dir = mkdtempSync(join(tmpdir(), 'tempered-leasebench-'));
const s3 = await startTestS3();
try {
  console.log(`load ${loadavg()[0]!.toFixed(1)}`);
  await measure('folder', new FolderBackend(dir));
  await measure('SeaweedFS', s3.backend());
} finally {
  await s3.stop();
  rmSync(dir, { recursive: true, force: true });
}
