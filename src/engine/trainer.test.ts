import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { compileTrainStep, type CompileOptions } from './compile.ts';
import { Trainer } from './trainer.ts';
import { buildTinyEncoder, type TinyEncoderConfig } from './tiny-encoder.testing.ts';
import { tokenTask } from './synthetic.testing.ts';
import { exportInference, exportPeftAdapter } from './export.ts';
import { encodeModel } from '../onnx/proto.ts';
import { readSafetensors } from '../formats/safetensors.ts';
import { InputError } from '../errors.ts';

const CFG: TinyEncoderConfig = { vocab: 12, hidden: 16, heads: 2, intermediate: 32, layers: 1, seq: 8, classes: 2, seed: 11 };
const ce = { kind: 'cross_entropy' as const };
const adamw = { kind: 'adamw' as const, weightDecay: 0.01 };

test('full fine-tuning of a tiny transformer learns a task that needs attention (val accuracy ≥ 0.9)', async () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), { loss: ce, trainable: { kind: 'full' }, optimizer: adamw, clipNorm: 1 });
  const train = tokenTask({ n: 512, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  const val = tokenTask({ n: 256, seq: CFG.seq, vocab: CFG.vocab, seed: 2, task: 'contains' });
  const evals: number[] = [];
  const tr = new Trainer(prog, {
    seed: 5,
    batchSize: 32,
    epochs: 12,
    schedule: { kind: 'linear', lr: 3e-3, warmupSteps: 10, totalSteps: 192 },
    evalEvery: 48,
    threads: 2,
    onEval: (m) => evals.push(m.accuracy!),
  });
  const res = await tr.fit(train, val);
  const first = res.history.slice(0, 5).reduce((s, m) => s + m.loss, 0) / 5;
  const last = res.history.slice(-5).reduce((s, m) => s + m.loss, 0) / 5;
  assert.ok(last < first * 0.5, `loss fell from ${first} to ${last}`);
  assert.ok(res.lastEval!.accuracy! >= 0.9, `val accuracy ${res.lastEval!.accuracy} (evals ${evals})`);
});

