/**
 * The trials of a hyperparameter search side by side (`tempered runs --compare`): the parameters that differ, the
 * validation metrics of each train stage's exported model (what `register` records as its version's val_*), every numeric output (test metrics,
 * final loss, the version registered), the evaluate stage's other scores (from its metrics document) and where the
 * time went, with the best value of each metric marked and the best run on validation named. Picking on the test
 * split's metrics makes them an optimistic estimate of the winner, so the choice is offered on validation.
 *
 * Pure: the caller reads the runs' statuses and the artifacts named here (TrialArtifacts) from wherever they are kept.
 */
import { jsonDiff } from '../util/json-diff.ts';

/** The validation columns a train stage's history holds (NaN at steps without validation). */
export const VALIDATION_COLUMNS = ['val_f1_macro', 'val_accuracy', 'val_loss'] as const;

/**
 * An exported model's validation scores (its tempered-model.json's `training.validation`: `{ step, loss, accuracy,
 * f1_macro }`) under the history's column names, as `register` records them; none where the folder has none.
 */
export function validationScores(validation: unknown): Record<string, number> {
  if (!validation || typeof validation !== 'object') return {};
  return Object.fromEntries(
    VALIDATION_COLUMNS.flatMap((col) => {
      const x = (validation as Record<string, unknown>)[col.slice('val_'.length)];
      return typeof x === 'number' ? [[col, x]] : [];
    }),
  );
}

/** What of a run's status the comparison reads (a RunStatus has it). */
export interface TrialRun {
  runId: string;
  state: string;
  /** As they may be shown: the caller hides secret-named ones. */
  params: Record<string, unknown>;
  startedAt?: string;
  endedAt?: string;
  stages: { id: string; uses: string; state: string; startedAt?: string; endedAt?: string; outputs?: Record<string, unknown> }[];
}

/**
 * A run's stored artifacts the comparison reads, by stage id: each train stage's history columns (`outputs.history`)
 * and each evaluate stage's metrics document (`outputs.metrics`). A stage left out is one whose artifact could not be
 * read here (not fetched from a shared store): its rows stay empty.
 */
export interface TrialArtifacts {
  histories: Record<string, Record<string, ArrayLike<number> | undefined>>;
  metricsDocs: Record<string, Record<string, unknown>>;
  /**
   * Each train stage's exported model's `training` (its tempered-model.json): `bestStep` where early stopping exported
   * that step's weights, `validation` their scores (folders exported before 7 Dec 2026 have none).
   */
  exported?: Record<string, { bestStep?: unknown; validation?: unknown }>;
  /** Each evaluate stage's report's `samples` (a causal LM's generated answers beside the reference and the baseline's). */
  samples?: Record<string, unknown[]>;
}

/** One test row's generated answers, each run's in the order given (undefined: that run's report has no such row). */
export interface AnswersSideBySide {
  stage: string;
  prompt: string;
  reference: string;
  /** The baseline's answer (the same model in every trial of a pipeline), from the first run that has one. */
  baseline?: string;
  outputs: (string | undefined)[];
  exact: (boolean | undefined)[];
}

export interface TrialComparison {
  runs: { runId: string; state: string; params: Record<string, unknown> }[];
  /** Parameters whose values differ between the runs, by name. */
  params: { name: string; values: unknown[] }[];
  /**
   * Metrics and times, in stage order; `best` is the index of the best run where the metric has a direction. Counts
   * the same in every run (rows ingested, steps) are left out, but for the test rows scores are over (isSampleSize).
   */
  rows: { name: string; values: (number | undefined)[]; best?: number }[];
  /** Boolean outputs (deploy's `promoted`) that any run has. */
  flags: { name: string; values: (boolean | undefined)[] }[];
  /** The run with the best exported model's validation metric (F1, else accuracy, else loss), where any run has one. */
  bestOnValidation?: { metric: string; run: number };
  /**
   * How many test rows each evaluate stage's scores are over (PER_ROW_COUNTS), fewest and most of the runs,
   * so the terminal and the dashboard can say what one row is worth: a difference under 1/fewest is a single answer.
   */
  evaluatedOn: { metric: string; fewest: number; most: number }[];
  /**
   * The evaluate stages' sample rows, each runs' answers side by side, matched by prompt (trials of one split answer
   * the same test rows): the scores say which run is ahead, these say at what. Empty where no report has samples.
   */
  answers: AnswersSideBySide[];
}

