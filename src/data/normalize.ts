/**
 * Text normalization for duplicate detection. Each step is switchable because some datasets
 * (e.g. case-sensitive tasks) must not merge what the defaults would merge.
 */
import type { NormalizeStep } from './config.ts';

export type NormalizeOptions = Partial<Record<NormalizeStep, boolean>>;

/** U+200B–U+200D (zero-width space, non-joiner, joiner), U+2060 (word joiner), U+FEFF (BOM / ZWNBSP). */
const ZERO_WIDTH = /[\u200B-\u200D\u2060\uFEFF]/g;
const WHITESPACE = /\s+/gu;
const ASCII_WHITESPACE = /\s+/g;
const NON_ASCII = /[^\x00-\x7f]/;
const NEEDS_SPACING = /^\s|\s$|\s\s|[\t\n\v\f\r]/;

export function makeNormalizer(opts: NormalizeOptions = {}): (s: string) => string {
  const zeroWidth = opts.zeroWidth ?? true,
    nfkc = opts.nfkc ?? true,
    casefold = opts.casefold ?? true,
    whitespace = opts.whitespace ?? true;
  return (s) => {
    // ASCII text is already NFKC, has no zero-width characters, and folds by toLowerCase alone.
    if (!NON_ASCII.test(s)) {
      if (casefold) s = s.toLowerCase();
      // Most text is already single-spaced: test before rebuilding the string.
      if (whitespace && NEEDS_SPACING.test(s)) s = s.replace(ASCII_WHITESPACE, ' ').trim();
      return s;
    }
    if (zeroWidth) s = s.replace(ZERO_WIDTH, '');
    if (nfkc) s = s.normalize('NFKC');
    // Upper then lower approximates Unicode full case folding: ß → SS → ss, final ς → Σ → σ.
    if (casefold) s = s.toUpperCase().toLowerCase();
    if (whitespace) s = s.replace(WHITESPACE, ' ').trim();
    return s;
  };
}
