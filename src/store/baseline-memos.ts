/**
 * Garbage collection of this host's baseline memos (`TEMPERED_HOME/baselines/<key>.json`, src/stages/evaluate.ts): the
 * scores of a base model as evaluated before, one file per base model, test rows and settings. Nothing deleted them,
 * so a year of sweeps over changing test splits kept every one. A memo goes once it was neither written nor used since
 * the horizon: evaluate touches its file on a hit (its mtime; the access time counts too, for memos read before that
 * did), and a memo collected costs one scoring of its baseline again. `tempered store gc` collects them on the host it
 * runs on; each worker collects its own (each keeps memos of its own) at gc's default horizon.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface BaselineMemosReport {
  dir: string;
  /** Memos (and temp files of writers killed mid-write) neither written nor used since the horizon. */
  old: number;
  oldBytes: number;
  deleted: number;
  deletedBytes: number;
}

/** A memo, and a temp file `writeFileAtomic` left behind when its writer was killed. */
const MEMO = /^(?:[0-9a-f]{64}\.json|\.[0-9a-f]{64}\.json\.\d+\.[0-9a-f]+\.tmp)$/;

/** Last written or read, in ms; undefined when the file is gone. */
function lastUse(path: string): { usedMs: number; bytes: number } | undefined {
  try {
    const st = statSync(path);
    return st.isFile() ? { usedMs: Math.max(st.mtimeMs, st.atimeMs), bytes: st.size } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Counts (and with `collect`, deletes) the memos in `dir` unused since `horizon` (ms since the epoch), each judged by a
 * stat just before it goes. An evaluation reading one at that moment still has its scores; one that comes after scores
 * the baseline again. A missing folder holds none.
 */
export function collectBaselineMemos(opts: { dir: string; horizon: number; collect: boolean }): BaselineMemosReport {
  const report: BaselineMemosReport = { dir: opts.dir, old: 0, oldBytes: 0, deleted: 0, deletedBytes: 0 };
  let names: string[];
  try {
    names = readdirSync(opts.dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return report;
    throw e;
  }
  for (const name of names.filter((n) => MEMO.test(n)).sort()) {
    const path = join(opts.dir, name);
    const seen = lastUse(path);
    if (!seen || seen.usedMs >= opts.horizon) continue;
    report.old++;
    report.oldBytes += seen.bytes;
    if (!opts.collect) continue;
    rmSync(path, { force: true });
    report.deleted++;
    report.deletedBytes += seen.bytes;
  }
  return report;
}

/**
 * A worker's own collection: at start and every `everyMs` until `stop()`, the memos unused for `horizonMs`. A failure
 * (an unreadable folder) is reported and tried again next time: it only delays freeing disk.
 */
export function startBaselineMemoPruner(
  dir: string,
  horizonMs: number,
  log: (message: string) => void,
  everyMs = 60 * 60 * 1000,
): { stop(): void } {
  const prune = () => {
    try {
      const r = collectBaselineMemos({ dir, horizon: Date.now() - horizonMs, collect: true });
      if (r.deleted)
        log(`deleted ${r.deleted} baseline memos (${r.deletedBytes} bytes) unused for ${horizonMs / 86_400_000} days from ${dir}`);
    } catch (e) {
      log(`baseline memos: pruning ${dir} failed, will try again: ${(e as Error).message}`);
    }
  };
  prune();
  const timer = setInterval(prune, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
