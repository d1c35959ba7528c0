/**
 * The dashboard (`tempered ui`) against a real dev server and worker: a tiny fine-tuning run, then the
 * JSON API (auth, live events, resume) and the pages in a real headless chromium: a second run's
 * training curves growing in the open page while it trains (held step by step by a test gate, so no
 * timing is guessed), the DAG's final states, the loss curve's points against the history artifact,
 * the confusion matrix against the evaluation report, compare of three runs, promote through the page
 * (alias moved, audit record), a version's lineage graph and the diff of two versions, schedules
 * (next fire time, pause / unpause / trigger, audited), refusals without the token, and no console
 * errors. Screenshots of each page go to docs/.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tableFromIPC } from 'apache-arrow';
import type { Page } from 'playwright-core';
import { SILENT_AFTER_SEC, submitRun, waitForRun } from '../client/runs.ts';
import { createSchedule, deleteSchedule, planScheduledRun, readSchedule } from '../client/schedules.ts';
import { openAudit } from '../src/audit/log.ts';
import { productionComparisonNote } from '../src/registry/diff.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { loadSpec } from '../src/spec/index.ts';
import { statePaths } from '../src/state-paths.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import type { ArtifactRef } from '../src/types.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { createUiServer, type UiServer } from '../ui/server.ts';
import type { RunStatus } from '../workflows/types.ts';
import { useBrowser } from './helpers/browser.ts';
import { startCliWorker } from './helpers/cli.ts';
import { writeE2EPipeline } from './helpers/e2e-fixture.ts';
import { waitFor } from './helpers/schedule-fixtures.ts';
import { probeKind } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

// The README shows these; a plain test run writes them to a scratch folder so it leaves the checkout as it was.
const SHOTS = process.env.TEMPERED_UI_SCREENSHOTS
  ? resolve(dirname(fileURLToPath(import.meta.url)), '..', 'docs')
  : mkdtempSync(join(tmpdir(), 'ui-shots-'));
const TOKEN = 'ui-test-token-0123456789';
let env: TestEnv;
let ui: UiServer;
let url: string;
/** The finished runs: the first from `before`, the second (another split seed) trained while a page watches it. */
let runs: RunStatus[] = [];
/** The run the API test resumes from the first (all stages from the cache). */
let resumed: string | undefined;
let pipelineFile: string;

async function startPipeline(file: string, params: Record<string, string>, taskQueue = TEST_QUEUE): Promise<string> {
  const reg = kindRegistry(env.kinds);
  const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable, paramOverrides: params });
  if (!res.ok) throw new Error(JSON.stringify(res.errors));
  const h = await submitRun(env.client, { plan: res.plan, options: { baseDir: dirname(file), actor: 'ui-tester' } }, { taskQueue });
  return h.workflowId;
}
/** A one-stage pipeline `e2e-<name>` beside the e2e one: an ingest of `path`, with `stageLines` added to the stage. */
function ingestOnly(name: string, path: string, stageLines = ''): string {
  const file = join(dirname(pipelineFile), `${name}.yaml`);
  writeFileSync(
    file,
    `name: e2e-${name}\nstages:\n  ingest:\n    uses: ingest\n${stageLines}    with: { path: ${path}, task: classification }\n`,
  );
  return file;
}
const runPipeline = async (file: string, params: Record<string, string>) => waitForRun(env.client, await startPipeline(file, params));

function assertSucceeded(r: RunStatus) {
  assert.equal(r.state, 'succeeded', JSON.stringify(r.stages.map((s) => [s.id, s.state, s.error])));
}
const output = (st: RunStatus, stage: string, name: string) => st.stages.find((s) => s.id === stage)!.outputs![name] as ArtifactRef;

before(async () => {
  env = await startTestEnv(await loadStageKinds());
  await env.startWorker();
  pipelineFile = writeE2EPipeline(mkdtempSync(join(tmpdir(), 'ui-e2e-')), { epochs: 2, rows: 240 });
  runs = [await runPipeline(pipelineFile, {})];
  assertSucceeded(runs[0]!);
  ui = await createUiServer({
    paths: statePaths(env.dir),
    store: env.store,
    client: async () => env.client,
    token: TOKEN,
    actor: 'ui-tester',
    taskQueue: TEST_QUEUE,
    webUiRunUrl: (id) => `http://127.0.0.1:1/namespaces/default/workflows/${id}`,
    pollMs: 200,
  });
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  await env?.close();
});

