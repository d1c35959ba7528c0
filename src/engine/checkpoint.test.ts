import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BEST_WEIGHTS_FILE,
  HISTORY_FILE,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  removeStaleTemps,
  sameSettings,
  saveCheckpoint,
  settingsHash,
  settingsMismatch,
  type CheckpointManifest,
} from './checkpoint.ts';
import { Rng } from './prng.ts';
import { writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import { InputError } from '../errors.ts';

const manifest = (step: number): CheckpointManifest => ({
  format: 'tempered-checkpoint/1',
  step,
  epoch: 1,
  position: 3,
  rng: new Rng(1).state(),
  configHash: 'abc',
  evalsWithoutImprovement: 0,
  shapes: { w: [2, 2], 'w::m': [2, 2] },
});

test('checkpoints round-trip, overwrite atomically, and write identical bytes for identical state', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ck-'));
  const path = join(dir, 'step-1');
  const params = new Map([['w', Float32Array.from([1, 2, 3, 4])]]);
  const state = new Map([['w::m', Float32Array.from([0.5, 0, 0, -1])]]);
  saveCheckpoint(path, { manifest: manifest(1), params, state });
  const bytes = readFileSync(join(path, 'weights.safetensors'));
  saveCheckpoint(path, { manifest: manifest(1), params, state });
  assert.deepEqual(readFileSync(join(path, 'weights.safetensors')), bytes);
  assert.deepEqual(readdirSync(dir), ['step-1'], 'no temp folders left');
  const back = loadCheckpoint(path);
  assert.equal(back.manifest.step, 1);
  assert.deepEqual(back.params.get('w'), params.get('w'));
  assert.deepEqual(back.state.get('w::m'), state.get('w::m'));
  assert.deepEqual(back.manifest.rng, new Rng(1).state());
});

test('loading a folder that is not a checkpoint is an InputError', () => {
  assert.throws(() => loadCheckpoint(mkdtempSync(join(tmpdir(), 'tempered-ck-'))), InputError);
});

test('Rng state restores the exact stream', () => {
  const a = new Rng(42);
  a.next();
  a.next();
  const b = new Rng(a.state());
  assert.deepEqual([a.next(), a.nextU32(), a.normal()], [b.next(), b.nextU32(), b.normal()]);
  assert.notDeepEqual(new Rng(1).permutation(10), new Rng(2).permutation(10));
  assert.deepEqual(
    Array.from(new Rng(1).permutation(10)).sort((x, y) => x - y),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
});

test('latestCheckpoint orders by step number and pruning keeps the newest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ck-'));
  const params = new Map([['w', Float32Array.from([1, 2, 3, 4])]]);
  for (const step of [2, 10, 9]) saveCheckpoint(join(dir, `step-${step}`), { manifest: manifest(step), params, state: new Map() });
  assert.equal(latestCheckpoint(dir), join(dir, 'step-10'));
  pruneCheckpoints(dir, 2);
  assert.deepEqual(listCheckpoints(dir), [join(dir, 'step-9'), join(dir, 'step-10')]);
  assert.equal(latestCheckpoint(join(dir, 'missing')), undefined);
});

test('removeStaleTemps deletes half-written checkpoints of dead writers only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ck-'));
  const params = new Map([['w', Float32Array.from([1, 2, 3, 4])]]);
  saveCheckpoint(join(dir, 'step-4'), { manifest: manifest(4), params, state: new Map() });
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  mkdirSync(join(dir, `.step-8.tmp-${dead}`));
  mkdirSync(join(dir, `.step-8.tmp-${dead}.old`));
  mkdirSync(join(dir, `.step-12.tmp-${process.pid}`));
  removeStaleTemps(dir);
  assert.deepEqual(readdirSync(dir).sort(), [`.step-12.tmp-${process.pid}`, 'step-4']);
});

