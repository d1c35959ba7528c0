/**
 * The messages between a stage's parent (the worker) and the child process that runs the stage.
 * Everything here is structured-clone safe, so it crosses the IPC channel unchanged.
 *
 * parent → child: `run` once, after the child said `ready`.
 * child → parent: `progress` (fraction, message, metrics), `checkpoint` (resume data: what a retry
 * continues from), `log`, then exactly one of `result` or `error`.
 */
import { DiskFullError, InputError, IntegrityError, type InputErrorCode } from '../errors.ts';
import { LockBusyError, type LockOwner } from '../util/dir-lock.ts';
import type { PluginFile } from '../stages/plugin-file.ts';
import type { StageContext } from '../stages/types.ts';
import type { StageOutputs, StageProgress } from '../types.ts';

/** The serializable part of a StageContext; the child rebuilds the rest (store, signal, callbacks). */
export interface ChildJob
  extends Pick<
    StageContext,
    | 'runId'
    | 'executionId'
    | 'stageId'
    | 'attempt'
    | 'baseDir'
    | 'specHash'
    | 'actor'
    | 'cacheKey'
    | 'freshTraining'
    | 'ownCheckpoints'
    | 'workDir'
    | 'stateDir'
    | 'resumeFrom'
  > {
  /** Module exporting `stageKinds()`; the child runs the kind named `kind` from it. */
  module: string;
  kind: string;
  config: unknown;
  storeRoot: string;
  /** The shared store behind it (`TEMPERED_STORE`), so the child reads and writes the same objects. */
  storeUrl?: string;
  /** A plugin kind's TEMPERED_PLUGINS module file as the worker loaded it: the child runs no other code under its key. */
  pluginFile?: PluginFile;
}

export type ParentMessage = { type: 'run'; job: ChildJob };

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'progress'; progress: StageProgress }
  | { type: 'checkpoint'; resume: unknown }
  | { type: 'log'; message: string }
  | { type: 'result'; outputs: StageOutputs }
  | { type: 'error'; error: WireError };

/** An error as it crosses the boundary: its class by name plus the fields the adapters read. */
export interface WireError {
  name: string;
  /**
   * The error's class: tempered's own (which the parent rebuilds as that class) or the constructor's name,
   * which Temporal reads as the failure type (`retry.nonRetryableErrorTypes`). Not `name`, which any error
   * may set: a plugin's own class named 'InputError' is no InputError in the worker either.
   */
  type?: string;
  message: string;
  stack?: string;
  where?: string;
  hint?: string;
  /**
   * InputError: its kind, when it has one. Any other error: its `code` as Node's system errors
   * (ENOSPC) and SQLite's (SQLITE_FULL) carry it, so the worker can tell a full disk.
   */
  code?: InputErrorCode | string;
  /** IntegrityError: the damaged store object. */
  sha256?: string;
  /** A system error's file and, for a copy or a rename, its destination. */
  path?: string;
  dest?: string;
  /** DiskFullError: its fields. */
  diskFull?: { path: string; freeBytes?: number; totalBytes?: number; neededBytes?: number; hint: string };
  /** LockBusyError: the lock and who holds it (the worker logs a wait for it as one line, not as a failure). */
  lockBusy?: { path: string; owner?: LockOwner };
}

export function toWire(err: unknown): WireError {
  if (err instanceof Error) {
    const e = err as Error & { where?: string; hint?: string; code?: unknown; sha256?: string; path?: unknown; dest?: unknown };
    const type =
      err instanceof InputError
        ? OWN.input
        : err instanceof IntegrityError
          ? OWN.integrity
          : err instanceof DiskFullError
            ? OWN.diskFull
            : err instanceof LockBusyError
              ? OWN.lockBusy
              : (err.constructor as { name?: string })?.name;
    const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
    return {
      name: e.name,
      type,
      message: e.message,
      stack: e.stack,
      where: e.where,
      hint: e.hint,
      code: text(e.code),
      sha256: e.sha256,
      path: text(e.path),
      dest: text(e.dest),
      ...(err instanceof DiskFullError
        ? {
            diskFull: {
              path: err.path,
              freeBytes: err.freeBytes,
              totalBytes: err.totalBytes,
              neededBytes: err.neededBytes,
              hint: err.hint,
            },
          }
        : {}),
      ...(err instanceof LockBusyError ? { lockBusy: { path: err.path, ...(err.owner ? { owner: err.owner } : {}) } } : {}),
    };
  }
  return { name: 'Error', message: String(err) };
}

/**
 * Rebuilds the error with its class, so an InputError from the child is still an InputError (and
 * so non-retryable) in the parent; the message is kept as the child wrote it.
 */
export function fromWire(w: WireError): Error {
  let err: Error;
  // A child of an older release sent no type: its name decided.
  const type = w.type ?? (w.name === 'InputError' ? OWN.input : w.name === 'IntegrityError' ? OWN.integrity : w.name);
  if (type === OWN.input) {
    err = new InputError(w.message, { hint: w.hint, code: w.code as InputErrorCode | undefined });
    // The message already starts with `where`; the constructor would prefix it a second time.
    Object.assign(err, { where: w.where });
  } else if (type === OWN.integrity) {
    err = new IntegrityError(w.message, { sha256: w.sha256 });
  } else if (type === OWN.diskFull && w.diskFull) {
    err = new DiskFullError(w.message, w.diskFull);
  } else if (type === OWN.lockBusy && w.lockBusy) {
    err = new LockBusyError(w.lockBusy.path, w.lockBusy.owner);
  } else {
    err = new (namedErrorClass(type))(w.message);
    err.name = w.name;
    // What tells a system error apart (ENOSPC from EIO) and names its file.
    for (const k of ['code', 'path', 'dest'] as const) if (w[k] !== undefined) Object.assign(err, { [k]: w[k] });
  }
  if (w.stack) err.stack = w.stack;
  return err;
}

/** Tags for tempered's own error classes (a plugin's class may be named like them). */
const OWN = {
  input: 'tempered:InputError',
  integrity: 'tempered:IntegrityError',
  diskFull: 'tempered:DiskFullError',
  lockBusy: 'tempered:LockBusyError',
} as const;

/** An Error subclass whose constructor has `name`, so the failure keeps the type the child's error had. */
function namedErrorClass(name: string): new (message: string) => Error {
  if (!/^[A-Za-z_$][\w$]*$/.test(name) || name === 'Error') return Error;
  return { [name]: class extends Error {} }[name]!;
}
