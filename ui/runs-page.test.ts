/**
 * The dashboard's Runs page with more runs than it shows, as a team that has used tempered a while has them: a real dev
 * server and worker run eight tiny runs of two pipelines (two fail), the last two after a noted time. GET /api/runs
 * pages (`limit`, `more`, one Temporal list request each), filters by start time (`since`) and run id prefix (`id`),
 * and names a bad `since`; in a real chromium the filters, the page's length and its order live in the URL, older runs
 * are one click away, columns sort by click or keyboard, `/` goes to the run id field, and a refused filter is an
 * error, not an empty table. A page in a hidden tab neither polls the runs nor keeps a running run's live stream open.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Page, Request } from 'playwright-core';
import { statePaths } from '../src/state-paths.ts';
import { useBrowser } from '../tests/helpers/browser.ts';
import { waitFor } from '../tests/helpers/schedule-fixtures.ts';
import { probeKind } from '../tests/helpers/test-stages.ts';
import { startTestEnv, submitPipelineFile, TEST_QUEUE, type TestEnv } from '../tests/helpers/temporal-env.ts';
import { openDashboard } from './dashboard.testing.ts';
import { createUiServer, type UiServer } from './server.ts';

const TOKEN = 'ui-runs-page-token-0123456789';
let env: TestEnv;
let ui: UiServer;
let url: string;
/** Newest first, as the page lists them. */
let all: string[] = [];
let failed: string[] = [];
/** Runs started after `mark`. */
let late: string[] = [];
let mark: Date;
let listRequests = 0;

interface Listed {
  runs: { runId: string; pipeline: string; status: string }[];
  more: boolean;
}
const list = async (qs: string): Promise<Listed> => {
  const res = await fetch(`${url}/api/runs?${qs}`);
  assert.equal(res.status, 200, `${qs}: ${await res.clone().text()}`);
  return (await res.json()) as Listed;
};

before(async () => {
  env = await startTestEnv(new Map());
  env.kinds.set('probe', probeKind(join(env.dir, 'executions.log')));
  await env.startWorker();
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ui-runs-'));
  // Alpha takes a learning rate, as a training pipeline does: the late runs were submitted with another one.
  const pipeline = (name: string, fail: boolean, lr = '') => {
    const file = join(dir, `${name}-${fail}${lr}.yaml`);
    const params = lr ? `params:\n  lr: { type: number, default: ${lr} }\n` : '';
    const value = lr ? "'lr=${{ params.lr }}'" : "'x'";
    writeFileSync(
      file,
      `name: ${name}\n${params}stages:\n  only:\n    uses: probe\n    with: { value: ${value}${fail ? ', inputError: true' : ''} }\n`,
    );
    return file;
  };
  const run = async (file: string) => {
    const id = await submitPipelineFile(env, file, { actor: 'lead', noCache: true });
    await env.client.workflow
      .getHandle(id)
      .result()
      .catch(() => undefined);
    return id;
  };
  for (let i = 0; i < 4; i++) await run(pipeline('alpha', false, '0.01'));
  for (let i = 0; i < 2; i++) failed.push(await run(pipeline('beta', true)));
  await sleep(1100); // start times are kept to the millisecond: the mark is between the runs, not beside one
  mark = new Date();
  await sleep(1100);
  for (let i = 0; i < 2; i++) late.push(await run(pipeline('alpha', false, '0.02')));
  // Every list request the dashboard sends, on the connection every client of it shares.
  const svc = env.client.connection.workflowService as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
  const real = svc.listWorkflowExecutions!.bind(svc);
  svc.listWorkflowExecutions = (...a: unknown[]) => (listRequests++, real(...a));
  ui = await createUiServer({
    paths: statePaths(env.dir),
    store: env.store,
    client: async () => env.client,
    token: TOKEN,
    actor: 'tester',
    taskQueue: TEST_QUEUE,
  });
  url = await ui.listen(0, '127.0.0.1');
  // Visibility catches up with ended runs a moment after they end.
  await waitFor('the eight runs listed as ended', async () => {
    const l = await list('limit=100');
    return l.runs.length === 8 && l.runs.every((r) => r.status !== 'RUNNING');
  });
  all = (await list('limit=100')).runs.map((r) => r.runId);
  late.reverse();
  failed.reverse();
});
after(async () => {
  await ui?.close();
  await env?.close();
});