test('LoRA (r=4 on query/value + classifier) learns the task; base weights stay frozen', async () => {
  const opts: CompileOptions = {
    loss: ce,
    optimizer: adamw,
    trainable: {
      kind: 'lora',
      r: 4,
      alpha: 8,
      dropout: 0.05,
      targets: ['*attention.self.query.weight', '*attention.self.value.weight'],
      alsoTrain: ['classifier.*'],
      seed: 3,
    },
  };
  const prog = compileTrainStep(buildTinyEncoder(CFG), opts);
  assert.deepEqual(prog.params.map((p) => p.name).sort(), [
    'classifier.bias',
    'classifier.weight',
    'encoder.layer.0.attention.self.query.lora_A.weight',
    'encoder.layer.0.attention.self.query.lora_B.weight',
    'encoder.layer.0.attention.self.value.lora_A.weight',
    'encoder.layer.0.attention.self.value.lora_B.weight',
  ]);
  const train = tokenTask({ n: 512, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  const val = tokenTask({ n: 256, seq: CFG.seq, vocab: CFG.vocab, seed: 2, task: 'contains' });
  const tr = new Trainer(prog, { seed: 5, batchSize: 32, epochs: 16, schedule: { kind: 'constant', lr: 1e-2 }, evalEvery: 64, threads: 2 });
  const res = await tr.fit(train, val);
  assert.ok(res.lastEval!.accuracy! >= 0.8, `LoRA val accuracy ${res.lastEval!.accuracy}`);

  // Export: merged inference model matches the trained (unmerged, dropout-free) forward.
  const dir = mkdtempSync(join(tmpdir(), 'tempered-export-'));
  const merged = exportInference(prog, res.params, join(dir, 'model.onnx'));
  assert.ok(!merged.graph.nodes.some((n) => n.name.includes('lora')), 'no LoRA nodes in the exported model');
  const feeds = {
    input_ids: new ort.Tensor('int64', val.input_ids!.data as BigInt64Array, val.input_ids!.dims),
    attention_mask: new ort.Tensor('int64', val.attention_mask!.data as BigInt64Array, val.attention_mask!.dims),
  };
  const exported = await (await ort.InferenceSession.create(join(dir, 'model.onnx'))).run(feeds);
  const evalSess = await ort.InferenceSession.create(encodeModel(prog.eval));
  const evalFeeds: Record<string, ort.Tensor> = {
    ...feeds,
    labels: new ort.Tensor('int64', val.labels!.data as BigInt64Array, val.labels!.dims),
  };
  for (const p of prog.params) evalFeeds[p.name] = new ort.Tensor('float32', res.params.get(p.name) as Float32Array, p.dims);
  const trained = await evalSess.run(evalFeeds);
  const a = exported['logits']!.data as Float32Array,
    b = trained['logits']!.data as Float32Array;
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  assert.ok(maxDiff < 1e-5, `export parity: max abs diff ${maxDiff}`);

  // PEFT adapter: names, [r,in] / [out,r] shapes, transposed values.
  const out = join(dir, 'adapter');
  exportPeftAdapter(prog, res.params, out, { baseModel: 'tiny', taskType: 'SEQ_CLS' });
  assert.deepEqual(readdirSync(out).sort(), ['adapter_config.json', 'adapter_model.safetensors']);
  const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
  assert.equal(cfg.peft_type, 'LORA');
  assert.equal(cfg.r, 4);
  assert.equal(cfg.lora_alpha, 8);
  assert.deepEqual(cfg.target_modules, ['query', 'value']);
  const st = readSafetensors(join(out, 'adapter_model.safetensors')).tensors;
  const aName = 'base_model.model.encoder.layer.0.attention.self.query.lora_A.weight';
  const bName = 'base_model.model.encoder.layer.0.attention.self.value.lora_B.weight';
  assert.deepEqual(st.get(aName)!.shape, [4, 16]);
  assert.deepEqual(st.get(bName)!.shape, [16, 4]);
  const aOnnx = res.params.get('encoder.layer.0.attention.self.query.lora_A.weight') as Float32Array; // [in=16, r=4]
  assert.equal((st.get(aName)!.data as Float32Array)[1 * 16 + 3], aOnnx[3 * 4 + 1]);
});

test('head-only training: frozen backbone features computed once, classifier learns (val accuracy ≥ 0.9)', async () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), { loss: ce, trainable: { kind: 'head', features: 'pooled' }, optimizer: adamw });
  assert.deepEqual(prog.params.map((p) => p.name).sort(), ['classifier.bias', 'classifier.weight']);
  assert.deepEqual(prog.dataInputs.map((v) => v.name).sort(), ['labels', 'pooled']);
  const train = tokenTask({ n: 512, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'first' });
  const val = tokenTask({ n: 256, seq: CFG.seq, vocab: CFG.vocab, seed: 2, task: 'first' });
  const tr = new Trainer(prog, {
    seed: 5,
    batchSize: 32,
    epochs: 30,
    schedule: { kind: 'constant', lr: 3e-2 },
    evalEvery: 80,
    patience: 100,
    threads: 2,
  });
  const res = await tr.fit(train, val);
  assert.ok(res.lastEval!.accuracy! >= 0.9, `head-only val accuracy ${res.lastEval!.accuracy}`);
  // The exported model is the whole network with the trained head.
  const model = exportInference(prog, res.params);
  assert.deepEqual(model.graph.initializers.get('classifier.weight')!.data, res.params.get('classifier.weight'));
});

test('resuming from a checkpoint gives bitwise identical weights (full fine-tuning, embeddings with repeated tokens, 2 threads)', async () => {
  const opts: CompileOptions = { loss: ce, trainable: { kind: 'full' }, optimizer: adamw, clipNorm: 1 };
  const train = tokenTask({ n: 64, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  const base = {
    seed: 9,
    batchSize: 16,
    maxSteps: 10,
    schedule: { kind: 'cosine' as const, lr: 1e-2, warmupSteps: 2, totalSteps: 10 },
    threads: 2,
  };
  const whole = await new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), base).fit(train);
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ckpt-'));
  const first = await new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), {
    ...base,
    checkpointEvery: 3,
    checkpointDir: dir,
    stopAfterStep: 6,
  }).fit(train);
  assert.equal(first.step, 6);
  const resumed = await new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), base).fit(train, undefined, {
    resumeFrom: join(dir, 'step-00000006'),
  });
  assert.equal(resumed.step, 10);
  // The resumed run's history is the uninterrupted run's (steps 1..6 from the checkpoint); only the wall clock differs.
  const noClock = (h: typeof whole.history) => h.map(({ samplesPerSec: _, ...m }) => m);
  assert.deepEqual(noClock(resumed.history), noClock(whole.history));
  for (const [name, w] of whole.params) {
    assert.deepEqual(
      Buffer.from((resumed.params.get(name) as Float32Array).buffer),
      Buffer.from((w as Float32Array).buffer),
      `${name} differs after resume`,
    );
  }
  // A checkpoint from other settings is refused.
  await assert.rejects(
    new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), { ...base, batchSize: 8 }).fit(train, undefined, {
      resumeFrom: join(dir, 'step-00000006'),
    }),
    InputError,
  );
});

