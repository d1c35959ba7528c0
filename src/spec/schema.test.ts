import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import Ajv2020 from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { pipelineSchema, validatePipelineSchema } from './schema.ts';

test('the schema is valid draft 2020-12 and compiles in strict mode', () => {
  const ajv = new Ajv2020.default({ strict: true, allowUnionTypes: true });
  assert.equal(ajv.validateSchema(pipelineSchema), true, JSON.stringify(ajv.errors));
  assert.equal(pipelineSchema.$schema, 'https://json-schema.org/draft/2020-12/schema');
});

test('the example pipelines validate against the schema alone, as an editor would check them', () => {
  const validate = validatePipelineSchema();
  for (const name of ['basic.yaml', 'basic.json']) {
    const data = parse(readFileSync(new URL(`./fixtures/${name}`, import.meta.url), 'utf8'));
    assert.equal(validate(data), true, `${name}: ${JSON.stringify(validate.errors)}`);
  }
});

test('typos are caught everywhere a mapping has fixed fields', () => {
  const validate = validatePipelineSchema();
  const base = { name: 'p', stages: { a: { uses: 'ingest' } } };
  const typos: unknown[] = [
    { ...base, stagez: {} },
    { ...base, defaults: { timeuot: '1m' } },
    { ...base, params: { x: { type: 'string', defualt: 'a' } } },
    { ...base, stages: { a: { uses: 'ingest', neds: [] } } },
    { ...base, stages: { a: { uses: 'ingest', retry: { maxAttempts: 2 } } } },
  ];
  for (const t of typos) {
    assert.equal(validate(t), false, JSON.stringify(t));
    assert.equal(validate.errors![0]!.keyword, 'additionalProperties');
  }
  assert.equal(validate(base), true);
});
