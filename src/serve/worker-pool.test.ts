/**
 * The inference pool on a real tiny classifier (real onnxruntime sessions in worker threads) behind
 * the real HTTP server: results equal the in-thread predictor's, /health and /metrics answer while
 * an inference is provably in flight, requests that queue meanwhile run as one batch, and a full
 * queue is refused with 429 at once. "In flight" is made certain, not timed: the test holds the
 * batch inside its thread (PoolOptions.hold) and lets it go when it has checked what it wants.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { trainClassifier } from '../finetune/classifier.ts';
import { loadPredictor } from '../finetune/predictor.ts';
import { syntheticRows, writeTextTable } from '../finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { predictFile } from '../predict/predict.ts';
import { classifierScorer } from '../predict/scorers.ts';
import { createModelServer, type ModelServer } from './server.ts';
import { exportTinyClassifier } from './tiny-classifier.testing.ts';
import { fromWire, loadPooledPredictor, toWire, type PooledPredictor } from './worker-pool.ts';
import { retryAfterSpread } from './gate.ts';
import type { Prediction } from './types.ts';
import { InputError } from '../errors.ts';

const root = mkdtempSync(join(tmpdir(), 'serve-pool-'));
const texts = syntheticRows(12, 4).map((r) => r.text);
const TOKEN = 'pool-test-token';

let outDir: string;

before(async () => {
  outDir = await exportTinyClassifier(root);
});
after(() => rmSync(root, { recursive: true, force: true }));

function close(a: Prediction[], b: Prediction[]) {
  assert.equal(a.length, b.length);
  a.forEach((p, i) => {
    assert.equal(p.label, b[i]!.label);
    for (const [l, v] of Object.entries(p.scores)) assert.ok(Math.abs(v - b[i]!.scores[l]!) < 1e-5, `${l}: ${v} vs ${b[i]!.scores[l]}`);
  });
}

/** Lets go of the batches a test holds in their threads (PoolOptions.hold). */
function release(hold: Int32Array): void {
  Atomics.store(hold, 0, 1);
  Atomics.notify(hold, 0);
}

interface Served {
  server: ModelServer;
  url: string;
  predict(inputs: string[]): Promise<Response>;
}

/** The real server answering with `pool` as model `id`, and a client of its /predict. */
async function serveThrough(pool: PooledPredictor, id: string, logger?: 'errors'): Promise<Served> {
  const server = await createModelServer({
    token: TOKEN,
    logger,
    pollMs: 60_000,
    resolveCurrent: async () => ({
      key: 'k',
      load: async () => ({
        id,
        labels: pool.labels,
        predict: (t) => pool.predict(t),
        stats: () => pool.stats(),
        close: () => pool.close(),
      }),
    }),
  });
  const url = await server.listen();
  const predict = (inputs: string[]) =>
    fetch(`${url}/predict`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs }),
    });
  return { server, url, predict };
}

test('a request through the pool gets exactly what the in-thread predictor gives', async () => {
  const direct = await loadPredictor(outDir, { threads: 1 });
  const pool = await loadPooledPredictor(outDir, { threads: 1, workers: 2 });
  try {
    assert.equal(pool.id, direct.id);
    assert.deepEqual(await pool.predict(texts), await direct.predict(texts));
  } finally {
    await pool.close();
    await direct.close();
  }
});

test('a lone request on an idle pool is sent at once, not after the batching window', { timeout: 120_000 }, async () => {
  // A window of ten minutes: a pool that waited for company before sending a lone request would hang here.
  const pool = await loadPooledPredictor(outDir, { threads: 1, workers: 1, batchWindowMs: 600_000 });
  const direct = await loadPredictor(outDir, { threads: 1 });
  try {
    for (const t of texts.slice(0, 3)) assert.deepEqual(await pool.predict([t]), await direct.predict([t]));
    assert.equal(pool.stats().batches, 3);
  } finally {
    await pool.close();
    await direct.close();
  }
});

