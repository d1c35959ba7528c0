/** A command failed; `exitCode` 2 for bad usage or an invalid pipeline file, 1 otherwise. Kept apart from context.ts so light commands need not load Temporal. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}
