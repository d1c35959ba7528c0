/**
 * The dashboard's Schedules page (GET /api/schedules, polled every 3 s) asks Temporal a bounded amount per poll: one
 * describe per schedule, and each ended recent run read once, not on every poll. A real dev server and worker run the
 * schedules' runs; the client the dashboard gets is the real one, with its describes counted on the way through.
 * Each schedule's spec file shows folded with its sha256 and a download (GET /api/schedules/:name/spec), read from the
 * store where the schedule keeps it; one the store lost is a message, in the API and in a real chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { Client } from '@temporalio/client';
import { temporalDataConverter } from '../infra/payload-codec.ts';
import { openAudit } from '../src/audit/log.ts';
import { createSchedule, deleteSchedule, planScheduledRun, readSchedule, triggerOutcome, triggerSchedule } from '../client/schedules.ts';
import { statePaths } from '../src/state-paths.ts';
import { kindRegistry } from '../src/stages/stage-kinds.ts';
import { probeKind } from '../tests/helpers/test-stages.ts';
import { waitFor } from '../tests/helpers/schedule-fixtures.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from '../tests/helpers/temporal-env.ts';
import { useBrowser } from '../tests/helpers/browser.ts';
import { sha256Hex } from '../src/util/canonical-json.ts';
import { openDashboard } from './dashboard.testing.ts';
import type { ScheduleSpecView } from './data.ts';
import { createUiServer, type UiServer } from './server.ts';

const TOKEN = 'ui-schedules-token-0123456789';
const SCHEDULES = 4;
const RUNS_EACH = 2;
const calls = { scheduleDescribes: 0, runDescribes: 0, results: 0 };

/** The real client, its schedule and run handles' describe and result counted. */
function counted(real: Client): Client {
  const schedule = new Proxy(real.schedule, {
    get(target, prop, receiver) {
      if (prop !== 'getHandle') return Reflect.get(target, prop, receiver);
      return (id: string) => {
        const h = target.getHandle(id);
        return new Proxy(h, {
          get: (t, p, r) => (p === 'describe' ? () => (calls.scheduleDescribes++, t.describe()) : Reflect.get(t, p, r)),
        });
      };
    },
  });
  const workflow = new Proxy(real.workflow, {
    get(target, prop, receiver) {
      if (prop !== 'getHandle') return Reflect.get(target, prop, receiver);
      return (...args: Parameters<typeof target.getHandle>) => {
        const h = target.getHandle(...args);
        return new Proxy(h, {
          get: (t, p, r) =>
            p === 'describe'
              ? () => (calls.runDescribes++, t.describe())
              : p === 'result'
                ? () => (calls.results++, t.result())
                : Reflect.get(t, p, r),
        });
      };
    },
  });
  return new Proxy(real, {
    get: (t, p, r) => (p === 'schedule' ? schedule : p === 'workflow' ? workflow : Reflect.get(t, p, r)),
  });
}

let env: TestEnv;
let ui: UiServer;
let url: string;
/** The pipeline file every s<i> schedule was created from. */
let file: string;

before(async () => {
  env = await startTestEnv(new Map());
  env.kinds.set('probe', probeKind(join(env.dir, 'executions.log')));
  await env.startWorker();
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ui-schedules-'));
  file = join(dir, 'tiny.yaml');
  writeFileSync(file, "name: tiny\nstages:\n  only:\n    uses: probe\n    with: { value: 'x' }\n");
  for (let i = 0; i < SCHEDULES; i++) await scheduleOf(`s${i}`, file);
  // A second apart: two actions of one schedule in one second would share a workflow id.
  for (let k = 0; k < RUNS_EACH; k++) {
    if (k > 0) await sleep(1100);
    for (let i = 0; i < SCHEDULES; i++) await triggerSchedule(env.client, `s${i}`);
  }
  // Every run ended: each schedule's recent actions are closed runs.
  await waitFor(
    'every scheduled run to end',
    async () => {
      for (let i = 0; i < SCHEDULES; i++) {
        const { view } = await readSchedule(env.client, `s${i}`);
        if (view.recentActions.length < RUNS_EACH) return false;
        for (const a of view.recentActions)
          if ((await env.client.workflow.getHandle(a.runId, a.executionRunId).describe()).status.name === 'RUNNING') return false;
      }
      return true;
    },
    120_000,
  );
  const paths = statePaths(env.dir, {});
  ui = await createUiServer({
    paths,
    store: env.store,
    client: async () => counted(env.client),
    token: TOKEN,
    actor: 'tester',
    taskQueue: TEST_QUEUE,
  });
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  await env?.close();
});

/**
 * A schedule of `file` (planned with `params`, its file stored) that fires once a year, so only a trigger runs it; made
 * through `o.client` (another key's) on `o.taskQueue` where given.
 */
