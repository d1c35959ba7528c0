import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { createSession, sessionDevice, sessionFailure } from './runtime.ts';
import { InputError } from '../errors.ts';
import { encodeModel } from '../onnx/proto.ts';
import { whereAutoLands } from './where-auto-lands.testing.ts';
import { buildTinyEncoder } from './tiny-encoder.testing.ts';
import { tokenTask } from './synthetic.testing.ts';

test('models over the external-data threshold load through a temp file and give the same outputs', async () => {
  const model = buildTinyEncoder({ vocab: 12, hidden: 8, heads: 2, intermediate: 16, layers: 1, seq: 4, classes: 2, seed: 1 });
  const d = tokenTask({ n: 3, seq: 4, vocab: 12, seed: 1, task: 'first' });
  const feeds = {
    input_ids: new ort.Tensor('int64', d.input_ids!.data as BigInt64Array, d.input_ids!.dims),
    attention_mask: new ort.Tensor('int64', d.attention_mask!.data as BigInt64Array, d.attention_mask!.dims),
  };
  const inline = await (await createSession(model, { threads: 1 })).run(feeds);
  const external = await (await createSession(model, { threads: 1, externalDataBytes: 0 })).run(feeds);
  assert.deepEqual(external['logits']!.data, inline['logits']!.data);
});

test('sessionDevice says where a session landed: the device asked for, or for auto the first in its try order that opened', async () => {
  const model = buildTinyEncoder({ vocab: 12, hidden: 8, heads: 2, intermediate: 16, layers: 1, seq: 4, classes: 2, seed: 1 });
  assert.equal(sessionDevice(await createSession(model, { device: 'cpu', threads: 1 })), 'cpu');
  // This process runs the npm build, so auto tries WebGPU, then the CPU: which one it lands on depends
  // on the machine, and it must be where a WebGPU session opens, if one does.
  assert.equal(sessionDevice(await createSession(model, { device: 'auto', threads: 1 })), await whereAutoLands());
  const foreign = await ort.InferenceSession.create(encodeModel(model));
  assert.throws(() => sessionDevice(foreign), /not opened by createSession/);
});

test('a session that cannot be made: a missing device is an input error, a full or busy GPU a retryable one', () => {
  const oom = new Error('[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : CUDA failure 2: out of memory ; GPU=0');
  const present = { ok: true, problems: [] };
  const transient = sessionFailure('cuda', oom, present);
  assert.ok(!(transient instanceof InputError), 'retried, not failed for good');
  assert.match(transient.message, /device 'cuda' could not take the session now .*out of memory.*retried/);
  // No GPU: the same words are not a passing shortage.
  const missing = sessionFailure('cuda', oom, { ok: false, problems: ['no NVIDIA GPU on this machine'] });
  assert.ok(missing instanceof InputError);
  assert.match(missing.message, /device 'cuda' is not available: .*no NVIDIA GPU on this machine/);
  const unsupported = sessionFailure('cuda', new Error('Could not find an implementation for GatherND'), present);
  assert.ok(unsupported instanceof InputError);
  assert.ok(sessionFailure('webgpu', new Error('no adapter'), undefined) instanceof InputError);
});