test('resume is bitwise identical with LoRA dropout and gradient accumulation, its settings given with their keys in another order', async () => {
  const opts: CompileOptions = {
    loss: ce,
    optimizer: adamw,
    trainable: { kind: 'lora', r: 2, alpha: 4, dropout: 0.1, targets: ['*query.weight', '*value.weight'], alsoTrain: ['classifier.*'] },
  };
  const train = tokenTask({ n: 64, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  const base = { seed: 4, batchSize: 8, accumulation: 2, maxSteps: 6, schedule: { kind: 'constant' as const, lr: 1e-2 }, threads: 2 };
  const whole = await new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), base).fit(train);
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ckpt-'));
  await new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), {
    ...base,
    checkpointEvery: 2,
    checkpointDir: dir,
    stopAfterStep: 2,
  }).fit(train);
  // The same settings, as a config read back from canonical JSON (keys sorted) has them: key order is no setting.
  const sorted = { ...opts, trainable: Object.fromEntries(Object.entries(opts.trainable).sort()) as CompileOptions['trainable'] };
  const resumed = await new Trainer(compileTrainStep(buildTinyEncoder(CFG), sorted), {
    ...base,
    schedule: { lr: 1e-2, kind: 'constant' },
  }).fit(train, undefined, {
    resumeFrom: join(dir, 'step-00000002'),
  });
  for (const [name, w] of whole.params) {
    assert.deepEqual(
      Buffer.from((resumed.params.get(name) as Float32Array).buffer),
      Buffer.from((w as Float32Array).buffer),
      `${name} differs after resume`,
    );
  }
});

test('a checkpoint of other settings is refused naming them; one written before checkpoints kept them says they are not recorded', async () => {
  const opts: CompileOptions = { loss: ce, optimizer: adamw, trainable: { kind: 'lora', r: 2, alpha: 4, targets: ['*query.weight'] } };
  const train = tokenTask({ n: 32, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  const base = { seed: 4, batchSize: 8, maxSteps: 2, schedule: { kind: 'constant' as const, lr: 1e-2 }, threads: 1 };
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ckpt-'));
  await new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), { ...base, checkpointEvery: 2, checkpointDir: dir }).fit(train);
  const ck = join(dir, 'step-00000002');
  const other = new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), { ...base, schedule: { kind: 'constant', lr: 3e-3 } });
  await assert.rejects(other.fit(train, undefined, { resumeFrom: ck }), (e: Error) => {
    assert.ok(e instanceof InputError);
    assert.match(e.message, /different training settings \(checkpoint → now\):\n {2}schedule\.lr: 0\.01 → 0\.003$/);
    return true;
  });
  const manifestPath = join(ck, 'manifest.json');
  const { settings, ...older } = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
  assert.equal((settings as { seed?: unknown }).seed, 4);
  writeFileSync(manifestPath, JSON.stringify(older));
  await assert.rejects(other.fit(train, undefined, { resumeFrom: ck }), /records only their hash/);
});

test('an unavailable device is an InputError naming the field', async () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), { loss: ce, trainable: { kind: 'full' }, optimizer: adamw });
  const train = tokenTask({ n: 16, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  await assert.rejects(
    new Trainer(prog, { seed: 1, batchSize: 8, maxSteps: 1, schedule: { kind: 'constant', lr: 1e-3 }, device: 'cuda' }).fit(train),
    (e: Error) => e instanceof InputError && /train\.device/.test(e.message),
  );
});

test('missing data column is an InputError', async () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), { loss: ce, trainable: { kind: 'full' }, optimizer: adamw });
  const train = tokenTask({ n: 16, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  delete train['labels'];
  await assert.rejects(
    new Trainer(prog, { seed: 1, batchSize: 8, maxSteps: 1, schedule: { kind: 'constant', lr: 1e-3 } }).fit(train),
    (e: Error) => e instanceof InputError && /labels/.test(e.message),
  );
});

test('early stopping ends training after `patience` evaluations without improvement', async () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), {
    loss: ce,
    trainable: { kind: 'patterns', include: ['classifier.*'] },
    optimizer: { kind: 'sgd' },
  });
  const train = tokenTask({ n: 64, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  const val = tokenTask({ n: 32, seq: CFG.seq, vocab: CFG.vocab, seed: 2, task: 'contains' });
  const evals: number[] = [];
  // lr 0: the validation loss can never improve on the first evaluation.
  const res = await new Trainer(prog, {
    seed: 1,
    batchSize: 8,
    maxSteps: 50,
    schedule: { kind: 'constant', lr: 0 },
    evalEvery: 2,
    patience: 3,
    onEval: (m) => evals.push(m.loss),
  }).fit(train, val);
  assert.equal(res.stoppedEarly, true);
  assert.equal(res.step, 8);
  assert.equal(evals.length, 4);
  assert.ok(evals.every((l) => l === evals[0]));
});

