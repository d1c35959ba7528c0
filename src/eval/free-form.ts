/**
 * Scores that need answer classes, and why they are absent for free-form answers. `balanced_exact_match` and
 * `answer_f1_macro` average over the distinct reference answers: on labels ("positive", "negative") that is balanced
 * accuracy and macro F1, which a constant answer cannot fake. When no reference answer repeats (free-form replies),
 * every row is its own class: balanced exact match is exact match again, and macro F1 nearly so, so they were reported
 * as two more rows that only repeated exact_match (0 for most free-form replies) and could be gated on as if they said
 * something more. generativeScores leaves them out then (the evaluate stage asks the whole test split whether answers
 * repeat, not the maxRows it evaluates: a label set's first rows may all differ); a gate that names one fails with the reason from here
 * instead of "unknown name", whether it reads the evaluation's metrics or a registered version's.
 */

/** The scores that exist only where answers repeat. */
export const CLASS_SCORES: readonly string[] = ['balanced_exact_match', 'answer_f1_macro'];

/** Whether `answers` distinct reference answers over `rows` rows are free-form: none repeats (and there is a row). */
export function isFreeForm(answers: number, rows: number): boolean {
  return rows > 0 && answers === rows;
}

/**
 * Why `name` is absent from `scores` (one model's metrics: the top level, `baseline`, `production`, …), or undefined
 * when it is not one of CLASS_SCORES absent for that reason.
 */
export function classScoreAbsence(scores: unknown, name: string): string | undefined {
  if (!CLASS_SCORES.includes(name) || scores === null || typeof scores !== 'object') return undefined;
  const s = scores as Record<string, unknown>;
  const answers = Object.hasOwn(s, 'reference_answers') ? s.reference_answers : undefined;
  const rows = Object.hasOwn(s, 'generated') ? s.generated : undefined;
  if (typeof answers !== 'number' || typeof rows !== 'number' || !isFreeForm(answers, rows) || Object.hasOwn(s, name)) return undefined;
  return (
    `not measured on free-form answers: the ${rows} reference answers are all different (reference_answers = generated = ${rows}), ` +
    `so there are no answer classes to average over and it would only repeat exact_match; ` +
    `gate on exact_match, rouge_l or chrf, or evaluate on a test set whose answers repeat (labels)`
  );
}
