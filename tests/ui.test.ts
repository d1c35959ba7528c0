/**
 * The dashboard (`tempered ui`) against a real dev server and worker: two tiny fine-tuning runs, then
 * the JSON API (auth, live events) and the pages in a real headless chromium: the DAG's final states,
 * the loss curve's points against the history artifact, the confusion matrix against the evaluation
 * report, compare, promote through the page (alias moved, audit record), refusals without the token,
 * and no console errors. Screenshots of each page go to docs/.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tableFromIPC } from 'apache-arrow';
import type { Browser, Page } from 'playwright-core';
import { submitRun, waitForRun } from '../client/runs.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { loadSpec } from '../src/spec/index.ts';
import { statePaths } from '../src/state-paths.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import type { ArtifactRef } from '../src/types.ts';
import { createUiServer, type UiServer } from '../ui/server.ts';
import type { RunStatus } from '../workflows/types.ts';
import { announceSkip, chromiumPath } from './helpers/browser.ts';
import { writeE2EPipeline } from './helpers/e2e-fixture.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

// The README shows these; a plain test run writes them to a scratch folder so it leaves the checkout as it was.
const SHOTS = process.env.TEMPERED_UI_SCREENSHOTS
  ? resolve(dirname(fileURLToPath(import.meta.url)), '..', 'docs')
  : mkdtempSync(join(tmpdir(), 'ui-shots-'));
const TOKEN = 'ui-test-token-0123456789';
let env: TestEnv;
let ui: UiServer;
let url: string;
let runs: RunStatus[] = [];

async function runPipeline(file: string, params: Record<string, string>): Promise<RunStatus> {
  const reg = kindRegistry(env.kinds);
  const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable, paramOverrides: params });
  if (!res.ok) throw new Error(JSON.stringify(res.errors));
  const h = await submitRun(
    env.client,
    { plan: res.plan, options: { baseDir: dirname(file), actor: 'ui-tester' } },
    { taskQueue: TEST_QUEUE },
  );
  return waitForRun(env.client, h.workflowId);
}

const output = (st: RunStatus, stage: string, name: string) => st.stages.find((s) => s.id === stage)!.outputs![name] as ArtifactRef;

before(async () => {
  env = await startTestEnv(await loadStageKinds());
  await env.startWorker();
  const file = writeE2EPipeline(mkdtempSync(join(tmpdir(), 'ui-e2e-')), { epochs: 2, rows: 240 });
  // Two runs that differ in their split seed: two models, two histories to compare.
  runs = [await runPipeline(file, {}), await runPipeline(file, { seed: '4' })];
  for (const r of runs) assert.equal(r.state, 'succeeded', JSON.stringify(r.stages.map((s) => [s.id, s.state, s.error])));
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
  let browser: Browser | undefined;
  let skip: string | false = false;
  const consoleErrors: string[] = [];
  before(async () => {
    const found = chromiumPath();
    if ('missing' in found) {
      skip = announceSkip(found.missing);
      return;
    }
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: found.path, args: ['--disable-gpu', '--disable-dev-shm-usage'] });
  });
  after(async () => {
    await browser?.close();
  });

  async function open(path: string, withToken = true): Promise<Page> {
    const ctx = await browser!.newContext({ viewport: { width: 1360, height: 900 } });
    const page = await ctx.newPage();
    page.on('console', (m) => {
      // Without the token the refused action's 401 is what the page is meant to get (the browser logs every 4xx).
      const expected = !withToken && /status of 401/.test(m.text());
      if (m.type() === 'error' && !expected) consoleErrors.push(`${path}: ${m.text()}`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`${path}: ${e.message}`));
    await page.goto(withToken ? `${url}/#token=${TOKEN}` : `${url}/`);
    if (path) await page.evaluate(`location.hash = ${JSON.stringify(path)}`);
    return page;
  }

  it('lists both runs', async (t) => {
    if (skip) return t.skip(skip);
    const page = await open('#/runs');
    for (const r of runs) await page.locator(`#runs tr[data-run="${r.runId}"]`).waitFor();
    await page.screenshot({ path: join(SHOTS, 'ui-runs.png') });
    await page.context().close();
  });

  it('shows the DAG in its final states, the loss curve with every history point, and the confusion matrix of the report', async (t) => {
    if (skip) return t.skip(skip);
    const run = runs[0]!;
    const page = await open(`#/run/${run.runId}`);
    await page.locator('.node[data-stage="deploy"]').waitFor();
    for (const s of run.stages) assert.equal(await page.getAttribute(`.node[data-stage="${s.id}"]`, 'data-state'), s.state, s.id);
    const history = tableFromIPC(readFileSync(env.store.pathOf(output(run, 'train', 'history'))));
    await page.locator('#chart-loss').waitFor();
    assert.equal(Number(await page.getAttribute('#chart-loss', 'data-points')), history.numRows);
    assert.equal(await page.locator('#chart-loss canvas').count(), 1, 'uPlot drew the curve');
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
    await page.screenshot({ path: join(SHOTS, 'ui-run.png'), fullPage: true });
    await page.context().close();
  });

  it('compares the two runs', async (t) => {
    if (skip) return t.skip(skip);
    const page = await open(`#/compare?a=${runs[0]!.runId}&b=${runs[1]!.runId}`);
    for (const r of runs) await page.locator(`#compare-runs tr[data-run="${r.runId}"]`).waitFor();
    await page.locator('#compare-loss canvas').waitFor();
    assert.match(await page.locator('#spec-diff').innerText(), /seed/, 'the differing param shows in the spec diff');
    await page.screenshot({ path: join(SHOTS, 'ui-compare.png'), fullPage: true });
    await page.context().close();
  });

  it('refuses a promote from a page without the token, then promotes with it: alias moved, audit record written', async (t) => {
    if (skip) return t.skip(skip);
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
    // The model card renders as HTML (marked, sanitised by DOMPurify), not as markdown text.
    await row(page).locator('tr[data-version="1"] button', { hasText: 'card' }).click();
    assert.equal(await page.locator('div.model-card h1').innerText(), 'e2e-clf v1');
    assert.ok((await page.locator('div.model-card table').count()) > 0, 'the training-data table is a table');
    await page.screenshot({ path: join(SHOTS, 'ui-models.png'), fullPage: true });
    await page.context().close();
  });

  it('verifies the audit chain and shows the schedules page', async (t) => {
    if (skip) return t.skip(skip);
    const page = await open('#/audit');
    await page.locator('#audit tr[data-action="model.promoted"]').first().waitFor();
    await page.click('#verify');
    assert.match(await page.locator('#verify-result').innerText(), /^intact/);
    await page.screenshot({ path: join(SHOTS, 'ui-audit.png') });
    await page.evaluate(`location.hash = '#/schedules'`);
    await page.locator('text=no schedules').waitFor();
    await page.context().close();
  });

  it('logged no console errors', (t) => {
    if (skip) return t.skip(skip);
    assert.deepEqual(consoleErrors, []);
  });
});