describe('GET /api/runs', () => {
  it('pages with two list requests each (running runs, ended ones) and says whether older runs are past the page', async () => {
    listRequests = 0;
    const first = await list('limit=3');
    assert.equal(listRequests, 2);
    assert.deepEqual(
      first.runs.map((r) => r.runId),
      all.slice(0, 3),
    );
    assert.equal(first.more, true);
    const whole = await list('limit=8');
    assert.equal(whole.runs.length, 8);
    assert.equal(whole.more, false, 'eight runs, eight shown: nothing past the page');
    assert.equal(listRequests, 4);
    assert.equal((await list('limit=1.5')).runs.length, 1, 'whole runs');
    assert.equal((await list('limit=-3')).runs.length, 1);
    assert.equal((await list('limit=1e9')).runs.length, 8);
    listRequests = 2;
    const failures = await list('pipeline=bet&status=Failed&limit=1');
    assert.deepEqual(
      failures.runs.map((r) => r.runId),
      failed.slice(0, 1),
    );
    assert.equal(failures.more, true, 'the other failed beta run is past a page of one');
  });

  it('filters by start time and by the beginning of a run id', async () => {
    assert.deepEqual(
      (await list(`since=${encodeURIComponent(mark.toISOString())}`)).runs.map((r) => r.runId),
      late,
    );
    assert.equal((await list('since=1h')).runs.length, 8);
    const prefix = failed[0]!.slice(0, -3);
    assert.deepEqual(
      (await list(`id=${encodeURIComponent(prefix)}`)).runs.map((r) => r.runId),
      all.filter((id) => id.startsWith(prefix)),
    );
    assert.deepEqual((await list('id=beta-')).runs.map((r) => r.runId).sort(), [...failed].sort());
    const bad = await fetch(`${url}/api/runs?since=last%20tuesday`);
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: string }).error, /since.*1h, 24h, 7d, 30d.*"last tuesday"/);
  });
});

