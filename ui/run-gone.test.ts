/**
 * The run page of a run the Temporal server no longer has (past its namespace's retention) while the audit trail still
 * has it: the API and the page say what `tempered status` says (client/run-gone.ts), not "workflow not found". A real
 * dev server (which has no such run, as after retention), a real audit trail and the page in a real headless chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { useBrowser } from '../tests/helpers/browser.ts';
import { startDevServer, stopProcess, type DevServerHandle } from '../infra/dev-server.ts';
import { openAudit } from '../src/audit/log.ts';
import { statePaths } from '../src/state-paths.ts';
import { openDashboard, testUiServer } from './dashboard.testing.ts';
import type { UiServer } from './server.ts';

const TOKEN = 'ui-run-gone-token-0123456789';
const GONE =
  /^run gone-run is no longer on the Temporal server \(namespace 'default' keeps a run's history for 1 day after it ends \(its retention\), or it was deleted\); the audit trail has it, submitted \S+ by alice, completed \S+\.$/;
const NEXT =
  'what it did: `tempered audit --run gone-run`; the model it registered: `tempered models show spam-clf@3 --spec` prints the file it was submitted with';

let dir: string;
let server: DevServerHandle;
let conn: Connection;
let ui: UiServer;
let url: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ui-run-gone-'));
  const paths = statePaths(join(dir, 'state'));
  mkdirSync(paths.root, { recursive: true });
  const log = await openAudit(paths.auditDb);
  for (const e of [
    { action: 'run.submitted', details: { specFile: '/x/sms-spam.yaml' } },
    { action: 'model.registered', model: 'spam-clf@3' },
    { action: 'run.completed' },
  ])
    await log.append({ subject: 'gone-run', runId: 'gone-run', actor: 'alice', ...e });
  await log.close();
  server = await startDevServer({ dbFile: join(dir, 'temporal.db'), logFile: join(dir, 'server.log'), headless: true });
  conn = await Connection.connect({ address: server.address });
  ui = await testUiServer(paths, TOKEN, new Client({ connection: conn }));
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  await conn?.close();
  if (server) await stopProcess(server.pid);
  rmSync(dir, { recursive: true, force: true });
});

describe('a run past its retention, in the dashboard', () => {
  it("the run's API says what tempered status says, from the audit trail; a run nobody knows stays not found", async () => {
    const get = (id: string) => fetch(`${url}/api/runs/${id}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const res = await get('gone-run');
    assert.equal(res.status, 404);
    const body = (await res.json()) as { error: string; hint: string; gone?: boolean };
    // Was {"error":"workflow not found for ID: gone-run"}.
    assert.match(body.error, GONE);
    assert.equal(body.hint, NEXT);
    assert.equal(body.gone, true);
    const none = await get('never-was');
    assert.equal(none.status, 404);
    assert.doesNotMatch(((await none.json()) as { error: string }).error, /no longer on the Temporal server/);
  });

  const chrome = useBrowser();
  it('the run page shows that account beside the spec the trail kept', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const errors: string[] = [];
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/run/gone-run', errors);
    const gone = page.locator('#run-gone');
    await gone.waitFor();
    const text = await gone.innerText();
    assert.match(text.split('\n')[0]!, GONE);
    assert.match(text, /tempered models show spam-clf@3 --spec/);
    assert.deepEqual(errors, []);
    await page.context().close();
  });
});
