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
  // --help as an option of every command (unless it has its own), parsed like the others, so the
  // value of another option that happens to read `-h` is not taken for it.
  if (!('help' in options)) {
    const withHelp = { ...options, help: { type: 'boolean', short: 'h' } } as const;
    const tokens = parseArgs({ args: argv, options: withHelp, allowPositionals: true, strict: false, tokens: true }).tokens;
    if (tokens.some((t) => t.kind === 'option' && t.name === 'help')) throw new HelpRequested(`usage: ${usage}`);
  }
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/s, '')}\nusage: ${usage}`);
  }
}

/** A subcommand dispatcher's check before it reads its first word: `tempered models --help`. */
export function helpAsked(argv: string[], usage: string): void {
  if (argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') throw new HelpRequested(`usage: ${usage}`);
}

export { defaultActor as actor } from '../src/audit/actor.ts';