async function scheduleOf(name: string, file: string, params: string[] = [], o: { client?: Client; taskQueue?: string } = {}) {
  const { input, spec } = await planScheduledRun({ file, params, registry: kindRegistry(env.kinds), store: env.store, actor: 'ann', name });
  await createSchedule(o.client ?? env.client, {
    name,
    taskQueue: o.taskQueue ?? TEST_QUEUE,
    input,
    spec,
    timing: { cron: '0 3 1 1 *', overlap: 'allow-all' },
  });
  return spec;
}

async function poll() {
  const res = await fetch(`${url}/api/schedules`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(res.status, 200);
  return (await res.json()) as { schedules: { name: string; recent: { runId: string; state: string }[] }[] };
}

describe('GET /api/schedules', () => {
  it('describes each schedule once per poll, and reads each ended run once across polls', async () => {
    const first = await poll();
    assert.deepEqual(
      first.schedules.map((s) => s.name),
      Array.from({ length: SCHEDULES }, (_, i) => `s${i}`),
    );
    for (const s of first.schedules)
      assert.deepEqual(
        s.recent.map((r) => r.state),
        Array(RUNS_EACH).fill('succeeded'),
        s.name,
      );
    assert.equal(calls.scheduleDescribes, SCHEDULES);
    assert.ok(calls.runDescribes <= SCHEDULES * RUNS_EACH, `${calls.runDescribes} run describes for ${SCHEDULES * RUNS_EACH} runs`);

    Object.assign(calls, { scheduleDescribes: 0, runDescribes: 0, results: 0 });
    const second = await poll();
    assert.deepEqual(second, first);
    assert.equal(calls.scheduleDescribes, SCHEDULES);
    // Ended runs are not asked about again.
    assert.deepEqual([calls.runDescribes, calls.results], [0, 0]);
  });
});

describe('GET /api/schedules/:name/spec and the Schedules page', () => {
  const chrome = useBrowser();
  const get = async (path: string) => {
    const res = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const body = await res.text();
    return { status: res.status, headers: res.headers, text: body, json: () => JSON.parse(body) as ScheduleSpecView & { error?: string } };
  };
  let text: string;

  before(async () => {
    text = readFileSync(file, 'utf8');
    // A schedule whose spec file the store no longer has (a store gc before schedules' files were kept).
    const lost = join(mkdtempSync(join(tmpdir(), 'tempered-ui-schedules-lost-')), 'lost.yaml');
    writeFileSync(lost, `# this copy is lost\n${text}`);
    const spec = await scheduleOf('lost', lost);
    rmSync(env.store.pathOf(spec.specUri));
  });

  it("gives the file's text as the store keeps it, its sha256 and the exact file; a lost one is a message, an unknown schedule 404", async () => {
    const r = await get('/api/schedules/s0/spec');
    assert.equal(r.status, 200, r.text);
    const v = r.json();
    assert.deepEqual([v.name, v.pipeline, v.file, v.text, v.textSha256, v.missing], ['s0', 'tiny', file, text, sha256Hex(text), undefined]);
    const download = await get('/api/schedules/s0/spec?download=1');
    assert.equal(download.status, 200);
    assert.equal(download.text, text);
    assert.equal(download.headers.get('content-disposition'), 'attachment; filename="tiny.yaml"');

    const lost = await get('/api/schedules/lost/spec');
    assert.equal(lost.status, 200, lost.text);
    assert.equal(lost.json().text, undefined);
    assert.match(
      lost.json().missing!,
      /^the spec file of schedule lost \(.*lost\.yaml\) cannot be read from the store \(artifact:\/\/sha256\/[0-9a-f]{64}\): .*not in the store.*; `tempered schedule update lost --pipeline FILE` stores it again$/,
    );
    const none = await get('/api/schedules/lost/spec?download=1');
    assert.equal(none.status, 404);
    assert.match(none.json().error!, /^no spec text: the spec file of schedule lost/);
    const unknown = await get('/api/schedules/nope/spec');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json().error, "no schedule named 'nope'");
    assert.equal((await get('/api/schedules/s0/spec?download=yes')).status, 400);
  });

  it('hides the value of a secret --param the schedule was made with, as the trail and status do', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tempered-ui-schedules-secret-'));
    const secretFile = join(dir, 'secret.yaml');
    writeFileSync(
      secretFile,
      `# from https://bob:PWSECRET@example.com/x\nparams:\n  api_token:\n    type: string\n    default: none\n${text}`,
    );
    await scheduleOf('secret', secretFile, ['api_token=tok-SECRET-0123']);
    const r = await get('/api/schedules/secret/spec');
    assert.equal(r.status, 200, r.text);
    assert.doesNotMatch(r.text, /tok-SECRET-0123/);
    assert.deepEqual(r.json().params, ['api_token=REDACTED']);
    // The file's URL credentials are hidden in the answer, which says so: its text is not the file its sha256 names.
    assert.doesNotMatch(r.text, /PWSECRET/);
    assert.deepEqual(r.json().redacted, ['spec text: userinfo']);
  });

  it("says under a schedule's failed run why it failed", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const failing = join(mkdtempSync(join(tmpdir(), 'tempered-ui-schedules-failing-')), 'failing.yaml');
    writeFileSync(failing, "name: failing\nstages:\n  only:\n    uses: probe\n    with: { value: 'x', inputError: true }\n");
    await scheduleOf('failing', failing);
    await triggerSchedule(env.client, 'failing');
    await waitFor('its run to fail', async () => {
      const s = (await poll()).schedules.find((x) => x.name === 'failing');
      return s?.recent[0]?.state === 'failed';
    });
    const errors: string[] = [];
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/schedules', errors);
    const why = page.locator('tr[data-schedule="failing"] [data-error]');
    await why.waitFor();
    assert.match(await why.innerText(), /bad value "x"/);
    await page.context().close();
    assert.deepEqual(errors, []);
  });

  it("shows each schedule's spec file folded, its sha256 and download, and the lost one's message", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const errors: string[] = [];
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/schedules', errors);
    const s0 = page.locator('[data-schedule-spec="s0"]');
    await s0.locator('[data-spec-sha256]').waitFor();
    assert.equal(await s0.locator('[data-spec-sha256]').innerText(), sha256Hex(text));
    assert.equal(await s0.locator('[data-spec-text]').isVisible(), false, 'folded until opened');
    await s0.locator('details.spec-text summary').click();
    assert.equal(await s0.locator('[data-spec-text]').textContent(), text);
    const [download] = await Promise.all([page.waitForEvent('download'), s0.locator('[data-spec-download]').click()]);
    assert.equal(download.suggestedFilename(), 'tiny.yaml');
    assert.equal(readFileSync((await download.path())!, 'utf8'), text);
    const lost = page.locator('[data-schedule-spec="lost"]');
    await lost.locator('[data-spec-missing]').waitFor();
    assert.match(await lost.locator('[data-spec-missing]').innerText(), /^the spec file of schedule lost .* stores it again$/);
    assert.equal(await lost.locator('[data-spec-text]').count(), 0);
    await page.context().close();
    assert.deepEqual(errors, []);
  });
});

