/**
 * The run page's comparison with production, like with like: where the evaluate stage scored production only on
 * the test rows it was not trained on, production's scores stand beside the fine-tuned model's on those same rows
 * (`production.candidate.*`), never beside its all-row scores, with the row counts and a warning when production's
 * training data could not be read; evaluations from before that show as they always did. On a real listening
 * server with a real artifact store holding the evaluate stage's metrics and report, a stand-in Temporal client
 * that answers the runs' final status, and the page in a real headless chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Page } from 'playwright-core';
import { useBrowser } from '../tests/helpers/browser.ts';
import { classificationReport, reportToGateMetrics, type ClassificationReport } from '../src/eval/metrics.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import type { RunStatus } from '../workflows/types.ts';
import { productionComparison, type ProductionComparison } from './data.ts';
import { createUiServer, type UiServer } from './server.ts';

const TOKEN = 'ui-eval-token-0123456789';
const LABELS = ['ham', 'spam'];

/** A report of `right` correct predictions out of `rows` (alternating labels). */
function scored(rows: number, right: number): ClassificationReport {
  const yTrue = Array.from({ length: rows }, (_, i) => LABELS[i % 2]!);
  const yPred = yTrue.map((y, i) => (i < right ? y : LABELS.find((l) => l !== y)!));
  return classificationReport(yTrue, yPred, { labels: LABELS });
}

// The fine-tuned model on its 10 test rows (9 right); production on the 6 it was not trained on (3 right); the
// fine-tuned model again on those 6 (5 right). Production on all 10 (7 right): its memory of 4 inflates it.
const main = scored(10, 9);
const prodFresh = scored(6, 3);
const candFresh = scored(6, 5);
const prodAll = scored(10, 7);
const gate = reportToGateMetrics;

const classifier = {
  /** After evaluate-4: production on the rows it was not trained on (1 of the 4 left out a near duplicate), beside the candidate on those rows. */
  fresh: {
    metrics: {
      ...gate(main),
      production: {
        ...gate(prodFresh),
        version: 'spam-clf@1',
        rows: 6,
        contaminated_rows: 4,
        decontaminated: true,
        candidate: gate(candFresh),
      },
    },
    report: {
      model: main,
      labels: LABELS,
      testRows: 10,
      production: { id: 'spam-clf@1', metrics: prodFresh, candidate: candFresh },
      contamination: {
        decontaminated: true,
        training_data: { name: 'train', sha256: 'a'.repeat(64), rows: 40 },
        columns: ['text'],
        rows: 6,
        contaminated_rows: 4,
        near_duplicate_rows: 1,
      },
    },
  },
  /** Production's training data could not be read: both on all 10 rows, and the page must say so. */
  raw: {
    metrics: {
      ...gate(main),
      production: { ...gate(prodAll), version: 'spam-clf@1', rows: 10, contaminated_rows: 0, decontaminated: false, candidate: gate(main) },
    },
    report: {
      model: main,
      labels: LABELS,
      testRows: 10,
      production: { id: 'spam-clf@1', metrics: prodAll, candidate: main },
      contamination: { decontaminated: false, reason: "its registered lineage records no 'train' data", columns: ['text'] },
    },
  },
  /** Production was trained on every test row: not scored. */
  none: {
    metrics: { ...gate(main), production: { version: 'spam-clf@1', rows: 0, contaminated_rows: 10, decontaminated: true } },
    report: {
      model: main,
      labels: LABELS,
      testRows: 10,
      production: { id: 'spam-clf@1' },
      contamination: { decontaminated: true, columns: ['text'], rows: 0, contaminated_rows: 10 },
    },
  },
  /** Before evaluate-3: production on the candidate's rows, no counts. */
  old: {
    metrics: { ...gate(main), production: { ...gate(prodAll), version: 'spam-clf@1' } },
    report: { model: main, labels: LABELS, testRows: 10, production: { id: 'spam-clf@1', metrics: prodAll } },
  },
};

