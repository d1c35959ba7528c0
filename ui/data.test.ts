/** The dashboard's readers that need no server: curves from a progress log and a store. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { statePaths } from '../src/state-paths.ts';
import { appendProgressPoint, progressLogPath } from '../src/store/progress-log.ts';
import { FilePoints } from '../src/store/progress-points.ts';
import type { ArtifactStore } from '../src/store/artifact-store.ts';
import type { RunStatus } from '../workflows/types.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { GATE_PAGE, listModelViews, runCurves, trainingCurves, UiDatabases, type RunView } from './data.ts';

describe('trainingCurves from live points', () => {
  it('keeps tokens/s and samples/s, and the newest attempt of a step wins', async () => {
    const paths = statePaths(mkdtempSync(join(tmpdir(), 'ui-data-')));
    const log = progressLogPath(paths.progress, 'run-1', 'exec-1', 'train');
    appendProgressPoint(log, { attempt: 1, t: 1, metrics: { step: 1, loss: 2, lr: 0.1, tokensPerSec: 50 } });
    appendProgressPoint(log, { attempt: 1, t: 2, metrics: { step: 2, loss: 1.5, lr: 0.1, tokensPerSec: 60, samplesPerSec: 3 } });
    // A retry resumed from a checkpoint at step 1 reports step 2 again.
    appendProgressPoint(log, { attempt: 2, t: 3, metrics: { step: 2, loss: 1.4, lr: 0.1, tokensPerSec: 70, samplesPerSec: 4 } });
    const stage = { id: 'train', uses: 'train', state: 'running', outputs: {} } as unknown as RunStatus['stages'][number];
    const c = await trainingCurves(new FilePoints(paths.progress), {} as ArtifactStore, 'run-1', 'exec-1', stage);
    assert.equal(c.source, 'live');
    assert.deepEqual(c.columns.step, [1, 2]);
    assert.deepEqual(c.columns.loss, [2, 1.4]);
    assert.deepEqual(c.columns.tokensPerSec, [50, 70]);
    assert.deepEqual(c.columns.samplesPerSec, [null, 4]);
  });
});

const ABSENT = 'artifact://sha256/' + 'ab'.repeat(32) + ' is not in the store at /x; TEMPERED_STORE is not set';
/** A store without the artifact, which says why as the real one does. */
const emptyStore = { localPath: async () => Promise.reject(new Error(ABSENT)) } as unknown as ArtifactStore;
const historyRef = {
  uri: `artifact://sha256/${'ab'.repeat(32)}`,
  sha256: 'ab'.repeat(32),
  bytes: 10,
  mediaType: 'application/vnd.apache.arrow.file',
};

describe('curves whose history is not in this store', () => {
  it('say why, and draw the live points instead (compare too)', async () => {
    const paths = statePaths(mkdtempSync(join(tmpdir(), 'ui-data-')));
    const points = new FilePoints(paths.progress);
    const stage = {
      id: 'train',
      uses: 'train',
      state: 'succeeded',
      outputs: { history: historyRef },
    } as unknown as RunStatus['stages'][number];
    const none = await trainingCurves(points, emptyStore, 'run-2', 'exec-2', stage);
    assert.equal(none.unread, ABSENT);
    assert.deepEqual(none.columns.step, []);
    appendProgressPoint(progressLogPath(paths.progress, 'run-2', 'exec-2', 'train'), { attempt: 1, t: 1, metrics: { step: 1, loss: 2 } });
    const view = { status: { runId: 'run-2', stages: [stage] }, execution: 'exec-2' } as unknown as RunView;
    const cols = await runCurves(points, emptyStore, view);
    assert.deepEqual([cols?.step, cols?.loss], [[1], [2]]);
  });

  it('gives compare the live points of a run still training (no history yet)', async () => {
    const paths = statePaths(mkdtempSync(join(tmpdir(), 'ui-data-')));
    appendProgressPoint(progressLogPath(paths.progress, 'run-3', 'exec-3', 'train'), { attempt: 1, t: 1, metrics: { step: 5, loss: 1.5 } });
    const running = { id: 'train', uses: 'train', state: 'running', outputs: {} } as unknown as RunStatus['stages'][number];
    const pending = { id: 'train', uses: 'train', state: 'pending' } as unknown as RunStatus['stages'][number];
    const view = (st: RunStatus['stages'][number]) =>
      ({ status: { runId: 'run-3', stages: [st] }, execution: 'exec-3' }) as unknown as RunView;
    assert.deepEqual((await runCurves(new FilePoints(paths.progress), emptyStore, view(running)))?.loss, [1.5]);
    assert.equal(await runCurves(new FilePoints(paths.progress), emptyStore, view(pending)), null);
  });
});

