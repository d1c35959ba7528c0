// ingest's labelMap as `tempered validate` and the stage cache see it: a target that is not a declared label is refused
// at validate time, at its key's line; the cache key changes when labelMap is set and only then.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadSpecText } from '../spec/load.ts';
import { ingestStage } from '../stages/ingest.ts';
import { ingestWithSchema } from './schemas.ts';
import { kindRegistry, loadStageKinds } from '../stages/stage-kinds.ts';
import { cacheKey } from '../store/stage-cache.ts';

const pipelines = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'pipelines');
const file = join(pipelines, 'sms-spam.yaml');
const demo = readFileSync(file, 'utf8');
const withMap = (map: string) => demo.replace('      labels: [ham, spam]\n', `      labels: [ham, spam]\n      labelMap: ${map}\n`);

test('validate: a labelMap target not among labels is an error at that key; one that is, is valid', async () => {
  const registry = kindRegistry(await loadStageKinds());
  const load = (text: string) => loadSpecText(text, file, { ...registry, baseDir: pipelines });
  assert.notEqual(withMap('{}'), demo, 'the demo pipeline still declares labels: [ham, spam]');
  assert.equal(load(withMap('{"Ham": ham, "ham ": ham, "0": ham, "1": spam}')).ok, true);
  const text = withMap('{"Ham": ham, "0": Spam}');
  const bad = load(text);
  assert.equal(bad.ok, false);
  const errors = (bad as { errors: { path: string; message: string; hint?: string; line: number }[] }).errors;
  assert.equal(errors.length, 1, JSON.stringify(errors));
  assert.equal(errors[0]!.path, 'stages.ingest.with.labelMap["0"]');
  assert.match(errors[0]!.message, /labelMap maps "0" to "Spam", which is not one of labels \["ham","spam"\]/);
  assert.match(errors[0]!.hint ?? '', /map it to one of "ham", "spam", or add "Spam" to labels/);
  assert.equal(text.split('\n')[errors[0]!.line - 1], '      labelMap: {"Ham": ham, "0": Spam}');
  // The schema: a label maps to a non-empty string.
  assert.equal(load(withMap('{"Ham": 1}')).ok, false);
  assert.equal(load(withMap('{"Ham": ""}')).ok, false);
});

test('labelMap is in the ingest cache key when set: another map, another key; the schema gives it no default', () => {
  const cfg = parse(demo).stages.ingest.with as Record<string, unknown>;
  const key = (config: unknown) =>
    cacheKey({ kind: ingestStage.kind, codeVersion: ingestStage.codeVersion, config, externalInputs: ['x:1'] });
  assert.equal(Object.hasOwn(cfg, 'labelMap'), false);
  assert.notEqual(key({ ...cfg, labelMap: { Ham: 'ham' } }), key(cfg));
  assert.notEqual(key({ ...cfg, labelMap: { Ham: 'ham' } }), key({ ...cfg, labelMap: { Ham: 'spam' } }));
  // A default would be filled into a plugin-loaded kind's config, changing every existing pipeline's key.
  assert.equal('default' in ingestWithSchema.properties.labelMap, false);
});
