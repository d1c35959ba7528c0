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

/**
 * The run the command at work is about, once it knows one (the run it submitted, the one it resumes or looks at): its
 * error messages name it in the commands they suggest (`tempered resume <id>`) instead of a placeholder.
 */
export const commandRun: { id?: string } = {};
