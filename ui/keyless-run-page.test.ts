/**
 * The dashboard's run page without TEMPERED_PAYLOAD_KEY, live: what Temporal keeps in clear names only the stages
 * scheduled so far, so a stage scheduled after the page was read comes in by the live stream, and the page shows it
 * as `tempered status` lists it. A real dev server, a real worker with the key (in this process, as the run's
 * submitter), a dashboard whose client has no key, and the page in a real headless chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@temporalio/client';
import { useBrowser } from '../tests/helpers/browser.ts';
import { startActivityWorker, startTestEnv, submitPipelineFile, type TestEnv } from '../tests/helpers/temporal-env.ts';
import { probeKind } from '../tests/helpers/test-stages.ts';
import { waitFor } from '../tests/helpers/schedule-fixtures.ts';
import { getRunStatus } from '../client/runs.ts';
import { temporalDataConverter } from '../infra/payload-codec.ts';
import { statePaths } from '../src/state-paths.ts';
import { openDashboard, testUiServer } from './dashboard.testing.ts';
import type { UiServer } from './server.ts';

const TOKEN = 'ui-keyless-run-page-token-0123456789';
/** `first` waits on a queue no worker serves until the test starts one; `second` then runs until the run is cancelled. */
const SPEC = `name: keyless-live
stages:
  first:
    uses: probe
    queue: keyless-later
    with: { value: first }
  second:
    uses: probe
    needs: first
    with: { value: second, blockUntilCancelled: true }
`;

let env: TestEnv;
let ui: UiServer;
let url: string;
let keyless: Client;
const hadKey = process.env.TEMPERED_PAYLOAD_KEY;

before(async () => {
  // The env's client and worker encrypt with it, as every tempered process with the variable set.
  process.env.TEMPERED_PAYLOAD_KEY = randomBytes(32).toString('base64');
  env = await startTestEnv(new Map());
  env.kinds.set('probe', probeKind(join(env.dir, 'executions.log')));
  await env.startWorker();
  keyless = new Client({ connection: env.client.connection, dataConverter: temporalDataConverter({}) });
  const paths = statePaths(join(env.dir, 'ui-state'));
  mkdirSync(paths.root, { recursive: true });
  ui = await testUiServer(paths, TOKEN, keyless);
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  await env?.close();
  if (hadKey === undefined) delete process.env.TEMPERED_PAYLOAD_KEY;
  else process.env.TEMPERED_PAYLOAD_KEY = hadKey;
});

describe('a run read without its key, in the dashboard', () => {
  const chrome = useBrowser();
  it('the live run page adds the stages scheduled after it was read, as `tempered status` lists them', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const file = join(env.dir, 'keyless-live.yaml');
    writeFileSync(file, SPEC);
    const runId = await submitPipelineFile(env, file, { actor: 'tester', noCache: true });
    // Without the key the status names the stages scheduled so far: `first`, waiting for a worker of its queue.
    await waitFor('first scheduled', async () => (await getRunStatus(keyless, runId, { showClear: true })).stages.length === 1);
    const errors: string[] = [];
    const page = await openDashboard(chrome.browser!, url, TOKEN, `#/run/${runId}`, errors);
    let later: Awaited<ReturnType<typeof startActivityWorker>> | undefined;
    try {
      await page.locator('[data-stage-card="first"]').waitFor();
      assert.equal(await page.locator('[data-stage-card="second"]').count(), 0);
      // `first` runs and ends; `second` is scheduled and runs, while the page is open on the run.
      later = await startActivityWorker(env, 'keyless-later');
      const status = await waitFor('second running', async () => {
        const st = await getRunStatus(keyless, runId, { showClear: true });
        return st.stages.find((s) => s.id === 'second')?.state === 'running' && st;
      });
      assert.ok(status.encrypted, 'the status was read with the key: it says which key it lacks only without');
      assert.deepEqual(
        status.stages.map((s) => [s.id, s.uses, s.state]),
        [
          ['first', 'probe', 'succeeded'],
          ['second', 'probe', 'running'],
        ],
      );
      // The page shows what status shows, without a reload: the run is still running, so it has not reloaded itself.
      const second = page.locator('[data-stage-card="second"]');
      await second.waitFor();
      assert.match(await second.innerText(), /second\s+probe\s+running/);
      assert.match(await page.locator('[data-stage-card="first"]').innerText(), /first\s+probe\s+succeeded/);
      assert.deepEqual(errors, []);
    } finally {
      await env.client.workflow.getHandle(runId).cancel();
      await page.context().close();
      await later?.stop();
    }
  });
});
