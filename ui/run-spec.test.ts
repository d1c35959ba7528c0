/**
 * The dashboard shows the spec a version's run (and any run) was submitted with and what its train stages ran with,
 * from the audit trail alone: `GET /api/models/:name/versions/:version/spec` and `GET /api/runs/:id/spec` (the exact
 * text with `?download=1`), the card of a version and a run's page (here with no Temporal behind it, as after the
 * run's history is gone). Real SQLite audit log and registry written through tempered's own code, the real server,
 * the page in a real headless chromium.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { useBrowser } from '../tests/helpers/browser.ts';
import { auditRunSubmitted } from '../client/runs.ts';
import { openAudit } from '../src/audit/log.ts';
import { auditQueriesOf } from '../src/audit/queries.testing.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { loadSpec } from '../src/spec/load.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { sha256Hex } from '../src/util/canonical-json.ts';
import type { SpecView, TrainedWithView } from './data.ts';
import { assertApiRules, openDashboard, testUiServer } from './dashboard.testing.ts';
import type { UiServer } from './server.ts';

const TOKEN = 'ui-run-spec-token-0123456789';
const FIXTURE = fileURLToPath(new URL('../tests/fixtures/tiny-pipeline.yaml', import.meta.url));
const RUNTIME = { onnxruntime: '1.30.0', threads: 1, cpus: 2, cpu: 'Test CPU @ 2.40GHz', platform: 'linux-x64', node: 'v20.19.0' };
/** What the page and the API give for run-1's train stage. */
const TRAINED: TrainedWithView = {
  stage: 'train',
  summary: 'trained on cpu (1 thread, 2 cpus, onnxruntime 1.30.0, resumed at step 4)',
  device: 'cpu',
  ...RUNTIME,
  resumedFromStep: 4,
};
let dir: string;
let bare: string;
let ui: UiServer;
let url: string;
let text: string;

/** tiny@1 by run-1, submitted from tiny.yaml (its text kept) and trained on cpu; tiny@2 by run-0, whose record has the spec hash alone. */
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ui-run-spec-'));
  const paths = statePaths(dir);
  const file = join(dir, 'tiny.yaml');
  // A comment the plan drops: the text shown is the file as written.
  writeFileSync(file, `# kept as written\n${readFileSync(FIXTURE, 'utf8')}`);
  writeFileSync(join(dir, 'tiny.jsonl'), '');
  const loaded = await loadSpec(file, { ...kindRegistry(await loadStageKinds()), paramOverrides: { seed: '7' } });
  assert.ok(loaded.ok);
  text = loaded.text;
  const { plan } = loaded;
  await auditRunSubmitted(
    paths.auditDb,
    'run-1',
    { plan, options: { baseDir: dir, actor: 'alice', specFile: file, specText: text } },
    'x1',
  );
  // run-p: a resume of a schedule's run, whose record has the plan but no text.
  await auditRunSubmitted(paths.auditDb, 'run-p', { plan, options: { baseDir: dir, actor: 'carol' } }, 'xp');
  const audit = await openAudit(paths.auditDb);
  // nightly-1: started by a schedule (no run.submitted), which keeps the file in the store.
  const { uri: specUri } = await new ArtifactStore(paths.store).putBytes(text, { mediaType: 'application/yaml' });
  // weekly-1: the same, but its schedule's file is not in the store (a store gc before schedules' files were kept).
  const weekly = await loadSpec(file, { ...kindRegistry(await loadStageKinds()), paramOverrides: { seed: '8' } });
  assert.ok(weekly.ok);
  await audit.append({
    action: 'schedule.created',
    subject: 'weekly',
    actor: 'alice',
    specHash: weekly.plan.specHash,
    details: { specUri: `artifact://sha256/${sha256Hex(`# weekly\n${text}`)}`, file: 'weekly.yaml' },
  });
  await audit.append({
    action: 'stage.completed',
    subject: 'weekly-1/ingest',
    runId: 'weekly-1',
    actor: 'alice',
    specHash: weekly.plan.specHash,
    details: { stage: 'ingest', kind: 'ingest' },
  });
  await audit.append({
    action: 'schedule.created',
    subject: 'nightly',
    actor: 'alice',
    specHash: plan.specHash,
    details: { specUri, file: 'tiny.yaml' },
  });
  await audit.append({
    action: 'stage.completed',
    subject: 'nightly-1/ingest',
    runId: 'nightly-1',
    actor: 'alice',
    specHash: plan.specHash,
    details: { stage: 'ingest', kind: 'ingest' },
  });
  await audit.append({
    action: 'stage.completed',
    subject: 'run-1/train',
    runId: 'run-1',
    actor: 'alice',
    specHash: plan.specHash,
    details: { stage: 'train', kind: 'train', device: 'cpu', runtime: RUNTIME, resumedFromStep: 4 },
  });
  await audit.append({ action: 'run.submitted', subject: 'run-0', runId: 'run-0', actor: 'bob', specHash: plan.specHash, details: {} });
  await audit.close();
  const reg = await openRegistry(paths.registryDb);
  await reg.registerVersion(testVersion('tiny', 'a', { runId: 'run-1', specHash: plan.specHash }));
  await reg.registerVersion(testVersion('tiny', 'b', { runId: 'run-0', specHash: plan.specHash }));
  await reg.close();
  // A registry with no audit log beside it.
  bare = mkdtempSync(join(tmpdir(), 'ui-run-spec-bare-'));
  const bareReg = await openRegistry(statePaths(bare).registryDb);
  await bareReg.registerVersion(testVersion('tiny', 'a', { runId: 'run-1', specHash: plan.specHash }));
  await bareReg.close();
  ui = await testUiServer(paths, TOKEN);
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  for (const d of [dir, bare]) if (d) rmSync(d, { recursive: true, force: true });
});

