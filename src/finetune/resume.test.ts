import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileClassifier, trainClassifier, type TrainClassifierOptions } from './classifier.ts';
import { DROPOUT_MASK_PREFIX } from '../engine/dropout.ts';
import { syntheticRows, writeTextTable } from './synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { InputError } from '../errors.ts';
import { BEST_WEIGHTS_FILE, HISTORY_FILE } from '../engine/checkpoint.ts';
import { MODEL_MANIFEST } from './export.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { FolderBackend } from '../store/folder-backend.ts';
import { pullCheckpoint, pushCheckpoint } from '../store/shared-checkpoints.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-resume-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const modelDir = tinyBertDir(join(root, 'model'), 7, TINY_MINILM);
const train = writeTextTable(join(root, 'train.arrow'), syntheticRows(160, 5));
const validation = writeTextTable(join(root, 'validation.arrow'), syntheticRows(24, 6));
const ckName = (step: number) => `step-${String(step).padStart(8, '0')}`;

function options(name: string, over: Partial<TrainClassifierOptions>): TrainClassifierOptions {
  return {
    modelDir,
    train,
    labels: ['negative', 'positive'],
    method: 'lora',
    lora: { r: 4, alpha: 8, dropout: 0.1 },
    lr: 1e-2,
    maxSteps: 8,
    batchSize: 8,
    schedule: 'cosine',
    warmupSteps: 2,
    weightDecay: 0.01,
    clipNorm: 1,
    seed: 9,
    maxLength: 32,
    pooling: 'cls',
    device: 'cpu',
    threads: 2,
    checkpointDir: join(root, name, 'ck'),
    checkpointEvery: 4,
    outDir: join(root, name, 'out'),
    ...over,
  };
}

/** Trains `name` and stops it once step `stopAt`'s checkpoint is on disk, as a worker that died there. */
async function interrupted(name: string, over: Partial<TrainClassifierOptions>, stopAt: number) {
  const ctl = new AbortController();
  await assert.rejects(
    trainClassifier(
      options(name, {
        ...over,
        signal: ctl.signal,
        onCheckpoint: (dir) => {
          if (dir.endsWith(ckName(stopAt))) ctl.abort();
        },
      }),
    ),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
  assert.equal(existsSync(join(root, name, 'out')), false, 'an interrupted run exports nothing');
  assert.ok(readdirSync(join(root, name, 'ck')).includes(ckName(stopAt)));
}

async function interruptedThenResumed(name: string, over: Partial<TrainClassifierOptions>, stopAt: number) {
  await interrupted(name, over, stopAt);
  return trainClassifier(options(name, { ...over, resume: true }));
}

test("the tiny model trains with the encoder's own dropout (config default 0.1) besides LoRA's, so the resume tests below cover both", () => {
  const masks = compileClassifier(options('masks', {})).program.dropoutMasks.map((m) => m.input);
  assert.equal(masks.filter((m) => m.startsWith(DROPOUT_MASK_PREFIX)).length, 1 + 2 * 3 + 1);
  assert.ok(masks.some((m) => m.startsWith('lora_dropout_mask:')));
});

for (const [label, over, stopAt] of [
  ['LoRA with dropout', {}, 4],
  ['full fine-tuning with gradient accumulation', { method: 'full', accumulation: 2, maxSteps: 4, checkpointEvery: 2, lr: 1e-3 }, 2],
  [
    'full fine-tuning, 3 steps per run from the first run (no time cap, as in the stage in its own process), length-grouped batches',
    { method: 'full', stepsPerRun: 3, runBudgetMs: Infinity, groupByLength: true, maxSteps: 10, checkpointEvery: 5, lr: 1e-3 },
    5,
  ],
  ['LoRA, 4 steps per run (dropout masks stacked in the Loop)', { stepsPerRun: 4, maxSteps: 10, checkpointEvery: 5 }, 5],
] as const) {
  test(`${label}: killed after a checkpoint and resumed gives bitwise the same model`, async () => {
    const a = await trainClassifier(options(`${label}-a`, over as Partial<TrainClassifierOptions>));
    const b = await interruptedThenResumed(`${label}-b`, over as Partial<TrainClassifierOptions>, stopAt);
    assert.equal(b.resumedFromStep, stopAt);
    assert.equal(b.steps, a.steps);
    // The resumed run's history is the uninterrupted run's: the steps up to the checkpoint as the checkpoint
    // recorded them, then exactly the uninterrupted run's remaining steps.
    assert.equal(b.history.length, a.steps);
    assert.deepEqual(b.history, a.history);
    const bytesA = readFileSync(join(root, `${label}-a`, 'out', 'model.onnx'));
    const bytesB = readFileSync(join(root, `${label}-b`, 'out', 'model.onnx'));
    assert.ok(bytesA.equals(bytesB), 'model.onnx differs between the uninterrupted and the resumed run');
  });
}

test('only the newest two checkpoints stay on disk, by default and as asked', async () => {
  const steps = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('step-'));
  const seen: number[] = [];
  const ck = join(root, 'keep', 'ck');
  await trainClassifier(options('keep', { maxSteps: 5, checkpointEvery: 1, onCheckpoint: () => void seen.push(steps(ck).length) }));
  assert.deepEqual(steps(ck), ['step-00000004', 'step-00000005']);
  // Pruned as each is written, before it is handed on (shared): never more than two on disk.
  assert.deepEqual(seen, [1, 2, 2, 2, 2]);
  await trainClassifier(options('keep-1', { maxSteps: 3, checkpointEvery: 1, keepCheckpoints: 1 }));
  assert.deepEqual(steps(join(root, 'keep-1', 'ck')), ['step-00000003']);
  await trainClassifier(options('keep-0', { maxSteps: 2, checkpointEvery: 1, keepCheckpoints: 0 }));
  assert.deepEqual(steps(join(root, 'keep-0', 'ck')), ['step-00000002'], 'the newest is kept whatever the count');
});

