/** The promotion gate pipelines/instruct.yaml ships, judged on the metrics its evaluate stage reports. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { evaluateGate } from '../eval/gates.ts';

const spec = parse(readFileSync(fileURLToPath(new URL('../../pipelines/instruct.yaml', import.meta.url)), 'utf8')) as {
  stages: { deploy: { with: { gate: string } } };
};
const gate = spec.stages.deploy.with.gate;

/**
 * What evaluate reports: the candidate over its test rows, and production (with the candidate again, `candidate`)
 * over the test rows production was not trained on.
 */
const metrics = (
  o: { rows?: number; production?: number; candidate?: number; own?: number; contaminated?: number; decontaminated?: boolean } = {},
) => ({
  exact_match: o.own ?? 0.7,
  balanced_exact_match: 0.7,
  generated: 100,
  baseline: { exact_match: 0.3 },
  ...(o.production === undefined
    ? {}
    : {
        production: {
          exact_match: o.production,
          version: 'sst2@3',
          rows: o.rows ?? 100,
          contaminated_rows: o.contaminated ?? 0,
          decontaminated: o.decontaminated ?? true,
          candidate: { exact_match: o.candidate ?? o.own ?? 0.7 },
        },
      }),
});

test("instruct.yaml's gate: a run compared on a few rows may promote a first version but never replace production", () => {
  assert.equal(evaluateGate(gate, { ...metrics(), generated: 10 }).passed, true, 'no production yet');
  assert.equal(evaluateGate(gate, metrics({ rows: 10, production: 0.7 })).passed, false, 'a tie on 10 rows');
  assert.equal(evaluateGate(gate, metrics({ rows: 100, production: 0.71 })).passed, true, 'within 0.02 on 100 rows');
  assert.equal(evaluateGate(gate, metrics({ rows: 100, production: 0.75 })).passed, false, 'worse by more than 0.02');
});

test("instruct.yaml's gate compares both models on the rows production was not trained on", () => {
  // A retrain: 80 of the first 180 test rows were production's training rows. On the 100 others production scores
  // 0.6 and the candidate 0.7; the candidate's 0.68 over its own test rows is not what the comparison reads.
  const retrain = { rows: 100, contaminated: 80, production: 0.6, candidate: 0.7, own: 0.68 };
  assert.equal(evaluateGate(gate, metrics(retrain)).passed, true, 'better on the same rows');
  assert.equal(
    evaluateGate(gate, metrics({ ...retrain, candidate: 0.55 })).passed,
    false,
    'worse on the same rows, whatever its own score',
  );
  // Every test row had been production's: 100 rows are required, and the scores (absent) are not read.
  const none = { ...metrics(), production: { version: 'sst2@3', rows: 0, contaminated_rows: 120, decontaminated: true } };
  const res = evaluateGate(gate, none);
  assert.equal(res.passed, false);
  assert.match(res.explanation, /production\.rows 0 >= 100/);
  // Production's training data could not be read: it was scored on all rows (its score can only be inflated), and
  // the comparison still stands on them.
  assert.equal(evaluateGate(gate, metrics({ rows: 100, production: 0.71, decontaminated: false })).passed, true);
});
