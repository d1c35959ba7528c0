// LoRA on Qwen2 and Mistral end to end: the loss falls, the exported PEFT adapter is what transformers + peft load
// (names, layouts; every LoRA module of peft filled from the file), and the merged model.onnx gives the logits of
// Qwen2ForCausalLM / MistralForCausalLM with that adapter on. Mistral's rows are longer than its window of 5, and so are
// the logit rows. The merged folder then generates through the KV-cache graph with the same logits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors } from '../formats/safetensors.ts';
import { Decoder } from '../generate/decoder.ts';
import { FAMILY_MODELS, peftFamilyFixture, trainFamilyAdapter } from './peft-family.testing.ts';
import { LOGIT_IDS, mergedLogitsAgainstPeft } from './peft-reference.testing.ts';

const root = mkdtempSync(join(tmpdir(), 'peft-family-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

for (const name of FAMILY_MODELS) {
  const fixture = readSafetensors(peftFamilyFixture(name));
  const exported = trainFamilyAdapter(root, name);

  test(`${name}: LoRA training lowers the loss; the adapter is the one transformers + peft loaded`, async () => {
    const { outDir, result } = await exported;
    const losses = result.history.map((h) => h.loss);
    assert.equal(losses.length, 8);
    assert.ok(losses.every(Number.isFinite));
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(mean(losses.slice(-3)) < 0.9 * mean(losses.slice(0, 3)), `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`);

    const config = JSON.parse(readFileSync(join(outDir, 'adapter', 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(config.target_modules, ['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
    assert.deepEqual(config.layers_to_transform, [1]);
    assert.deepEqual(config, JSON.parse(fixture.metadata['adapter_config']!), 'the config peft loaded');
    const file = readSafetensors(join(outDir, 'adapter', 'adapter_model.safetensors'));
    const want = [...fixture.tensors.keys()].filter((n) => n.startsWith('adapter.')).map((n) => n.slice('adapter.'.length));
    assert.deepEqual([...file.tensors.keys()].sort(), want.sort());
    assert.equal(want.length, 14, 'A and B of 7 modules in layer 1');
    let maxDiff = 0;
    for (const n of want) {
      const [g, r] = [file.tensors.get(n)!, fixture.tensors.get(`adapter.${n}`)!];
      assert.deepEqual(g.shape, r.shape, n);
      for (let i = 0; i < r.data.length; i++)
        maxDiff = Math.max(maxDiff, Math.abs((g.data as Float32Array)[i]! - (r.data as Float32Array)[i]!));
    }
    assert.ok(maxDiff < 1e-5, `adapter tensors differ from the fixture's by ${maxDiff}`);
  });

  test(`${name}: merged model.onnx and the KV-cache graph of the export give transformers + peft logits`, async () => {
    const { outDir } = await exported;
    const { diff, moved } = await mergedLogitsAgainstPeft(outDir, fixture);
    assert.ok(moved > 0.1, `the adapter moves peft's logits by ${moved}`);
    assert.ok(diff < 1e-4, `max |logit difference| ${diff} (the adapter moves them by ${moved})`);
    assert.equal(JSON.parse(readFileSync(join(outDir, 'config.json'), 'utf8')).model_type, name.slice('tiny-'.length));

    // Generation reads the merged weights (biases included) back from model.onnx.
    const [B, T] = [LOGIT_IDS.length, LOGIT_IDS[0]!.length];
    const want = fixture.tensors.get('logits')!.data as Float32Array;
    const dec = await Decoder.load(outDir, { threads: 1 });
    const V = dec.config.vocabSize;
    let worst = 0;
    try {
      for (let b = 0; b < B; b++) {
        let cache = dec.emptyCache(1);
        for (let s = 0; s < T; s++) {
          const r = await dec.run(
            BigInt64Array.from([BigInt(LOGIT_IDS[b]![s]!)]),
            BigInt64Array.from([BigInt(s)]),
            new BigInt64Array(s + 1).fill(1n),
            1,
            cache,
          );
          cache = r.cache;
          const row = want.subarray((b * T + s) * V, (b * T + s + 1) * V);
          for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(r.logits[v]! - row[v]!));
        }
      }
    } finally {
      await dec.close();
    }
    if (process.env.TEMPERED_VERBOSE) console.log(name, 'merged export vs peft: model.onnx', diff, 'KV-cache graph', worst);
    assert.ok(worst < 1e-4, `KV-cache graph of the export: max |logit difference| ${worst}`);
  });
}