const lmScores = (exact: number, loss: number) => ({ loss, perplexity: Math.exp(loss), exact_match: exact, rouge_l: exact, chrf: exact });
const lmFresh = {
  ...lmScores(0.625, 0.9),
  production: {
    ...lmScores(0.125, 2.5),
    version: 'lm@1',
    rows: 4,
    contaminated_rows: 4,
    decontaminated: true,
    candidate: lmScores(0.75, 0.8),
  },
};
const lmOld = { ...lmScores(0.625, 0.9), production: { ...lmScores(0.5, 1.2), version: 'lm@1' } };
const causal: Record<string, { metrics: object; report: object }> = {
  fresh: {
    metrics: lmFresh,
    report: {
      task: 'causal-lm',
      ...lmFresh,
      testRows: 8,
      contamination: { decontaminated: true, columns: ['prompt'], rows: 4, contaminated_rows: 4 },
      samples: [
        { prompt: 'q1', reference: 'a', production: null, production_exact: null, production_trained_on: true, output: 'a', exact: true },
        { prompt: 'q2', reference: 'b', production: 'c', production_exact: false, output: 'b', exact: true },
      ],
    },
  },
  old: {
    metrics: lmOld,
    report: {
      task: 'causal-lm',
      ...lmOld,
      testRows: 8,
      samples: [{ prompt: 'q1', reference: 'a', production: 'a', production_exact: true, output: 'a', exact: true }],
    },
  },
};

/** Per answer: a class-like answer set (answers repeat) and free-form replies (every reference once). */
const perAnswer = (answer: string, rows: number, exact: number, predicted = rows) => ({
  answer,
  rows,
  exact_match: exact,
  predicted,
  precision: predicted ? (exact * rows) / predicted : 0,
  f1: exact,
});
const lmAnswers = (answers: object) => ({
  metrics: lmScores(0.5, 1.2),
  report: {
    task: 'causal-lm',
    ...lmScores(0.5, 1.2),
    baseline: lmScores(0, 1.5),
    testRows: 4,
    answers,
    samples: [{ prompt: 'q1', reference: 'a', baseline: 'b', baseline_exact: false, output: 'a', exact: true }],
  },
});
causal.classes = lmAnswers({
  model: [perAnswer('positive', 2, 1), perAnswer('negative', 2, 0)],
  baseline: [perAnswer('positive', 2, 0), perAnswer('negative', 2, 0)],
});
causal.free = lmAnswers({
  // A free-form reply that is not its row's reference matches no other row's either: predicted is its exact match.
  model: ['6, 28, 496 and 8128', 'Question: …', 'I -> cook', 'atheism …'].map((a, i) => perAnswer(a, 1, i % 2, i % 2)),
  baseline: ['6, 28, 496 and 8128', 'Question: …', 'I -> cook', 'atheism …'].map((a) => perAnswer(a, 1, 0, 0)),
});
// Labels that each occur once (a 2-row test set) answered 'positive' to both: not free-form, its precision says so.
causal.labelsOnce = lmAnswers({
  model: [perAnswer('negative', 1, 0, 0), perAnswer('positive', 1, 1, 2)],
  baseline: [perAnswer('negative', 1, 0, 0), perAnswer('positive', 1, 0, 0)],
});

const EVALUATIONS: Record<string, { metrics: object; report: object }> = {
  'lm-classes': causal.classes,
  'lm-free': causal.free,
  'lm-labels-once': causal.labelsOnce,
  'clf-fresh': classifier.fresh,
  'clf-raw': classifier.raw,
  'clf-none': classifier.none,
  'clf-old': classifier.old,
  'lm-fresh': causal.fresh,
  'lm-old': causal.old,
};