describe('dashboard API', () => {
  it('refuses actions without the token (401) and reads without it on loopback', async () => {
    const promote = (auth?: string) =>
      fetch(`${url}/api/models/e2e-clf/promote`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
        body: JSON.stringify({ version: 1, alias: 'staging' }),
      });
    assert.equal((await promote()).status, 401);
    assert.equal((await promote('Bearer wrong-token-wrong-token')).status, 401);
    assert.equal((await fetch(`${url}/api/runs/${runs[0]!.runId}/cancel`, { method: 'POST' })).status, 401);
    assert.equal((await fetch(`${url}/api/runs/${runs[0]!.runId}/resume`, { method: 'POST' })).status, 401);
    assert.equal((await fetch(`${url}/api/schedules/x/pause`, { method: 'POST' })).status, 401);
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    try {
      assert.equal(await reg.aliasVersion('e2e-clf', 'staging'), null, 'a refused promote moved nothing');
    } finally {
      await reg.close();
    }
    // Bad queries are refused with what to send instead.
    const refused = async (path: string, pattern: RegExp) => {
      const res = await fetch(`${url}${path}`);
      assert.equal(res.status, 400, path);
      assert.match(((await res.json()) as { error: string }).error, pattern, path);
    };
    await refused(`/api/compare?run=${runs[0]!.runId}`, /two or more runs/);
    await refused(`/api/models/e2e-clf/diff?a=1&b=x`, /b must be a version number/);
    await refused(`/api/models/e2e-clf/versions/0/lineage`, /version must be a version number/);
    const list = (await (await fetch(`${url}/api/runs`)).json()) as { runs: { runId: string }[] };
    for (const r of runs) assert.ok(list.runs.some((x) => x.runId === r.runId));
  });

  it('needs the token for reads too when not bound to loopback', async () => {
    const exposed = await createUiServer({
      paths: statePaths(env.dir),
      store: env.store,
      client: async () => env.client,
      token: TOKEN,
      actor: 'ui-tester',
      taskQueue: TEST_QUEUE,
    });
    try {
      const at = await exposed.listen(0, '0.0.0.0');
      const port = new URL(at).port;
      assert.equal((await fetch(`http://127.0.0.1:${port}/api/runs`)).status, 401);
      assert.equal((await fetch(`http://127.0.0.1:${port}/api/runs`, { headers: { authorization: `Bearer ${TOKEN}` } })).status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200, 'the page itself holds no data');
    } finally {
      await exposed.close();
    }
  });

  it('streams stage states and each training point once (from the offset the client has)', async () => {
    const run = runs[0]!;
    const read = async (query: string) => {
      const res = await fetch(`${url}/api/runs/${run.runId}/events${query}`);
      assert.equal(res.headers.get('content-type'), 'text/event-stream');
      const text = await res.text(); // a closed run's stream ends after its final states
      return text
        .split('\n\n')
        .filter(Boolean)
        .map((b) => ({ event: /^event: (.*)$/m.exec(b)![1]!, data: JSON.parse(/^data: (.*)$/m.exec(b)![1]!) }));
    };
    const all = await read('');
    const stages = all.find((e) => e.event === 'stages')!.data as { state: string; stages: { id: string; state: string }[] };
    assert.equal(stages.state, 'succeeded');
    assert.deepEqual(
      stages.stages.map((s) => s.state),
      run.stages.map((s) => s.state),
    );
    const points = all.filter((e) => e.event === 'points');
    assert.equal(points.length, 1);
    const steps = (points[0]!.data.points as { metrics: { step: number } }[]).map((p) => p.metrics.step);
    assert.equal(new Set(steps).size, run.stages.find((s) => s.id === 'train')!.outputs!.steps, 'every step was recorded live');
    assert.equal(all.at(-1)!.event, 'end');
    const again = await read(`?offset.train=${points[0]!.data.offset}`);
    assert.equal(again.filter((e) => e.event === 'points').length, 0, 'nothing is sent twice');
  });
  it('resumes a run with the token (a new run linked to the old one, audited) and refuses to cancel a closed one', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const old = runs[0]!.runId;
    const res = await fetch(`${url}/api/runs/${old}/resume`, { method: 'POST', headers: auth });
    assert.equal(res.status, 200);
    const { runId } = (await res.json()) as { runId: string };
    resumed = runId;
    const st = await waitForRun(env.client, runId);
    assert.equal(st.resumeOf, old);
    assert.equal(st.state, 'succeeded');
    const log = await openAudit(join(env.dir, 'audit.db'));
    try {
      const rec = await log.query({ run: runId, action: 'run.submitted' });
      assert.equal(rec.length, 1);
      assert.equal(rec[0]!.details.resumeOf, old);
      assert.equal(rec[0]!.actor, 'ui-tester');
    } finally {
      await log.close();
    }
    const cancel = await fetch(`${url}/api/runs/${runId}/cancel`, { method: 'POST', headers: auth });
    assert.equal(cancel.status, 409);
    assert.match(((await cancel.json()) as { error: string }).error, /already completed/);
  });
});

