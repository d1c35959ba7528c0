// The LoRA adapter trainCausalLm exports for a LLaMA model is one transformers + peft load as tempered trained it:
// PEFT's names and [r, in] / [out, r] layouts, layers_to_transform, and logits of the GGUF base + adapter in
// transformers equal to those of tempered's merged model.onnx. The fixture (peft-reference.testing.ts) was made by
// loading this very export into peft, so a change to the names, layouts or merge fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors } from '../formats/safetensors.ts';
import { loadChatTemplate } from '../models/chat-template.ts';
import { mergedLogitsAgainstPeft, PEFT_FIXTURE, trainReferenceAdapter } from './peft-reference.testing.ts';

const root = mkdtempSync(join(tmpdir(), 'peft-export-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const fixture = readSafetensors(PEFT_FIXTURE);
const exported = trainReferenceAdapter(root);

test('adapter/: PEFT config and tensor names, shapes and values as transformers + peft loaded them', async () => {
  const { outDir } = await exported;
  const config = JSON.parse(readFileSync(join(outDir, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(config.peft_type, 'LORA');
  assert.equal(config.task_type, 'CAUSAL_LM');
  assert.equal(config.r, 4);
  assert.equal(config.lora_alpha, 8);
  assert.deepEqual(config.layers_to_transform, [1]);
  assert.deepEqual(config.target_modules, ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
  assert.deepEqual(config, JSON.parse(fixture.metadata['adapter_config']!), 'the config peft loaded');

  const file = readSafetensors(join(outDir, 'adapter', 'adapter_model.safetensors'));
  const want = [...fixture.tensors.keys()].filter((n) => n.startsWith('adapter.')).map((n) => n.slice('adapter.'.length));
  assert.deepEqual([...file.tensors.keys()].sort(), want.sort());
  assert.ok(want.includes('base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight'));
  let maxDiff = 0;
  for (const name of want) {
    const got = file.tensors.get(name)!;
    const ref = fixture.tensors.get(`adapter.${name}`)!;
    assert.deepEqual(got.shape, ref.shape, name);
    const [g, r] = [got.data as Float32Array, ref.data as Float32Array];
    for (let i = 0; i < r.length; i++) maxDiff = Math.max(maxDiff, Math.abs(g[i]! - r[i]!));
  }
  assert.ok(maxDiff < 1e-5, `adapter tensors differ from the fixture's by ${maxDiff}`);
});

test("merged model.onnx: logits equal transformers' GGUF base + the peft adapter", async () => {
  const { outDir } = await exported;
  const { diff, moved } = await mergedLogitsAgainstPeft(outDir, fixture);
  assert.ok(moved > 0.1, `the adapter moves peft's logits by ${moved}`);
  assert.ok(diff < 1e-4, `max |logit difference| ${diff} (the adapter moves them by ${moved})`);
});

test('the merged folder describes itself: config.json names no GGUF file, tokenizer and chat template present', async () => {
  const { outDir, modelDir } = await exported;
  const config = JSON.parse(readFileSync(join(outDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(config.gguf_file, undefined);
  assert.equal(config.model_type, 'llama');
  assert.equal(typeof JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')).gguf_file, 'string', 'the base named one');
  for (const f of ['model.onnx', 'tokenizer.json', 'tokenizer_config.json', 'tempered-model.json'])
    assert.ok(existsSync(join(outDir, f)), f);
  assert.match(loadChatTemplate(outDir).text, /'user' %\}Q:/, 'the template it was tuned with');
  const manifest = JSON.parse(readFileSync(join(outDir, 'tempered-model.json'), 'utf8')) as { baseModel: { ggufFile?: string } };
  assert.equal(manifest.baseModel.ggufFile, 'tiny-llama.gguf');
});

test('lora.layers restricts module names to those decoder layers; a pattern with layers is refused', async () => {
  const { causalLoraTargets } = await import('./causal-lm.ts');
  assert.deepEqual(causalLoraTargets('llama', ['q_proj', 'v_proj'], [2]), [
    'model.layers.2.*.q_proj.weight',
    'model.layers.2.*.v_proj.weight',
  ]);
  assert.deepEqual(causalLoraTargets('gpt2', undefined, [0]), ['h.0.*.c_attn.weight', 'transformer.h.0.*.c_attn.weight']);
  assert.throws(() => causalLoraTargets('llama', ['*q_proj.weight'], [1]), /train\.lora\.targets|is a pattern/);
});

test('a maxLength that leaves no reply token to score is an input error, not a run that trains nothing', async () => {
  const { modelDir } = await exported;
  const { trainCausalLm } = await import('./causal-lm.ts');
  await assert.rejects(
    trainCausalLm({
      modelDir,
      train: join(root, 'train.arrow'),
      // A 12-token preamble (capitals: inside the tiny vocabulary) before the turns, as a long system prompt would be.
      chat: {
        template:
          "QQQQQQQQQQQQ{% for m in messages %}{% if m.role == 'user' %}Q:{% else %}A:{% endif %}{{ m.content }}<|endoftext|>{% endfor %}",
      },
      method: 'lora',
      lora: { r: 2, alpha: 4 },
      lr: 1e-2,
      maxSteps: 1,
      batchSize: 4,
      schedule: 'constant',
      weightDecay: 0,
      seed: 1,
      maxLength: 8,
      device: 'cpu',
      checkpointDir: join(root, 'short', 'ck'),
      checkpointEvery: 0,
      outDir: join(root, 'short', 'out'),
    }),
    (e: Error & { where?: string }) => e.name === 'InputError' && /maxLength 8/.test(e.message),
  );
  assert.equal(existsSync(join(root, 'short', 'out')), false);
});
