/** Checks of each stage's kind, needs, durations and retry policy, and of the DAG's cycles. */
import { type CheckContext, report } from './context.ts';
import { parseDuration, formatDuration } from './duration.ts';
import { findCycles } from './graph.ts';
import { closest, nameList } from './suggest.ts';
import type { Segment } from './paths.ts';

export function checkKinds(ctx: CheckContext): void {
  const available = [...ctx.kinds.keys()];
  for (const [id, stage] of ctx.stages) {
    const uses = stage.uses;
    if (typeof uses !== 'string' || uses === '' || ctx.kinds.has(uses)) continue;
    const seg = ['stages', id, 'uses'];
    if (ctx.unavailable.has(uses)) {
      report(ctx, seg, {
        code: 'kind-unavailable',
        message: `stage kind '${uses}' is not available in this version`,
        hint: `available kinds: ${nameList(available)}`,
      });
    } else {
      const guess = closest(uses, available);
      report(ctx, seg, {
        code: 'unknown-kind',
        message: `unknown stage kind '${uses}'`,
        hint: `${guess ? `did you mean '${guess}'? ` : ''}available: ${nameList(available)}; ${pluginsNote()}`,
      });
    }
  }
}

/**
 * Where custom kinds come from, and which modules this process loaded them from: the kinds the validator
 * knows are the built-in ones and those of TEMPERED_PLUGINS (src/stages/stage-kinds.ts), read from this
 * process's environment.
 */
export function pluginsNote(env: Record<string, string | undefined> = globalThis.process?.env ?? {}): string {
  const modules = (env.TEMPERED_PLUGINS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const loaded = modules.length > 0 ? `loaded here: ${modules.join(', ')}` : 'not set here, so only built-in kinds are known';
  return `custom stage kinds load from the modules named in TEMPERED_PLUGINS (comma-separated, each exporting stageKinds()), on this machine and on every worker (${loaded})`;
}

export function checkNeeds(ctx: CheckContext): void {
  const ids = [...ctx.graph.ids];
  for (const [id, stage] of ctx.stages) {
    const needs = stage.needs;
    const entries: Array<[Segment[], unknown]> =
      typeof needs === 'string'
        ? [[['stages', id, 'needs'], needs]]
        : Array.isArray(needs)
          ? needs.map((n, i) => [['stages', id, 'needs', i], n])
          : [];
    for (const [seg, need] of entries) {
      if (typeof need !== 'string') continue;
      if (need === id) {
        report(ctx, seg, { code: 'self-need', message: `stage '${id}' cannot need itself`, hint: `remove '${id}' from its needs` });
      } else if (!ctx.graph.needs.has(need)) {
        const others = ids.filter((s) => s !== id);
        const guess = closest(need, others);
        report(ctx, seg, {
          code: 'unknown-need',
          message: `unknown stage '${need}'`,
          hint: `${guess ? `did you mean '${guess}'? ` : ''}stages are: ${nameList(others)}`,
        });
      }
    }
  }
}

export function checkCycles(ctx: CheckContext): void {
  for (const cycle of findCycles(ctx.graph)) {
    const first = cycle[0]!;
    const closing = cycle[cycle.length - 1]!;
    const needs = ctx.stages.get(first)?.needs;
    const seg: Segment[] = Array.isArray(needs) ? ['stages', first, 'needs', needs.indexOf(closing)] : ['stages', first, 'needs'];
    report(ctx, seg, {
      code: 'cycle',
      message: `cycle: ${[...cycle, first].join(' → ')}`,
      hint: `each stage needs the one before it, so none can start; remove one of these needs, e.g. '${closing}' from stages.${first}.needs`,
    });
  }
}

const DURATION_FIELDS = ['timeout', 'heartbeatTimeout'] as const;

/** Durations must be positive and a retry's maximumInterval must not be below its initialInterval. */
export function checkDurations(ctx: CheckContext): void {
  const data = ctx.parsed.data as Record<string, unknown>;
  const defaults = isObject(data.defaults) ? data.defaults : {};
  const blocks: Array<[Segment[], Record<string, unknown>]> = [[['defaults'], defaults]];
  for (const [id, stage] of ctx.stages) blocks.push([['stages', id], stage]);
  const defaultRetry = isObject(defaults.retry) ? defaults.retry : {};
  for (const [base, block] of blocks) {
    for (const f of DURATION_FIELDS) positive(ctx, [...base, f], block[f]);
    const retry = isObject(block.retry) ? block.retry : undefined;
    if (!retry) continue;
    positive(ctx, [...base, 'retry', 'initialInterval'], retry.initialInterval);
    positive(ctx, [...base, 'retry', 'maximumInterval'], retry.maximumInterval);
    // A stage's retry overrides defaults field by field, so compare the merged intervals.
    const merged = base[0] === 'stages' ? { ...defaultRetry, ...retry } : retry;
    const initial = typeof merged.initialInterval === 'string' ? parseDuration(merged.initialInterval) : undefined;
    const maximum = typeof merged.maximumInterval === 'string' ? parseDuration(merged.maximumInterval) : undefined;
    if (
      initial !== undefined &&
      maximum !== undefined &&
      maximum < initial &&
      (retry.initialInterval !== undefined || retry.maximumInterval !== undefined)
    ) {
      const field = retry.maximumInterval !== undefined ? 'maximumInterval' : 'initialInterval';
      report(ctx, [...base, 'retry', field], {
        code: 'bad-retry',
        message: `maximumInterval (${formatDuration(maximum)}) must not be shorter than initialInterval (${formatDuration(initial)})`,
        hint: 'raise maximumInterval or lower initialInterval',
      });
    }
  }
}

function positive(ctx: CheckContext, seg: Segment[], v: unknown): void {
  if (typeof v !== 'string') return;
  if (parseDuration(v) === 0)
    report(ctx, seg, { code: 'bad-duration', message: `must be longer than zero, got '${v}'`, hint: 'e.g. 30s, 10m or 1h30m' });
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