const get = async (path: string, base = url, headers: Record<string, string> = {}) => {
  const res = await fetch(`${base}${path}`, { headers });
  const body = await res.text();
  return { status: res.status, headers: res.headers, text: body, json: () => JSON.parse(body) as SpecView & { error?: string } };
};

describe('dashboard recorded spec API', () => {
  it("gives a version's and a run's spec text as submitted, its sha256, and what each train stage ran with", async () => {
    for (const path of ['/api/models/tiny/versions/1/spec', '/api/runs/run-1/spec']) {
      const r = await get(path);
      assert.equal(r.status, 200, r.text);
      const v = r.json();
      assert.equal(v.runId, 'run-1');
      assert.equal(v.spec?.text, text);
      assert.equal(v.spec?.textSha256, sha256Hex(text));
      assert.equal(v.spec?.textMatches, true);
      assert.equal(v.spec?.actor, 'alice');
      assert.deepEqual(v.spec?.params, { seed: 7 });
      // The plan is the text's copy: not sent beside it.
      assert.equal(v.spec?.plan, undefined);
      assert.equal(v.missing, undefined);
      assert.deepEqual(v.trainedWith, [TRAINED]);
      const file = await get(`${path}?download=1`);
      assert.equal(file.status, 200);
      assert.equal(file.text, text);
      assert.equal(file.headers.get('content-type'), 'text/plain; charset=utf-8');
      assert.equal(file.headers.get('content-disposition'), 'attachment; filename="tiny.yaml"');
      // Someone's text from the dashboard's origin: never taken for a page, whatever a browser would guess from it.
      assert.equal(file.headers.get('x-content-type-options'), 'nosniff');
    }
    // The Audit page's list still leaves the text out (f085b64).
    const audit = await get('/api/audit');
    assert.equal(audit.status, 200);
    assert.ok(!audit.text.includes('kept as written'));
  });

  it("reads the run's records once for the spec's sources and what it trained with", async () => {
    for (const path of ['/api/models/tiny/versions/1/spec', '/api/runs/run-1/spec']) {
      // Counted through the log's own API: every query the server's audit log answers in this process.
      let v: SpecView | undefined;
      const asked = await auditQueriesOf(async () => void (v = (await get(path)).json()));
      assert.deepEqual([v?.spec?.sources.length, v?.trainedWith.length], [0, 1], path);
      // The run's every record (its stages'), beside the run.submitted lookups by action.
      assert.deepEqual(
        asked.filter((q) => q.action === undefined),
        [{ run: 'run-1' }],
        `${path}: ${JSON.stringify(asked)}`,
      );
    }
  });

  it('says where only the hash or the plan was recorded, or a schedule keeps the file, as models show --spec does, and has no file to download then', async () => {
    const v = (await get('/api/models/tiny/versions/2/spec')).json();
    assert.equal(v.spec?.text, undefined);
    assert.match(
      v.missing!,
      /keeps only the hash of the spec of run run-0 \(spec [0-9a-f]{12}\): it was submitted before the trail kept specs/,
    );
    assert.deepEqual(v.trainedWith, []);
    assert.match(v.trainedWithMissing!, /^not recorded/);
    const file = await get('/api/models/tiny/versions/2/spec?download=1');
    assert.equal(file.status, 404);
    assert.match(file.json().error!, /^no spec text: the audit trail keeps only the hash/);
    const planOnly = (await get('/api/runs/run-p/spec')).json();
    assert.equal(planOnly.spec?.text, undefined);
    assert.equal(planOnly.spec?.planMatches, true);
    assert.match(
      planOnly.missing!,
      /^the trail keeps the resolved plan run run-p followed \(spec [0-9a-f]{12}\), not its file: shown as JSON$/,
    );
    // A schedule's run: the file its schedule keeps in the store, as models show --spec prints it.
    const scheduled = (await get('/api/runs/nightly-1/spec')).json();
    assert.deepEqual(
      [scheduled.spec?.schedule, scheduled.spec?.text, scheduled.spec?.textSha256, scheduled.spec?.specFile, scheduled.missing],
      ['nightly', text, sha256Hex(text), 'tiny.yaml', undefined],
    );
    assert.equal((await get('/api/runs/nightly-1/spec?download=1')).text, text);
    const lost = (await get('/api/runs/weekly-1/spec')).json();
    assert.equal(lost.spec, undefined);
    assert.match(
      lost.missing!,
      /^not recorded: run weekly-1 has no run.submitted record; schedule weekly started it, and keeps its spec file weekly.yaml in the store \(artifact:\/\/sha256\/[0-9a-f]{64}\), which cannot give it: artifact [0-9a-f]{64} is not in the store/,
    );
  });

  it('answers unknown runs, models and versions with 404 and bad ones with 400', async () => {
    for (const [path, status, error] of [
      ['/api/runs/nope/spec', 404, /^the audit log has no record of run nope$/],
      ['/api/models/nope/versions/1/spec', 404, /no model named 'nope'/],
      ['/api/models/tiny/versions/9/spec', 404, /has no version or alias '9'/],
      ['/api/models/tiny/versions/x/spec', 400, /^version must be a version number/],
      ['/api/runs/run-1/spec?download=yes', 400, /^download must be 1/],
      ['/api/models/tiny/versions/1/spec?download=0', 400, /^download must be 1/],
      ['/api/runs/a%01b/spec', 400, /^a run id is not empty and has no control characters, got "a\\u0001b"$/],
    ] as const) {
      const r = await get(path);
      assert.equal(r.status, status, `${path}: ${r.text}`);
      assert.match(r.json().error!, error, path);
    }
  });

  it('gives a run Temporal has but the trail has no record of yet as not recorded, not unknown', async () => {
    // A stand-in for Temporal's answer to describe: run-9 is there, nothing else is.
    const client = {
      workflow: {
        getHandle: (id: string) => ({
          describe: async () => (id === 'run-9' ? {} : Promise.reject(new Error(`workflow not found for ID: ${id}`))),
        }),
      },
    } as unknown as Client;
    const paths = statePaths(dir);
    const server = await testUiServer(paths, TOKEN, client);
    try {
      const at = await server.listen(0, '127.0.0.1');
      const known = await get('/api/runs/run-9/spec', at);
      assert.equal(known.status, 200, known.text);
      assert.equal(known.json().missing, 'not recorded: the audit trail has no record of run run-9 yet');
      const unknown = await get('/api/runs/nope/spec', at);
      assert.equal(unknown.status, 404);
      assert.deepEqual(JSON.parse(unknown.text), {
        error: 'the audit log has no record of run nope',
        hint: 'Temporal: workflow not found for ID: nope',
      });
    } finally {
      await server.close();
    }
  });

  it('keeps the API rules: a name other than loopback refused, and the token needed where reads need it', async () => {
    await assertApiRules(url, statePaths(dir), TOKEN, [
      '/api/runs/run-1/spec',
      '/api/runs/run-1/spec?download=1',
      '/api/models/tiny/versions/1/spec?download=1',
    ]);
  });

  it('with no audit log at all: not recorded, and no audit database is made', async () => {
    const paths = statePaths(bare);
    const server = await testUiServer(paths, TOKEN);
    try {
      const at = await server.listen(0, '127.0.0.1');
      for (const path of ['/api/models/tiny/versions/1/spec', '/api/runs/run-1/spec', '/api/models']) {
        const r = await get(path, at);
        assert.equal(r.status, 200, `${path}: ${r.text}`);
      }
      const v = (await get('/api/models/tiny/versions/1/spec', at)).json();
      assert.match(v.missing!, /^not recorded: no audit log at /);
      assert.equal(v.trainedWithMissing, v.missing);
      assert.equal((await get('/api/runs/run-1/spec?download=1', at)).status, 404);
    } finally {
      await server.close();
    }
    assert.equal(existsSync(paths.auditDb), false);
  });
});