test('bad pool settings are input errors naming the setting', async () => {
  await assert.rejects(loadPooledPredictor(outDir, { workers: 0 }), /serve\.workers: must be a whole number >= 1/);
});

test('while an inference is in flight /health and /metrics answer, queued requests run as one batch, and a full queue gets 429', async () => {
  const hold = new Int32Array(new SharedArrayBuffer(4));
  const pool: PooledPredictor = await loadPooledPredictor(outDir, { threads: 1, workers: 1, maxQueue: 3, hold });
  const direct = await loadPredictor(outDir, { threads: 1 });
  let served: Served | undefined;
  try {
    served = await serveThrough(pool, 'tiny@1');
    const { url, predict } = served;

    let firstDone = false;
    const first = predict(texts.slice(0, 4)).then((r) => ((firstDone = true), r));
    while (pool.stats().inflight === 0) await tick();
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { status: string }).status, 'ok');
    const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    assert.match(metrics, /^tempered_inference_inflight_batches 1$/m);
    assert.equal(firstDone, false, 'the first inference was still running while /health and /metrics answered');

    // Three one-text requests queue behind it (the queue's limit is 3 texts); a fourth is refused.
    const queued = [4, 5, 6].map((i) => predict([texts[i]!]));
    while (pool.stats().queued < 3) await tick();
    const refused = await predict([texts[7]!]);
    assert.equal(refused.status, 429);
    // 1–3 s, spread by the request id (gate.test.ts).
    assert.equal(refused.headers.get('retry-after'), String(retryAfterSpread(1, refused.headers.get('x-request-id')!)));
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'server_busy');
    assert.equal(firstDone, false, 'refused while the first inference was still in flight');

    release(hold);
    const answers = await Promise.all([first, ...queued]);
    for (const a of answers) assert.equal(a.status, 200);
    const bodies = (await Promise.all(answers.map((a) => a.json()))) as { predictions: Prediction[] }[];
    close(bodies[0]!.predictions, await direct.predict(texts.slice(0, 4)));
    for (let k = 0; k < 3; k++) close(bodies[k + 1]!.predictions, await direct.predict([texts[4 + k]!]));
    const st = pool.stats();
    assert.equal(st.batches, 2, 'the three queued requests went to onnxruntime as one batch');
    assert.equal(st.requests, 4);
    assert.equal(st.rejected, 1);
  } finally {
    release(hold);
    await served?.server.close();
    await direct.close();
  }
});

test(
  'a thread that dies mid-batch fails only that batch; a fresh thread takes its place and serves the queued request',
  { timeout: 120_000 },
  async () => {
    // hold[0] keeps the first batch in flight; hold[1] = 7 makes its thread exit with code 7 when released.
    const hold = new Int32Array(new SharedArrayBuffer(8));
    const pool = await loadPooledPredictor(outDir, { threads: 1, workers: 1, hold });
    const direct = await loadPredictor(outDir, { threads: 1 });
    try {
      const doomed = pool.predict(texts.slice(0, 2));
      while (pool.stats().inflight === 0) await tick();
      const waiting = pool.predict([texts[3]!]);
      while (pool.stats().queued === 0) await tick();
      Atomics.store(hold, 1, 7);
      release(hold);
      await assert.rejects(doomed, /inference thread exited with code 7/);
      close(await waiting, await direct.predict([texts[3]!]));
      close(await pool.predict(texts.slice(0, 2)), await direct.predict(texts.slice(0, 2)));
      assert.equal(pool.stats().workers, 1, 'the dead thread was replaced, not added to');
    } finally {
      release(hold);
      await pool.close();
      await direct.close();
    }
  },
);

/**
 * A classifier whose tokenizer has more entries than its model has rows, as classifier-vocab.test builds one: the tiny
 * tokenizer's 119-row BERT given MiniLM's tokenizer, trained on text it fits ('ꙮ' is [CLS] [UNK] [SEP], ids 100-102).
 * English text reaches ids in the thousands, which the predictor refuses as an input error.
 */
