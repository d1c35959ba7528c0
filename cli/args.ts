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

export { defaultActor as actor } from '../src/audit/actor.ts';
