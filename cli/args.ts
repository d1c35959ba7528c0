import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A usage error: printed as one sentence plus the command's usage, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** `--help` (or `-h`) given to a command: its usage goes to stdout and the command succeeds. */
export class HelpRequested extends Error {
  override name = 'HelpRequested';
}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T, usage: string) {
  const flags = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  if (!('help' in options) && flags.some((a) => a === '--help' || a === '-h')) throw new HelpRequested(`usage: ${usage}`);
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}\nusage: ${usage}`);
  }
}

export { defaultActor as actor } from '../src/audit/actor.ts';
