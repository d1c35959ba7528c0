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

test("instruct.yaml's gate: a run scored on a few rows may promote a first version but never replace production", () => {
  const metrics = (generated: number, production?: number) => ({
    exact_match: 0.7,
    balanced_exact_match: 0.7,
    generated,
    baseline: { exact_match: 0.3 },
    ...(production === undefined ? {} : { production: { exact_match: production, version: '3' } }),
  });
  assert.equal(evaluateGate(gate, metrics(10)).passed, true, 'no production yet');
  assert.equal(evaluateGate(gate, metrics(10, 0.7)).passed, false, 'a tie on 10 rows');
  assert.equal(evaluateGate(gate, metrics(100, 0.71)).passed, true, 'within 0.02 on 100 rows');
  assert.equal(evaluateGate(gate, metrics(100, 0.75)).passed, false, 'worse by more than 0.02');
});
