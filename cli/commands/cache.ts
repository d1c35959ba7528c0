/** `tempered cache prune`: what `tempered worker` does every 10 minutes, once, for a worker that is not running. */
import { parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { cacheLimitBytes, describePrune, MIN_IDLE_MS } from '../../src/store/cache-pruner.ts';

export async function cacheCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered cache prune [--max-gb N] [--idle-minutes M] [--json]';
  const { values, positionals } = parse(
    argv,
    { 'max-gb': { type: 'string' }, 'idle-minutes': { type: 'string' }, json: { type: 'boolean' } },
    usage,
  );
  if (positionals[0] !== 'prune' || positionals.length !== 1) throw new CliError(`usage: ${usage}`, 2);
  const store = ctx.store();
  if (!store.remote)
    throw new CliError(
      `TEMPERED_STORE is not set, so ${store.root} is the store itself, not a cache of one: nothing in it can be fetched again, and nothing is pruned.`,
      2,
    );
  const number = (flag: 'max-gb' | 'idle-minutes', min: number) => {
    const raw = values[flag];
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min)
      throw new CliError(`--${flag} takes a number of at least ${min}, not ${JSON.stringify(raw)}\nusage: ${usage}`, 2);
    return n;
  };
  const maxGb = number('max-gb', 0);
  const idleMinutes = number('idle-minutes', 0);
  const maxBytes = maxGb === undefined ? cacheLimitBytes(store.root) : Math.round(maxGb * 1e9);
  const r = await store.pruneCache({ maxBytes, minIdleMs: idleMinutes === undefined ? MIN_IDLE_MS : idleMinutes * 60_000 });
  console.log(values.json ? JSON.stringify({ ...r, maxBytes }) : describePrune(r, maxBytes, store));
  return 0;
}