test('a different seed changes the weights (the comparison above can fail)', async () => {
  const a = await trainClassifier(options('seed-a', { maxSteps: 4 }));
  const b = await trainClassifier(options('seed-b', { maxSteps: 4, seed: 10 }));
  assert.notDeepEqual(
    a.history.map((h) => h.loss),
    b.history.map((h) => h.loss),
  );
  assert.ok(!readFileSync(join(root, 'seed-a', 'out', 'model.onnx')).equals(readFileSync(join(root, 'seed-b', 'out', 'model.onnx'))));
});

test('dropout changes the trajectory (the resume comparisons above would see wrong masks), and dropout: 0 turns it off', async () => {
  const on = await trainClassifier(options('dropout-on', { maxSteps: 4, lora: { r: 4, alpha: 8 } }));
  const off = await trainClassifier(options('dropout-off', { maxSteps: 4, lora: { r: 4, alpha: 8 }, dropout: 0 }));
  const attnOnly = await trainClassifier(options('dropout-attn', { maxSteps: 4, lora: { r: 4, alpha: 8 }, dropout: { hidden: 0 } }));
  assert.notDeepEqual(
    on.history.map((h) => h.loss),
    off.history.map((h) => h.loss),
  );
  assert.notDeepEqual(
    attnOnly.history.map((h) => h.loss),
    off.history.map((h) => h.loss),
  );
  assert.equal(compileClassifier(options('x', { lora: { r: 4, alpha: 8 }, dropout: 0 })).program.dropoutMasks.length, 0);
  const manifest = JSON.parse(readFileSync(join(root, 'dropout-attn', 'out', 'tempered-model.json'), 'utf8'));
  assert.deepEqual(manifest.hyperparameters.dropout, { hidden: 0, attention: 0.1, classifier: 0 });
});

test('a dropout rate out of range is an InputError naming the field', async () => {
  await assert.rejects(
    trainClassifier(options('bad-rate', { dropout: { attention: 1 } })),
    (e: unknown) => e instanceof InputError && /train\.dropout\.attention/.test(String((e as InputError).where)),
  );
});

test('resuming with changed settings is refused, naming the settings that differ', async () => {
  await trainClassifier(options('changed', { maxSteps: 4 }));
  await assert.rejects(
    trainClassifier(options('changed', { maxSteps: 4, lr: 2e-2, lora: { r: 8, alpha: 8, dropout: 0.1 }, resume: true })),
    (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.match(e.message, /different training settings/);
      // Only what changed, each as the checkpoint had it and as it is now.
      assert.match(e.message, /\n {2}hyper\.lora\.r: 4 → 8\n {2}hyper\.lr: 0\.01 → 0\.02$/);
      assert.match(String(e.hint), /delete .*changed\/ck/);
      return true;
    },
  );
});