const text = (x: unknown) => (typeof x === 'string' ? x : undefined);

/**
 * The runs' sample rows matched by stage and prompt, in the order the first run holding each shows it. A prompt the
 * test table holds twice (an instruction set's "Write a poem." with two references) is matched occurrence by
 * occurrence: keyed by prompt alone, a run's second row overwrote its first and the first's reference stayed.
 */
function answersSideBySide(samples: (Record<string, unknown[]> | undefined)[]): AnswersSideBySide[] {
  const rows = new Map<string, AnswersSideBySide>();
  samples.forEach((byStage, run) => {
    const seen = new Map<string, number>();
    for (const [stage, list] of Object.entries(byStage ?? {}))
      for (const raw of list) {
        if (!raw || typeof raw !== 'object') continue;
        const r = raw as Record<string, unknown>;
        const prompt = text(r.prompt);
        if (prompt === undefined) continue;
        const occurrence = JSON.stringify([stage, prompt]);
        const nth = seen.get(occurrence) ?? 0;
        seen.set(occurrence, nth + 1);
        const key = JSON.stringify([stage, prompt, nth]);
        let row = rows.get(key);
        if (!row) {
          row = {
            stage,
            prompt,
            reference: text(r.reference) ?? '',
            outputs: samples.map(() => undefined),
            exact: samples.map(() => undefined),
          };
          rows.set(key, row);
        }
        row.baseline ??= text(r.baseline);
        row.outputs[run] = text(r.output);
        row.exact[run] = typeof r.exact === 'boolean' ? r.exact : undefined;
      }
  });
  return [...rows.values()];
}

/**
 * How many test rows a stage's scores are over: a classifier's `n`, a causal LM's `scored_rows` (its loss) and
 * `generated` (its answers). Shown even when every run has the same, unlike other counts: a difference between two
 * runs' exact_match reads otherwise on 8 rows than on 800 (one row is 1/8 of it).
 */
export function isSampleSize(name: string): boolean {
  return /^[^.]+\.(n|scored_rows|generated)$/.test(name);
}

/**
 * The count a stage's per-row scores are over, first found first: a causal LM's exact_match is over the rows it
 * `generated` answers for, all of them, while its `scored_rows` (the loss's) leave out a row whose reply does not fit
 * maxLength, so one row's worth was overstated where the loss left rows out; a classifier's `n`.
 */
const PER_ROW_COUNTS = ['generated', 'n', 'scored_rows'];

/** Higher is better, lower is better, or neither (counts, versions, times are not ranked). */
export function metricDirection(name: string): 1 | -1 | 0 {
  const metric = name.split('.').at(-1)!;
  if (name.startsWith('time.') || /^(n|rows|steps|version)$/.test(metric)) return 0;
  if (/loss|perplexity/i.test(metric)) return -1;
  if (/f1|accuracy|exact_match|rouge|chrf|precision|recall/.test(metric)) return 1;
  // tokens, scored_rows, generated: counts.
  return 0;
}

/**
 * The validation scores of the model a train stage exported, what `register` records as its version's val_*: its
 * manifest's, else (a folder exported before manifests kept them) the history's row of early stopping's best step, else
 * each column's last evaluation. An early-stopped run's last evaluation is of weights it did not export.
 */
function exportedValidation(
  stage: string,
  columns: TrialArtifacts['histories'][string] | undefined,
  exported: { bestStep?: unknown; validation?: unknown } | undefined,
): Record<string, number> {
  const prefixed = (scores: Record<string, number>) => Object.fromEntries(Object.entries(scores).map(([k, x]) => [`${stage}.${k}`, x]));
  const recorded = validationScores(exported?.validation);
  if (Object.keys(recorded).length > 0) return prefixed(recorded);
  const at = typeof exported?.bestStep === 'number' && columns?.step ? Array.from(columns.step).indexOf(exported.bestStep) : -1;
  const out: Record<string, number> = {};
  for (const col of VALIDATION_COLUMNS) {
    const all = Array.from(columns?.[col] ?? []);
    const values = (at >= 0 ? all.slice(at, at + 1) : all).filter((x) => !Number.isNaN(x));
    if (values.length > 0) out[col] = values.at(-1)!;
  }
  return prefixed(out);
}

