/**
 * `tempered models pull NAME@ALIAS DIR`: a registered version's files (model.onnx, adapter/ in PEFT layout, tokenizer,
 * config) into a folder of the user's, for transformers + peft; before it, the export was only reachable by digging
 * TEMPERED_HOME/serving/<tree hash> out after a chat or serve. A folder with files is never written into, and such a
 * folder given as a model source says how to name its graph.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
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
import { trainClassifier } from '../../src/finetune/classifier.ts';
import { syntheticRows, writeTextTable } from '../../src/finetune/synthetic-text.testing.ts';
import { createSession, toOrt } from '../../src/engine/runtime.ts';
import { buildClassifierGraph } from '../../src/models/bert.ts';
import { buildCausalLmGraph } from '../../src/models/causal-lm.ts';
import { tinyBertDir, tinyGpt2Dir } from '../../src/models/tiny.testing.ts';
import type { Model } from '../../src/onnx/ir.ts';
import { fillDisk, mountTmpfs, NO_TMPFS } from '../../src/util/tmpfs.testing.ts';

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

/** Registers `dir` as version 1 of `name` in `home` and pulls it into `dest` with the CLI, which must succeed: its stdout. */
async function registerAndPull(home: string, name: string, dir: string, dest: string): Promise<string> {
  await registerFolder(home, name, dir);
  const pulled = await runCli(['models', 'pull', `${name}@1`, dest], { TEMPERED_HOME: home });
  assert.equal(pulled.code, 0, pulled.stderr);
  return pulled.stdout;
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
    // A mean-pooled classifier (the train stage's default) has no transformers class, so no model.safetensors is
    // derived (the tests below cover those that have one).
    'config.json': '{"model_type":"bert"}',
    'tempered-model.json': '{"task":"classification","pooling":"mean"}',
    'adapter/adapter_config.json': '{"peft_type":"LORA","task_type":"SEQ_CLS"}',
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
  // Mean pooling has no transformers class: no model.safetensors, and no line loading the adapter into one.
  assert.match(pulled.stdout, /no model\.safetensors for transformers: this classifier pools with "mean"/);
  assert.match(pulled.stdout, /adapter\/ \(the LoRA adapter in PEFT layout\) on BertForSequenceClassification gives other logits too/);
  assert.doesNotMatch(pulled.stdout, /PeftModel/);

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

  // A causal LM's folder without model.safetensors (pulled before GPT-2 got one), given as a model source: its error
  // names the onnx: form (it said to convert with transformers).
  const old = join(root, 'old-pull');
  mkdirSync(old);
  writeFileSync(join(old, 'model.onnx'), 'onnx bytes');
  writeFileSync(join(old, 'config.json'), '{"model_type":"gpt2"}');
  writeFileSync(join(old, 'tempered-model.json'), '{"task":"causal-lm"}');
  await assert.rejects(
    runCli(['generate', old, 'hi'], env),
    (e: Error) =>
      e.message.includes('this folder holds model.onnx, a tempered export') &&
      (e as { hint?: string }).hint === `name the graph: onnx:${join(old, 'model.onnx')}`,
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
  const dest = join(root, 'pulled');
  const pulled = await registerAndPull(home, 'lm', outDir, dest);
  assert.match(pulled, /AutoModelForCausalLM\.from_pretrained\(/);
  assert.match(pulled, /PeftModel\.from_pretrained\(AutoModelForCausalLM\.from_pretrained\(BASE.*adapter'\)/);
  const weights = readSafetensors(join(dest, 'model.safetensors')).tensors;
  const original = readSafetensors(join(modelDir, 'model.safetensors')).tensors;
  assert.deepEqual([...weights.keys()].sort(), [...original.keys()].sort());
  for (const [n, w] of weights) assert.deepEqual([w.dtype, w.shape], ['F32', original.get(n)!.shape], n);
  assert.equal(JSON.parse(readFileSync(join(dest, 'config.json'), 'utf8')).dtype, 'float32');
});

/** Pulls `exported`, which must fail, under a home of its own in `root`: no folder is left, half or whole, and no record. */
async function assertPullFailsCleanly(root: string, exported: string): Promise<void> {
  const home = join(root, 'home-bad');
  await registerFolder(home, 'bad', exported);
  const dest = join(root, 'out-bad', 'bad');
  const pulled = await runCli(['models', 'pull', 'bad@1', dest], { TEMPERED_HOME: home }).catch((e: Error) => ({
    code: 1,
    stderr: e.message,
  }));
  assert.notEqual(pulled.code, 0);
  assert.deepEqual(readdirSync(join(root, 'out-bad')), [], 'neither the folder nor its temporary copy is left');
  const log = await openAudit(statePaths(home).auditDb);
  try {
    assert.deepEqual(await log.query({ action: 'model.pulled' }), []);
  } finally {
    await log.close();
  }
}

/** A copy of the export `outDir` whose model.onnx is not a graph: writing model.safetensors from it fails. */
function brokenCopy(outDir: string, to: string): string {
  cpSync(outDir, to, { recursive: true });
  writeFileSync(join(to, 'model.onnx'), 'not a graph');
  return to;
}

test('a pull that fails leaves no folder, half or whole, and records nothing', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-fail-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  // A LLaMA-family export whose model.onnx is not a graph: writing model.safetensors for transformers fails.
  const exported = join(root, 'export');
  mkdirSync(exported);
  writeFileSync(join(exported, 'model.onnx'), 'not a graph');
  writeFileSync(join(exported, 'config.json'), '{"model_type":"llama"}');
  writeFileSync(join(exported, 'tempered-model.json'), '{"task":"causal-lm"}');
  await assertPullFailsCleanly(root, exported);
});

test('models pull writes nothing through a symbolic link at DIR and never deletes a folder beside it', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-dest-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const home = join(root, 'home');
  const env = { TEMPERED_HOME: home };
  const exported = join(root, 'export');
  mkdirSync(exported);
  writeFileSync(join(exported, 'model.onnx'), 'onnx bytes');
  await registerFolder(home, 'm', exported);

  // The temporary copy was <DIR>.tmp-<pid>, emptied first: a folder of the user's by that name (a container's CLI
  // often has the same small pid) was deleted with everything in it.
  const dest = join(root, 'pulled');
  const beside = `${dest}.tmp-${process.pid}`;
  mkdirSync(beside);
  writeFileSync(join(beside, 'mine.txt'), 'mine');
  const pulled = await runCli(['models', 'pull', 'm@1', dest], env);
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.equal(readFileSync(join(beside, 'mine.txt'), 'utf8'), 'mine');
  assert.deepEqual(readdirSync(root).sort(), ['export', 'home', 'pulled', 'pulled.tmp-' + process.pid]);

  // A link, to an empty folder or to nothing, is refused as a file is, naming it: it was an ENOTDIR from rmdir or rename.
  const empty = join(root, 'empty');
  mkdirSync(empty);
  symlinkSync(empty, join(root, 'to-empty'));
  symlinkSync(join(root, 'nowhere'), join(root, 'dangling'));
  for (const link of ['to-empty', 'dangling']) {
    const res = await runCli(['models', 'pull', 'm@1', join(root, link)], env).catch((e: Error) => ({ code: -1, stderr: e.message }));
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, new RegExp(`${join(root, link)} is a symbolic link`));
    assert.ok(lstatSync(join(root, link)).isSymbolicLink(), link);
  }
  assert.deepEqual(readdirSync(empty), []);
  assert.deepEqual(
    readdirSync(root).filter((f) => f.includes('.tmp-')),
    ['pulled.tmp-' + process.pid],
    'no temporary copy left',
  );

  // A file name from the registered folder is listed with its escape sequence shown, not sent to the terminal.
  writeFileSync(join(exported, '\x1b]0;pwned\x07.txt'), 'x');
  const listed = await registerAndPull(join(root, 'home2'), 'm', exported, join(root, 'pulled2'));
  assert.match(listed, /\\u001b\]0;pwned\\u0007\.txt/);
  assert.doesNotMatch(listed, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
});

test('models pull of a version whose tempered-model.json or config.json is not a JSON object names the version and the file', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-json-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const cases: [string, Record<string, string>][] = [
    ['tempered-model.json', { 'tempered-model.json': 'null', 'config.json': '{"model_type":"bert"}' }],
    ['config.json', { 'tempered-model.json': '{"task":"classification","pooling":"pooler"}', 'config.json': '{"model_type":"bert"' }],
    ['config.json', { 'tempered-model.json': '{"task":"causal-lm"}', 'config.json': '[1]' }],
  ];
  for (const [i, [file, files]] of cases.entries()) {
    const exported = join(root, `export-${i}`);
    mkdirSync(exported);
    writeFileSync(join(exported, 'model.onnx'), 'onnx bytes');
    for (const [f, text] of Object.entries(files)) writeFileSync(join(exported, f), text);
    const home = join(root, `home-${i}`);
    await registerFolder(home, 'bad', exported);
    // A SyntaxError or TypeError without a file before; an error naming the temporary copy, which is gone, is no better.
    await assert.rejects(runCli(['models', 'pull', 'bad@1', join(root, `out-${i}`)], { TEMPERED_HOME: home }), (e: Error) => {
      assert.match(e.message, new RegExp(`^bad@1's ${file.replace('.', '\\.')}: not a JSON object`), file);
      assert.doesNotMatch(e.message, /\.tmp-/);
      return true;
    });
    assert.deepEqual(
      readdirSync(root).filter((f) => f.startsWith(`out-${i}`)),
      [],
      'nothing left',
    );
  }
});