test('a checkpoint carries the training history exactly (NaN, ±Infinity, -0, nested metrics); one without it (older) reads as undefined', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ck-'));
  const params = new Map([['w', Float32Array.from([1, 2, 3, 4])]]);
  const history = [
    { step: 1, epoch: 0, loss: 0.1 + 0.2, lr: 1e-3 / 3, gradNorm: NaN },
    { step: 2, epoch: 0, loss: -0, lr: Infinity, gradNorm: -Infinity, val: { loss: Math.PI, accuracy: NaN } },
    { step: 3, epoch: 1, loss: 5e-324, lr: 0, gradNorm: 1.7976931348623157e308, seqLen: 16 },
  ];
  saveCheckpoint(join(dir, 'step-3'), { manifest: manifest(3), params, state: new Map(), history });
  const back = loadCheckpoint<(typeof history)[number]>(join(dir, 'step-3')).history!;
  assert.deepEqual(back, history);
  assert.ok(Object.is(back[1]!.loss, -0));
  // Written before checkpoints carried a history (or by a caller without one): no file, history undefined.
  saveCheckpoint(join(dir, 'step-4'), { manifest: manifest(4), params, state: new Map() });
  assert.equal(existsSync(join(dir, 'step-4', HISTORY_FILE)), false);
  assert.equal(loadCheckpoint(join(dir, 'step-4')).history, undefined);
  // The history ends at the checkpoint's step, a row per step; it may start later than step 1 (a run resumed from an older checkpoint).
  saveCheckpoint(join(dir, 'step-5'), {
    manifest: manifest(5),
    params,
    state: new Map(),
    history: [
      { step: 4, loss: 1 },
      { step: 5, loss: 0.5 },
    ],
  });
  assert.deepEqual(loadCheckpoint(join(dir, 'step-5')).history, [
    { step: 4, loss: 1 },
    { step: 5, loss: 0.5 },
  ]);
  assert.throws(() =>
    saveCheckpoint(join(dir, 'step-6'), { manifest: manifest(6), params, state: new Map(), history: [{ step: 5, loss: 1 }] }),
  );
  const rows = (...r: string[]) => `[${r.join(',')}]`;
  for (const bad of [
    '[]',
    rows('{"step":1,"loss":1}', '{"step":2,"loss":1}', '{"step":3,"loss":"abc"}'),
    rows('{"step":1,"loss":1}', '{"step":2,"loss":1}', '{"step":3}'),
    rows('{"step":1,"loss":1}', '{"step":2,"loss":1}', '{"step":3,"loss":1,"val":{"loss":"x"}}'),
    '[{"step":1},{"step":3}]',
    '[{"step":2}]',
    '{"step":3}',
    '[{"step":0},{"step":1},{"step":2},{"step":3}]',
    'not json',
  ]) {
    writeFileSync(join(dir, 'step-3', HISTORY_FILE), bad);
    assert.throws(() => loadCheckpoint(join(dir, 'step-3')), InputError, bad);
  }
});