test('a checkpoint that records only its settings hash (written before 7 Dec) still resumes, and its refusal says which settings is not known', async () => {
  const over: Partial<TrainClassifierOptions> = { maxSteps: 4, checkpointEvery: 2 };
  const a = await trainClassifier(options('hash-only-a', over));
  await interrupted('hash-only-b', over, 2);
  const manifestPath = join(root, 'hash-only-b', 'ck', ckName(2), 'manifest.json');
  const { settings, ...older } = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
  assert.ok(settings, 'a checkpoint written now records its settings');
  writeFileSync(manifestPath, JSON.stringify(older, null, 2) + '\n');
  await assert.rejects(
    trainClassifier(options('hash-only-b', { ...over, lr: 2e-2, resume: true })),
    (e: unknown) => e instanceof InputError && /records only their hash .* which differ is not known/.test(e.message),
  );
  const b = await trainClassifier(options('hash-only-b', { ...over, resume: true }));
  assert.equal(b.resumedFromStep, 2);
  assert.deepEqual(b.history, a.history);
  assert.ok(
    readFileSync(join(root, 'hash-only-b', 'out', 'model.onnx')).equals(readFileSync(join(root, 'hash-only-a', 'out', 'model.onnx'))),
  );
});

test('the same settings with their keys in another order resume the checkpoint, mid-run and final (a plan read back from the audit trail sorts keys)', async () => {
  // As the pipeline file has them, and as `models reproduce` read them back from the trail's canonical JSON: the same
  // cache key, so the same checkpoint folder. The old hash was of JSON.stringify, and refused these.
  const given: Partial<TrainClassifierOptions> = {
    maxSteps: 4,
    checkpointEvery: 2,
    validation,
    evalEvery: 2,
    lora: { r: 4, alpha: 8, dropout: 0.1 },
    earlyStopping: { metric: 'loss', patience: 5 },
  };
  const sorted: Partial<TrainClassifierOptions> = {
    ...given,
    lora: { alpha: 8, dropout: 0.1, r: 4 },
    earlyStopping: { patience: 5, metric: 'loss' },
  };
  const a = await trainClassifier(options('order-a', given));
  for (const step of [2, 4]) {
    const name = `order-${step}`;
    cpSync(join(root, 'order-a', 'ck', ckName(step)), join(root, name, 'ck', ckName(step)), { recursive: true });
    const b = await trainClassifier(options(name, { ...sorted, resume: true }));
    assert.equal(b.resumedFromStep, step);
    assert.deepEqual(b.history, a.history);
    assert.ok(readFileSync(join(root, name, 'out', 'model.onnx')).equals(readFileSync(join(root, 'order-a', 'out', 'model.onnx'))));
  }
});

test('several steps per onnxruntime run give the same model bytes as one step per run (full fine-tuning, length-grouped batches)', async () => {
  const over = { method: 'full' as const, groupByLength: true, maxSteps: 10, checkpointEvery: 0, lr: 1e-3 };
  const one = await trainClassifier(options('per-run-1', { ...over, stepsPerRun: 1 }));
  const four = await trainClassifier(options('per-run-4', { ...over, stepsPerRun: 4 }));
  assert.deepEqual(four.history, one.history);
  assert.ok(
    readFileSync(join(root, 'per-run-4', 'out', 'model.onnx')).equals(readFileSync(join(root, 'per-run-1', 'out', 'model.onnx'))),
    'model.onnx differs',
  );
});

