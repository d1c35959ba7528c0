/**
 * Error classes the library throws. The activity adapters map them onto Temporal failures:
 * InputError becomes a non-retryable ApplicationFailure of type 'InputError'; anything else is
 * treated as transient and retried with the stage's retry policy.
 */

/** Bad user input (file, row, field or config). Retrying cannot help, so it is never retried. */
export class InputError extends Error {
  override name = 'InputError';
  /** Where the problem is, e.g. `data/train.csv:12` or `stages.train.with.lr`. */
  readonly where?: string;
  /** What the user can do about it. */
  readonly hint?: string;
  /**
   * What kind of problem, for callers that add advice of their own (see InputErrorCode), so they need
   * not match the message's words.
   */
  readonly code?: InputErrorCode;
  constructor(message: string, opts: { where?: string; hint?: string; code?: InputErrorCode; cause?: unknown } = {}) {
    super(opts.where ? `${opts.where}: ${message}` : message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.where = opts.where;
    this.hint = opts.hint;
    this.code = opts.code;
  }

  /** The message without its `where: ` prefix, for a caller that names the place itself. */
  get bareMessage(): string {
    const prefix = `${this.where}: `;
    return this.where !== undefined && this.message.startsWith(prefix) ? this.message.slice(prefix.length) : this.message;
  }
}

/**
 * Kinds of input error that travel with the failure to the CLI. `source-missing`: a pipeline's data
 * source is not there (status adds what a resume needs to know about it). `checkpoint-settings`: a checkpoint to
 * resume was written with other training settings (the train stage adds where a shared store keeps its copy).
 */
export type InputErrorCode = 'source-missing' | 'checkpoint-settings';

/** Data integrity broke: a stored artifact does not match its recorded hash or size. */
export class IntegrityError extends Error {
  override name = 'IntegrityError';
  /**
   * The store object that is missing or damaged, when the error is about one. Retrying the stage
   * that read it cannot help (the bytes stay bad); the producing stage has to run again.
   */
  readonly sha256?: string;
  constructor(message: string, opts: { sha256?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.sha256 = opts.sha256;
  }
}

/**
 * A write found its disk full (ENOSPC, EDQUOT, SQLITE_FULL): an environment fault, which no retry
 * fixes by itself but freeing space does. The activity adapters retry it after a wait long enough for
 * someone to free space (or for the retry to land on another worker); the message names the folder
 * whose disk is full and the hint says what to do. Built by `diskFullError` (util/disk-full.ts).
 */
export class DiskFullError extends Error {
  override name = 'DiskFullError';
  /** A folder on the disk that is full (the most specific one known). */
  readonly path: string;
  /** Bytes free on that disk when the error was built (the failed write's partial file gone). */
  readonly freeBytes?: number;
  readonly totalBytes?: number;
  /** What the failed write needed, where that is known (a file copied into the store). */
  readonly neededBytes?: number;
  readonly hint: string;
  constructor(
    message: string,
    opts: { path: string; freeBytes?: number; totalBytes?: number; neededBytes?: number; hint: string; cause?: unknown },
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.path = opts.path;
    this.freeBytes = opts.freeBytes;
    this.totalBytes = opts.totalBytes;
    this.neededBytes = opts.neededBytes;
    this.hint = opts.hint;
  }
}

/**
 * A stage kind broke its own contract (its outputs against their declaration). A bug in the kind's
 * code, most likely a plugin's: another attempt would do the same, so it is not retried.
 */
export class StageContractError extends Error {
  override name = 'StageContractError';
  readonly hint?: string;
  constructor(message: string, opts: { hint?: string } = {}) {
    super(message);
    this.hint = opts.hint;
  }
}

/**
 * `e` and the errors it was caused by, outermost first (at most `depth`): where a caller wrapped a driver's or the
 * system's error in its own, the kind is read on the one inside.
 */
export function* errorChain(e: unknown, depth = 8): Generator<Error> {
  for (let i = 0; i < depth && e instanceof Error; i++, e = e.cause) yield e;
}