test("a checkpoint carries early stopping's best step, and its weights when they are not the checkpoint's own; one without them (older) reads as undefined", () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ck-'));
  const params = new Map([['w', Float32Array.from([1, 2, 3, 4])]]);
  const bestParams = new Map([['w', Float32Array.from([0.5, -1, 7, 0])]]);
  const at = (step: number, bestStep?: number): CheckpointManifest => ({
    ...manifest(step),
    best: 0.25,
    ...(bestStep ? { bestStep } : {}),
  });
  // Best step before the checkpoint's: its weights are stored beside the checkpoint's.
  saveCheckpoint(join(dir, 'step-5'), { manifest: at(5, 2), params, state: new Map(), bestParams });
  assert.ok(existsSync(join(dir, 'step-5', BEST_WEIGHTS_FILE)));
  const back = loadCheckpoint(join(dir, 'step-5'));
  assert.equal(back.manifest.bestStep, 2);
  assert.deepEqual(back.bestParams, bestParams);
  assert.deepEqual(back.params, params);
  // At the checkpoint's own step they are its weights: not stored twice, read back as a copy of them.
  saveCheckpoint(join(dir, 'step-6'), { manifest: at(6, 6), params, state: new Map(), bestParams: params });
  assert.equal(existsSync(join(dir, 'step-6', BEST_WEIGHTS_FILE)), false);
  const own = loadCheckpoint(join(dir, 'step-6'));
  assert.deepEqual(own.bestParams, params);
  assert.notEqual(own.bestParams!.get('w'), own.params.get('w'), 'a copy, not the weights training goes on changing');
  // Written before checkpoints carried the best step (the best score only): bestParams undefined.
  saveCheckpoint(join(dir, 'step-7'), { manifest: at(7), params, state: new Map() });
  assert.equal(loadCheckpoint(join(dir, 'step-7')).bestParams, undefined);
  assert.equal(loadCheckpoint(join(dir, 'step-7')).manifest.best, 0.25);
  // The writer must give the best weights when they are not the checkpoint's, and a best step within the run.
  assert.throws(
    () => saveCheckpoint(join(dir, 'step-8'), { manifest: at(8, 3), params, state: new Map() }),
    /lacks the weights of its best step 3/,
  );
  assert.throws(() => saveCheckpoint(join(dir, 'step-8'), { manifest: at(8, 9), params, state: new Map(), bestParams }));
  assert.throws(() => saveCheckpoint(join(dir, 'step-8'), { manifest: at(8), params, state: new Map(), bestParams }));
  // A checkpoint that lost its best weights file, or names a best step after its own, is refused.
  rmSync(join(dir, 'step-5', BEST_WEIGHTS_FILE));
  assert.throws(
    () => loadCheckpoint(join(dir, 'step-5')),
    (e: unknown) => e instanceof InputError && /lacks the weights of its best step 2/.test(e.message),
  );
  // Best weights that do not fit the weights beside them (another size, type or name, not finite) are refused at load, not at export.
  for (const [name, wrong] of [
    ['size', new Map([['w', Float32Array.from([1, 2])]])],
    ['type', new Map([['w', Float64Array.from([1, 2, 3, 4])]])],
    ['name', new Map([['v', Float32Array.from([1, 2, 3, 4])]])],
    ['NaN', new Map([['w', Float32Array.from([1, NaN, 3, 4])]])],
  ] as const) {
    saveCheckpoint(join(dir, 'step-9'), { manifest: at(9, 2), params, state: new Map(), bestParams });
    const tensors = new Map(
      [...wrong].map(([k, v]) => [k, { dtype: v instanceof Float64Array ? 'F64' : 'F32', shape: [v.length], data: v } as SafeTensor]),
    );
    writeSafetensors(join(dir, 'step-9', BEST_WEIGHTS_FILE), tensors, { format: 'tempered' });
    assert.throws(
      () => loadCheckpoint(join(dir, 'step-9')),
      (e: unknown) => e instanceof InputError && /the checkpoint's best weights do not fit its weights/.test(e.message),
      name,
    );
  }
  writeFileSync(join(dir, 'step-6', 'manifest.json'), JSON.stringify(at(6, 7)));
  assert.throws(() => loadCheckpoint(join(dir, 'step-6')), InputError);
});

test('the settings hash ignores key order; a checkpoint with the hash earlier code wrote (JSON.stringify) is the same settings', () => {
  const given = { hyper: { lora: { r: 4, alpha: 8 }, lr: 0.02 }, seed: 1 };
  const sorted = { seed: 1, hyper: { lr: 0.02, lora: { alpha: 8, r: 4 } } };
  assert.equal(settingsHash(given).hash, settingsHash(sorted).hash);
  const before7Dec = createHash('sha256').update(JSON.stringify(given)).digest('hex');
  assert.ok(sameSettings(before7Dec, settingsHash(given)), 'a checkpoint written before the upgrade, same config');
  assert.ok(sameSettings(settingsHash(sorted).hash, settingsHash(given)));
  assert.ok(!sameSettings(settingsHash({ ...given, seed: 2 }).hash, settingsHash(given)));
});

test('the recorded settings keep long arrays and strings (a data order) as a digest, and a refusal lists a few differences', () => {
  const order = Array.from({ length: 200 }, (_, i) => i).join(',');
  const recorded = settingsHash({ hyper: { lr: 0.01, labels: ['a', 'b'] }, epochBatches: order }).recorded as Record<string, unknown>;
  assert.deepEqual(recorded.hyper, { labels: ['a', 'b'], lr: 0.01 });
  assert.match(String(recorded.epochBatches), /^sha256:[0-9a-f]{16} \(\d+ characters\)$/);
  const many = (x: number) => Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`s${i}`, x]));
  const e = settingsMismatch('/ck/step-2', { settings: settingsHash(many(1)).recorded }, settingsHash(many(2)), 'training settings');
  assert.match(e.message, /\n {2}s4: 1 → 2\n {2}… and 3 more$/);
  assert.doesNotMatch(e.message, /s5/);
  assert.match(String(e.hint), /delete \/ck\b/);
});
