/**
 * A model.onnx that lacks a weight the family needs is refused with a hint naming what the graph should have been: the
 * hint said "a causal-LM model.onnx" for a classifier's and a GPT-2's too, sending the user to look for the wrong thing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { GraphBuilder } from '../onnx/builder.ts';
import { saveModel } from '../onnx/proto.ts';
import { TINY_MINILM, tinyBertDir, tinyGpt2Dir } from './tiny.testing.ts';
import { writeBertClassifierSafetensors, writeGpt2Safetensors } from './transformers-export.ts';

/** A real ONNX file holding one unrelated initializer and none of the family's weights. */
function weightlessOnnx(dir: string): void {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', [1]);
  g.output(g.op('Add', [x, g.initializer('unrelated', Float32Array.of(1), [1])]), 'y');
  saveModel(g.build(), join(dir, 'model.onnx'));
}

test('a classifier or GPT-2 model.onnx missing its weights is an InputError whose hint names that family', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-transformers-export-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const bert = tinyBertDir(join(root, 'bert'), 1, TINY_MINILM);
  weightlessOnnx(bert);
  assert.throws(
    () => writeBertClassifierSafetensors(bert, join(root, 'bert.safetensors'), 2),
    (e: unknown) => e instanceof InputError && /missing/.test(e.message) && /a classifier model\.onnx/.test(String(e.hint)),
  );
  const gpt2 = tinyGpt2Dir(join(root, 'gpt2'), 1, { hidden: 32, layers: 1, maxPositions: 16 });
  weightlessOnnx(gpt2);
  assert.throws(
    () => writeGpt2Safetensors(gpt2, join(root, 'gpt2.safetensors')),
    (e: unknown) => e instanceof InputError && /missing/.test(e.message) && /a GPT-2 model\.onnx/.test(String(e.hint)),
  );
});
