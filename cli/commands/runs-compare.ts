/**
 * `tempered runs --compare A B …`: the trials of a hyperparameter search side by side in the terminal, as the
 * dashboard's compare page shows them. What is compared and how the best is picked is src/eval/trials.ts, what is read
 * of each run's artifacts src/eval/trial-artifacts.ts (both shared with the page); here the runs are read from
 * Temporal and the comparison printed.
 */
import { getRunStatus } from '../../client/runs.ts';
import { compareTrialRuns } from '../../src/eval/trial-artifacts.ts';
import type { TrialComparison } from '../../src/eval/trials.ts';
import { CliError, type CliContext } from '../context.ts';
import { readNeedingKey } from './key-needed.ts';
import { duration, printable } from '../format.ts';

export type { TrialComparison };

const num = (x: number) => (Number.isInteger(x) ? String(x) : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e5 ? x.toFixed(4) : x.toPrecision(4));

/** The runs' statuses (reports fetched from a shared store where there is one) and artifacts, compared (src/eval/trials.ts). */
export async function compareTrials(ctx: CliContext, ids: string[]): Promise<TrialComparison> {
  const client = await ctx.client();
  const statuses = await Promise.all(
    ids.map((id) =>
      readNeedingKey(client, (c) => getRunStatus(c, id), {
        what: 'runs --compare',
        whose: `run ${id}`,
        because: "what is compared, its params and its stages' outputs, is in its encrypted payloads",
        hint: `\`tempered status ${id}\` shows how it went without the key`,
      }).catch((e: Error) => {
        if (e instanceof CliError) throw e;
        throw new CliError(/not found/i.test(e.message) ? `no run '${id}'; list runs with \`tempered runs\`` : e.message);
      }),
    ),
  );
  for (const st of statuses) await ctx.fetchReports(st);
  return compareTrialRuns(ctx.store(), statuses);
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

/** Under this many test rows, one row moves a per-row score by over 1 %: the table's best can be one answer. */
const FEW_ROWS = 100;

/**
 * How many test rows each evaluate stage's scores are over, and what one row is worth there: a trial chosen on a
 * difference smaller than that was chosen on one answer.
 */
function sampleSizeNotes(cmp: TrialComparison): string[] {
  return (cmp.evaluatedOn ?? []).map(({ metric, fewest, most }) => {
    const stage = metric.split('.')[0]!;
    const over = fewest === most ? `${fewest} test rows` : `${fewest}–${most} test rows`;
    return printable(
      fewest < FEW_ROWS
        ? `note: ${stage}'s scores are over ${over} (${metric}): one row is ${num(1 / fewest)} of a per-row score such as exact_match, so a smaller difference is a single answer; read the answers side by side below (evaluate's generation.samples sets how many rows) or evaluate more rows (maxRows)`
        : `${stage}'s scores are over ${over} (${metric})`,
    );
  });
}

/** A cell of the answers side by side: one line (a line break shown as ⏎), cut at `max` characters. */
function oneLine(x: string | undefined, max = 160): string {
  if (x === undefined) return '-';
  const flat = x.replace(/\r?\n/g, ' ⏎ ');
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * The evaluate report's sample rows, each run's answer under the prompt and reference (`=` where it matched exactly):
 * on a few test rows of free-form replies, what the scores' differences are made of.
 */
function answerLines(cmp: TrialComparison): string[] {
  const answers = cmp.answers ?? [];
  if (answers.length === 0) return [];
  const cell = (label: string, x: string | undefined) => `    ${label.padEnd(10)} ${oneLine(x)}`;
  // Several evaluate stages (an in-domain and an out-of-domain test set): each row says whose it is.
  const stages = new Set(answers.map((a) => a.stage)).size > 1;
  const lines = ['', `answers side by side (the evaluate report's ${answers.length} sample rows; = exact match):`];
  answers.forEach((a, i) => {
    lines.push(`[${i + 1}]${stages ? ` (${a.stage})` : ''} ${oneLine(a.prompt)}`, cell('reference', a.reference));
    if (a.baseline !== undefined) lines.push(cell('baseline', a.baseline));
    a.outputs.forEach((x, r) => lines.push(cell(`#${r + 1}${a.exact[r] ? ' =' : ''}`, x)));
  });
  return lines.map((l) => printable(l));
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
    "\n* best of the runs (higher for scores, lower for losses); val_*: the exported model's validation (early stopping's best step, else the last evaluation), as models show gives them; -: none (a stage taken from the cache has no time)",
  );
  if (cmp.params.length === 0) lines.push('note: the runs were submitted with the same parameters');
  lines.push(...sampleSizeNotes(cmp));
  const best = cmp.bestOnValidation;
  if (best) {
    const r = cmp.runs[best.run]!;
    const params = cmp.params.map((p) => `${p.name}=${String(p.values[best.run])}`).join(' ');
    lines.push(printable(`best on validation (${best.metric}): #${best.run + 1} ${r.runId}${params ? ` (${params})` : ''}`));
  } else
    lines.push(
      'no validation metrics to choose on: give the train stage a validation table and evalEvery; choosing on the test metrics makes them an optimistic estimate',
    );
  lines.push(...answerLines(cmp));
  return lines;
}
