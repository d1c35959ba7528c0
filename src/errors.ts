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
 * source is not there (status adds what a resume needs to know about it).
 */
export type InputErrorCode = 'source-missing';

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
