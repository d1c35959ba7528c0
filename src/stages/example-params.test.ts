/**
 * The example pipelines' hyperparameters reach the setting they are named for and nothing else: a sweep over `trainSeed`
 * must leave the split (so the test rows) as it is, and one over `seed` must leave training's seed alone.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, test } from 'node:test';
import { loadSpecText } from '../spec/load.ts';
import type { KindRegistry } from '../spec/types.ts';
import { kindRegistry, loadStageKinds } from './stage-kinds.ts';

const pipelines = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'pipelines');
let registry: KindRegistry;
before(async () => {
  registry = kindRegistry(await loadStageKinds());
});

/** Each stage's resolved `with`, by stage id, as the run would get it with these `--param`s. */
function stagesWith(name: string, paramOverrides: Record<string, string> = {}): Record<string, Record<string, unknown>> {
  const file = join(pipelines, name);
  const r = loadSpecText(readFileSync(file, 'utf8'), file, { ...registry, baseDir: pipelines, paramOverrides });
  assert.ok(r.ok, JSON.stringify(!r.ok && r.errors));
  return Object.fromEntries(r.plan.stages.map((s) => [s.id, s.with as Record<string, unknown>]));
}

/** The stages whose settings differ from the defaults' under these `--param`s, with what differs. */
function changedBy(name: string, overrides: Record<string, string>): Record<string, Record<string, unknown>> {
  const base = stagesWith(name);
  const changed: Record<string, Record<string, unknown>> = {};
  for (const [id, withs] of Object.entries(stagesWith(name, overrides))) {
    for (const [key, value] of Object.entries(withs)) {
      if (JSON.stringify(value) !== JSON.stringify(base[id]![key])) (changed[id] ??= {})[key] = value;
    }
  }
  return changed;
}

for (const name of ['sms-spam.yaml', 'instruct.yaml']) {
  test(`${name}: trainSeed, seed and lr each change one setting`, () => {
    assert.deepEqual(changedBy(name, { trainSeed: '5' }), { train: { seed: 5 } });
    assert.deepEqual(changedBy(name, { seed: '5' }), { split: { seed: 5 } });
    assert.deepEqual(changedBy(name, { lr: '0.01' }), { train: { lr: 0.01 } });
  });
}

test("sms-spam.yaml: r is LoRA's rank, alpha stays", () => {
  const lora = stagesWith('sms-spam.yaml', { r: '4' }).train!.lora as Record<string, unknown>;
  assert.deepEqual([lora.r, lora.alpha], [4, 16]);
  assert.deepEqual(changedBy('sms-spam.yaml', { r: '4' }), { train: { lora: { ...lora } } });
});