describe('dashboard recorded spec page', () => {
  const chrome = useBrowser();
  const pageErrors: string[] = [];

  it("shows the spec text, its sha256 and download, and the trained-with facts on a version's card and a run's page", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await openDashboard(chrome.browser!, url, TOKEN, '#/models', pageErrors);
    const tiny = page.locator('[data-model="tiny"]');
    await tiny.locator('tr[data-version="1"] button', { hasText: 'card' }).click();
    const card = page.locator('#version-card[data-version="1"]');
    await card.locator('[data-spec-sha256]').waitFor();
    assert.equal(await card.locator('[data-spec-sha256]').innerText(), sha256Hex(text));
    // Folded until opened.
    assert.equal(await card.locator('[data-spec-text]').isVisible(), false);
    await card.locator('details.spec-text summary').click();
    assert.equal(await card.locator('[data-spec-text]').textContent(), text);
    const cells = await card.locator('tr[data-trained="train"] td').allInnerTexts();
    assert.deepEqual(cells, ['train', 'cpu', '1', '1.30.0', '2', RUNTIME.cpu, '4']);
    // The download is the exact text, under the submitted file's name (fetched with the token).
    const [download] = await Promise.all([page.waitForEvent('download'), card.locator('[data-spec-download]').click()]);
    assert.equal(download.suggestedFilename(), 'tiny.yaml');
    assert.equal(readFileSync((await download.path())!, 'utf8'), text);

    await tiny.locator('tr[data-version="2"] button', { hasText: 'card' }).click();
    const old = page.locator('#version-card[data-version="2"]');
    await old.locator('[data-spec-missing]').waitFor();
    assert.match(await old.locator('[data-spec-missing]').innerText(), /keeps only the hash of the spec of run run-0/);
    assert.equal(await old.locator('[data-spec-text]').count(), 0);
    assert.match(await old.locator('[data-trained-missing]').innerText(), /^not recorded/);

    // A run's page: Temporal cannot say anything of it here, the trail still can.
    await page.evaluate(`location.hash = '#/run/run-1'`);
    const run = page.locator('[data-spec-run="run-1"]');
    await run.locator('[data-spec-sha256]').waitFor();
    assert.equal(await run.locator('[data-spec-text]').textContent(), text);
    assert.deepEqual(await run.locator('tr[data-trained="train"] td').allInnerTexts(), cells);
    // A schedule's run: the file the schedule keeps, named as its schedule's.
    await page.evaluate(`location.hash = '#/run/nightly-1'`);
    const scheduled = page.locator('[data-spec-run="nightly-1"]');
    await scheduled.locator('[data-spec-sha256]').waitFor();
    assert.equal(await scheduled.locator('[data-spec-schedule]').innerText(), 'nightly');
    assert.equal(await scheduled.locator('[data-spec-text]').textContent(), text);
    await page.context().close();
    assert.deepEqual(pageErrors, []);
  });
});