describe('Runs page in chromium', () => {
  const chrome = useBrowser();
  const errors: string[] = [];
  const rows = (page: Page) => page.locator('#runs tr[data-run]').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run')));
  const hashOf = (page: Page) => page.evaluate<string>('decodeURIComponent(location.hash)');
  /** The rows once they are `want` (the page polls; a changed hash answers once its list comes). */
  const rowsBecome = async (page: Page, want: string[]) => {
    await waitFor(`rows ${want.join(', ')}`, async () => JSON.stringify(await rows(page)) === JSON.stringify(want), 20_000);
  };
  // Headless chromium has no hidden tab to give (no DevTools command hides a page): the page is told as a browser
  // tells it, by document.hidden, visibilityState and the visibilitychange event.
  const setHidden = (page: Page, hidden: boolean) =>
    page.evaluate(
      `Object.defineProperty(document, 'hidden', { value: ${hidden}, configurable: true });
       Object.defineProperty(document, 'visibilityState', { value: '${hidden ? 'hidden' : 'visible'}', configurable: true });
       document.dispatchEvent(new Event('visibilitychange'))`,
    );

  it('shows older runs a page at a time, the page length in the URL', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs?limit=3', errors);
    await rowsBecome(page, all.slice(0, 3));
    assert.match(await page.locator('#runs-count').innerText(), /^the 3 newest started runs show 50 more$/);
    // Each run's parameters, as `tempered runs` prints them: what tells two runs of one pipeline apart.
    assert.equal(await page.locator(`#runs tr[data-run="${late[0]}"] td.params`).innerText(), 'lr=0.02');
    await page.locator('#runs-more').click();
    await rowsBecome(page, all);
    assert.match(await hashOf(page), /limit=53/);
    assert.match(await page.locator('#runs-count').innerText(), /all 8 runs/);
    assert.equal(await page.locator('#runs-more').count(), 0);
    await page.context().close();
  });

  it('filters by pipeline, state, start time and run id, each in the URL, and clears them', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs?pipeline=beta&status=Failed', errors);
    await rowsBecome(page, failed);
    assert.equal(await page.locator(`#runs tr[data-run="${failed[0]}"] td.params`).innerText(), '', 'beta takes no params');
    assert.match(await page.locator('#runs-count').innerText(), /all 2 runs with status failed, a pipeline name beginning 'beta'/);
    await page.locator('select[data-filter=since]').selectOption('1h');
    await waitFor('since in the hash', async () => /since=1h/.test(await hashOf(page)));
    assert.match(await hashOf(page), /pipeline=beta/, 'the other filters stay');
    await rowsBecome(page, failed);
    await page.goto(`${url}/#/runs?since=${encodeURIComponent(mark.toISOString())}`);
    await rowsBecome(page, late);
    await page.locator('#runs-clear').click();
    await rowsBecome(page, all);
    // `/` goes to the run id field; Enter applies what was typed.
    await page.locator('h1').click();
    await page.keyboard.press('/');
    assert.equal(await page.evaluate<string | null>("document.activeElement?.getAttribute('data-filter') ?? null"), 'id');
    await page.keyboard.type(late[0]!.slice(0, -2));
    await page.keyboard.press('Enter');
    await rowsBecome(
      page,
      all.filter((id) => id.startsWith(late[0]!.slice(0, -2))),
    );
    assert.match(await hashOf(page), new RegExp(`id=${late[0]!.slice(0, -2)}`));
    // Escape in a field clears it, and its filter.
    await page.keyboard.press('Escape');
    await rowsBecome(page, all);
    assert.doesNotMatch(await hashOf(page), /id=/);
    assert.equal(await page.inputValue('input[data-filter=id]'), '');
    await page.context().close();
  });

  it("filters by a row's pipeline in one click, and offers, for a part that begins no name, the names seen holding it", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs?status=Failed', errors);
    await rowsBecome(page, failed);
    await page.locator(`#runs tr[data-run="${failed[0]}"] a.filter-link`).click();
    await waitFor('pipeline in the hash', async () => /pipeline=beta/.test(await hashOf(page)));
    assert.match(await hashOf(page), /status=Failed/, 'the other filters stay');
    await rowsBecome(page, failed);
    // The filter is a name's beginning (a Temporal list query where the namespace has TemperedPipeline).
    await page.evaluate(`location.hash = '#/runs?pipeline=eta'`);
    await page.locator('#runs-none').waitFor();
    assert.equal(await page.locator('#runs-pipelines-holding').innerText(), "; pipelines seen whose name holds 'eta': beta");
    await page.locator('#runs-pipelines-holding a').click();
    await rowsBecome(page, failed);
    await page.context().close();
  });

  it('offers no "show more" past the longest page, which would show the same runs, and says what shows older ones', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs', errors);
    await rowsBecome(page, all);
    // Eight runs cannot fill the longest page: its answer is told there are more, as it would be with a thousand.
    await page.route(/\/api\/runs\?.*limit=1000/, async (route) => {
      const answer = await route.fetch();
      await route.fulfill({ response: answer, json: { ...((await answer.json()) as object), more: true } });
    });
    await page.evaluate(`location.hash = '#/runs?limit=1000'`);
    await page.locator('#runs-longest').waitFor();
    assert.equal(await page.locator('#runs-more').count(), 0);
    assert.match(await page.locator('#runs-count').innerText(), /the longest page: a start time or another filter shows older ones/);
    await page.context().close();
  });

  it('sorts by a column header, with the mouse or the keyboard, the order in the URL', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs', errors);
    await rowsBecome(page, all);
    const pipelines = () => page.locator('#runs tr[data-run] td:nth-child(3)').allInnerTexts();
    await page.locator('button[data-sort=pipeline]').click();
    await waitFor('sorted by pipeline', async () => /sort=pipeline/.test(await hashOf(page)));
    await waitFor('alpha runs first', async () => (await pipelines()).join() === 'alpha,alpha,alpha,alpha,alpha,alpha,beta,beta');
    await page.locator('button[data-sort=pipeline]').focus();
    await page.keyboard.press('Enter');
    await waitFor('sorted by pipeline, descending', async () => /sort=-pipeline/.test(await hashOf(page)));
    await waitFor('beta runs first', async () => (await pipelines()).join() === 'beta,beta,alpha,alpha,alpha,alpha,alpha,alpha');
    assert.equal(await page.getAttribute('button[data-sort=pipeline] >> xpath=..', 'aria-sort'), 'descending');
    // The page is the newest started runs whatever their order; the count says which order they are in.
    assert.equal(await page.locator('#runs-count').innerText(), 'all 8 runs, sorted by pipeline here');
    await page.locator('button[data-sort=started]').click();
    await rowsBecome(page, all);
    assert.equal(await page.locator('#runs-count').innerText(), 'all 8 runs');
    await page.locator('button[data-sort=started]').click();
    await rowsBecome(page, [...all].reverse());
    assert.equal(await page.locator('#runs-count').innerText(), 'all 8 runs, oldest first here');
    await page.context().close();
  });

  it('offers, for a run id Temporal does not know, the runs it begins, and opens the one picked', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/run/beta-', errors);
    await page.locator('#run-prefix-matches').waitFor();
    assert.match(await page.locator('p.error').innerText(), /not found/);
    assert.deepEqual(await page.locator('#run-prefix-matches li a').allInnerTexts(), failed);
    await page.locator('#run-prefix-matches li a').first().click();
    await page.locator('h1', { hasText: failed[0]! }).waitFor();
    assert.equal(await page.locator('p.error', { hasText: 'not found' }).count(), 0, "the unknown id's refusal is gone with it");
    assert.equal(await page.locator('#run-prefix-matches').count(), 0);
    await page.context().close();
  });

  it("shows a run opened while the id before it was still being read as that run, not the other's answer", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs', errors);
    await rowsBecome(page, all);
    // The unknown id's 404 is held in the browser until the run picked next is shown.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let asked!: () => void;
    const seen = new Promise<void>((r) => (asked = r));
    await page.route('**/api/runs/no-such-run', async (route) => {
      const answer = await route.fetch();
      asked();
      await held;
      await route.fulfill({ response: answer });
    });
    await page.evaluate(`location.hash = '#/run/no-such-run'`);
    await seen;
    await page.evaluate(`location.hash = ${JSON.stringify(`#/run/${late[0]}`)}`);
    await page.locator('h1', { hasText: late[0]! }).waitFor();
    const done = page.waitForEvent('requestfinished', (r) => r.url().endsWith('/api/runs/no-such-run'));
    release();
    await done;
    // The page has read the held answer (its body is in; a few of the page's own turns later its handlers have run).
    for (let i = 0; i < 5; i++) await page.evaluate('new Promise((r) => setTimeout(r, 0))');
    assert.equal(await page.locator('p.error', { hasText: 'not found' }).count(), 0);
    assert.equal(await page.locator('h1', { hasText: late[0]! }).count(), 1);
    await page.context().close();
  });

  it('shows the run page for an address that is no percent-encoding, not a blank page', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const thrown: string[] = [];
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/run/50%off', thrown);
    await page.locator('p.error:not([data-spec-error])', { hasText: /50%off.*not found|not found.*50%off/ }).waitFor({ timeout: 15_000 });
    assert.deepEqual(thrown, []);
    await page.context().close();
  });

  it('stops reading the runs while its tab is hidden, and reads them again as soon as it is shown', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs', errors);
    await rowsBecome(page, all);
    let reads = 0;
    page.on('request', (r) => void (new URL(r.url()).pathname === '/api/runs' && reads++));
    await waitFor('a poll while shown', async () => reads > 0, 20_000);
    await setHidden(page, true);
    const atHiding = reads;
    // The poll already waiting on its timer (3 s) may still go; none after it. Polling on, the page would have read
    // the runs 3 or 4 more times in these 10 s.
    await sleep(10_000);
    assert.ok(reads - atHiding <= 1, `${reads - atHiding} reads while hidden`);
    const whileHidden = reads;
    await setHidden(page, false);
    await waitFor('a read once shown', async () => reads > whileHidden, 20_000);
    assert.deepEqual(await rows(page), all);
    await page.context().close();
  });

  it('shows a refused filter as an error, not as an empty list', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs?since=last%20tuesday', errors);
    await page.locator('#runs-error').waitFor();
    assert.match(await page.locator('#runs-error').innerText(), /400: since.*"last tuesday"/);
    assert.equal(await page.locator('#runs').count(), 0);
    assert.equal(await page.locator('#runs-none').count(), 0);
    assert.deepEqual(errors, []);
    await page.context().close();
  });

  // Last: its run is listed after the eight.
  it("closes a running run's live stream while its tab is hidden, and opens it again when shown", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const file = join(mkdtempSync(join(tmpdir(), 'tempered-ui-live-')), 'live.yaml');
    writeFileSync(file, 'name: live\nstages:\n  only:\n    uses: probe\n    with: { value: live, blockUntilCancelled: true }\n');
    const id = await submitPipelineFile(env, file, { actor: 'lead', noCache: true });
    const handle = env.client.workflow.getHandle(id);
    try {
      const page = await openDashboard(chrome.browser!, url, TOKEN, '#/runs', errors);
      const isStream = (r: Request) => new URL(r.url()).pathname === `/api/runs/${id}/events`;
      let opened = 0;
      let ended = 0;
      page.on('request', (r) => void (isStream(r) && opened++));
      page.on('requestfailed', (r) => void (isStream(r) && ended++));
      page.on('requestfinished', (r) => void (isStream(r) && ended++));
      await page.evaluate(`location.hash = ${JSON.stringify(`#/run/${id}`)}`);
      await waitFor('the live stream open', async () => opened === 1, 30_000);
      // The server would read the run's status from Temporal every second for a page nobody sees.
      await setHidden(page, true);
      await waitFor('the live stream closed while hidden', async () => ended === 1, 20_000);
      assert.equal(opened, 1);
      await setHidden(page, false);
      await waitFor('the live stream open again once shown', async () => opened === 2, 20_000);
      await page.context().close();
    } finally {
      await handle.cancel();
      await handle.result().catch(() => undefined);
    }
    assert.deepEqual(errors, []);
  });
});