let dir: string;
let ui: UiServer;
let url: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ui-evaluation-'));
  const paths = statePaths(dir);
  const store = new ArtifactStore(paths.store);
  const runs = new Map<string, RunStatus>();
  for (const [runId, e] of Object.entries(EVALUATIONS))
    runs.set(runId, {
      runId,
      name: runId.startsWith('lm') ? 'instruct' : 'sms-spam',
      specHash: 's'.repeat(64),
      state: 'succeeded',
      startedAt: '2026-12-05T10:00:00.000Z',
      endedAt: '2026-12-05T10:05:00.000Z',
      actor: 'tester',
      params: {},
      stages: [
        {
          id: 'evaluate',
          uses: 'evaluate',
          needs: [],
          state: 'succeeded',
          outputs: { metrics: await store.putJson(e.metrics), report: await store.putJson(e.report) },
        },
      ],
    });
  // What the dashboard asks Temporal of a closed run: its description and its result (the final status).
  // The Runs page the token link opens first lists none of these runs: listing goes through a client tempered builds
  // on this one's connection (client/payloads.ts listingClient), whose list request answers an empty page.
  const connection = {
    workflowService: { listWorkflowExecutions: async () => ({ executions: [], nextPageToken: new Uint8Array() }) },
  };
  const client = {
    connection,
    options: { namespace: 'default', identity: 'tester', loadedDataConverter: { payloadCodecs: [] } },
    workflow: {
      getHandle: (id: string) => {
        const status = runs.get(id);
        if (!status) throw new Error(`workflow ${id} not found`);
        return {
          describe: async () => ({ runId: `exec-${id}`, status: { name: 'COMPLETED' }, taskQueue: 'q' }),
          result: async () => status,
        };
      },
    },
  } as unknown as Client;
  ui = await createUiServer({ paths, store, client: async () => client, token: TOKEN, actor: 'tester', taskQueue: 'q' });
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  rmSync(dir, { recursive: true, force: true });
});

const close = (a: number | undefined, b: number) => assert.ok(a !== undefined && Math.abs(a - b) < 1e-12, `${a} vs ${b}`);

describe('productionComparison', () => {
  it("puts production beside the candidate on the same rows, with the counts, not beside the candidate's all-row scores", () => {
    const c = productionComparison(classifier.fresh.metrics, classifier.fresh.report)!;
    assert.deepEqual(
      [c.version, c.sameRows, c.rows, c.contaminatedRows, c.nearDuplicateRows, c.decontaminated, c.testRows, c.scored],
      ['spam-clf@1', true, 6, 4, 1, true, 10, true],
    );
    const acc = c.metrics.find((m) => m.name === 'accuracy')!;
    close(acc.candidate, candFresh.accuracy);
    close(acc.production, prodFresh.accuracy);
    close(acc.delta, candFresh.accuracy - prodFresh.accuracy);
    assert.notEqual(acc.candidate, main.accuracy);
    close(c.metrics.find((m) => m.name === 'f1_macro')!.candidate, candFresh.macro.f1);
  });

  it('says when production was not decontaminated (and why), and when it was not scored at all', () => {
    const raw = productionComparison(classifier.raw.metrics, classifier.raw.report)!;
    assert.deepEqual(
      [raw.decontaminated, raw.rows, raw.contaminatedRows, raw.reason],
      [false, 10, 0, "its registered lineage records no 'train' data"],
    );
    const none = productionComparison(classifier.none.metrics, classifier.none.report)!;
    assert.deepEqual([none.scored, none.rows, none.contaminatedRows, none.metrics], [false, 0, 10, []]);
  });

  it("reads older metrics as before: production beside the candidate's own scores, no counts", () => {
    const c = productionComparison(classifier.old.metrics, classifier.old.report)!;
    assert.deepEqual([c.sameRows, c.rows, c.contaminatedRows, c.decontaminated], [false, undefined, undefined, undefined]);
    close(c.metrics.find((m) => m.name === 'accuracy')!.candidate, main.accuracy);
    assert.equal(productionComparison(gate(main), { model: main, labels: LABELS, testRows: 10 }), undefined, 'no production, nothing');
  });

  it("reads a causal LM's report, and a classifier's report, when the metrics cannot be read", () => {
    const lm = productionComparison(undefined, causal.fresh.report)!;
    assert.deepEqual([lm.sameRows, lm.rows, lm.contaminatedRows], [true, 4, 4]);
    assert.deepEqual(
      lm.metrics.find((m) => m.name === 'exact_match'),
      { name: 'exact_match', better: 'higher', candidate: 0.75, production: 0.125, delta: 0.625 },
    );
    assert.equal(lm.metrics.find((m) => m.name === 'loss')!.better, 'lower');
    const clf = productionComparison(undefined, classifier.fresh.report)!;
    assert.deepEqual([clf.sameRows, clf.rows, clf.decontaminated], [true, 6, true]);
    close(clf.metrics.find((m) => m.name === 'accuracy')!.candidate, candFresh.accuracy);
  });
});