describe('dashboard in a browser', () => {
  const chrome = useBrowser();
  const consoleErrors: string[] = [];

  /** `refusal`: an HTTP status the page is meant to get from an action, which the browser logs as an error. */
  async function open(path: string, withToken = true, refusal?: number): Promise<Page> {
    const ctx = await chrome.browser!.newContext({ viewport: { width: 1360, height: 900 } });
    const page = await ctx.newPage();
    page.on('console', (m) => {
      // Without the token the refused action's 401 is what the page is meant to get (the browser logs every 4xx).
      const expected =
        (!withToken && /status of 401/.test(m.text())) || (refusal !== undefined && m.text().includes(`status of ${refusal}`));
      if (m.type() === 'error' && !expected) consoleErrors.push(`${path}: ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`${path}: ${e.message}`));
    await page.goto(withToken ? `${url}/#token=${TOKEN}` : `${url}/`);
    if (path) await page.evaluate(`location.hash = ${JSON.stringify(path)}`);
    return page;
  }

  it("draws a run's training curves as it trains (server-sent events into the open page, no reload)", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    // The train stage holds step N's report until this file says N (src/isolate/test-hooks.ts).
    const gate = join(mkdtempSync(join(tmpdir(), 'ui-gate-')), 'steps');
    const allow = (steps: number) => writeFileSync(gate, String(steps));
    allow(2);
    process.env.TEMPERED_TEST_STEP_GATE = gate;
    let runId: string | undefined;
    try {
      runId = await startPipeline(pipelineFile, { seed: '4' });
      const reported = async () => {
        const c = (await (await fetch(`${url}/api/runs/${runId}/curves`)).json()) as {
          stages: Record<string, { columns: { step: number[] } }>;
        };
        return c.stages.train?.columns.step.length ?? 0;
      };
      await waitFor('the second run to report 2 training steps', async () => (await reported()) === 2, 180_000, 100);
      const page = await open(`#/run/${runId}`);
      await page.locator('#chart-loss[data-points="2"]').waitFor();
      await page.evaluate('window.sameDocument = true');
      allow(7);
      await page.locator('#chart-loss[data-points="7"]').waitFor();
      assert.equal(await page.getAttribute('.node[data-stage="train"]', 'data-state'), 'running', 'the curve grew while the stage ran');
      await page.screenshot({ path: join(SHOTS, 'ui-run-live.png') });
      allow(Number.MAX_SAFE_INTEGER);
      const done = await waitForRun(env.client, runId);
      assertSucceeded(done);
      runs.push(done);
      const history = tableFromIPC(readFileSync(env.store.pathOf(output(done, 'train', 'history'))));
      await page.locator(`#chart-loss[data-points="${history.numRows}"]`).waitFor();
      await page.locator('.node[data-stage="deploy"][data-state="succeeded"]').waitFor();
      assert.equal(await page.evaluate('window.sameDocument'), true, 'the page was never reloaded');
      assert.equal(await page.evaluate('performance.getEntriesByType("navigation").length'), 1);
      await page.context().close();
    } finally {
      allow(Number.MAX_SAFE_INTEGER); // a failed check must not leave the training held
      delete process.env.TEMPERED_TEST_STEP_GATE;
      if (runId && runs.length < 2) await waitForRun(env.client, runId).catch(() => undefined);
    }
  });

  it('lists both runs', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('#/runs');
    for (const r of runs) await page.locator(`#runs tr[data-run="${r.runId}"]`).waitFor();
    // The run page's and `tempered status`'s word, and the run a resume continues, as `tempered runs` says.
    assert.equal(await page.locator(`#runs tr[data-run="${runs[0]!.runId}"] .state`).innerText(), 'succeeded');
    assert.equal(await page.getAttribute(`#runs tr[data-run="${resumed}"] [data-resumes]`, 'data-resumes'), runs[0]!.runId);
    await page.screenshot({ path: join(SHOTS, 'ui-runs.png') });
    // Filters come from the hash, even when it changes on the page, and go back into it.
    await page.evaluate(`location.hash = '#/runs?schedule=no-such-schedule'`);
    assert.match(await page.locator('#runs-none').innerText(), /no runs with schedule 'no-such-schedule'/);
    assert.equal(await page.inputValue('label:has-text("schedule") input'), 'no-such-schedule');
    await page.fill('label:has-text("schedule") input', '');
    // The pipeline is named e2e: the start of its name, in any case, finds its runs; another name finds none.
    await page.fill('label:has-text("pipeline") input', 'E2');
    await page.press('label:has-text("pipeline") input', 'Enter');
    for (const r of runs) await page.locator(`#runs tr[data-run="${r.runId}"]`).waitFor();
    assert.equal(new URL(page.url()).hash, '#/runs?pipeline=E2');
    await page.fill('label:has-text("pipeline") input', 'e2x');
    await page.press('label:has-text("pipeline") input', 'Enter');
    await page.locator('#runs-none', { hasText: "a pipeline name beginning 'e2x'" }).waitFor();
    await page.context().close();
  });

  it('shows the DAG in its final states, the loss curve with every history point, and the confusion matrix of the report', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const run = runs[0]!;
    const page = await open(`#/run/${run.runId}`);
    await page.locator('.node[data-stage="deploy"]').waitFor();
    for (const s of run.stages) assert.equal(await page.getAttribute(`.node[data-stage="${s.id}"]`, 'data-state'), s.state, s.id);
    const history = tableFromIPC(readFileSync(env.store.pathOf(output(run, 'train', 'history'))));
    await page.locator('#chart-loss').waitFor();
    assert.equal(Number(await page.getAttribute('#chart-loss', 'data-points')), history.numRows);
    assert.equal(await page.locator('#chart-loss canvas').count(), 1, 'uPlot drew the curve');
    // The legend under the cursor shows the loss to 4 significant digits, not rounded to three decimals.
    const over = (await page.locator('#chart-loss .u-over').boundingBox())!;
    await page.mouse.move(over.x + over.width * 0.7, over.y + over.height / 2);
    const lossShown = Number(await page.locator('#chart-loss .u-legend .u-series').nth(1).locator('.u-value').innerText());
    const losses = history.getChild('loss')!.toArray() as Float64Array;
    assert.ok(
      losses.some((x) => Number(x.toPrecision(4)) === lossShown),
      `${lossShown} is one of the run's losses to 4 significant digits (${[...losses].join(', ')})`,
    );
    // A finished run's cancel button is disabled, and looks it.
    assert.equal(await page.isDisabled('#cancel'), true);
    assert.notEqual(await page.evaluate(`getComputedStyle(document.getElementById('cancel')).color`), 'rgb(198, 40, 40)');
    const report = JSON.parse(readFileSync(env.store.pathOf(output(run, 'evaluate', 'report')), 'utf8')) as {
      model: { labels: string[]; confusion: number[][] };
    };
    const { labels, confusion } = report.model;
    for (let i = 0; i < labels.length; i++)
      for (let j = 0; j < labels.length; j++)
        assert.equal(
          Number(await page.getAttribute(`#confusion td[data-true="${labels[i]}"][data-pred="${labels[j]}"]`, 'data-count')),
          confusion[i]![j],
        );
    // Per-class P/R/F1 as the metrics artifact (what the deploy gate reads) has them.
    const metrics = JSON.parse(readFileSync(env.store.pathOf(output(run, 'evaluate', 'metrics')), 'utf8')) as Record<string, unknown>;
    const perClass = metrics.per_class as Record<string, { precision: number; recall: number; f1: number }>;
    for (const label of labels) {
      const cells = await page.locator(`#per-class tr[data-label="${label}"] td.num`).allInnerTexts();
      const want = perClass[label]!;
      assert.deepEqual(
        cells.slice(0, 3).map(Number),
        [want.precision, want.recall, want.f1].map((x) => Number(x.toFixed(4))),
        label,
      );
    }
    // No production version when this run evaluated: the heading does not promise one, and the delta says its direction.
    const evaluation = JSON.parse(readFileSync(env.store.pathOf(output(run, 'evaluate', 'report')), 'utf8')) as { production?: unknown };
    if (!evaluation.production) assert.equal(await page.locator('#versus-title').innerText(), 'Against baseline');
    assert.equal(await page.locator('#versus th').last().innerText(), 'Δ F1 fine-tuned − this');
    // Downloads are named for what they are; an empty count of bad rows reads as none, not as an empty heading.
    assert.equal(await page.locator('[data-stage-card="ingest"] a[download="ingest-table.arrow"]').count(), 1);
    const ingestReport = JSON.parse(readFileSync(env.store.pathOf(output(run, 'ingest', 'report')), 'utf8')) as {
      badRows?: Record<string, number>;
    };
    if (ingestReport.badRows && Object.keys(ingestReport.badRows).length === 0) {
      await page.locator('[data-stage-card="ingest"] summary', { hasText: 'data report' }).click();
      await page.locator('[data-stage-card="ingest"] h3:has-text("badRows") + p', { hasText: '(none)' }).waitFor();
    }
    await page.screenshot({ path: join(SHOTS, 'ui-run.png'), fullPage: true });
    // A node shows its stage's card alone; a second click, or "show all stages", shows them all again.
    const cards = () => page.locator('[data-stage-card]').count();
    await page.click('.node[data-stage="train"]');
    assert.equal(await cards(), 1);
    await page.click('.node[data-stage="train"]');
    assert.equal(await cards(), run.stages.length);
    await page.click('.node[data-stage="split"]');
    assert.equal(await cards(), 1);
    await page.click('#all-stages');
    assert.equal(await cards(), run.stages.length);
    assert.ok(
      Number(await page.evaluate('document.documentElement.scrollWidth')) <= 1360,
      'nothing (a hash, a long output) widens the page past the window',
    );
    await page.context().close();
  });

  it('compares three runs: loss curves overlaid, metrics with deltas against the first, data hashes that differ, spec differences', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    assert.ok(resumed && runs.length === 2, 'the resumed run and the second run exist');
    const all = [runs[0]!, runs[1]!, await waitForRun(env.client, resumed)];
    // Picked on the Runs page in this order: the first ticked is A, the reference for deltas.
    const page = await open('#/runs');
    for (const r of all) await page.locator(`#runs tr[data-run="${r.runId}"] input[type=checkbox]`).check();
    await page.click('#compare-link');
    assert.equal(new URL(page.url()).hash, `#/compare?${all.map((r) => `run=${r.runId}`).join('&')}`);
    for (const r of all) await page.locator(`#compare-runs tr[data-run="${r.runId}"]`).waitFor();
    await page.locator('#compare-loss canvas').waitFor();
    assert.equal(await page.locator('#compare-loss .u-legend .u-series').count(), 1 + all.length, 'one loss series per run (and the step)');
    // Integer outputs as each run's status has them; deltas against the first run.
    for (const [stage, name] of [
      ['train', 'steps'],
      ['ingest', 'rows'],
    ]) {
      const values = all.map((r) => r.stages.find((s) => s.id === stage)!.outputs![name] as number);
      const cells = await page.locator(`#compare-metrics tr[data-metric="${stage}.${name}"] td.num`).allInnerTexts();
      assert.deepEqual(
        cells.map((c) => c.trim()),
        [...values.map(String), ...values.slice(1).map((v) => String(v - values[0]!))],
        `${stage}.${name}`,
      );
    }
    // The split seed differs (3, 4, 3): the split tables differ, the ingested table does not.
    const sha = (r: RunStatus, stage: string, name: string) => output(r, stage, name).sha256;
    for (const [stage, name] of [
      ['ingest', 'table'],
      ['split', 'train'],
    ]) {
      const same = new Set(all.map((r) => sha(r, stage!, name!))).size === 1;
      assert.equal(
        await page.getAttribute(`#compare-data tr[data-table="${stage}.${name}"]`, 'data-same'),
        String(same),
        `${stage}.${name}`,
      );
    }
    assert.notEqual(sha(all[0]!, 'split', 'train'), sha(all[1]!, 'split', 'train'));
    const seedRows = page.locator('#spec-diff tr[data-path]', { hasText: 'seed' });
    assert.ok((await seedRows.count()) > 0, 'the differing seed shows in the spec diff');
    for (const row of await seedRows.all())
      assert.deepEqual(
        (await row.locator('code').allInnerTexts()).map((x) => x.trim()),
        ['3', '4', '3'],
      );
    await page.screenshot({ path: join(SHOTS, 'ui-compare.png'), fullPage: true });
    await page.context().close();
  });

  it('refuses a promote from a page without the token, then promotes with it: alias moved, audit record written', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const anon = await open('#/models', false);
    const row = (p: Page) => p.locator('[data-model="e2e-clf"]');
    await row(anon).locator('input').first().fill('staging');
    await row(anon).locator('input').nth(1).fill('');
    await row(anon).locator('tr[data-version="1"] button[data-promote]').click();
    await anon.locator('#banner').waitFor();
    assert.match(await anon.locator('#banner').innerText(), /^401/);
    await anon.context().close();
    const audit = await openAudit(join(env.dir, 'audit.db'));
    const before = (await audit.query({ action: 'model.promoted' })).length;
    await audit.close();

    const page = await open('#/models');
    await row(page).locator('input').first().fill('staging');
    await row(page).locator('input').nth(1).fill('');
    await row(page).locator('tr[data-version="1"] button[data-promote]').click();
    await page.locator('#banner.ok').waitFor();
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    try {
      assert.equal(await reg.aliasVersion('e2e-clf', 'staging'), 1);
    } finally {
      await reg.close();
    }
    const log = await openAudit(join(env.dir, 'audit.db'));
    try {
      const promoted = await log.query({ action: 'model.promoted' });
      assert.equal(promoted.length, before + 1);
      const rec = promoted.at(-1)!;
      assert.equal(rec.model, 'e2e-clf@1');
      assert.equal(rec.actor, 'ui-tester');
      assert.deepEqual([rec.details.alias, rec.details.via], ['staging', 'ui']);
      assert.equal((await log.verify()).ok, true);
    } finally {
      await log.close();
    }
    await page.locator('tr[data-version="1"]', { hasText: 'staging' }).waitFor();
    // A first assignment has no version before it.
    await row(page).locator('td', { hasText: 'set to v1' }).first().waitFor();
    // The model card renders as HTML (marked, sanitised by DOMPurify), not as markdown text.
    await row(page).locator('tr[data-version="1"] button', { hasText: 'card' }).click();
    assert.equal(await page.locator('div.model-card h1').innerText(), 'e2e-clf v1');
    assert.ok((await page.locator('div.model-card table').count()) > 0, 'the training-data table is a table');
    await page.screenshot({ path: join(SHOTS, 'ui-models.png'), fullPage: true });
    await page.context().close();
  });

  it("draws a version's lineage (source files, data hashes, run, version, aliases, serving) and diffs two versions", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    const [v1, diff, card1, card2] = await (async () => {
      try {
        return [
          await reg.getVersion('e2e-clf', 1),
          await reg.diffVersions('e2e-clf', 1, 2),
          await reg.modelCard('e2e-clf', 1),
          await reg.modelCard('e2e-clf', 2),
        ];
      } finally {
        await reg.close();
      }
    })();
    const ingest = JSON.parse(readFileSync(env.store.pathOf(output(runs[0]!, 'ingest', 'report')), 'utf8')) as {
      sourceFiles: { path: string; sha256: string }[];
    };
    const page = await open('#/models');
    const model = page.locator('[data-model="e2e-clf"]');
    await model.locator('tr[data-version="1"] button[data-lineage]').click();
    const graph = page.locator('#lineage[data-version="1"]');
    await graph.waitFor();
    const ids = async (kind: string) =>
      (await graph.locator(`.lnode[data-kind="${kind}"]`).evaluateAll((els) => els.map((e) => e.getAttribute('data-id')))).sort();
    assert.ok(ingest.sourceFiles.length > 0);
    assert.deepEqual(await ids('source'), ingest.sourceFiles.map((f) => `source:${f.path}:${f.sha256}`).sort());
    assert.deepEqual(await ids('data'), v1.lineage.data.map((d) => `data:${d.name}:${d.sha256}`).sort());
    assert.deepEqual(await ids('run'), [`run:${runs[0]!.runId}`]);
    assert.deepEqual(await ids('version'), ['version:1']);
    assert.ok(v1.aliases.includes('staging'), 'promoted by the test before');
    assert.deepEqual(await ids('alias'), v1.aliases.map((a) => `alias:${a}`).sort());
    assert.deepEqual(await ids('serving'), v1.aliases.map((a) => `serving:${a}`).sort());
    for (const [from, to] of [
      [`run:${runs[0]!.runId}`, 'version:1'],
      ['version:1', 'alias:staging'],
      ['alias:staging', 'serving:staging'],
    ])
      assert.equal(await graph.locator(`path.edge[data-from="${from}"][data-to="${to}"]`).count(), 1, `${from} -> ${to}`);

    await model.locator('select[data-diff="a"]').selectOption('1');
    await model.locator('select[data-diff="b"]').selectOption('2');
    await page.click('#diff-e2e-clf');
    const shown = page.locator('#version-diff[data-a="1"][data-b="2"]');
    await shown.waitFor();
    assert.equal(await shown.locator('#diff-metrics tr[data-metric]').count(), diff.metrics.length);
    for (const m of diff.metrics.filter((x) => x.delta !== undefined).slice(0, 3)) {
      const cells = (await shown.locator(`#diff-metrics tr[data-metric="${m.name}"] td.num`).allInnerTexts()).map((x) => Number(x));
      assert.ok(Math.abs(cells[2]! - m.delta!) < 1e-4, `${m.name}: ${cells[2]} vs ${m.delta}`);
    }
    const shas = async (change: string) =>
      (
        await shown.locator(`#diff-data tr[data-change="${change}"]`).evaluateAll((els) => els.map((e) => e.getAttribute('data-sha')))
      ).sort();
    // A split of the same name with other bytes shows once, as changed (`models diff` does the same).
    assert.ok(diff.data.changed.length > 0, 'v2 trained on another split');
    const changed = shown.locator('#diff-data tr[data-change="changed"]');
    assert.deepEqual(
      (
        await changed.evaluateAll((els) =>
          els.map((e) => `${e.getAttribute('data-name')}:${e.getAttribute('data-sha-a')}>${e.getAttribute('data-sha')}`),
        )
      ).sort(),
      diff.data.changed.map((c) => `${c.name}:${c.a.sha256}>${c.b.sha256}`).sort(),
    );
    const paired = new Set(diff.data.changed.flatMap((c) => [c.a.sha256, c.b.sha256]));
    assert.deepEqual(
      await shas('removed'),
      diff.data.removed
        .map((d) => d.sha256)
        .filter((x) => !paired.has(x))
        .sort(),
    );
    assert.deepEqual(
      await shas('added'),
      diff.data.added
        .map((d) => d.sha256)
        .filter((x) => !paired.has(x))
        .sort(),
    );
    const note = productionComparisonNote(diff);
    assert.deepEqual(await shown.locator('#diff-production').allInnerTexts(), note ? [note] : []);
    // The cards differ line by line: each removed line is v1's, each added line v2's.
    const del = await shown.locator('#card-diff .del').allInnerTexts();
    const add = await shown.locator('#card-diff .add').allInnerTexts();
    assert.ok(del.includes(`- ${card1.split('\n')[0]}`) && add.includes(`+ ${card2.split('\n')[0]}`), 'the title line changed');
    for (const l of del) assert.ok(card1.split('\n').includes(l.slice(2)), l);
    for (const l of add) assert.ok(card2.split('\n').includes(l.slice(2)), l);
    await page.screenshot({ path: join(SHOTS, 'ui-lineage.png'), fullPage: true });
    await page.context().close();
  });

  it('follows a hash that changed before the page listened for changes (read again once it listens)', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const ctx = await chrome.browser!.newContext();
    const page = await ctx.newPage();
    page.on('pageerror', (e) => consoleErrors.push(`early hash: ${e.message}`));
    // After the app's first render, before its effects run (after paint): the hashchange this fires had no listener,
    // and the page stayed on Runs (the next case's open('#/models') hit that once in CI and waited 30 s for the form).
    await page.addInitScript(`document.addEventListener('DOMContentLoaded', () => { location.hash = '#/models'; });`);
    await page.goto(`${url}/`);
    await page.locator('[data-model="e2e-clf"]').waitFor();
    await ctx.close();
  });

  it('explains a gate that refuses a promote, and rolls an alias back through the page (audited)', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const staging = async () => {
      const reg = await openRegistry(join(env.dir, 'registry.db'));
      try {
        return await reg.aliasVersion('e2e-clf', 'staging');
      } finally {
        await reg.close();
      }
    };
    assert.equal(await staging(), 1);
    const page = await open('#/models', true, 409);
    const model = page.locator('[data-model="e2e-clf"]');
    await model.locator('input').first().fill('staging');
    await model.locator('input').nth(1).fill('f1_macro >= 0.99');
    await model.locator('tr[data-version="2"] button[data-promote]').click();
    await page.locator('#banner:not(.ok)').waitFor();
    const refusal = await page.locator('#banner').innerText();
    assert.match(refusal, /^409: the gate refused the promotion\nf1_macro [0-9.]+ >= 0\.99 ✗\npromote another version/);
    assert.match(refusal, /f1_macro/, 'the explanation names what the gate read');
    assert.equal(await staging(), 1, 'a refused promote moved nothing');

    await model.locator('input').nth(1).fill('');
    await model.locator('tr[data-version="2"] button[data-promote]').click();
    await page.locator('#banner.ok', { hasText: 'v2' }).waitFor();
    assert.equal(await staging(), 2);
    await page.locator('tr[data-version="2"]', { hasText: 'staging' }).waitFor();
    assert.equal((await page.locator('#rollback-e2e-clf').innerText()).trim(), 'roll back staging');
    await page.click('#rollback-e2e-clf');
    // Either outcome ends the wait, so a refused rollback fails here with the server's words, not a timeout.
    const outcome = page.locator('#banner', { hasText: /rolled back to|^\d{3}: / });
    await outcome.waitFor();
    assert.match(await outcome.innerText(), /rolled back to v1/);
    assert.equal(await staging(), 1);
    const log = await openAudit(join(env.dir, 'audit.db'));
    try {
      const rec = (await log.query({ action: 'model.rolled_back' })).at(-1)!;
      assert.equal(rec.actor, 'ui-tester');
      assert.deepEqual([rec.model, rec.details.alias, rec.details.via], ['e2e-clf@1', 'staging', 'ui']);
    } finally {
      await log.close();
    }
    await page.context().close();
  });

  it('verifies the audit chain and shows the schedules page', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('#/audit');
    await page.locator('#audit tr[data-action="model.promoted"]').first().waitFor();
    await page.click('#verify');
    assert.match(await page.locator('#verify-result').innerText(), /^intact/);
    // Details a field a line, wrapped: one unbroken line of JSON made the page thousands of pixels wide.
    assert.ok(
      ((await page.evaluate('document.documentElement.scrollWidth')) as number) <=
        ((await page.evaluate('window.innerWidth')) as number) + 1,
      'the audit page fits the window',
    );
    assert.ok((await page.locator('#audit .audit-details b', { hasText: 'stage' }).count()) > 0, 'details are named fields');
    await page.screenshot({ path: join(SHOTS, 'ui-audit.png') });
    await page.evaluate(`location.hash = '#/schedules'`);
    await page.locator('text=no schedules').waitFor();
    await page.context().close();
  });

  it('lists a schedule with its next fire time; pause, unpause and trigger need the token, are audited, and the run shows', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    // Ingest only, from the first run's data: a triggered run is a cache hit.
    const file = join(dirname(pipelineFile), 'data-only.yaml');
    writeFileSync(file, 'name: e2e-data\nstages:\n  ingest:\n    uses: ingest\n    with: { path: data.jsonl, task: classification }\n');
    const name = 'ui-yearly';
    const { input, spec } = await planScheduledRun({
      file,
      params: [],
      registry: kindRegistry(env.kinds),
      store: env.store,
      actor: 'ui-tester',
      name,
    });
    await createSchedule(env.client, { name, taskQueue: TEST_QUEUE, input, spec, timing: { cron: '0 3 1 1 *', overlap: 'skip' } });
    const state = async () => (await readSchedule(env.client, name)).view;
    try {
      const next = (await state()).nextRuns;
      assert.ok(next.length > 0);
      const anon = await open('#/schedules', false);
      await anon.locator(`#schedules tr[data-schedule="${name}"] button[data-op="pause"]`).click();
      await anon.locator('#banner').waitFor();
      assert.match(await anon.locator('#banner').innerText(), /^401/);
      await anon.context().close();
      assert.equal((await state()).paused, false, 'a refused pause changed nothing');

      const page = await open('#/schedules');
      const row = page.locator(`#schedules tr[data-schedule="${name}"]`);
      await row.locator('[data-next]').first().waitFor();
      assert.deepEqual(
        await row.locator('[data-next]').evaluateAll((els) => els.map((e) => e.getAttribute('data-next'))),
        next.slice(0, 3),
      );
      await row.locator('input[data-note]').fill('data migration');
      await row.locator('button[data-op="pause"]').click();
      await page.locator(`#schedules tr[data-schedule="${name}"][data-paused="true"]`).waitFor();
      assert.equal((await state()).paused, true);
      assert.equal((await state()).note, 'data migration');
      // Temporal still computes a paused schedule's fire times; none of them happens, so none shows.
      await row.locator('text=none while paused').waitFor();
      assert.equal(await row.locator('[data-next]').count(), 0);
      await row.locator('text=data migration').waitFor();
      await row.locator('button[data-op="unpause"]').click();
      await page.locator(`#schedules tr[data-schedule="${name}"][data-paused="false"]`).waitFor();
      assert.equal((await state()).paused, false);
      assert.equal((await state()).note, undefined, 'an unpause without a note shows none, as `schedule unpause` without --note');
      await row.locator('[data-next]').first().waitFor();
      await row.locator('button[data-op="trigger"]').click();
      const action = await waitFor('the triggered run', async () => (await state()).recentActions[0], 30_000, 200);
      assertSucceeded(await waitForRun(env.client, action.runId));
      await row.locator(`[data-recent="${action.runId}"] .state.succeeded`).waitFor();
      // The schedule's runs on the Runs page (filtered by schedule): the triggered run alone.
      await row.locator('a', { hasText: 'its runs' }).click();
      await page.locator(`#runs tr[data-run="${action.runId}"]`).waitFor();
      assert.equal(await page.locator('#runs tr[data-run]').count(), 1);
      await page.goBack();
      const log = await openAudit(join(env.dir, 'audit.db'));
      try {
        const changes = (await log.query({})).filter((r) => r.subject === name && r.action.startsWith('schedule.'));
        assert.deepEqual(
          changes.map((r) => [r.action, r.actor, r.details.via]),
          [
            ['schedule.paused', 'ui-tester', 'ui'],
            ['schedule.unpaused', 'ui-tester', 'ui'],
            ['schedule.triggered', 'ui-tester', 'ui'],
          ],
        );
      } finally {
        await log.close();
      }
      await row.waitFor();
      await page.screenshot({ path: join(SHOTS, 'ui-schedules.png') });
      await page.context().close();
    } finally {
      await deleteSchedule(env.client, name).catch(() => undefined);
    }
  });

  it('says where a run that no worker has picked up waits', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const runId = await startPipeline(pipelineFile, {}, 'ui-nobody');
    try {
      const page = await open(`#/run/${runId}`);
      await page.locator('.waiting').waitFor();
      assert.match(await page.locator('.waiting').innerText(), /no worker has picked this run up yet; .*task queue ui-nobody/);
      assert.equal(await page.getAttribute('.node[data-stage="train"]', 'data-state'), 'pending');
      // Its duration moves on with no new data: a minute later by the page's clock, it reads another.
      const before = await page.locator('#run-duration').innerText();
      await page.clock.install();
      await page.clock.fastForward(60_000);
      await page.locator('#run-duration').filter({ hasNotText: before }).waitFor();
      // Cancelled before any worker took it: the run waits still, and says the cancellation waits with it.
      await page.click('#cancel');
      await page.locator('.waiting[data-cancel-requested="true"]').waitFor();
      assert.match(
        await page.locator('.waiting').innerText(),
        /cancellation requested; no worker has picked this run up yet, and it ends \(cancelled, nothing run\) when a worker serving task queue ui-nobody takes it/,
      );
      assert.equal(await page.isDisabled('#cancel'), true, 'one cancellation is enough');
      const again = await fetch(`${url}/api/runs/${runId}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.deepEqual(await again.json(), { cancelled: true, alreadyRequested: true });
      const log = await openAudit(join(env.dir, 'audit.db'));
      try {
        assert.equal((await log.query({ run: runId, action: 'run.cancel_requested' })).length, 1, 'the second request wrote no record');
      } finally {
        await log.close();
      }
      await page.context().close();
    } finally {
      await env.client.workflow.getHandle(runId).terminate('test over');
    }
  });

  // The workflow runs, but its stage goes to a queue nobody serves: the DAG said "running" with no progress.
  it('shows a stage routed to a queue no worker serves as waiting, in the DAG and its card', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    // Not from the cache: an earlier run ingested the same file, and a hit needs no worker.
    const runId = await startPipeline(ingestOnly('routed', 'data.jsonl', '    queue: ui-nobody-stage\n    cache: false\n'), {});
    try {
      const page = await open(`#/run/${runId}`);
      await page.locator('.node[data-stage="ingest"][data-waiting="ui-nobody-stage"]').waitFor();
      assert.equal(await page.getAttribute('.node[data-stage="ingest"]', 'data-state'), 'running', 'Temporal says running');
      assert.match((await page.locator('.node[data-stage="ingest"]').textContent()) ?? '', /waiting/);
      assert.match(
        await page.locator('[data-stage-card="ingest"] .waiting[data-waiting-for="ui-nobody-stage"]').innerText(),
        /no worker of task queue ui-nobody-stage has asked for work lately/,
      );
      await page.context().close();
    } finally {
      await env.client.workflow.getHandle(runId).terminate('test over');
    }
  });

  // A killed worker's stage read "running" for the whole heartbeat timeout (a minute by default, five here).
  it("says on a running stage's card that its worker went silent, long before its heartbeat timeout", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const probeLog = join(env.dir, 'ui-probe.log');
    env.kinds.set('probe', probeKind(probeLog));
    const worker = await startCliWorker(['--queue', 'ui-silent'], {
      TEMPORAL_ADDRESS: env.server.address,
      TEMPERED_HOME: env.dir,
      TEMPERED_PLUGINS: fileURLToPath(new URL('./helpers/probe-plugin.ts', import.meta.url)),
      TEMPERED_PROBE_LOG: probeLog,
    });
    const file = join(dirname(pipelineFile), 'silent.yaml');
    writeFileSync(
      file,
      'name: e2e-silent\nstages:\n  slow:\n    uses: probe\n    queue: ui-silent\n    heartbeatTimeout: 5m\n    cache: false\n    with: { value: x, sleepMs: 300000, stopOnAbort: true }\n',
    );
    const runId = await startPipeline(file, {});
    try {
      const page = await open(`#/run/${runId}`);
      await page.locator('.node[data-stage="slow"][data-state="running"]').waitFor();
      worker.kill('SIGKILL');
      const silent = page.locator('[data-stage-card="slow"] .waiting[data-silent]');
      await silent.waitFor({ timeout: 90_000 });
      assert.ok(Number(await silent.getAttribute('data-silent')) >= SILENT_AFTER_SEC);
      assert.match(await silent.innerText(), /no heartbeat from its worker for \d+s: the worker may have died or lost the server/);
      await page.context().close();
    } finally {
      worker.kill('SIGKILL');
      await env.client.workflow
        .getHandle(runId)
        .terminate('test over')
        .catch(() => {});
    }
  });

  // The card showed the error but not whether it was retried: a user could not tell a stage still retrying from one given up.
  it("says on a failed stage's card how its retries went", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const st = await waitForRun(env.client, await startPipeline(ingestOnly('missing', 'nowhere.jsonl'), {}));
    assert.equal(st.state, 'failed');
    const page = await open(`#/run/${st.runId}`);
    const error = page.locator('[data-stage-card="ingest"] .error');
    await error.waitFor();
    assert.equal(await error.getAttribute('data-retry'), 'not retried: input error');
    assert.match(await error.innerText(), /^InputError: .*nowhere\.jsonl.* \(not retried: input error\)/);
    assert.equal(await page.getAttribute('.node[data-stage="ingest"]', 'data-state'), 'failed');
    await page.context().close();
  });

  it('says in the version diff which version production.* were measured against, and gives no deltas across different ones', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    let diff;
    try {
      // As the register stage stores evaluate's comparison: v2 measured against v1, v3 against v2.
      const register = (run: string, c: string, metrics: Record<string, unknown>) =>
        reg.registerVersion(testVersion('ui-prod-cmp', c, { runId: run, metrics }));
      await register('c1', 'a', { f1_macro: 0.9 });
      await register('c2', 'b', { f1_macro: 0.92, production: { f1_macro: 0.88, version: 1, rows: 120 } });
      await register('c3', 'c', { f1_macro: 0.94, production: { f1_macro: 0.9, version: 2, rows: 130 } });
      diff = await reg.diffVersions('ui-prod-cmp', 2, 3);
    } finally {
      await reg.close();
    }
    const page = await open('#/models');
    const model = page.locator('[data-model="ui-prod-cmp"]');
    await model.locator('select[data-diff="a"]').selectOption('2');
    await model.locator('select[data-diff="b"]').selectOption('3');
    await page.click('#diff-ui-prod-cmp');
    const shown = page.locator('#version-diff[data-a="2"][data-b="3"]');
    await shown.waitFor();
    assert.equal(
      await shown.locator('#diff-production').innerText(),
      "production.* measured against different versions: v2's against v1, v3's against v2; no differences given",
    );
    assert.equal(productionComparisonNote(diff), await shown.locator('#diff-production').innerText());
    const cells = (sel: string) => shown.locator(`#diff-metrics tr[data-metric="${sel}"] td.num`).allInnerTexts();
    assert.deepEqual(await cells('production.version'), ['v1', 'v2', '']);
    assert.deepEqual(await cells('production.f1_macro'), ['0.8800', '0.9000', ''], 'no delta across different versions');
    assert.deepEqual(await cells('f1_macro'), ['0.9200', '0.9400', '0.0200']);
    await page.context().close();
  });

  it('says when live updates are lost or fail, and takes them up again from where they were', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const runId = await startPipeline(pipelineFile, {}, 'ui-nobody-live');
    const ctx = await chrome.browser!.newContext({ viewport: { width: 1360, height: 900 } });
    try {
      // The first stream says the server failed and ends, as the server's own `failure` does; the next ones go through.
      const asked: string[] = [];
      await ctx.route('**/events?*', async (route) => {
        asked.push(route.request().url());
        if (asked.length > 1) return route.continue();
        await route.fulfill({
          status: 200,
          headers: { 'content-type': 'text/event-stream' },
          body: 'event: failure\ndata: {"error":"Temporal is unreachable"}\n\n',
        });
      });
      const page = await ctx.newPage();
      await page.goto(`${url}/#token=${TOKEN}`);
      await page.evaluate(`location.hash = ${JSON.stringify(`#/run/${runId}`)}`);
      await page.locator('#live-lost', { hasText: 'live updates lost, reconnecting… (Temporal is unreachable)' }).waitFor();
      await page.locator('#live-lost').waitFor({ state: 'detached' });
      assert.ok(asked.length >= 2, 'it asked again');
      assert.equal(new URL(asked[1]!).pathname, `/api/runs/${runId}/events`);
    } finally {
      await ctx.close();
      await env.client.workflow.getHandle(runId).terminate('test over');
    }
  });

  it("says why a run's reports and history are not shown when they are not in this dashboard's store", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const elsewhere = await createUiServer({
      paths: statePaths(env.dir),
      store: new ArtifactStore(mkdtempSync(join(tmpdir(), 'ui-other-store-'))),
      client: async () => env.client,
      token: TOKEN,
      actor: 'ui-tester',
      taskQueue: TEST_QUEUE,
    });
    try {
      const at = await elsewhere.listen(0, '127.0.0.1');
      const ctx = await chrome.browser!.newContext({ viewport: { width: 1360, height: 900 } });
      const page = await ctx.newPage();
      await page.goto(`${at}/#token=${TOKEN}`);
      await page.evaluate(`location.hash = ${JSON.stringify(`#/run/${runs[0]!.runId}`)}`);
      await page.locator('#evaluation-unread').waitFor();
      assert.match(
        await page.locator('#evaluation-unread').innerText(),
        /^report not shown: artifact [0-9a-f]+ is not in the store at .*TEMPERED_STORE/,
      );
      assert.match(await page.locator('[data-unread="history"]').innerText(), /training history not shown.*not in the store/);
      assert.match(await page.locator('[data-stage-card="ingest"] [data-unread="report"]').innerText(), /not in the store/);
      await ctx.close();
    } finally {
      await elsewhere.close();
    }
  });

  it('logged no console errors', (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    assert.deepEqual(consoleErrors, []);
  });
});
