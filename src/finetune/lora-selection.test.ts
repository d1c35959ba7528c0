// LoRA layers and targets are checked against the model in its own terms: a layer the model lacks is an input error
// naming the field, the bad values and the valid range, before any tokenizing (it used to be ignored when listed
// beside valid layers, and alone to fail with graph-internal names); a target that adapts nothing lists the modules
// the architecture does have (LLaMA q_proj…down_proj, GPT-2 c_attn…, BERT query/key/value/dense).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { InputError } from '../errors.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { adaptableWeights, checkLoraLayers, describeAdaptable, modelLayerCount } from '../models/lora-targets.ts';
import { tinyGpt2Dir, tinyLlamaDir } from '../models/tiny.testing.ts';
import { trainCausalLm, type TrainCausalLmOptions } from './causal-lm.ts';
import { compileClassifier, trainClassifier, type TrainClassifierOptions } from './classifier.ts';
import { syntheticClassifierTask } from './synthetic-text.testing.ts';

const root = mkdtempSync(join(tmpdir(), 'lora-selection-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const llama = tinyLlamaDir(join(root, 'llama'), 1, { layers: 3 });
const gpt2 = tinyGpt2Dir(join(root, 'gpt2'), 1, { layers: 2 });
const bert = syntheticClassifierTask(root);

const rows = join(root, 'rows.arrow');
{
  const w = new ArrowTableWriter(rows, { prompt: 'utf8', response: 'utf8' });
  w.writeBatch({ prompt: ['the movie', 'a plot'], response: ['good', 'bad'] });
  w.close();
}

function causal(name: string, modelDir: string, lora: TrainCausalLmOptions['lora']): TrainCausalLmOptions {
  return {
    modelDir,
    train: rows,
    template: { prompt: '{prompt}\n' },
    method: 'lora',
    lora,
    lr: 0.01,
    maxSteps: 1,
    batchSize: 2,
    schedule: 'constant',
    weightDecay: 0,
    seed: 1,
    maxLength: 32,
    device: 'cpu',
    threads: 1,
    checkpointEvery: 0,
    checkpointDir: join(root, name, 'ck'),
    outDir: join(root, name, 'out'),
  };
}

function classifier(name: string, lora: TrainClassifierOptions['lora']): TrainClassifierOptions {
  return { ...bert.base(name), method: 'lora', lora, lr: 0.01, maxSteps: 1, device: 'cpu', threads: 1, checkpointEvery: 0 };
}

/** An InputError at train.lora.layers naming the bad values and the model's layers; nothing was tokenized. */
function badLayers(bad: string, count: number, ck: string) {
  return (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.where, 'train.lora.layers');
    assert.match(
      e.message,
      new RegExp(
        `^train\\.lora\\.layers: ${bad} (is not a layer|are not layers) of this model: it has ${count} layers, numbered 0 to ${count - 1}$`,
      ),
    );
    assert.match(e.hint!, new RegExp(`from 0 to ${count - 1}`));
    assert.equal(existsSync(ck), false, 'refused before tokenizing');
    return true;
  };
}

test('the layer count comes from config.json; layers outside 0…count-1 (negative, too high, not integers) are refused', () => {
  assert.equal(modelLayerCount(llama), 3);
  assert.equal(modelLayerCount(gpt2), 2);
  assert.equal(modelLayerCount(bert.modelDir), 2);
  checkLoraLayers(undefined, 3);
  checkLoraLayers([], 3);
  checkLoraLayers([0, 2], 3);
  assert.throws(
    () => checkLoraLayers([35], 30),
    /train\.lora\.layers: 35 is not a layer of this model: it has 30 layers, numbered 0 to 29/,
  );
  assert.throws(() => checkLoraLayers([-1, 1.5, 29, 30], 30), /-1, 1\.5, 30 are not layers of this model/);
  assert.throws(() => checkLoraLayers(['2'], 30), /"2" is not a layer/);
});

test('causal LM (LLaMA, GPT-2): a layer the model lacks is refused before any work, alone or beside valid layers', async () => {
  // Listed beside valid layers, 35 used to be dropped silently (the run equal to one without it).
  await assert.rejects(
    trainCausalLm(causal('l1', llama, { r: 2, alpha: 4, layers: [35, 1, 2] })),
    badLayers('35', 3, join(root, 'l1', 'ck')),
  );
  // Alone it used to fail in the engine with internal weight names ('ints', 'const') and a BERT hint.
  await assert.rejects(trainCausalLm(causal('l2', llama, { r: 2, alpha: 4, layers: [35] })), badLayers('35', 3, join(root, 'l2', 'ck')));
  await assert.rejects(
    trainCausalLm(causal('l3', llama, { r: 2, alpha: 4, layers: [-1, 3] })),
    badLayers('-1, 3', 3, join(root, 'l3', 'ck')),
  );
  await assert.rejects(trainCausalLm(causal('g1', gpt2, { r: 2, alpha: 4, layers: [0, 2] })), badLayers('2', 2, join(root, 'g1', 'ck')));
  // The top layer itself is fine.
  const r = await trainCausalLm(causal('ok', llama, { r: 2, alpha: 4, layers: [2] }));
  assert.equal(r.steps, 1);
});

test('encoder classifier: a layer the model lacks is refused before any work', async () => {
  await assert.rejects(trainClassifier(classifier('b1', { r: 2, alpha: 4, layers: [1, 2] })), badLayers('2', 2, join(root, 'b1', 'ck')));
  assert.throws(
    () => compileClassifier({ ...classifier('b2', { r: 2, alpha: 4, layers: [-3] }) }),
    (e: unknown) =>
      e instanceof InputError && e.where === 'train.lora.layers' && /-3 is not a layer .* 2 layers, numbered 0 to 1/.test(e.message),
  );
});

/** An InputError at train.lora.targets naming the target and listing `modules`, with the architecture's glob. */
function badTargets(target: RegExp, arch: string, modules: string[], glob: string) {
  return (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.where, 'train.lora.targets');
    assert.match(e.message, target);
    assert.match(e.message, new RegExp(`of this ${arch} model`));
    assert.ok(e.message.includes(`the modules LoRA can adapt are ${modules.join(', ')} in every layer`), e.message);
    assert.ok(e.hint!.includes(glob), e.hint);
    // Not the graph's internal names, nor another architecture's.
    assert.doesNotMatch(e.message + e.hint, /'ints'|'const'|const_\d/);
    if (arch !== 'bert') assert.doesNotMatch(e.message + e.hint, /attention\.self/);
    return true;
  };
}

