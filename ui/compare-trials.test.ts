/**
 * The compare page shows the trials as `tempered runs --compare` does (the same comparison, src/eval/trials.ts): the
 * params that differ, the last validation of each train stage's history, evaluate's scores from its metrics document,
 * stage times, each metric's best marked (none on a tie) and the run to choose on validation; secret params hidden and
 * what others wrote escaped. On a real listening server with a real artifact store holding the histories (Arrow) and
 * metrics documents, a stand-in Temporal client that answers the runs' final status and input, and the page in a real
 * headless chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { tableFromArrays, tableToIPC } from 'apache-arrow';
import { useBrowser } from '../tests/helpers/browser.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { MEDIA } from '../src/types.ts';
import type { RunStatus } from '../workflows/types.ts';
import { openDashboard, testUiServer } from './dashboard.testing.ts';
import type { RunComparison } from './data.ts';
import type { UiServer } from './server.ts';

const TOKEN = 'ui-compare-trials-token-0123';
// A --param value is whoever submitted it's; a metric name in evaluate's document can come from the data.
const EVIL_NOTE = '<img src=x onerror="window.__pwned=1">';
const EVIL_METRIC = '<img src=y onerror="window.__pwned=2">_f1';
const at = (sec: number) => new Date(Date.parse('2026-12-05T10:00:00.000Z') + sec * 1000).toISOString();

let dir: string;
let ui: UiServer;
let url: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ui-compare-trials-'));
  const paths = statePaths(dir);
  const store = new ArtifactStore(paths.store);
  // A classifier's history has val_f1_macro; a causal LM's val_loss only (its F1 column holds no value).
  const history = (val: number[], column = 'val_f1_macro') =>
    store.putBytes(
      tableToIPC(
        tableFromArrays({
          step: Float64Array.from(val, (_, i) => i + 1),
          loss: Float64Array.from(val, (_, i) => 1 / (i + 1)),
          [column]: Float64Array.from(val),
        }),
        'file',
      ),
      { mediaType: MEDIA.arrow, rows: val.length },
    );
  const trial = async (
    runId: string,
    params: Record<string, unknown>,
    train: { val?: number[]; column?: string; seconds?: number },
    evaluate: { outputs: Record<string, number>; doc: Record<string, unknown>; samples?: object[] },
    promoted: boolean,
    // A second evaluate stage's sample rows (an out-of-domain test set).
    ood?: object[],
  ): Promise<RunStatus> => ({
    runId,
    name: 'sms-spam',
    specHash: 's'.repeat(64),
    state: 'succeeded',
    startedAt: at(0),
    endedAt: at(300),
    actor: 'tester',
    params,
    stages: [
      {
        id: 'train',
        uses: 'train',
        needs: [],
        // Without seconds: taken from the cache, so no time of its own.
        state: train.seconds === undefined ? 'cached' : 'succeeded',
        ...(train.seconds === undefined ? {} : { startedAt: at(0), endedAt: at(train.seconds) }),
        outputs: { steps: 3, ...(train.val ? { history: await history(train.val, train.column) } : {}) },
      },
      {
        id: 'evaluate',
        uses: 'evaluate',
        needs: ['train'],
        state: 'succeeded',
        outputs: {
          ...evaluate.outputs,
          metrics: await store.putJson(evaluate.doc),
          ...(evaluate.samples ? { report: await store.putJson({ task: 'causal-lm', samples: evaluate.samples }) } : {}),
        },
      },
      ...(ood
        ? [
            {
              id: 'evaluate_ood',
              uses: 'evaluate',
              needs: ['train'],
              state: 'succeeded' as const,
              outputs: { metrics: await store.putJson({}), report: await store.putJson({ task: 'causal-lm', samples: ood }) },
            },
          ]
        : []),
      { id: 'deploy', uses: 'deploy', needs: ['evaluate'], state: 'succeeded', outputs: { promoted } },
    ],
  });
  const runs = new Map<string, RunStatus>(
    (
      await Promise.all([
        trial(
          'trial-a',
          { lr: 0.01, seed: 1, hf_token: 'hf_secret_aaaa', note: EVIL_NOTE },
          { val: [0.5, NaN, 0.8], seconds: 161 },
          { outputs: { f1_macro: 0.9, loss: 0.3 }, doc: { f1_macro: 0.9, loss: 0.3, f1_micro: 0.91, [EVIL_METRIC]: 0.5 } },
          false,
        ),
        trial(
          'trial-b',
          { lr: 0.001, seed: 1, hf_token: 'hf_secret_bbbb', note: 'plain' },
          { val: [0.4, 0.6], seconds: 150 },
          { outputs: { f1_macro: 0.7, loss: 0.2 }, doc: { f1_macro: 0.7, loss: 0.2, f1_micro: 0.91 } },
          true,
        ),
        trial(
          'trial-c',
          { lr: 0.003, seed: 1, hf_token: 'hf_secret_cccc', note: 'plain' },
          {},
          { outputs: { f1_macro: 0.8, loss: 0.4 }, doc: {} },
          false,
        ),
        trial(
          'lm-a',
          { lr: 0.002 },
          { val: [2.3, 2.29], column: 'val_loss', seconds: 135 },
          {
            outputs: { loss: 1.62 },
            doc: { loss: 1.62, scored_rows: 8, exact_match: 0, rouge_l: 0.34 },
            samples: [
              {
                prompt: 'Find the four smallest perfect numbers.',
                reference: '6, 28, 496, and 8128',
                baseline: 'base',
                output: 'A says',
                exact: false,
              },
            ],
          },
          false,
          [{ prompt: 'Find the four smallest perfect numbers.', reference: 'six', output: 'A ood', exact: false }],
        ),
        trial(
          'lm-b',
          { lr: 0.008 },
          { val: [2.2, 2.1], column: 'val_loss', seconds: 219 },
          {
            outputs: { loss: 1.58 },
            doc: { loss: 1.58, scored_rows: 8, exact_match: 0, rouge_l: 0.36 },
            samples: [
              {
                prompt: 'Find the four smallest perfect numbers.',
                reference: '6, 28, 496, and 8128',
                baseline: 'base',
                output: EVIL_NOTE,
                exact: true,
              },
            ],
          },
          false,
          [{ prompt: 'Find the four smallest perfect numbers.', reference: 'six', output: 'B ood', exact: false }],
        ),
      ])
    ).map((st) => [st.runId, st]),
  );
  // What the dashboard asks Temporal of a closed run: its description, its result (the final status) and its input.
  const client = {
    options: { loadedDataConverter: { payloadConverter: defaultPayloadConverter, payloadCodecs: [] } },
    workflow: {
      list: async function* () {},
      getHandle: (id: string) => {
        const status = runs.get(id);
        if (!status) throw new Error(`workflow ${id} not found`);
        const input = {
          plan: { name: 'sms-spam', params: status.params, stages: [{ id: 'train', uses: 'train', with: {} }] },
          options: {},
        };
        return {
          describe: async () => ({ runId: `exec-${id}`, status: { name: 'COMPLETED' }, taskQueue: 'q' }),
          result: async () => status,
          fetchHistory: async () => ({
            events: [{ workflowExecutionStartedEventAttributes: { input: { payloads: [defaultPayloadConverter.toPayload(input)] } } }],
          }),
        };
      },
    },
  } as unknown as Client;
  ui = await testUiServer(paths, TOKEN, client);
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  rmSync(dir, { recursive: true, force: true });
});

const COMPARE = '/api/compare?run=trial-a&run=trial-b&run=trial-c';

describe('compare API, trials', () => {
  it('answers what runs --compare shows: final validation, evaluate scores, times, the best marked, the run to choose', async () => {
    const res = await fetch(`${url}${COMPARE}`);
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const body = JSON.parse(text) as RunComparison & { curves: ({ step: number[] } | null)[] };
    const rows = Object.fromEntries(body.trials.rows.map((r) => [r.name, r]));
    // The last validation of training, not the NaN at its last step; C's history is not there (cached, none made).
    assert.deepEqual(rows['train.val_f1_macro'], { name: 'train.val_f1_macro', values: [0.8, 0.6, null], best: 0 });
    assert.equal(rows['evaluate.loss']!.best, 1, 'lower is better for a loss');
    // From evaluate's metrics document only; a tie has no best.
    assert.deepEqual(rows['evaluate.f1_micro'], { name: 'evaluate.f1_micro', values: [0.91, 0.91, null] });
    assert.deepEqual(rows['time.train']!.values, [161, 150, null]);
    assert.deepEqual(rows['time.run']!.values, [300, 300, 300]);
    assert.equal(rows['train.steps'], undefined, 'a count the same in every run is left out');
    assert.deepEqual(body.trials.flags, [{ name: 'deploy.promoted', values: [false, true, false] }]);
    assert.deepEqual(body.trials.bestOnValidation, { metric: 'train.val_f1_macro', run: 0 });
    // The secret is hidden before comparing: neither its value nor that it differs is shown.
    assert.deepEqual(
      body.trials.params.map((p) => p.name),
      ['lr', 'note'],
    );
    assert.doesNotMatch(text, /hf_secret_/);
    // Small: no histories beyond the curves the page draws, and the runs once (in `runs`).
    assert.equal('runs' in body.trials, false);
    for (const r of body.trials.rows) assert.equal(r.values.length, 3, r.name);
    // The page's other parts as before.
    assert.deepEqual(body.curves[0]?.step, [1, 2, 3]);
    assert.ok(body.metrics.some((m) => m.name === 'evaluate.f1_macro'));
  });
});

describe('compare page, trials', () => {
  const chrome = useBrowser();

  it('shows the trials table with the best marked and the run to choose, secrets hidden and the rest escaped', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const errors: string[] = [];
    const page = await openDashboard(chrome.browser!, url, TOKEN, `#/compare?run=trial-a&run=trial-b&run=trial-c`, errors);
    page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
    await page.locator('#compare-trials').waitFor();
    const cells = (row: string) => page.locator(`#compare-trials tr[data-row="${row}"] td.num`).allInnerTexts();
    assert.deepEqual(await cells('train.val_f1_macro'), ['*0.8000', '0.6000', '–']);
    assert.equal(await page.locator('#compare-trials tr[data-row="train.val_f1_macro"] td[data-best]').count(), 1);
    assert.deepEqual(await cells('evaluate.loss'), ['0.3000', '*0.2000', '0.4000']);
    assert.deepEqual(await cells('evaluate.f1_micro'), ['0.9100', '0.9100', '–']);
    assert.deepEqual(await cells('time.train'), ['2m41s', '2m30s', '–']);
    assert.deepEqual(await cells('deploy.promoted'), ['no', 'yes', 'no']);
    assert.deepEqual(await page.locator('#compare-trials tr[data-param="lr"] td.num').allInnerTexts(), ['0.01', '0.001', '0.003']);
    assert.equal(
      (await page.locator('#compare-best').innerText()).trim(),
      `best on validation (train.val_f1_macro): A trial-a (lr=0.01 note=${EVIL_NOTE})`,
    );
    assert.equal(await page.getAttribute('#compare-best', 'data-run'), 'trial-a');
    // What others wrote is text, not markup.
    assert.ok((await page.locator('#compare-trials').innerText()).includes(EVIL_METRIC));
    assert.equal(await page.locator('#compare-trials img, #compare-best img').count(), 0);
    assert.doesNotMatch(await page.content(), /hf_secret_/);
    // The page's existing parts stay.
    await page.locator('#compare-loss').waitFor();
    assert.ok((await page.locator('#compare-metrics tr').count()) > 1);
    await page.context().close();
    assert.deepEqual(errors, []);
  });

  it("draws a causal LM's validation loss (its runs have no macro F1 to draw)", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const errors: string[] = [];
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/compare?run=lm-a&run=lm-b', errors);
    await page.locator('#compare-loss').waitFor();
    await page.locator('#compare-val').waitFor();
    assert.match(await page.locator('#compare-val h3').innerText(), /^validation loss \(2 points/);
    // As runs --compare says it: on 8 rows, one answer is 0.125 of exact_match.
    assert.match(
      await page.locator('#compare-trials ~ p[data-metric="evaluate.scored_rows"]').innerText(),
      /^evaluate's scores are over 8 test rows \(evaluate\.scored_rows\): one row is 0\.125\d* of a per-row score/,
    );
    // Each run's answer to the same test row, beside the reference and the base model's; what the model wrote is text.
    // A second evaluate stage's row with the same prompt is its own row, each named by its stage.
    assert.deepEqual(await page.locator('#compare-answers tr[data-stage="evaluate"] td').allInnerTexts(), [
      'evaluate',
      'Find the four smallest perfect numbers.',
      '6, 28, 496, and 8128',
      'base',
      'A says',
      `${EVIL_NOTE} ✓`,
    ]);
    assert.deepEqual(await page.locator('#compare-answers tr[data-stage="evaluate_ood"] td').allInnerTexts(), [
      'evaluate_ood',
      'Find the four smallest perfect numbers.',
      'six',
      '–',
      'A ood',
      'B ood',
    ]);
    assert.equal(await page.locator('#compare-answers img').count(), 0);
    await page.context().close();
    assert.deepEqual(errors, []);
  });
});
