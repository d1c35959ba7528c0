import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../onnx/builder.ts';
import { InputError } from '../errors.ts';
import { compileTrainStep } from './compile.ts';
import { buildTinyEncoder } from './tiny-encoder.testing.ts';

const CFG = { vocab: 12, hidden: 8, heads: 2, intermediate: 16, layers: 1, seq: 4, classes: 2, seed: 1 };
const base = { loss: { kind: 'cross_entropy' as const }, optimizer: { kind: 'adamw' as const } };

test('full training selects every HF-named float weight and no builder constants', () => {
  const model = buildTinyEncoder(CFG);
  const prog = compileTrainStep(model, { ...base, trainable: { kind: 'full' } });
  const names = prog.params.map((p) => p.name);
  assert.ok(names.includes('embeddings.word_embeddings.weight') && names.includes('classifier.bias'));
  assert.ok(!names.some((n) => /^(const|scalar|ints)/.test(n)), names.join(','));
  assert.equal(names.length, 4 + 16 + 2 + 2); // embeddings, one layer, pooler, classifier
  assert.deepEqual(prog.dataInputs.map((v) => v.name).sort(), ['attention_mask', 'input_ids', 'labels']);
  assert.deepEqual(prog.state.map((s) => s.input).slice(0, 2), [`${names[0]}::m`, `${names[0]}::v`]);
  // Frozen nothing: the step graph has no weight initializers left, only constants.
  assert.ok([...prog.step.graph.initializers.keys()].every((k) => /^(const|scalar|ints)/.test(k)));
});

test('patterns: include/exclude by glob and regex; frozen weights stay initializers', () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), {
    ...base,
    trainable: { kind: 'patterns', include: ['encoder.*', 'classifier.*'], exclude: ['/LayerNorm/', '*.key.*'] },
  });
  const names = prog.params.map((p) => p.name);
  assert.ok(names.includes('encoder.layer.0.attention.self.query.weight'));
  assert.ok(!names.some((n) => n.includes('LayerNorm') || n.includes('.key.') || n.startsWith('embeddings')));
  assert.ok(prog.step.graph.initializers.has('embeddings.word_embeddings.weight'));
});

test('selecting nothing is an InputError naming the field', () => {
  assert.throws(
    () => compileTrainStep(buildTinyEncoder(CFG), { ...base, trainable: { kind: 'patterns', include: ['nope.*'] } }),
    (e: Error) => e instanceof InputError && /train\.trainable/.test(e.message),
  );
});

test('a weight behind an op without a gradient rule fails with the op and node named', () => {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', ['batch', 2]);
  const h = g.op('Atan', [g.op('MatMul', [x, g.initializer('fc.weight', new Float32Array(4), [2, 2])])], {}, { name: 'odd_activation' });
  g.output(h, 'y');
  assert.throws(
    () => compileTrainStep(g.build(), { loss: { kind: 'mse' }, trainable: { kind: 'full' }, optimizer: { kind: 'sgd' } }),
    /no gradient rule for op Atan \(node 'odd_activation'\)/,
  );
});