async function unfitClassifier(): Promise<string> {
  const small = tinyBertDir(join(root, 'unfit-model'), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 });
  // exportTinyClassifier's base model (root/model) has MiniLM's tokenizer.
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(root, 'model', f), join(small, f));
  return trainOnSigils(small, 'unfit');
}

/** One head-only step on short 'ꙮ' rows with maxLength 32, under root/<name>-*; the trained folder. */
async function trainOnSigils(modelDir: string, name: string): Promise<string> {
  const rows = Array.from({ length: 16 }, (_, i) => ({ text: 'ꙮ'.repeat(1 + (i % 3)), label: i % 2 ? 'positive' : 'negative' }));
  const r = await trainClassifier({
    modelDir,
    train: writeTextTable(join(root, `${name}-train.arrow`), rows),
    labels: ['negative', 'positive'],
    method: 'head',
    lr: 1e-3,
    maxSteps: 1,
    batchSize: 16,
    schedule: 'constant',
    weightDecay: 0,
    seed: 1,
    maxLength: 32,
    pooling: 'mean',
    device: 'cpu',
    threads: 1,
    checkpointDir: join(root, `${name}-ck`),
    checkpointEvery: 0,
    outDir: join(root, `${name}-out`),
  });
  return r.outDir;
}
let unfit: Promise<string> | undefined;
const unfitDir = () => (unfit ??= unfitClassifier());

test('a request with a text the model cannot take gets a 400 naming that input; the requests batched with it are answered in the same batch', async () => {
  const dir = await unfitDir();
  const hold = new Int32Array(new SharedArrayBuffer(4));
  const pool = await loadPooledPredictor(dir, { threads: 1, workers: 1, hold });
  const direct = await loadPredictor(dir, { threads: 1 });
  let served: Served | undefined;
  try {
    // With the error log `tempered serve` runs.
    served = await serveThrough(pool, 'unfit@1', 'errors');
    const { predict } = served;
    // The first request holds the thread; the next two queue meanwhile and go to onnxruntime as one batch.
    const first = predict(['ꙮ']);
    while (pool.stats().inflight === 0) await tick();
    const good = predict(['ꙮꙮ', 'ꙮ']);
    const bad = predict(['ꙮ', 'a great day', 'ꙮ', 'a fine night']);
    while (pool.stats().queued < 6) await tick();
    const logged: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => (logged.push(String(chunk)), true)) as typeof process.stderr.write;
    let a: Response, g: Response, b: Response;
    try {
      release(hold);
      [a, g, b] = await Promise.all([first, good, bad]);
    } finally {
      process.stderr.write = write;
    }
    // The operator is told which model cannot take the text (before: a warning, which that log leaves out, and no folder).
    assert.ok(
      logged.some((l) => l.includes(`${dir}: texts[1]: the text holds token id`)),
      `the server's log names the model's folder: ${JSON.stringify(logged)}`,
    );
    assert.equal(a.status, 200);
    // Before: 500 for both, the thread's input error a plain Error that failed the whole batch.
    assert.equal(g.status, 200);
    close(((await g.json()) as { predictions: Prediction[] }).predictions, await direct.predict(['ꙮꙮ', 'ꙮ']));
    assert.equal(b.status, 400);
    const err = ((await b.json()) as { error: { param: string; code: string; message: string } }).error;
    // Before: `inputs`, with no word of which one.
    assert.equal(err.param, 'inputs[1]');
    assert.equal(err.code, 'invalid_request');
    assert.match(
      err.message,
      /^inputs\[1\]: the text holds token id \d{3,}, but config\.json's vocab_size is 119: .*; the model cannot take inputs\[3\] either$/,
    );
    assert.ok(!err.message.includes(dir), "the server's folder is not told to the client");
    // The held one and the shared one: the unfit texts were left out before onnxruntime ran (before: 4, the shared
    // batch refused, then each of its requests run again alone).
    assert.equal(pool.stats().batches, 2);
    assert.equal((await predict(['ꙮ'])).status, 200, 'the pool answers after refusing');
  } finally {
    release(hold);
    await served?.server.close();
    await direct.close();
  }
});

