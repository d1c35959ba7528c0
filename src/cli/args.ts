import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A usage error: printed as one sentence plus the command's usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, usage: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}\nusage: ${usage}`);
  }
}

export function actor(): string {
  if (process.env.TEMPERED_ACTOR) return process.env.TEMPERED_ACTOR;
  try {
    // os.userInfo throws in some containers without a passwd entry.
    return process.env.USER ?? process.env.LOGNAME ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