/**
 * The top-level scores of an evaluate stage's metrics document: a causal LM's exact_match, balanced_exact_match, chrf
 * and the like are there only (its outputs are loss and perplexity), as are a classifier's micro and weighted scores.
 * The baseline's and production's (nested) are left out: the same in every trial of a sweep, or another model's.
 */
function evaluateScores(doc: Record<string, unknown> | undefined): Record<string, number> {
  return Object.fromEntries(Object.entries(doc ?? {}).filter((e): e is [string, number] => typeof e[1] === 'number'));
}

const seconds = (from?: string, to?: string) => (from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : undefined);

interface TrialNumbers {
  metrics: Record<string, number>;
  flags: Record<string, boolean>;
  times: Record<string, number>;
}

/** A run's numbers: the exported model's validation, numeric outputs, seconds per stage run (not cached) and in all. */
function trialNumbers(run: TrialRun, artifacts: TrialArtifacts): TrialNumbers {
  const metrics: Record<string, number> = {};
  const flags: Record<string, boolean> = {};
  const times: Record<string, number> = {};
  for (const s of run.stages) {
    if (s.uses === 'train') Object.assign(metrics, exportedValidation(s.id, artifacts.histories[s.id], artifacts.exported?.[s.id]));
    for (const [k, x] of Object.entries(s.outputs ?? {})) {
      if (typeof x === 'number') metrics[`${s.id}.${k}`] = x;
      // deploy's promoted: which trial moved the alias.
      else if (typeof x === 'boolean') flags[`${s.id}.${k}`] = x;
    }
    if (s.uses === 'evaluate')
      for (const [k, x] of Object.entries(evaluateScores(artifacts.metricsDocs[s.id]))) metrics[`${s.id}.${k}`] ??= x;
    const sec = s.state === 'succeeded' ? seconds(s.startedAt, s.endedAt) : undefined;
    if (sec !== undefined) times[`time.${s.id}`] = sec;
  }
  const all = seconds(run.startedAt, run.endedAt);
  if (all !== undefined) times['time.run'] = all;
  return { metrics, flags, times };
}

/** The runs side by side, in the order given (`run` indexes in the result are into it). */
export function compareTrials(trials: { run: TrialRun; artifacts: TrialArtifacts }[]): TrialComparison {
  const numbers = trials.map((t) => trialNumbers(t.run, t.artifacts));
  const names = (pick: (n: TrialNumbers) => Record<string, number>) => [...new Set(numbers.flatMap((n) => Object.keys(pick(n))))];
  const validation = names((n) => n.metrics).filter((k) => VALIDATION_COLUMNS.some((v) => k.endsWith(`.${v}`)));
  const others = names((n) => n.metrics).filter((k) => !validation.includes(k));
  const rows = [...validation, ...others, ...names((n) => n.times)].flatMap((name) => {
    const values = numbers.map((n) => n.metrics[name] ?? n.times[name]);
    const dir = metricDirection(name);
    if (dir === 0 && !name.startsWith('time.') && !isSampleSize(name) && new Set(values).size === 1) return [];
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
  const pick = VALIDATION_COLUMNS.map((v) => rows.find((r) => r.name.endsWith(`.${v}`) && r.best !== undefined)).find(Boolean);
  const evaluatedOn = [...new Set(rows.filter((r) => isSampleSize(r.name)).map((r) => r.name.split('.')[0]!))].flatMap((stage) => {
    for (const count of PER_ROW_COUNTS) {
      const counts = (rows.find((r) => r.name === `${stage}.${count}`)?.values ?? []).filter((x): x is number => x !== undefined && x > 0);
      if (counts.length > 0) return [{ metric: `${stage}.${count}`, fewest: Math.min(...counts), most: Math.max(...counts) }];
    }
    return [];
  });
  return {
    runs: trials.map(({ run }) => ({ runId: run.runId, state: run.state, params: run.params })),
    evaluatedOn,
    answers: answersSideBySide(trials.map((t) => t.artifacts.samples)),
    params: jsonDiff(trials.map(({ run }) => run.params)).map((d) => ({ name: d.path, values: d.values })),
    rows,
    flags,
    ...(pick ? { bestOnValidation: { metric: pick.name, run: pick.best! } } : {}),
  };
}