test("predict over the pool takes a row with an unfit text as a bad row (--on-bad-row), not as the run's failure", async () => {
  const dir = await unfitDir();
  const pool = await loadPooledPredictor(dir, { threads: 1, workers: 1 });
  try {
    const input = join(root, 'unfit-rows.jsonl');
    const lines = ['ꙮ', 'a great day', 'ꙮꙮ'].map((text, i) => JSON.stringify({ id: i, text }));
    writeFileSync(input, lines.join('\n') + '\n');
    const output = join(root, 'unfit-predictions.jsonl');
    // Before: the run failed with "inference failed: …", a plain Error naming no row.
    const report = await predictFile({ input, output, scorer: classifierScorer(pool), textField: 'text', onBadRow: 'skip' });
    assert.equal(report.rows, 2);
    assert.equal(report.badRows, 1);
    // The three rows went to onnxruntime once (before: 4 runs, the batch refused and then each row asked alone).
    assert.equal(pool.stats().batches, 1);
    assert.deepEqual(
      report.firstBadRows.map((b) => [b.line, b.reason]),
      [[2, 'rejected']],
    );
    assert.match(report.firstBadRows[0]!.detail, /^the text holds token id \d{3,}, but config\.json's vocab_size is 119/);
    const ids = readFileSync(output, 'utf8')
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { id: number }).id);
    assert.deepEqual(ids, [0, 2]);
    await assert.rejects(
      predictFile({ input, output: join(root, 'unfit-fail.jsonl'), scorer: classifierScorer(pool), textField: 'text' }),
      (e: unknown) => e instanceof InputError && e.where === `${input}:2` && /token id \d{3,}/.test(e.message),
    );
  } finally {
    await pool.close();
  }
});

test('a text longer than the positions the model has is left out of its batch; a text that fits is not padded past them', async () => {
  // 12 positions, but a tempered-model.json maxLength of 32 (the training rows were short enough to fit).
  const model = tinyBertDir(join(root, 'short-model'), 7, { ...TINY_MINILM, maxPositions: 12 });
  const trained = await trainOnSigils(model, 'short');
  const pool = await loadPooledPredictor(trained, { threads: 1, workers: 1 });
  try {
    // 10 tokens (8 words and [CLS], [SEP]): before, padded to a bucket of 16, past the 12 positions, and refused.
    const fits = 'one two three four five six seven eight';
    const long = 'one two three four five six seven eight nine ten eleven twelve';
    const got = await pool.predictEach(['ꙮ', fits, long]);
    assert.ok('label' in got[0]! && 'label' in got[1]!, JSON.stringify(got));
    assert.deepEqual(got[2], {
      unfit: "the text is 14 tokens long, past the model's 12 positions (config.json's max_position_embeddings)",
    });
    close([got[1] as Prediction], await pool.predict([fits]));
    assert.equal(pool.stats().batches, 2);
  } finally {
    await pool.close();
  }
});

test("an InputError crosses the thread boundary whole: its class, where, hint and code (a caller's own advice reads the code)", () => {
  const e = fromWire(toWire(new InputError('no such model', { where: 'model', hint: 'pull it', code: 'source-missing' })));
  assert.ok(e instanceof InputError);
  assert.deepEqual([e.message, e.where, e.hint, e.code], ['model: no such model', 'model', 'pull it', 'source-missing']);
  const plain = fromWire(toWire(new Error('boom')));
  assert.ok(!(plain instanceof InputError));
  assert.equal(plain.message, 'boom');
});
