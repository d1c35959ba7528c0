/**
 * Per-step metrics of a running stage (a training curve as it grows), one JSON line per step in
 * `TEMPERED_HOME/progress/<run>/<execution>/<stage>.jsonl`. Temporal keeps only a stage's latest
 * heartbeat, and sends it to the server at most every few tens of seconds, so a curve cannot be
 * read back from there; the dashboard tails this file instead, from a byte offset, so a live view
 * receives each point once and never the whole history again.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface ProgressPoint {
  /** Attempt of the stage that reported the point (a retry resumes from a checkpoint and reports steps again). */
  attempt: number;
  /** Milliseconds since the epoch. */
  t: number;
  metrics: Record<string, number>;
}

function segment(s: string): string {
  return encodeURIComponent(s).replace(/\./g, '%2E');
}

/** Where the points of one stage of one execution of a run are kept. */
export function progressLogPath(progressDir: string, runId: string, executionId: string, stageId: string): string {
  return join(progressDir, segment(runId), segment(executionId), `${segment(stageId)}.jsonl`);
}

/**
 * Appends one point. Lines are short and written with one append, so a reader never sees half a line for long.
 * An append that fails part-way (a full disk takes what fits in the file's last block) is cut off again:
 * the next point, written once there is space, would otherwise finish that torn line, and both be lost.
 */
export function appendProgressPoint(path: string, point: ProgressPoint): void {
  const line = Buffer.from(JSON.stringify(point) + '\n');
  const fd = openAppend(path);
  try {
    let off = 0;
    try {
      for (; off < line.length; ) off += writeSync(fd, line, off);
    } catch (e) {
      try {
        // `off`: what of the line got in before the write that failed (a short write, then ENOSPC). Read here, not
        // before every append: the file's size is asked only of the one that failed.
        ftruncateSync(fd, fstatSync(fd).size - off);
      } catch {
        // the reader skips a torn line; the write's own error is the one to report
      }
      throw e;
    }
  } finally {
    closeSync(fd);
  }
}

/** `path` opened to append, its folder made by the first point of a stage, not looked for by every one. */
function openAppend(path: string): number {
  try {
    return openSync(path, 'a');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    mkdirSync(dirname(path), { recursive: true });
    return openSync(path, 'a');
  }
}

/**
 * Points from byte `offset` on, and the offset after the last complete line (a line being written
 * is left for the next read). A missing file reads as no points. Lines that are not a point (a torn
 * write after a crash) are skipped.
 */
export function readProgressPoints(path: string, offset = 0, maxBytes = 64 << 20): { points: ProgressPoint[]; offset: number } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return { points: [], offset };
  }
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return { points: [], offset };
    const buf = Buffer.alloc(Math.min(size - offset, maxBytes));
    const n = readSync(fd, buf, 0, buf.length, offset);
    const end = buf.lastIndexOf(0x0a, n - 1);
    if (end < 0) return { points: [], offset };
    const points: ProgressPoint[] = [];
    for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
      try {
        const p = JSON.parse(line) as ProgressPoint;
        if (p && typeof p === 'object' && typeof p.metrics === 'object' && p.metrics !== null) points.push(p);
      } catch {
        // a torn line from a killed writer
      }
    }
    return { points, offset: offset + end + 1 };
  } finally {
    closeSync(fd);
  }
}