describe('trigger now', () => {
  const trigger = async (name: string) => {
    const res = await fetch(`${url}/api/schedules/${name}/trigger`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as { runId?: string };
  };
  const recorded = async (name: string) => {
    const log = await openAudit(statePaths(env.dir, {}).auditDb);
    try {
      return (await log.query({ action: 'schedule.triggered' })).filter((r) => r.subject === name).map((r) => r.details);
    } finally {
      await log.close();
    }
  };
  const started = async (name: string) => (await readSchedule(env.client, name)).view.recentActions.map((a) => a.runId);

  it("says, beside the timing, that a cron is UTC's and what a trigger does while a run is in progress", async () => {
    const res = await fetch(`${url}/api/schedules`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const s0 = ((await res.json()) as { schedules: { name: string; timing: string; overlap: string }[] }).schedules.find(
      (s) => s.name === 's0',
    );
    assert.deepEqual([s0?.timing, s0?.overlap], ['cron 0 3 1 1 * (UTC)', 'allow-all']);
  });

  it('records the run it started, as `schedule trigger` does', async () => {
    const { runId } = await trigger('s0');
    assert.ok(runId);
    assert.equal((await started('s0')).at(-1), runId);
    const [rec, ...more] = await recorded('s0');
    assert.equal(more.length, 0);
    assert.deepEqual([rec?.runId, rec?.via, rec?.overlap], [runId, 'ui', 'allow-all']);
  });

  it('has no outcome, rather than an error that would keep the trigger out of the trail, for a schedule deleted after it', async () => {
    await scheduleOf('gone', file, [], { taskQueue: 'no-worker' });
    const { view } = await readSchedule(env.client, 'gone');
    await deleteSchedule(env.client, 'gone');
    assert.deepEqual(await triggerOutcome(env.client, 'gone', view), {});
  });

  it('records the run it started without the key the schedule was encrypted with', async () => {
    // Made by someone with the key, on a queue no worker of this test polls (its run would need the key); the
    // dashboard has none.
    const keyed = new Client({
      connection: env.client.connection,
      dataConverter: temporalDataConverter({ TEMPERED_PAYLOAD_KEY: randomBytes(32).toString('base64') }),
    });
    await scheduleOf('sealed', file, [], { client: keyed, taskQueue: 'no-worker' });
    const { runId } = await trigger('sealed');
    assert.ok(runId);
    const { view } = await readSchedule(keyed, 'sealed');
    assert.equal(view.recentActions.at(-1)?.runId, runId);
    const [rec] = await recorded('sealed');
    assert.equal(rec?.runId, runId);
    assert.match(String(rec?.encrypted), /TEMPERED_PAYLOAD_KEY/);
  });
});