test(
  'models pull onto a full disk names that disk, what the copy needed and what to do, and leaves nothing there',
  { skip: NO_TMPFS },
  async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-full-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    const home = join(root, 'home');
    const exported = join(root, 'export');
    mkdirSync(exported);
    writeFileSync(join(exported, 'model.onnx'), Buffer.alloc(600 << 10, 1));
    await registerFolder(home, 'm', exported);
    const disk = mountTmpfs(t, 512);
    fillDisk(disk, 100 << 10);
    const dest = join(disk, 'out', 'm');
    const res = await runCli(['models', 'pull', 'm@1', dest], { TEMPERED_HOME: home });
    assert.equal(res.code, 1, res.stderr);
    // It said which disk, but then to point TEMPERED_HOME elsewhere and resume a run: a pull is no run, and its home had room.
    assert.match(
      res.stderr,
      new RegExp(`no space left on the disk that holds ${join(disk, 'out')} \\(.* free of 512\\.0 KiB; this write needed 600\\.0 KiB\\)`),
    );
    assert.match(res.stderr, /free space there or pull into a folder on another disk/);
    assert.doesNotMatch(res.stderr, /resume/);
    assert.deepEqual(readdirSync(join(disk, 'out')), [], 'neither the folder nor its temporary copy is left');
  },
);

