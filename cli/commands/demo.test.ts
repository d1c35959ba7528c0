import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PlannedPipeline } from '../../src/spec/types.ts';
import { demoQuestion } from './demo.ts';

const plan = (ingest: Record<string, unknown>) =>
  ({ stages: [{ id: 'ingest', uses: 'ingest', with: ingest }] }) as unknown as PlannedPipeline;

test("the demo asks a served language model the pipeline's own question: its ingest promptTemplate around the example", () => {
  assert.equal(
    demoQuestion(plan({ promptTemplate: 'Is this SMS message spam or ham? Answer with one word.\n\n{text}' }), 'Lunch tomorrow?'),
    'Is this SMS message spam or ham? Answer with one word.\n\nLunch tomorrow?',
  );
  assert.equal(demoQuestion(plan({ promptTemplate: '{instruction}[[\n\n{input}]]' }), 'Hi'), 'Hi\n\nHi');
  // The template's own syntax: literal braces, and field names beyond letters and digits.
  assert.equal(
    demoQuestion(plan({ promptTemplate: 'Reply as JSON like {{"a": 1}}. {Review Text}' }), 'Hi'),
    'Reply as JSON like {"a": 1}. Hi',
  );
  // Without a template the example is the message.
  assert.equal(demoQuestion(plan({ path: 'x.jsonl' }), 'Hi'), 'Hi');
  assert.equal(demoQuestion(undefined, 'Hi'), 'Hi');
});
