import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchesAny } from './patterns.ts';
import { DEFAULT_NO_DECAY } from './optimizers.ts';

test('globs match whole names, * crosses dots; /regex/ searches', () => {
  assert.ok(matchesAny('encoder.layer.0.attention.self.query.weight', ['*query.weight']));
  assert.ok(!matchesAny('encoder.layer.0.attention.self.query.bias', ['*query.weight']));
  assert.ok(matchesAny('encoder.layer.11.output.dense.weight', ['encoder.layer.1?.*']));
  assert.ok(!matchesAny('encoder.layer.1.output.dense.weight', ['encoder.layer.1?.*']));
  assert.ok(matchesAny('h.3.attn.c_attn.weight', ['/attn\\.c_attn/']));
  assert.ok(matchesAny('model.layers.0.self_attn.q_proj.weight', ['/Q_PROJ/i']));
});

test('default no-decay list covers biases and norm weights, not linear weights', () => {
  for (const n of [
    'classifier.bias',
    'encoder.layer.0.attention.output.LayerNorm.weight',
    'transformer.ln_f.weight',
    'h.0.ln_1.weight',
    'model.layers.0.input_layernorm.weight',
    'model.norm.weight',
  ])
    assert.ok(matchesAny(n, DEFAULT_NO_DECAY), n);
  for (const n of ['encoder.layer.0.attention.self.query.weight', 'embeddings.word_embeddings.weight'])
    assert.ok(!matchesAny(n, DEFAULT_NO_DECAY), n);
});