test("targets that adapt nothing list the architecture's own modules (LLaMA, GPT-2, BERT); one typo among good targets is not ignored", async () => {
  const LLAMA = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  // A BERT name on LLaMA.
  await assert.rejects(
    trainCausalLm(causal('t1', llama, { r: 2, alpha: 4, targets: ['query'] })),
    badTargets(/LoRA target "query" matches no weight/, 'llama', LLAMA, '*self_attn.q_proj.weight'),
  );
  // A typo beside a valid target used to train without it.
  await assert.rejects(
    trainCausalLm(causal('t2', llama, { r: 2, alpha: 4, targets: ['q_proj', 'v_porj'], layers: [1] })),
    badTargets(/LoRA target "v_porj" matches no weight of this llama model in layer 1;/, 'llama', LLAMA, 'q_proj'),
  );
  await assert.rejects(
    trainCausalLm(causal('t3', gpt2, { r: 2, alpha: 4, targets: ['q_proj'] })),
    badTargets(/LoRA target "q_proj"/, 'gpt2', ['c_attn', 'c_proj', 'c_fc'], '*attn.c_attn.weight'),
  );
  // A LLaMA name on BERT.
  assert.throws(
    () => compileClassifier(classifier('t4', { r: 2, alpha: 4, targets: ['q_proj', 'value'] })),
    badTargets(/LoRA target "q_proj" matches no weight/, 'bert', ['query', 'key', 'value', 'dense'], '*attention.self.query.weight'),
  );
});

test('adaptable weights are the modules’ MatMul weights, never graph constants', () => {
  const { model } = buildCausalLmGraph(llama);
  const w = adaptableWeights(model);
  assert.ok(w.includes('model.layers.0.self_attn.q_proj.weight'));
  assert.ok(
    w.every((n) => n.endsWith('.weight')),
    w.join(', '),
  );
  const d = describeAdaptable(model);
  assert.deepEqual(d.inLayers, ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
  assert.equal(d.glob, '*self_attn.q_proj.weight');
});