describe('run API', () => {
  it("gives each evaluate stage's comparison with production", async () => {
    const view = (await (await fetch(`${url}/api/runs/clf-fresh`)).json()) as { production: Record<string, ProductionComparison> };
    assert.deepEqual(view.production.evaluate, productionComparison(classifier.fresh.metrics, classifier.fresh.report));
    assert.deepEqual(
      [view.production.evaluate!.rows, view.production.evaluate!.contaminatedRows, view.production.evaluate!.sameRows],
      [6, 4, true],
    );
  });
});

describe('run page, comparison with production', () => {
  const chrome = useBrowser();
  const pageErrors: string[] = [];

  async function open(runId: string): Promise<Page> {
    const page = await (await chrome.browser!.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
    page.on('pageerror', (e) => pageErrors.push(`${runId}: ${e.message}`));
    page.on('console', (m) => void (m.type() === 'error' && pageErrors.push(`${runId}: ${m.text()}`)));
    await page.goto(`${url}/#token=${TOKEN}`);
    await page.evaluate(`location.hash = ${JSON.stringify(`#/run/${runId}`)}`);
    await page.locator('#versus').waitFor();
    return page;
  }
  const fmt = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(4));
  const cell = (page: Page, who: string, metric: string) =>
    page.locator(`#versus-production-table tr[data-who="${who}"] td[data-metric="${metric}"]`).innerText();
  const versusRows = (page: Page) =>
    page.locator('#versus tr').evaluateAll((rows) => rows.slice(1).map((r) => r.querySelector('td')!.textContent));

  it('classifier: production beside the fine-tuned model on the rows production was not trained on, with the counts', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('clf-fresh');
    await page.locator('#versus-production').waitFor();
    assert.equal(
      await page.locator('#production-rows').innerText(),
      'on 6 test rows production was not trained on; 4 left out, 1 of them a near duplicate of a training input',
    );
    assert.deepEqual(
      [await page.getAttribute('#versus-production', 'data-rows'), await page.getAttribute('#versus-production', 'data-contaminated')],
      ['6', '4'],
    );
    assert.match(await page.locator('#versus-production h3').innerText(), /production \(spam-clf@1\)/);
    assert.equal(await cell(page, 'candidate', 'accuracy'), fmt(candFresh.accuracy));
    assert.equal(await cell(page, 'production', 'accuracy'), fmt(prodFresh.accuracy));
    assert.equal(await cell(page, 'delta', 'accuracy'), fmt(candFresh.accuracy - prodFresh.accuracy));
    assert.equal(await cell(page, 'candidate', 'f1_macro'), fmt(candFresh.macro.f1));
    assert.notEqual(fmt(candFresh.accuracy), fmt(main.accuracy), 'the fixture tells the two apart');
    // Production is no longer beside the all-row scores.
    assert.deepEqual(await versusRows(page), ['fine-tuned']);
    assert.equal(await page.locator('#production-contaminated').count(), 0);
    await page.context().close();
  });

  it('classifier: says so, visibly, when production could not be decontaminated', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('clf-raw');
    await page.locator('#production-contaminated').waitFor();
    assert.ok(await page.locator('#production-contaminated').isVisible());
    assert.match(
      await page.locator('#production-contaminated').innerText(),
      /^not decontaminated: production may have been trained on some of these rows, so its scores may be inflated \(its registered lineage records no 'train' data\)/,
    );
    assert.match(await page.locator('#production-rows').innerText(), /^on all 10 test rows/);
    assert.equal(await cell(page, 'production', 'accuracy'), fmt(prodAll.accuracy));
    await page.context().close();
  });

  it('classifier: production trained on every test row is not scored, and the page says why', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('clf-none');
    await page.locator('#versus-production').waitFor();
    assert.equal(
      await page.locator('#production-rows').innerText(),
      'not scored: production was trained on the input of every test row (10 left out)',
    );
    assert.equal(await page.locator('#versus-production-table').count(), 0);
    await page.context().close();
  });

  it('classifier: an older evaluation shows as before (production beside the fine-tuned model, Δ F1)', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('clf-old');
    await page.locator('#versus tr', { hasText: 'production (spam-clf@1)' }).waitFor();
    assert.deepEqual(await versusRows(page), ['fine-tuned', 'production (spam-clf@1)']);
    const cells = await page.locator('#versus tr', { hasText: 'production' }).locator('td.num').allInnerTexts();
    assert.deepEqual(
      cells.map((x) => x.trim()),
      [fmt(prodAll.accuracy), fmt(prodAll.macro.f1), fmt(main.macro.f1 - prodAll.macro.f1)],
    );
    assert.equal(await page.locator('#versus-production').count(), 0);
    assert.match(await page.locator('h3', { hasText: 'Against' }).innerText(), /^Against baseline and production$/);
    await page.context().close();
  });

  it('causal LM: the same, and a sample production was trained on says so instead of an empty cell', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('lm-fresh');
    await page.locator('#versus-production').waitFor();
    assert.equal(await page.locator('#production-rows').innerText(), 'on 4 test rows production was not trained on; 4 left out');
    assert.equal(await cell(page, 'candidate', 'exact_match'), '0.7500');
    assert.equal(await cell(page, 'production', 'exact_match'), '0.1250');
    assert.equal(await cell(page, 'delta', 'exact_match'), '0.6250');
    assert.match((await page.getAttribute('#versus-production-table tr[data-who="delta"] td[data-metric="loss"]', 'class'))!, /\bpos\b/);
    assert.deepEqual(await versusRows(page), ['fine-tuned']);
    assert.equal(await page.locator('#samples td[data-trained-on="true"]').count(), 1);
    assert.match(await page.locator('#samples td[data-trained-on="true"]').innerText(), /production was trained on this row/);
    await page.context().close();

    const old = await open('lm-old');
    await old.locator('#versus tr', { hasText: 'production (lm@1)' }).waitFor();
    assert.deepEqual(await versusRows(old), ['fine-tuned', 'production (lm@1)']);
    assert.equal(await old.locator('#versus-production').count(), 0);
    await old.context().close();
    assert.deepEqual(pageErrors, []);
  });

  it('causal LM: a per-answer table where answers repeat; for free-form answers, each once, a line that says so instead', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const classes = await open('lm-classes');
    await classes.locator('#per-answer').waitFor();
    assert.equal(await classes.locator('#per-answer tr').count(), 5);
    assert.equal(await classes.locator('#per-answer-free').count(), 0);
    await classes.context().close();

    const free = await open('lm-free');
    await free.locator('#samples').waitFor();
    assert.equal(await free.locator('#per-answer').count(), 0);
    assert.match(
      await free.locator('#per-answer-free').innerText(),
      /each of the 4 reference answers occurs once and was given on its own row only \(free-form answers\)/,
    );
    await free.context().close();

    const once = await open('lm-labels-once');
    await once.locator('#per-answer').waitFor();
    assert.equal(await once.locator('#per-answer-free').count(), 0);
    assert.deepEqual(await once.locator('#per-answer tr:nth-child(3) td').allInnerTexts(), [
      'fine-tuned',
      'positive',
      '1',
      '1',
      '2',
      '0.5000',
      '1',
    ]);
    await once.context().close();
    assert.deepEqual(pageErrors, []);
  });
});
