/**
 * The `tempered schedule` flags, parsed and checked before anything reaches Temporal. Each parser
 * throws InputError naming the option and what to write.
 */
import { InputError } from '../src/errors.ts';
import { formatDuration, parseDuration } from '../src/spec/duration.ts';
import type { RunGateSpec } from '../workflows/types.ts';
import { OVERLAP_POLICIES, type OverlapName } from '../client/schedules.ts';

export function parseOverlap(text: string, where = '--overlap'): OverlapName {
  if (text in OVERLAP_POLICIES) return text as OverlapName;
  throw new InputError(`unknown overlap policy '${text}'`, { where, hint: `use one of ${Object.keys(OVERLAP_POLICIES).join(', ')}` });
}

/** A duration such as `30s`, `10m`, `1h30m`, `1d`. */
export function parseDurationOption(text: string, where: string, opts: { minMs?: number; wholeSeconds?: boolean } = {}): number {
  const ms = parseDuration(text.trim());
  if (ms === undefined) throw new InputError(`'${text}' is not a duration`, { where, hint: 'write it like 30s, 10m, 2h, 1h30m or 1d' });
  if (opts.minMs !== undefined && ms < opts.minMs)
    throw new InputError(`'${text}' is too short`, { where, hint: `use at least ${formatDuration(opts.minMs)}` });
  // Temporal rounds interval specs to whole seconds; refusing fractions keeps what runs equal to what was asked.
  if (opts.wholeSeconds && ms % 1000 !== 0)
    throw new InputError(`'${text}' is not a whole number of seconds`, {
      where,
      hint: 'Temporal schedules count in seconds, e.g. 2s or 90s',
    });
  return ms;
}

const CRON_SHORTHANDS = new Set(['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']);

/**
 * A first check of a cron expression: field count and characters. The server checks the values
 * (e.g. minute 61) on create; a problem there is reported the same way. Exactly 5 fields: Temporal
 * would also take 6 or 7, reading the first extra as seconds and the last as the year, so
 * "0 0 3 * * *" (meant as seconds-first daily) runs at 00:00 on the 3rd of each month.
 */
export function checkCron(text: string, where = '--cron'): string {
  const hint =
    'write 5 fields (minute hour day-of-month month day-of-week), e.g. "0 3 * * *" for 03:00 every day, or @daily/@hourly; use --every for intervals';
  const noZone = text.trim().replace(/^(CRON_TZ|TZ)=\S+\s+/, '');
  // Temporal takes everything from a '#' on as a comment, also inside a field: "1#2" (Quartz's second Monday) would
  // fire every Monday, and describe would still show "1#2".
  const nth = /(\S+)#\S*/.exec(noZone);
  if (nth)
    throw new InputError(
      `'${nth[0]}' asks for an nth weekday of the month, which Temporal's cron has not: it would read '${nth[1]}' alone`,
      {
        where,
        hint: 'Temporal matches day-of-month and day-of-week together (both must hold), so "0 3 8-14 * 1" is 03:00 on the second Monday; a comment goes after a space: "0 3 * * 1 # nightly"',
      },
    );
  const expr = noZone.replace(/\s*#.*$/, '');
  if (expr.startsWith('@every')) throw new InputError(`'${text}' is an interval`, { where, hint: 'use --every instead, e.g. --every 6h' });
  if (expr.startsWith('@')) {
    if (!CRON_SHORTHANDS.has(expr)) throw new InputError(`unknown cron shorthand '${expr}'`, { where, hint });
    return text.trim();
  }
  const fields = expr.split(/\s+/).filter(Boolean);
  if (fields.length !== 5)
    throw new InputError(
      `'${text}' has ${fields.length} field${fields.length === 1 ? '' : 's'}; a cron expression here has exactly 5${
        fields.length > 5 ? ' (no seconds or year field)' : ''
      }`,
      { where, hint },
    );
  const bad = fields.find((f) => !/^[0-9A-Za-z*/,?-]+$/.test(f));
  if (bad) throw new InputError(`'${bad}' is not a cron field`, { where, hint });
  // Quartz's '?', last (L) and nearest weekday (W): the server refuses them as out of range, which says nothing.
  const quartz = fields.find((f) => f.includes('?') || /^(?:\d*L|L-\d+|\d+W|LW)$/i.test(f));
  if (quartz)
    throw new InputError(`'${quartz}' is Quartz cron syntax (?, L, W), which Temporal's cron has not`, {
      where,
      hint: `use * for "any" and list days or ranges (e.g. "28-31" for the month's last days); ${hint}`,
    });
  return text.trim();
}

/** `--trigger-metric model[@alias]:metric:threshold`. */
export function parseMetricTrigger(text: string, where = '--trigger-metric'): NonNullable<RunGateSpec['metricBelow']> {
  const hint = 'write model:metric:threshold, e.g. spam-clf:f1:0.9 (or spam-clf@staging:f1:0.9 for another alias)';
  const parts = text.split(':');
  if (parts.length !== 3 || parts.some((p) => p.trim() === ''))
    throw new InputError(`'${text}' is not model:metric:threshold`, { where, hint });
  const [modelPart, metric, thr] = parts.map((p) => p.trim()) as [string, string, string];
  const threshold = Number(thr);
  if (!Number.isFinite(threshold)) throw new InputError(`threshold '${thr}' is not a number`, { where, hint });
  const [model, alias, ...rest] = modelPart.split('@');
  if (rest.length > 0 || !model || alias === '') throw new InputError(`'${modelPart}' is not model or model@alias`, { where, hint });
  return alias ? { model, alias, metric, threshold } : { model, metric, threshold };
}

/** `--trigger-drift <threshold>`: a Jensen-Shannon distance between 0 and 1. */
export function parseDriftTrigger(text: string, where = '--trigger-drift'): NonNullable<RunGateSpec['labelDrift']> {
  const threshold = Number(text);
  if (text.trim() === '' || !Number.isFinite(threshold) || threshold < 0 || threshold >= 1) {
    throw new InputError(`'${text}' is not a distance threshold`, {
      where,
      hint: 'give a number in [0, 1), e.g. 0.1; Jensen-Shannon distance is 0 for equal label distributions and 1 for disjoint ones',
    });
  }
  return { distance: 'jensen-shannon', threshold };
}

export function parseInstant(text: string, where: string): Date {
  const d = /^\d{4}-\d{2}-\d{2}/.test(text) ? new Date(text) : new Date(NaN);
  if (Number.isNaN(d.getTime()))
    throw new InputError(`'${text}' is not an ISO time`, { where, hint: 'write e.g. 2026-01-01T00:00:00Z or 2026-01-01' });
  return d;
}

/** A schedule id is also the prefix of its runs' workflow ids, so keep it to safe characters. */
export function checkScheduleName(name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(name)) {
    throw new InputError(`'${name}' is not a valid schedule name`, {
      where: 'schedule name',
      hint: 'use letters, digits, ., _ and -, starting with a letter or digit (at most 100 characters)',
    });
  }
  return name;
}
