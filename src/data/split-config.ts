/**
 * Rules of a split config that need no data (shares that must add up, what kfold allows). The split
 * library enforces them, and the stage kind reports them at `tempered validate` time.
 */
import { InputError } from '../errors.ts';
import type { SplitConfig } from './config.ts';

export const SPLITS = ['train', 'validation', 'test'] as const;

/** Every rule the config breaks, in the order split checks them (`where` is the field). */
export function checkSplitConfig(cfg: SplitConfig): InputError[] {
  const out: InputError[] = [];
  const numbers = (obj: Record<string, number | undefined> | undefined, field: string, integer: boolean) => {
    for (const [k, v] of Object.entries(obj ?? {})) {
      if (!(SPLITS as readonly string[]).includes(k))
        out.push(new InputError(`unknown split ${JSON.stringify(k)}`, { where: `${field}.${k}`, hint: 'use train, validation, test' }));
      else if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (integer && !Number.isInteger(v)))) {
        out.push(
          new InputError(`must be a ${integer ? 'non-negative integer' : 'non-negative number'}, got ${v}`, { where: `${field}.${k}` }),
        );
      }
    }
  };
  numbers(cfg.ratios, 'ratios', false);
  numbers(cfg.counts, 'counts', true);
  if (cfg.ratios && cfg.counts) out.push(new InputError('give ratios or counts, not both', { where: 'counts' }));
  if (cfg.kfold !== undefined) {
    const src = cfg.counts ? 'counts' : 'ratios';
    const o = (cfg.counts ?? cfg.ratios ?? {}) as Record<string, number | undefined>;
    if (o.train !== undefined || o.validation !== undefined)
      out.push(new InputError('with kfold only the test share may be given; folds use the rest', { where: src }));
    if (cfg.ratios && (o.test ?? 0) > 1) out.push(new InputError('ratios.test must be at most 1', { where: 'ratios.test' }));
  } else if (cfg.ratios && !cfg.counts) {
    const sum = SPLITS.reduce((a, s) => a + (cfg.ratios![s] ?? 0), 0);
    // 15 significant digits: the float noise of 0.8 + 0.1 goes (0.9, not 0.8999999999999999), a real miss stays visible.
    if (Math.abs(sum - 1) > 1e-6)
      out.push(new InputError(`ratios add up to ${Number(sum.toPrecision(15))}, expected 1`, { where: 'ratios' }));
  }
  return out;
}