test("a run resumed from a checkpoint has the uninterrupted run's whole history, validation metrics included, also through a shared store", async () => {
  const over: Partial<TrainClassifierOptions> = { validation, evalEvery: 3, maxSteps: 12, checkpointEvery: 5, stepsPerRun: 2 };
  const a = await trainClassifier(options('history-a', over));
  assert.deepEqual(
    a.history.map((h) => h.step),
    Array.from({ length: 12 }, (_, i) => i + 1),
  );
  assert.deepEqual(
    a.history.filter((h) => h.val).map((h) => h.step),
    [3, 6, 9, 12],
  );
  // Killed after step 10's checkpoint; the checkpoint before it (step 5) is kept too.
  const b = await interruptedThenResumed('history-b', over, 10);
  assert.equal(b.resumedFromStep, 10);
  assert.deepEqual(b.history, a.history, 'steps, epochs, losses, lrs, grad norms and validation metrics');
  assert.equal(b.finalLoss, a.finalLoss);

  // A retry on another worker: the interrupted attempt shares each checkpoint; the new one starts from an
  // empty folder, pulls the newest, and resumes from it.
  const remote = new FolderBackend(join(root, 'shared'));
  const home = (n: string) => new ArtifactStore(join(root, n, 'store'), { remote });
  const ctl = new AbortController();
  await assert.rejects(
    trainClassifier(
      options('history-c1', {
        ...over,
        signal: ctl.signal,
        onCheckpoint: async (dir) => {
          await pushCheckpoint(home('history-c1'), 'history', dir);
          if (dir.endsWith(ckName(5))) ctl.abort();
        },
      }),
    ),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
  const ck = join(root, 'history-c2', 'ck');
  assert.equal(await pullCheckpoint(home('history-c2'), 'history', ck), 5);
  const c = await trainClassifier(options('history-c2', { ...over, resume: true }));
  assert.equal(c.resumedFromStep, 5);
  assert.deepEqual(c.history, a.history, 'resumed from the shared store');
});

test('a checkpoint written before checkpoints carried the history still resumes: the history starts after it, and later checkpoints carry what there is', async () => {
  const over: Partial<TrainClassifierOptions> = { maxSteps: 10, checkpointEvery: 3 };
  const a = await trainClassifier(options('old-a', over));
  await interrupted('old-b', over, 3);
  const ck = join(root, 'old-b', 'ck');
  // As an older version wrote it: no history file.
  rmSync(join(ck, ckName(3), HISTORY_FILE));
  // Resumed from it, and stopped again after step 6's checkpoint.
  await interrupted('old-b', { ...over, resume: true }, 6);
  // A copy of the folder for resuming from step 3 once more below.
  cpSync(ck, join(root, 'old-c', 'ck'), { recursive: true });
  rmSync(join(root, 'old-c', 'ck', ckName(6)), { recursive: true });
  const b = await trainClassifier(options('old-b', { ...over, resume: true }));
  assert.equal(b.resumedFromStep, 6);
  assert.deepEqual(b.history, a.history.slice(3), 'steps 4.. (carried by step 6), then the rest');
  const c = await trainClassifier(options('old-c', { ...over, resume: true }));
  assert.equal(c.resumedFromStep, 3);
  assert.deepEqual(c.history, a.history.slice(3));
  assert.ok(readFileSync(join(root, 'old-c', 'out', 'model.onnx')).equals(readFileSync(join(root, 'old-a', 'out', 'model.onnx'))));
});

test('a checkpoint whose history does not end at its step is refused', async () => {
  const over: Partial<TrainClassifierOptions> = { maxSteps: 4, checkpointEvery: 2 };
  await trainClassifier(options('bad-history', over));
  const path = join(root, 'bad-history', 'ck', ckName(4), HISTORY_FILE);
  const rows = JSON.parse(readFileSync(path, 'utf8')) as { step: number }[];
  assert.deepEqual(
    rows.map((r) => r.step),
    [1, 2, 3, 4],
  );
  writeFileSync(path, JSON.stringify(rows.slice(0, 3)));
  await assert.rejects(
    trainClassifier(options('bad-history', { ...over, resume: true })),
    (e: unknown) => e instanceof InputError && /history does not end at its step 4/.test(e.message),
  );
});

/**
 * Trains until `killAt`'s checkpoint is on disk, then fails there as a killed worker would (a throw from
 * onCheckpoint: also after the checkpoint at which early stopping ends the run, where an abort comes too
 * late), and trains again with resume: true. Records, per checkpoint written, whether it holds best weights.
 */
async function killedThenResumed(name: string, over: Partial<TrainClassifierOptions>, killAt: number) {
  await assert.rejects(
    trainClassifier(
      options(name, {
        ...over,
        onCheckpoint: (dir) => {
          if (dir.endsWith(ckName(killAt))) throw new Error('killed after the checkpoint');
        },
      }),
    ),
    /killed after the checkpoint/,
  );
  assert.equal(existsSync(join(root, name, 'out')), false, 'a killed run exports nothing');
  return trainClassifier(options(name, { ...over, resume: true }));
}

const bestOver = (o: Partial<TrainClassifierOptions>): Partial<TrainClassifierOptions> => ({
  validation,
  evalEvery: 2,
  maxSteps: 12,
  ...o,
});
for (const [label, over, killAt, bestStep, steps, withBest] of [
  [
    'LoRA, validation loss, patience never reached (best-checkpoint selection)',
    bestOver({ checkpointEvery: 4, earlyStopping: { metric: 'loss', patience: 100 } }),
    8,
    2,
    12,
    [4, 8, 12],
  ],
  [
    'LoRA, validation loss, early stopping ends the run at step 8',
    bestOver({ checkpointEvery: 3, earlyStopping: { metric: 'loss', patience: 3 } }),
    6,
    2,
    8,
    [3, 6, 8],
  ],
  [
    'the same, killed after the checkpoint at which early stopping ended the run (before its export)',
    bestOver({ checkpointEvery: 3, earlyStopping: { metric: 'loss', patience: 3 } }),
    8,
    2,
    8,
    [3, 6, 8],
  ],
  [
    'full fine-tuning, validation macro-F1, the best step between two checkpoints',
    bestOver({ method: 'full', lr: 1e-3, checkpointEvery: 3, earlyStopping: { metric: 'f1_macro', patience: 100 } }),
    6,
    4,
    12,
    [3, 6, 9, 12],
  ],
  [
    "LoRA, validation loss, the best step is the checkpoint's own (its weights are the best ones)",
    bestOver({ lr: 5e-2, checkpointEvery: 3, earlyStopping: { metric: 'loss', patience: 100 } }),
    6,
    6,
    12,
    [3, 9, 12],
  ],
] as const) {
  test(`${label}: resumed from the checkpoint of step ${killAt}, ${bestStep < killAt ? 'after' : 'at'} the best step ${bestStep} and with no better one after it, exports bitwise the uninterrupted run's best weights`, async () => {
    const o = over as Partial<TrainClassifierOptions>;
    const held: number[] = [];
    const a = await trainClassifier(
      options(`${label}-a`, {
        ...o,
        onCheckpoint: (dir) => {
          if (existsSync(join(dir, BEST_WEIGHTS_FILE))) held.push(Number(/step-(\d+)$/.exec(dir)![1]));
        },
      }),
    );
    // The case as described: the best evaluation at or before the checkpoint, none better after it.
    assert.equal(a.bestStep, bestStep);
    assert.equal(a.steps, steps);
    // Best weights are stored only in checkpoints after the best step (at it, they are the checkpoint's weights).
    assert.deepEqual(held, withBest);
    const b = await killedThenResumed(`${label}-b`, o, killAt);
    assert.equal(b.resumedFromStep, killAt);
    assert.equal(b.bestStep, a.bestStep);
    assert.equal(b.steps, a.steps);
    assert.equal(b.epochs, a.epochs);
    assert.equal(b.finalLoss, a.finalLoss);
    assert.deepEqual(b.history, a.history, 'validation metrics at the best step included');
    const out = (n: string, f: string) => readFileSync(join(root, n, 'out', f));
    assert.ok(
      out(`${label}-a`, 'model.onnx').equals(out(`${label}-b`, 'model.onnx')),
      'model.onnx differs between the uninterrupted and the resumed run',
    );
    const training = (n: string) => JSON.parse(out(n, MODEL_MANIFEST).toString('utf8')).training;
    assert.deepEqual(training(`${label}-b`), training(`${label}-a`));
    assert.equal(training(`${label}-b`).bestStep, bestStep);
  });
}

test('a checkpoint written before checkpoints carried the best step still resumes: its best score counts, its best weights are gone, so the final weights are exported', async () => {
  const over = bestOver({ checkpointEvery: 4, earlyStopping: { metric: 'loss', patience: 100 } });
  await assert.rejects(
    trainClassifier(
      options('old-best', {
        ...over,
        onCheckpoint: (dir) => {
          if (dir.endsWith(ckName(8))) throw new Error('killed');
        },
      }),
    ),
    /killed/,
  );
  // As an older version wrote it: the best score, no best step, no best weights.
  const dir = join(root, 'old-best', 'ck', ckName(8));
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
  assert.equal(manifest.bestStep, 2);
  assert.equal(typeof manifest.best, 'number');
  delete manifest.bestStep;
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  rmSync(join(dir, BEST_WEIGHTS_FILE));
  const r = await trainClassifier(options('old-best', { ...over, resume: true }));
  assert.equal(r.resumedFromStep, 8);
  assert.equal(r.steps, 12);
  assert.equal(r.bestStep, undefined, 'no later evaluation beat the best score it carried');
  // The final weights: those of the same training without early stopping.
  await trainClassifier(options('old-best-final', { ...over, earlyStopping: undefined }));
  const model = (n: string) => readFileSync(join(root, n, 'out', 'model.onnx'));
  assert.ok(model('old-best').equals(model('old-best-final')));
});
