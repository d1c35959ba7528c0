/**
 * `tempered models pull NAME@ALIAS DIR`: a registered version's files (model.onnx, adapter/ in PEFT layout, tokenizer,
 * config) into a folder of the user's, for transformers + peft; before it, the export was only reachable by digging
 * TEMPERED_HOME/serving/<tree hash> out after a chat or serve. A folder with files is never written into, and such a
 * folder given as a model source says how to name its graph.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { openAudit } from '../../src/audit/log.ts';
import { join } from 'node:path';
import { openRegistry } from '../../src/registry/registry.ts';
import { statePaths } from '../../src/state-paths.ts';
import { ArtifactStore } from '../../src/store/artifact-store.ts';
import { runCliInProcess as runCli } from '../../tests/helpers/cli.ts';
import { readSafetensors } from '../../src/formats/safetensors.ts';
import { trainCausalLm } from '../../src/finetune/causal-lm.ts';
import { familyModelDir } from '../../src/finetune/peft-family.testing.ts';
import { referenceLoraRun } from '../../src/finetune/peft-reference.testing.ts';
import { writeReversalTable } from '../../src/finetune/reversal-task.testing.ts';

/** Registers `dir` (stored as a tree) as version 1 of `name` in `home`'s registry, as the register stage would. */
async function registerFolder(home: string, name: string, dir: string, alias?: string): Promise<void> {
  const paths = statePaths(home);
  const tree = await new ArtifactStore(paths.store).putTree(dir);
  const reg = await openRegistry(paths.registryDb);
  try {
    await reg.registerVersion({ name, runId: 'r1', stageId: 'register', specHash: 's', data: [], artifacts: [{ role: 'model', ...tree }] });
    if (alias) await reg.setAlias(name, alias, 1, { actor: 'test' });
  } finally {
    await reg.close();
  }
}

test('models pull writes a version’s files to a new folder, refuses one with files, and the folder names its graph', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const home = join(root, 'home');
  const env = { TEMPERED_HOME: home };
  // The files of a LoRA fine-tune's export; the command copies bytes, whatever they hold.
  const exported = join(root, 'export');
  mkdirSync(join(exported, 'adapter'), { recursive: true });
  const files: Record<string, string> = {
    'model.onnx': 'onnx bytes',
    // GPT-2 generates nothing here, so no model.safetensors is derived (src/finetune/hf-folder.test.ts covers that).
    'config.json': '{"model_type":"gpt2"}',
    'tempered-model.json': '{"task":"causal-lm"}',
    'adapter/adapter_config.json': '{"peft_type":"LORA"}',
    'adapter/adapter_model.safetensors': 'adapter bytes',
  };
  for (const [f, text] of Object.entries(files)) writeFileSync(join(exported, f), text);
  const paths = statePaths(home);
  await registerFolder(home, 'qa', exported, 'production');

  const dest = join(root, 'out', 'qa');
  const pulled = await runCli(['models', 'pull', 'qa@production', dest], env);
  assert.equal(pulled.code, 0, pulled.stderr);
  for (const [f, text] of Object.entries(files)) assert.equal(readFileSync(join(dest, f), 'utf8'), text, f);
  assert.match(pulled.stdout, /^qa@1 → /);
  assert.match(pulled.stdout, /PeftModel\.from_pretrained\(.*adapter'\)/);

  // Who took which version, and where to, is in the audit trail.
  const log = await openAudit(paths.auditDb);
  try {
    const [rec, ...more] = await log.query({ model: 'qa@1', action: 'model.pulled' });
    assert.deepEqual(more, []);
    assert.deepEqual(rec?.details, { dir: dest, host: hostname() });
  } finally {
    await log.close();
  }

  // The user's folder, now holding files: left alone.
  writeFileSync(join(dest, 'notes.txt'), 'mine');
  const again = await runCli(['models', 'pull', 'qa', dest], env);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /exists and is not an empty folder/);
  assert.equal(readFileSync(join(dest, 'notes.txt'), 'utf8'), 'mine');

  // Given as a model source, the folder's error names the onnx: form (it said to convert with transformers).
  await assert.rejects(
    runCli(['generate', dest, 'hi'], env),
    (e: Error) =>
      e.message.includes('this folder holds model.onnx, a tempered export') &&
      (e as { hint?: string }).hint === `name the graph: onnx:${join(dest, 'model.onnx')}`,
  );
});

test('models pull of a LLaMA-family fine-tune adds model.safetensors for transformers, and config.json says float32', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-lm-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const home = join(root, 'home');
  const modelDir = await familyModelDir(root, 'tiny-qwen2');
  const base = JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(modelDir, 'config.json'), JSON.stringify({ ...base, dtype: 'bfloat16' }));
  const outDir = join(root, 'out');
  const train = writeReversalTable(join(root, 'train.arrow'), 8, 1);
  await trainCausalLm(referenceLoraRun({ modelDir, train, maxSteps: 1, checkpointDir: join(root, 'ck'), outDir }));
  const paths = statePaths(home);
  await registerFolder(home, 'lm', outDir);
  const dest = join(root, 'pulled');
  const pulled = await runCli(['models', 'pull', 'lm@1', dest], { TEMPERED_HOME: home });
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.match(pulled.stdout, /AutoModelForCausalLM\.from_pretrained\(/);
  const weights = readSafetensors(join(dest, 'model.safetensors')).tensors;
  const original = readSafetensors(join(modelDir, 'model.safetensors')).tensors;
  assert.deepEqual([...weights.keys()].sort(), [...original.keys()].sort());
  for (const [n, w] of weights) assert.deepEqual([w.dtype, w.shape], ['F32', original.get(n)!.shape], n);
  assert.equal(JSON.parse(readFileSync(join(dest, 'config.json'), 'utf8')).dtype, 'float32');
});

test('a pull that fails leaves no folder, half or whole, and records nothing', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-fail-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const home = join(root, 'home');
  // A LLaMA-family export whose model.onnx is not a graph: writing model.safetensors for transformers fails.
  const exported = join(root, 'export');
  mkdirSync(exported);
  writeFileSync(join(exported, 'model.onnx'), 'not a graph');
  writeFileSync(join(exported, 'config.json'), '{"model_type":"llama"}');
  writeFileSync(join(exported, 'tempered-model.json'), '{"task":"causal-lm"}');
  const paths = statePaths(home);
  await registerFolder(home, 'bad', exported);
  const dest = join(root, 'out', 'bad');
  const pulled = await runCli(['models', 'pull', 'bad@1', dest], { TEMPERED_HOME: home }).catch((e: Error) => ({
    code: 1,
    stderr: e.message,
  }));
  assert.notEqual(pulled.code, 0);
  assert.deepEqual(readdirSync(join(root, 'out')), [], 'neither the folder nor its temporary copy is left');
  const log = await openAudit(paths.auditDb);
  try {
    assert.deepEqual(await log.query({ action: 'model.pulled' }), []);
  } finally {
    await log.close();
  }
});
