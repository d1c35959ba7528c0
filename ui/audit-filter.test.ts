/**
 * The dashboard's audit filter reads a model reference as `tempered audit --model` does (resolveModelFilter):
 * `spam-clf@production` is the version the alias points at now, said on the page; an unknown alias or model is
 * an error that says so, not an empty trail. On a real listening server with real SQLite files and no Temporal
 * (the audit page needs none), the JSON API and the page in a real headless chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { useBrowser } from '../tests/helpers/browser.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { statePaths } from '../src/state-paths.ts';
import { openDashboard, testUiServer } from './dashboard.testing.ts';
import type { UiServer } from './server.ts';

const TOKEN = 'ui-audit-token-0123456789';
let dir: string;
let ui: UiServer;
let url: string;

/** spam-clf v1 and v2 with production → v2; two registrations and a serve of v2 in the log. */
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ui-audit-filter-'));
  const paths = statePaths(dir);
  const reg = await openRegistry(paths.registryDb);
  for (const [run, bytes] of [
    ['r1', 'a'],
    ['r2', 'b'],
  ] as const)
    await reg.registerVersion(testVersion('spam-clf', bytes, { runId: run }));
  await reg.setAlias('spam-clf', 'production', 2);
  await reg.close();
  const log = await openAudit(paths.auditDb);
  for (const v of [1, 2])
    await log.append({ action: 'model.registered', subject: `spam-clf@${v}`, model: `spam-clf@${v}`, actor: 'tester' });
  await log.append({ action: 'serve.started', subject: 'spam-clf@2', model: 'spam-clf@2', actor: 'tester' });
  await log.close();
  ui = await testUiServer(paths, TOKEN);
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface AuditAnswer {
  records: { action: string; subject: string }[];
  model?: { ref: string; query: string; resolved?: { ref: string; name: string; at: string; version: number } };
  error?: string;
  hint?: string;
}
const audit = async (model: string, base = url) => {
  const res = await fetch(`${base}/api/audit?model=${encodeURIComponent(model)}`);
  return { status: res.status, body: (await res.json()) as AuditAnswer };
};
const subjects = (a: AuditAnswer) => a.records.map((r) => `${r.action} ${r.subject}`);

describe('dashboard audit filter by model', () => {
  it('reads name@alias (and @latest, @v1) as the version it points at now, and says which', async () => {
    const prod = await audit('spam-clf@production');
    assert.equal(prod.status, 200, JSON.stringify(prod.body));
    assert.deepEqual(subjects(prod.body), ['serve.started spam-clf@2', 'model.registered spam-clf@2']);
    assert.deepEqual(prod.body.model, {
      ref: 'spam-clf@production',
      query: 'spam-clf@2',
      resolved: { ref: 'spam-clf@production', name: 'spam-clf', at: 'production', version: 2 },
    });
    assert.equal((await audit('spam-clf@latest')).body.model?.query, 'spam-clf@2');
    const v1 = await audit('spam-clf@v1');
    assert.deepEqual([v1.body.model?.query, subjects(v1.body)], ['spam-clf@1', ['model.registered spam-clf@1']]);
    // name and name@N read as before, with nothing resolved.
    const all = await audit('spam-clf');
    assert.deepEqual([all.body.records.length, all.body.model], [3, { ref: 'spam-clf', query: 'spam-clf' }]);
    assert.deepEqual(subjects((await audit('spam-clf@1')).body), ['model.registered spam-clf@1']);
  });

  it('follows the alias when it moves (the connection the dashboard keeps sees the change)', async () => {
    assert.equal((await audit('spam-clf@production')).body.model?.query, 'spam-clf@2');
    const reg = await openRegistry(statePaths(dir).registryDb);
    try {
      await reg.setAlias('spam-clf', 'production', 1);
      assert.deepEqual(subjects((await audit('spam-clf@production')).body), ['model.registered spam-clf@1']);
    } finally {
      await reg.setAlias('spam-clf', 'production', 2);
      await reg.close();
    }
  });

  it('answers an unknown alias or model with an error that names it (404), and a malformed reference with 400', async () => {
    const staging = await audit('spam-clf@staging');
    assert.equal(staging.status, 404);
    assert.equal(staging.body.error, "cannot resolve 'spam-clf@staging': model 'spam-clf' has no version or alias 'staging'");
    assert.match(staging.body.hint!, /aliases production/);
    const ham = await audit('ham@production');
    assert.equal(ham.status, 404);
    assert.match(ham.body.error!, /^cannot resolve 'ham@production': no model named 'ham'/);
    const bad = await audit('spam-clf@');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error!, /bad model reference 'spam-clf@'/);
  });

  it('without a registry an alias cannot be resolved; versions still read', async () => {
    const bare = mkdtempSync(join(tmpdir(), 'ui-audit-bare-'));
    const paths = statePaths(bare);
    const log = await openAudit(paths.auditDb);
    await log.append({ action: 'model.registered', subject: 'spam-clf@2', model: 'spam-clf@2', actor: 'tester' });
    await log.close();
    const other = await testUiServer(paths, TOKEN);
    try {
      const at = await other.listen(0, '127.0.0.1');
      const prod = await audit('spam-clf@production', at);
      assert.equal(prod.status, 404);
      assert.match(prod.body.error!, /^cannot resolve 'spam-clf@production': no model registry at /);
      assert.deepEqual(subjects((await audit('spam-clf@2', at)).body), ['model.registered spam-clf@2']);
    } finally {
      await other.close();
      rmSync(bare, { recursive: true, force: true });
    }
  });
});