test('a custom evalFn sees the forward outputs of every validation row and can drive early stopping', async () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), {
    loss: ce,
    trainable: { kind: 'patterns', include: ['classifier.*', 'pooler.*'] },
    optimizer: adamw,
  });
  const train = tokenTask({ n: 64, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'first' });
  const val = tokenTask({ n: 37, seq: CFG.seq, vocab: CFG.vocab, seed: 2, task: 'first' });
  const seen: number[][] = [];
  const res = await new Trainer(prog, {
    seed: 1,
    batchSize: 8,
    maxSteps: 4,
    schedule: { kind: 'constant', lr: 1e-2 },
    evalEvery: 2,
    monitor: 'positives',
    evalFn: async ({ predict, val: v }) => {
      const out = await predict(v);
      seen.push(out['logits']!.dims);
      const l = out['logits']!.data as Float32Array;
      let pos = 0;
      for (let i = 0; i < l.length; i += 2) if (l[i + 1]! > l[i]!) pos++;
      return { positives: pos / (l.length / 2) };
    },
  }).fit(train, val);
  assert.deepEqual(seen, [
    [37, 2],
    [37, 2],
  ]);
  assert.ok(res.lastEval!.custom!['positives']! >= 0 && res.lastEval!.custom!['positives']! <= 1);
});

test('several steps per onnxruntime run change nothing: same history, evaluations and weights bit for bit, and resume across runs', async () => {
  const train = tokenTask({ n: 64, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  const val = tokenTask({ n: 32, seq: CFG.seq, vocab: CFG.vocab, seed: 2, task: 'contains' });
  const cases: [string, CompileOptions][] = [
    ['full', { loss: ce, trainable: { kind: 'full' }, optimizer: adamw, clipNorm: 1 }],
    [
      'LoRA with dropout',
      {
        loss: ce,
        optimizer: adamw,
        trainable: { kind: 'lora', r: 2, alpha: 4, dropout: 0.2, targets: ['*query.weight', '*value.weight'], alsoTrain: ['classifier.*'] },
      },
    ],
  ];
  for (const [what, opts] of cases) {
    const base = {
      seed: 3,
      batchSize: 8,
      maxSteps: 11,
      evalEvery: 5,
      schedule: { kind: 'linear' as const, lr: 1e-2, warmupSteps: 2, totalSteps: 11 },
      threads: 2,
    };
    const fit = async (stepsPerRun: number, extra: object = {}, resumeFrom?: string) => {
      const evals: number[] = [];
      const res = await new Trainer(compileTrainStep(buildTinyEncoder(CFG), opts), {
        ...base,
        stepsPerRun,
        ...extra,
        onEval: (m) => evals.push(m.loss),
      }).fit(train, val, { resumeFrom });
      return { res, evals };
    };
    const one = await fit(1);
    const four = await fit(4);
    assert.deepEqual(
      four.res.history.map(({ samplesPerSec: _, ...m }) => m),
      one.res.history.map(({ samplesPerSec: _, ...m }) => m),
      `${what}: history`,
    );
    assert.deepEqual(four.evals, one.evals, `${what}: evaluations`);
    const dir = mkdtempSync(join(tmpdir(), 'tempered-ckpt-'));
    await fit(4, { checkpointEvery: 3, checkpointDir: dir, stopAfterStep: 6 });
    assert.deepEqual(readdirSync(dir).sort(), ['step-00000003', 'step-00000006'], `${what}: checkpoints at their steps`);
    const resumed = await fit(4, {}, join(dir, 'step-00000006'));
    for (const [name, w] of one.res.params) {
      assert.deepEqual(
        Buffer.from((four.res.params.get(name) as Float32Array).buffer),
        Buffer.from((w as Float32Array).buffer),
        `${what}: ${name} differs with 4 steps per run`,
      );
      assert.deepEqual(
        Buffer.from((resumed.res.params.get(name) as Float32Array).buffer),
        Buffer.from((w as Float32Array).buffer),
        `${what}: ${name} differs after resume`,
      );
    }
  }
});

test('an abort signal stops training after the current step', async () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), {
    loss: ce,
    trainable: { kind: 'patterns', include: ['classifier.*'] },
    optimizer: adamw,
  });
  const train = tokenTask({ n: 64, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
  const ac = new AbortController();
  const res = await new Trainer(prog, {
    seed: 1,
    batchSize: 8,
    maxSteps: 20,
    schedule: { kind: 'constant', lr: 1e-3 },
    signal: ac.signal,
    onStep: (m) => {
      if (m.step === 3) ac.abort();
    },
  }).fit(train);
  assert.equal(res.aborted, true);
  assert.equal(res.step, 3);
});
