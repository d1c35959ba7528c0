/**
 * The inference pool on a real tiny classifier (real onnxruntime sessions in worker threads) behind
 * the real HTTP server: results equal the in-thread predictor's, /health and /metrics answer while
 * an inference is provably in flight, requests that queue meanwhile run as one batch, and a full
 * queue is refused with 429 at once. "In flight" is made certain, not timed: the test holds the
 * batch inside its thread (PoolOptions.hold) and lets it go when it has checked what it wants.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { loadPredictor } from '../finetune/predictor.ts';
import { syntheticRows } from '../finetune/synthetic-text.testing.ts';
import { createModelServer, type ModelServer } from './server.ts';
import { exportTinyClassifier } from './tiny-classifier.testing.ts';
import { loadPooledPredictor, type PooledPredictor } from './worker-pool.ts';
import { retryAfterSpread } from './gate.ts';
import type { Prediction } from './types.ts';

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
  let server: ModelServer | undefined;
  try {
    server = await createModelServer({
      token: TOKEN,
      pollMs: 60_000,
      resolveCurrent: async () => ({
        key: 'k',
        load: async () => ({
          id: 'tiny@1',
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

    Atomics.store(hold, 0, 1);
    Atomics.notify(hold, 0);
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
    Atomics.store(hold, 0, 1);
    Atomics.notify(hold, 0);
    await server?.close();
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
      Atomics.store(hold, 0, 1);
      Atomics.notify(hold, 0);
      await assert.rejects(doomed, /inference thread exited with code 7/);
      close(await waiting, await direct.predict([texts[3]!]));
      close(await pool.predict(texts.slice(0, 2)), await direct.predict(texts.slice(0, 2)));
      assert.equal(pool.stats().workers, 1, 'the dead thread was replaced, not added to');
    } finally {
      Atomics.store(hold, 0, 1);
      Atomics.notify(hold, 0);
      await pool.close();
      await direct.close();
    }
  },
);
