/**
 * `tempered runs --compare A B …`: the trials of a hyperparameter search side by side in the terminal, as the
 * dashboard's compare page shows them: the parameters that differ, the validation metrics at the end of training
 * (from each train stage's history), every numeric output (test metrics, final loss, the version registered), the
 * evaluate stage's other scores (from its metrics document) and where the time went, with the best value of each
 * metric marked and the best run on validation named. Picking on the test split's metrics makes them an optimistic
 * estimate of the winner, so the choice is offered on validation.
 */
import { readFileSync } from 'node:fs';
import { tableFromIPC } from 'apache-arrow';
import { getRunStatus } from '../../client/runs.ts';
import type { ArtifactStore } from '../../src/store/artifact-store.ts';
import { isArtifactRef } from '../../src/types.ts';
import { jsonDiff } from '../../src/util/json-diff.ts';
import type { RunStatus } from '../../workflows/types.ts';
import { CliError, type CliContext } from '../context.ts';
import { duration, printable, shownParams } from '../format.ts';

/** The validation columns a train stage's history holds (NaN at steps without validation). */
const VALIDATION = ['val_f1_macro', 'val_accuracy', 'val_loss'] as const;

/** Higher is better, lower is better, or neither (counts, versions, times are not ranked). */
function direction(name: string): 1 | -1 | 0 {
  const metric = name.split('.').at(-1)!;
  if (name.startsWith('time.') || /^(n|rows|steps|version)$/.test(metric)) return 0;
  if (/loss|perplexity/i.test(metric)) return -1;
  if (/f1|accuracy|exact_match|rouge|chrf|precision|recall/.test(metric)) return 1;
  // tokens, scored_rows, generated: counts.
  return 0;
}

/** Each validation metric's last value in a train stage's history: the model the stage exported. */
async function finalValidation(store: ArtifactStore, st: RunStatus['stages'][number]): Promise<Record<string, number>> {
  const ref = st.outputs?.history;
  if (!isArtifactRef(ref)) return {};
  const table = tableFromIPC(readFileSync(await store.localPath(ref.uri)));
  const out: Record<string, number> = {};
  for (const col of VALIDATION) {
    const values = Array.from((table.getChild(col)?.toArray() ?? []) as ArrayLike<number>).filter((x) => !Number.isNaN(x));
    if (values.length > 0) out[`${st.id}.${col}`] = values.at(-1)!;
  }
  return out;
}

/**
 * The top-level scores of an evaluate stage's metrics document: a causal LM's exact_match, balanced_exact_match, chrf
 * and the like are there only (its outputs are loss and perplexity), as are a classifier's micro and weighted scores.
 * The baseline's and production's (nested) are left out: the same in every trial of a sweep, or another model's.
 */
async function evaluateMetrics(store: ArtifactStore, st: RunStatus['stages'][number]): Promise<Record<string, number>> {
  const ref = st.outputs?.metrics;
  if (!isArtifactRef(ref)) return {};
  const doc = JSON.parse(readFileSync(await store.localPath(ref.uri), 'utf8')) as Record<string, unknown>;
  return Object.fromEntries(Object.entries(doc).filter((e): e is [string, number] => typeof e[1] === 'number'));
}

const seconds = (from?: string, to?: string) => (from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : undefined);

/** A run's numbers: validation at the end of training, numeric outputs, seconds per stage run (not cached) and in all. */
async function runNumbers(
  store: ArtifactStore,
  st: RunStatus,
): Promise<{ metrics: Record<string, number>; flags: Record<string, boolean>; times: Record<string, number> }> {
  const metrics: Record<string, number> = {};
  const flags: Record<string, boolean> = {};
  const times: Record<string, number> = {};
  for (const s of st.stages) {
    // A history this host cannot read (not fetched from a shared store) leaves the validation rows empty, not the command failed.
    if (s.uses === 'train') Object.assign(metrics, await finalValidation(store, s).catch(() => ({})));
    for (const [k, x] of Object.entries(s.outputs ?? {})) {
      if (typeof x === 'number') metrics[`${s.id}.${k}`] = x;
      // deploy's promoted: which trial moved the alias.
      else if (typeof x === 'boolean') flags[`${s.id}.${k}`] = x;
    }
    if (s.uses === 'evaluate')
      for (const [k, x] of Object.entries(await evaluateMetrics(store, s).catch(() => ({})))) metrics[`${s.id}.${k}`] ??= x;
    const sec = s.state === 'succeeded' ? seconds(s.startedAt, s.endedAt) : undefined;
    if (sec !== undefined) times[`time.${s.id}`] = sec;
  }
  const all = seconds(st.startedAt, st.endedAt);
  if (all !== undefined) times['time.run'] = all;
  return { metrics, flags, times };
}

const num = (x: number) => (Number.isInteger(x) ? String(x) : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e5 ? x.toFixed(4) : x.toPrecision(4));

export interface TrialComparison {
  runs: { runId: string; state: string; params: Record<string, unknown> }[];
  /** Parameters whose values differ between the runs, by name. */
  params: { name: string; values: unknown[] }[];
  /**
   * Metrics and times, in stage order; `best` is the index of the best run where the metric has a direction. Counts
   * the same in every run (rows ingested, steps) are left out.
   */
  rows: { name: string; values: (number | undefined)[]; best?: number }[];
  /** Boolean outputs (deploy's `promoted`) that any run has. */
  flags: { name: string; values: (boolean | undefined)[] }[];
  /** The run with the best final validation metric (F1, else accuracy, else loss), where any run has one. */
  bestOnValidation?: { metric: string; run: number };
}