describe("the Models page's last gate of each model", () => {
  it('reads the newest judgements of each model, not every one in the log, and still finds a gate older than its newest promotions', async () => {
    const paths = statePaths(mkdtempSync(join(tmpdir(), 'ui-data-gates-')));
    const reg = await openRegistry(paths.registryDb);
    for (const name of ['clf', 'hand', 'never']) await reg.registerVersion(testVersion(name, 'a', { runId: `r-${name}` }));
    await reg.close();
    const audit = await openAudit(paths.auditDb);
    const judged = (action: string, model: string, gate?: string | null) =>
      audit.append({
        action,
        subject: `${model}@1`,
        model: `${model}@1`,
        details: { alias: 'production', ...(gate !== undefined ? { gate } : {}) },
      });
    // clf: 60 promotions and 20 refusals by its pipeline's gate, the newest a refusal.
    for (let i = 0; i < 60; i++) await judged('model.promoted', 'clf', `f1_macro >= ${i}`);
    for (let i = 0; i < 20; i++) await judged('model.not_promoted', 'clf', `accuracy >= ${i}`);
    // hand: one gated promotion, then GATE_PAGE + 5 promotions by hand (no gate) and a deploy without one (null).
    await judged('model.promoted', 'hand', 'loss <= production.loss');
    for (let i = 0; i < GATE_PAGE + 5; i++) await judged('model.promoted', 'hand');
    await judged('model.promoted', 'hand', null);
    // never: promoted by hand only.
    await judged('model.promoted', 'never');
    await audit.close();

    const dbs = new UiDatabases(paths);
    try {
      const log = await dbs.audit.get();
      const query = log.query.bind(log);
      // Records the log hands back, by the model each query asked about (none: the whole log).
      const read = new Map<string | undefined, number>();
      log.query = async (q) => {
        const got = await query(q);
        read.set(q?.model, (read.get(q?.model) ?? 0) + got.length);
        return got;
      };
      const gates = Object.fromEntries((await listModelViews(dbs)).map((m) => [m.name, m.lastGate]));
      assert.deepEqual(gates, { clf: 'accuracy >= 19', hand: 'loss <= production.loss', never: undefined });
      assert.equal(read.get(undefined), undefined, 'no query over every model');
      assert.ok(read.get('clf')! <= 2 * GATE_PAGE, `${read.get('clf')} of clf's 80 records read`);
    } finally {
      await dbs.close();
    }
  });

  it("leaves out a gate that never passes: a sweep's `false` (choose by hand) would refuse the promotion it prefills", async () => {
    const paths = statePaths(mkdtempSync(join(tmpdir(), 'ui-data-gates-false-')));
    const reg = await openRegistry(paths.registryDb);
    for (const name of ['swept', 'manual']) await reg.registerVersion(testVersion(name, 'a', { runId: `r-${name}` }));
    await reg.close();
    const audit = await openAudit(paths.auditDb);
    const judged = (action: string, model: string, gate: string) =>
      audit.append({ action, subject: `${model}@1`, model: `${model}@1`, details: { alias: 'production', gate } });
    // swept: an earlier pipeline's gate, then trials submitted with --param gate=false.
    await judged('model.promoted', 'swept', 'rouge_l > baseline.rouge_l');
    await judged('model.not_promoted', 'swept', 'false');
    await judged('model.not_promoted', 'swept', ' false ');
    // manual: only ever `false`.
    await judged('model.not_promoted', 'manual', 'false');
    await audit.close();
    const dbs = new UiDatabases(paths);
    try {
      const gates = Object.fromEntries((await listModelViews(dbs)).map((m) => [m.name, m.lastGate]));
      assert.deepEqual(gates, { manual: undefined, swept: 'rouge_l > baseline.rouge_l' });
    } finally {
      await dbs.close();
    }
  });
});
