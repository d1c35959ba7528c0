/**
 * Bounds a worker's cache of the shared store (the local folder in front of `TEMPERED_STORE`): every
 * artifact a worker's stages read or wrote stays there, so without a bound a worker that trains
 * every night fills its disk. `tempered worker` prunes at start and every few minutes
 * (ArtifactStore.pruneCache: least recently used first, never a copy used in the last hour or held
 * by a running stage, never one the store does not hold).
 */
import { statfsSync } from 'node:fs';
import { InputError } from '../errors.ts';
import type { ArtifactStore, PruneResult } from './artifact-store.ts';

export const PRUNE_EVERY_MS = 10 * 60 * 1000;
/** Longer than a stage takes between getting an artifact's path and opening it. */
export const MIN_IDLE_MS = 60 * 60 * 1000;

/** `TEMPERED_CACHE_MAX_GB` (10^9 bytes) in bytes; unset: half the size of the disk that holds `root`. */
export function cacheLimitBytes(root: string, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.TEMPERED_CACHE_MAX_GB;
  if (raw !== undefined && raw.trim() !== '') {
    const gb = Number(raw);
    if (!Number.isFinite(gb) || gb <= 0)
      throw new InputError(`${JSON.stringify(raw)} is not a positive number of gigabytes`, {
        where: 'TEMPERED_CACHE_MAX_GB',
        hint: 'e.g. 50, or unset it for half the disk that holds TEMPERED_HOME',
      });
    return Math.round(gb * 1e9);
  }
  const fs = statfsSync(root);
  return Math.floor((fs.blocks * fs.bsize) / 2);
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

/** What one pruning round did, in words: for the worker's log and `tempered cache prune`. */
export function describePrune(r: PruneResult, maxBytes: number, store: ArtifactStore): string {
  return (
    `removed ${r.removed} local copies (${gb(r.freedBytes)}) of objects in ${store.remote?.url}; ${gb(r.keptBytes)} kept, limit ${gb(maxBytes)}` +
    (r.quarantined ? `; ${r.quarantined} damaged copies the store did not hold moved to ${store.root}/quarantine` : '')
  );
}

/**
 * Prunes `store`'s cache now and every `everyMs` until `stop()`, which waits for a prune under way.
 * A failed prune (the store down) is reported and tried again next time: it only delays freeing disk.
 */
export function startCachePruner(
  store: ArtifactStore,
  maxBytes: number,
  log: (message: string) => void,
  opts: { everyMs?: number; minIdleMs?: number } = {},
): { stop(): Promise<void> } {
  let running: Promise<void> = Promise.resolve();
  const prune = () => {
    running = running.then(async () => {
      try {
        const r = await store.pruneCache({ maxBytes, minIdleMs: opts.minIdleMs ?? MIN_IDLE_MS });
        if (r.removed || r.quarantined) log(`cache: ${describePrune(r, maxBytes, store)}`);
      } catch (e) {
        log(`cache: pruning failed, will try again: ${(e as Error).message}`);
      }
    });
  };
  prune();
  const timer = setInterval(prune, opts.everyMs ?? PRUNE_EVERY_MS);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