/** The logits of `model` (a graph or model.onnx's bytes) in onnxruntime-node. */
async function logitsOf(model: Model | Uint8Array, feeds: Record<string, number[][]>): Promise<Float32Array> {
  const session = await createSession(model, { threads: 1 });
  try {
    const ort = Object.fromEntries(
      Object.entries(feeds).map(([k, rows]) => [
        k,
        toOrt('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0]!.length]),
      ]),
    );
    return (await session.run(ort)).logits!.data as Float32Array;
  } finally {
    await session.release();
  }
}

const maxAbsDiff = (a: Float32Array, b: Float32Array) => {
  assert.equal(a.length, b.length);
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);
};

/** Names and shapes of the pulled model.safetensors, every tensor float32. */
function pulledTensors(dir: string): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [n, t] of readSafetensors(join(dir, 'model.safetensors')).tensors) {
    assert.equal(t.dtype, 'F32', n);
    out[n] = t.shape;
  }
  return out;
}

/**
 * transformers' state_dict names of one model, `{l}` standing for each layer; checked once against
 * `GPT2LMHeadModel(config).state_dict()` and `BertForSequenceClassification(config).state_dict()` of transformers 5.25
 * (GPT-2's tied lm_head.weight left out, as save_pretrained leaves it out).
 */
function hfNames(top: Record<string, number[]>, layer: Record<string, number[]>, layers: number): Record<string, number[]> {
  const out = { ...top };
  for (let l = 0; l < layers; l++) for (const [n, s] of Object.entries(layer)) out[n.replace('{l}', String(l))] = s;
  return out;
}