describe('dashboard audit page, model filter', () => {
  const chrome = useBrowser();
  const pageErrors: string[] = [];

  const open = (hash: string) => openDashboard(chrome.browser!, url, TOKEN, hash, pageErrors);
  const rowSubjects = (page: Page) =>
    page.locator('#audit tr[data-action]').evaluateAll((rows) => rows.map((r) => r.querySelectorAll('td')[4]!.textContent));

  it('shows which version an alias is and its records; an unknown alias is an error, not an empty table', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('#/audit?model=spam-clf@production');
    await page.locator('#audit-model').waitFor();
    assert.match(await page.locator('#audit-model').innerText(), /^spam-clf@production is spam-clf@2 \(the version it points at now/);
    assert.equal(await page.getAttribute('#audit-model', 'data-version'), '2');
    assert.deepEqual(await rowSubjects(page), ['spam-clf@2', 'spam-clf@2']);

    const input = page.locator('.bar label', { hasText: 'model' }).locator('input');
    await input.fill('spam-clf@staging');
    await input.press('Enter');
    await page.locator('#audit-error').waitFor();
    assert.match(
      await page.locator('#audit-error').innerText(),
      /^404: cannot resolve 'spam-clf@staging': model 'spam-clf' has no version or alias 'staging'\n.*aliases production/,
    );
    assert.equal(await page.locator('#audit').count(), 0, "the last filter's records are not left standing");
    assert.equal(await page.locator('#audit-model').count(), 0);

    await input.fill('spam-clf@latest');
    await input.press('Enter');
    await page.locator('#audit-model[data-version="2"]').waitFor();
    // Every version of the model, from the note.
    await page.click('#audit-model-all');
    await page.locator('#audit tr[data-action]').nth(2).waitFor();
    assert.deepEqual(await rowSubjects(page), ['spam-clf@2', 'spam-clf@2', 'spam-clf@1']);
    assert.equal(await input.inputValue(), 'spam-clf');
    assert.equal(await page.locator('#audit-model').count(), 0, 'a plain name resolves nothing');
    await page.context().close();
    assert.deepEqual(pageErrors, []);
  });

  it('a fixed version (name@v1) is said to be that version, not what an alias points at now', async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('#/audit?model=spam-clf@v1');
    await page.locator('#audit-model[data-version="1"]').waitFor();
    assert.equal(
      (await page.locator('#audit-model').innerText())
        .split('\n')[0]!
        .replace(/every version.*$/, '')
        .trim(),
      'spam-clf@v1 is spam-clf@1',
    );
    await page.context().close();
    assert.deepEqual(pageErrors, []);
  });
});

describe('dashboard audit filter, a version swapped out of a server', () => {
  it("lists the serve.swapped record that ended the version's serving, as tempered audit --model does", async () => {
    const log = await openAudit(statePaths(dir).auditDb);
    await log.append({
      action: 'serve.swapped',
      subject: 'spam-clf@2',
      model: 'spam-clf@2',
      actor: 'tester',
      details: { from: 'spam-clf@1', to: 'spam-clf@2' },
    });
    await log.close();
    assert.deepEqual(subjects((await audit('spam-clf@1')).body), ['serve.swapped spam-clf@2', 'model.registered spam-clf@1']);
    assert.deepEqual(subjects((await audit('spam-clf@2')).body), [
      'serve.swapped spam-clf@2',
      'serve.started spam-clf@2',
      'model.registered spam-clf@2',
    ]);
  });
});
