/**
 * The messages between a stage's parent (the worker) and the child process that runs the stage.
 * Everything here is structured-clone safe, so it crosses the IPC channel unchanged.
 *
 * parent → child: `run` once, after the child said `ready`.
 * child → parent: `progress` (fraction, message, metrics), `checkpoint` (resume data: what a retry
 * continues from), `log`, then exactly one of `result` or `error`.
 */
import { InputError, IntegrityError, type InputErrorCode } from '../errors.ts';
import type { StageContext } from '../stages/types.ts';
import type { StageOutputs, StageProgress } from '../types.ts';

/** The serializable part of a StageContext; the child rebuilds the rest (store, signal, callbacks). */
export interface ChildJob
  extends Pick<
    StageContext,
    'runId' | 'stageId' | 'attempt' | 'baseDir' | 'specHash' | 'actor' | 'cacheKey' | 'workDir' | 'stateDir' | 'resumeFrom'
  > {
  /** Module exporting `stageKinds()`; the child runs the kind named `kind` from it. */
  module: string;
  kind: string;
  config: unknown;
  storeRoot: string;
  /** The shared store behind it (`TEMPERED_STORE`), so the child reads and writes the same objects. */
  storeUrl?: string;
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
  message: string;
  stack?: string;
  where?: string;
  hint?: string;
  /** InputError: its kind, when it has one. */
  code?: InputErrorCode;
  /** IntegrityError: the damaged store object. */
  sha256?: string;
}

export function toWire(err: unknown): WireError {
  if (err instanceof Error) {
    const e = err as Error & { where?: string; hint?: string; code?: InputErrorCode; sha256?: string };
    return { name: e.name, message: e.message, stack: e.stack, where: e.where, hint: e.hint, code: e.code, sha256: e.sha256 };
  }
  return { name: 'Error', message: String(err) };
}

/**
 * Rebuilds the error with its class, so an InputError from the child is still an InputError (and
 * so non-retryable) in the parent; the message is kept as the child wrote it.
 */
export function fromWire(w: WireError): Error {
  let err: Error;
  if (w.name === 'InputError') {
    err = new InputError(w.message, { hint: w.hint, code: w.code });
    // The message already starts with `where`; the constructor would prefix it a second time.
    Object.assign(err, { where: w.where });
  } else if (w.name === 'IntegrityError') {
    err = new IntegrityError(w.message, { sha256: w.sha256 });
  } else {
    err = new Error(w.message);
    err.name = w.name;
  }
  if (w.stack) err.stack = w.stack;
  return err;
}