test('models pull of a GPT-2 full fine-tune writes GPT2LMHeadModel’s weights, which load back as the model.onnx it pulled', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-gpt2-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const home = join(root, 'home');
  const [V, H, P, L] = [257, 16, 32, 2];
  const modelDir = tinyGpt2Dir(join(root, 'base'), 5, { hidden: H, layers: L, maxPositions: P });
  const outDir = join(root, 'out');
  const { lora: _, ...run } = referenceLoraRun({
    modelDir,
    train: writeReversalTable(join(root, 'train.arrow'), 8, 1),
    maxSteps: 2,
    checkpointDir: join(root, 'ck'),
    outDir,
  });
  await trainCausalLm({ ...run, method: 'full' });
  const dest = join(root, 'pulled');
  const pulled = await registerAndPull(home, 'gpt', outDir, dest);
  assert.match(pulled, /AutoModelForCausalLM\.from_pretrained\(/);

  const I = 4 * H;
  const top = {
    'transformer.wte.weight': [V, H],
    'transformer.wpe.weight': [P, H],
    'transformer.ln_f.weight': [H],
    'transformer.ln_f.bias': [H],
  };
  const layer = {
    'transformer.h.{l}.ln_1.weight': [H],
    'transformer.h.{l}.ln_1.bias': [H],
    'transformer.h.{l}.attn.c_attn.weight': [H, 3 * H],
    'transformer.h.{l}.attn.c_attn.bias': [3 * H],
    'transformer.h.{l}.attn.c_proj.weight': [H, H],
    'transformer.h.{l}.attn.c_proj.bias': [H],
    'transformer.h.{l}.ln_2.weight': [H],
    'transformer.h.{l}.ln_2.bias': [H],
    'transformer.h.{l}.mlp.c_fc.weight': [H, I],
    'transformer.h.{l}.mlp.c_fc.bias': [I],
    'transformer.h.{l}.mlp.c_proj.weight': [I, H],
    'transformer.h.{l}.mlp.c_proj.bias': [H],
  };
  assert.deepEqual(pulledTensors(dest), hfNames(top, layer, L));
  const config = JSON.parse(readFileSync(join(dest, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual([config.dtype, config.architectures, config.tie_word_embeddings], ['float32', ['GPT2LMHeadModel'], true]);

  // tempered's own loader of a Hugging Face causal-LM folder, on the pulled weights, against the export it pulled.
  const feeds = {
    input_ids: [
      [256, 66, 67, 68, 65, 58],
      [81, 58, 72, 73, 74, 256],
    ],
    attention_mask: [
      [1, 1, 1, 1, 1, 1],
      [1, 1, 1, 1, 1, 1],
    ],
  };
  const exported = await logitsOf(readFileSync(join(outDir, 'model.onnx')), feeds);
  assert.ok(maxAbsDiff(await logitsOf(buildCausalLmGraph(dest).model, feeds), exported) < 1e-5);
  // The fine-tune moved the logits: the comparison above tells its weights from the base's.
  assert.ok(maxAbsDiff(await logitsOf(buildCausalLmGraph(modelDir).model, feeds), exported) > 1e-3);
  await assertPullFailsCleanly(root, brokenCopy(outDir, join(root, 'broken')));
});

test('models pull of a BERT classifier full fine-tune writes BertForSequenceClassification’s weights and labels; mean pooling gets none', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-models-pull-bert-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const home = join(root, 'home');
  const [H, P, L, I] = [16, 64, 2, 64];
  const modelDir = tinyBertDir(join(root, 'base'), 7, { hidden: H, layers: L, maxPositions: P, intermediate: I });
  const V = (JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')) as { vocab_size: number }).vocab_size;
  const labels = ['positive', 'negative', 'neutral'];
  const outDir = join(root, 'out');
  const rows = syntheticRows(24, 1).map((r, i) => ({ ...r, label: i % 5 === 0 ? 'neutral' : r.label }));
  // The LoRA reference run's deterministic one-thread settings, for a full fine-tune of the classifier.
  const {
    lora: _,
    chat: __,
    ...run
  } = referenceLoraRun({
    modelDir,
    train: writeTextTable(join(root, 'train.arrow'), rows),
    maxSteps: 2,
    checkpointDir: join(root, 'ck'),
    outDir,
  });
  await trainClassifier({ ...run, labels, method: 'full', pooling: 'pooler' });
  const dest = join(root, 'pulled');
  const pulled = await registerAndPull(home, 'cls', outDir, dest);
  assert.match(pulled, /AutoModelForSequenceClassification\.from_pretrained\(/);

  const top = {
    'bert.embeddings.word_embeddings.weight': [V, H],
    'bert.embeddings.position_embeddings.weight': [P, H],
    'bert.embeddings.token_type_embeddings.weight': [2, H],
    'bert.embeddings.LayerNorm.weight': [H],
    'bert.embeddings.LayerNorm.bias': [H],
    'bert.pooler.dense.weight': [H, H],
    'bert.pooler.dense.bias': [H],
    'classifier.weight': [3, H],
    'classifier.bias': [3],
  };
  const layer = {
    'bert.encoder.layer.{l}.attention.self.query.weight': [H, H],
    'bert.encoder.layer.{l}.attention.self.query.bias': [H],
    'bert.encoder.layer.{l}.attention.self.key.weight': [H, H],
    'bert.encoder.layer.{l}.attention.self.key.bias': [H],
    'bert.encoder.layer.{l}.attention.self.value.weight': [H, H],
    'bert.encoder.layer.{l}.attention.self.value.bias': [H],
    'bert.encoder.layer.{l}.attention.output.dense.weight': [H, H],
    'bert.encoder.layer.{l}.attention.output.dense.bias': [H],
    'bert.encoder.layer.{l}.attention.output.LayerNorm.weight': [H],
    'bert.encoder.layer.{l}.attention.output.LayerNorm.bias': [H],
    'bert.encoder.layer.{l}.intermediate.dense.weight': [I, H],
    'bert.encoder.layer.{l}.intermediate.dense.bias': [I],
    'bert.encoder.layer.{l}.output.dense.weight': [H, I],
    'bert.encoder.layer.{l}.output.dense.bias': [H],
    'bert.encoder.layer.{l}.output.LayerNorm.weight': [H],
    'bert.encoder.layer.{l}.output.LayerNorm.bias': [H],
  };
  assert.deepEqual(pulledTensors(dest), hfNames(top, layer, L));
  const config = JSON.parse(readFileSync(join(dest, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.deepEqual(
    [config.dtype, config.architectures, config.num_labels, config.problem_type, config.id2label, config.label2id],
    [
      'float32',
      ['BertForSequenceClassification'],
      3,
      'single_label_classification',
      { 0: 'positive', 1: 'negative', 2: 'neutral' },
      { positive: 0, negative: 1, neutral: 2 },
    ],
  );

  // tempered's loader of a Hugging Face BERT folder (a `classifier.*` head of the right shape is reused, else drawn from
  // the seed: a head under another name would give other logits), against the export it pulled; padding included.
  const feeds = {
    input_ids: [
      [2, 10, 15, 20, 3, 0],
      [2, 7, 30, 12, 9, 3],
    ],
    attention_mask: [
      [1, 1, 1, 1, 1, 0],
      [1, 1, 1, 1, 1, 1],
    ],
    token_type_ids: [
      [0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0],
    ],
  };
  const exported = await logitsOf(readFileSync(join(outDir, 'model.onnx')), feeds);
  const reloaded = buildClassifierGraph(dest, { numLabels: 3, pooling: 'pooler', seed: 99 }).model;
  assert.ok(maxAbsDiff(await logitsOf(reloaded, feeds), exported) < 1e-5);
  const base = buildClassifierGraph(modelDir, { numLabels: 3, pooling: 'pooler', seed: 3 }).model;
  assert.ok(maxAbsDiff(await logitsOf(base, feeds), exported) > 1e-3, 'the fine-tune moved the logits');

  // A classifier pooled otherwise (the train stage's mean, or cls) computes what BertForSequenceClassification does not:
  // the pull copies it and says why it wrote no weights for transformers, rather than weights that load and mislead.
  const meanExport = join(root, 'mean');
  cpSync(outDir, meanExport, { recursive: true });
  const manifestPath = join(meanExport, 'tempered-model.json');
  writeFileSync(manifestPath, JSON.stringify({ ...JSON.parse(readFileSync(manifestPath, 'utf8')), pooling: 'mean' }));
  const meanDest = join(root, 'pulled-mean');
  assert.match(
    await registerAndPull(join(root, 'home-mean'), 'mean', meanExport, meanDest),
    /no model\.safetensors for transformers: this classifier pools with "mean"/,
  );
  assert.ok(!existsSync(join(meanDest, 'model.safetensors')));
  assert.ok(existsSync(join(meanDest, 'model.onnx')));
  await assertPullFailsCleanly(root, brokenCopy(outDir, join(root, 'broken')));
});