export async function compareTrials(ctx: CliContext, ids: string[]): Promise<TrialComparison> {
  const client = await ctx.client();
  const statuses = await Promise.all(
    ids.map((id) =>
      getRunStatus(client, id).catch((e: Error) => {
        throw new CliError(/not found/i.test(e.message) ? `no run '${id}'; list runs with \`tempered runs\`` : e.message);
      }),
    ),
  );
  for (const st of statuses) await ctx.fetchReports(st);
  const numbers = await Promise.all(statuses.map((st) => runNumbers(ctx.store(), st)));
  const names = (pick: (n: (typeof numbers)[number]) => Record<string, number>) => [
    ...new Set(numbers.flatMap((n) => Object.keys(pick(n)))),
  ];
  const validation = names((n) => n.metrics).filter((k) => VALIDATION.some((v) => k.endsWith(`.${v}`)));
  const others = names((n) => n.metrics).filter((k) => !validation.includes(k));
  const rows = [...validation, ...others, ...names((n) => n.times)].flatMap((name) => {
    const values = numbers.map((n) => n.metrics[name] ?? n.times[name]);
    const dir = direction(name);
    if (dir === 0 && !name.startsWith('time.') && new Set(values).size === 1) return [];
    const ranked = values.flatMap((x, i) => (x === undefined ? [] : [{ x, i }]));
    const top = dir === 0 || ranked.length < 2 ? undefined : ranked.reduce((a, b) => (dir * (b.x - a.x) > 0 ? b : a));
    // A tie has no best: marking the first of equals would read as a winner.
    const best = top && ranked.filter((r) => r.x === top.x).length === 1 ? top.i : undefined;
    return [{ name, values, ...(best !== undefined ? { best } : {}) }];
  });
  const flags = [...new Set(numbers.flatMap((n) => Object.keys(n.flags)))].map((name) => ({
    name,
    values: numbers.map((n) => n.flags[name]),
  }));
  const pick = VALIDATION.map((v) => rows.find((r) => r.name.endsWith(`.${v}`) && r.best !== undefined)).find(Boolean);
  return {
    runs: statuses.map((st) => ({ runId: st.runId, state: st.state, params: shownParams(st.params) })),
    params: jsonDiff(statuses.map((st) => shownParams(st.params))).map((d) => ({ name: d.path, values: d.values })),
    rows,
    flags,
    ...(pick ? { bestOnValidation: { metric: pick.name, run: pick.best! } } : {}),
  };
}

export async function compareTrialsCmd(ctx: CliContext, ids: string[], json: boolean): Promise<number> {
  if (ids.length < 2) throw new CliError('runs --compare takes two or more run ids: tempered runs --compare RUN RUN [RUN …]', 2);
  const cmp = await compareTrials(ctx, ids);
  if (json) {
    console.log(JSON.stringify(cmp, null, 2));
    return 0;
  }
  console.log(comparisonLines(cmp).join('\n'));
  return 0;
}

/**
 * The comparison as the terminal shows it: each run, the table (params that differ, metrics and times, the best
 * marked), and the run to choose. Every cell is escaped before the columns are measured: a parameter's value is
 * whoever submitted it's, and a metric name can hold a class label from the data (per_class.<label>.f1).
 */
export function comparisonLines(cmp: TrialComparison): string[] {
  const lines = cmp.runs.map((r, i) => printable(`#${i + 1}  ${r.runId}  ${r.state}`));
  const table: string[][] = [
    ['', ...cmp.runs.map((_, i) => `#${i + 1}`)],
    ...cmp.params.map((p) => [`params.${p.name}`, ...p.values.map((v) => (v === undefined ? '-' : String(v)))]),
    ...cmp.rows.map((r) => [
      r.name,
      ...r.values.map((x, i) => (x === undefined ? '-' : `${r.best === i ? '*' : ''}${r.name.startsWith('time.') ? duration(x) : num(x)}`)),
    ]),
    ...cmp.flags.map((f) => [f.name, ...f.values.map((x) => (x === undefined ? '-' : x ? 'yes' : 'no'))]),
  ].map((row) => row.map(printable));
  const widths = table[0]!.map((_, c) => Math.max(...table.map((row) => row[c]!.length)));
  lines.push('');
  for (const row of table) lines.push(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
  lines.push(
    '\n* best of the runs (higher for scores, lower for losses); val_*: the last validation of training; -: none (a stage taken from the cache has no time)',
  );
  if (cmp.params.length === 0) lines.push('note: the runs were submitted with the same parameters');
  const best = cmp.bestOnValidation;
  if (best) {
    const r = cmp.runs[best.run]!;
    const params = cmp.params.map((p) => `${p.name}=${String(p.values[best.run])}`).join(' ');
    lines.push(printable(`best on validation (${best.metric}): #${best.run + 1} ${r.runId}${params ? ` (${params})` : ''}`));
  } else
    lines.push(
      'no validation metrics to choose on: give the train stage a validation table and evalEvery; choosing on the test metrics makes them an optimistic estimate',
    );
  return lines;
}
