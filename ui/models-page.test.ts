/**
 * The dashboard's Models page stays the same size however many versions a model has: `GET /api/models` sends
 * each model's newest versions (VERSION_PAGE) as rows with the total, no model cards; older versions come a page
 * at a time (`GET /api/models/:name/versions?before=&limit=`) and a version's card when it is opened
 * (`GET /api/models/:name/versions/:version/card`). On a real listening server with real SQLite files and no
 * Temporal (the Models page needs none but for lineage), the JSON API and the page in a real headless chromium.
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
import type { AliasChange, ModelVersion } from '../src/registry/types.ts';
import { setAliasAsBefore, testVersion } from '../src/registry/versions.testing.ts';
import { statePaths } from '../src/state-paths.ts';
import { HISTORY_SHOWN, LISTED_METRICS, VERSION_PAGE, type ModelView, type VersionRowView } from './data.ts';
import { assertApiRules, openDashboard, testUiServer } from './dashboard.testing.ts';
import type { UiServer } from './server.ts';

const TOKEN = 'ui-models-token-0123456789';
const VERSIONS = 27;
let dir: string;
let ui: UiServer;
let url: string;
/** Every version of clf as the registry reads it, oldest first, and its alias history. */
let every: ModelVersion[];
let history: AliasChange[];
/** clf: 27 versions with listed and unlisted metrics, production → 3 (by lead), then staging → 27 after 12 moves; tiny: 2 versions. */
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ui-models-page-'));
  const paths = statePaths(dir);
  const reg = await openRegistry(paths.registryDb);
  for (let v = 1; v <= VERSIONS; v++)
    await reg.registerVersion(
      testVersion('clf', 'a', {
        runId: `run-${v}`,
        artifacts: [{ role: 'model', uri: 'u', sha256: v.toString(16).padStart(64, '0'), bytes: v }],
        description: `clf trained the ${v}th time`,
        data: [{ name: 'train', sha256: String(v % 10).repeat(64), rows: 100 + v }],
        metrics: { accuracy: 0.5 + v / 100, f1_macro: 0.4 + v / 100, per_class: { spam: { f1: v / 200 } } },
      }),
    );
  for (const v of ['a', 'b']) await reg.registerVersion(testVersion('tiny', v, { runId: `tiny-${v}` }));
  // Production first: its change is then past the newest HISTORY_SHOWN, as on a registry whose staging moves often.
  await reg.setAlias('clf', 'production', 3, { actor: 'lead' });
  for (let v = 16; v <= VERSIONS; v++) await reg.setAlias('clf', 'staging', v);
  every = await reg.listVersions('clf');
  history = await reg.aliasHistory('clf');
  await reg.close();
  await (await openAudit(paths.auditDb)).close();
  ui = await testUiServer(paths, TOKEN);
  url = await ui.listen(0, '127.0.0.1');
});
after(async () => {
  await ui?.close();
  rmSync(dir, { recursive: true, force: true });
});

const get = async (path: string, base = url, headers: Record<string, string> = {}) => {
  const res = await fetch(`${base}${path}`, { headers });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) as Record<string, unknown> & { error?: string; hint?: string } };
};
/** Versions numbered from `from` down to `to`. */
const down = (from: number, to: number) => Array.from({ length: from - to + 1 }, (_, i) => from - i);
/** A version's row as the list shows it: what the page draws, nothing more. */
const row = (v: ModelVersion): VersionRowView => ({
  version: v.version,
  createdAt: v.createdAt,
  createdBy: v.createdBy,
  runId: v.lineage.runId,
  metrics: Object.fromEntries(LISTED_METRICS.filter((k) => k in v.metrics).map((k) => [k, v.metrics[k]!])),
});

describe('dashboard models API', () => {
  it('lists the newest versions of each model as rows, with the count, the newest alias changes and no cards', async () => {
    const { status, text, body } = await get('/api/models');
    assert.equal(status, 200, text);
    const models = body.models as ModelView[];
    assert.deepEqual(
      models.map((m) => [m.name, m.versionCount, m.versions.map((v) => v.version)]),
      [
        ['clf', VERSIONS, down(VERSIONS, VERSIONS - VERSION_PAGE + 1)],
        ['tiny', 2, [2, 1]],
      ],
    );
    const clf = models[0]!;
    assert.deepEqual(clf.versions, every.slice(-VERSION_PAGE).reverse().map(row));
    assert.deepEqual(clf.aliases, { production: 3, staging: VERSIONS });
    assert.equal(history.length, 13);
    assert.deepEqual(clf.history, history.slice(-HISTORY_SHOWN));
    // Who moved each alias to the version it holds, and when: production's from outside the newest HISTORY_SHOWN.
    assert.ok(!clf.history.some((c) => c.alias === 'production'));
    const last = (alias: string) => history.filter((c) => c.alias === alias).at(-1)!;
    assert.deepEqual(clf.aliasSet, {
      production: { kind: 'set', actor: 'lead', at: last('production').at },
      staging: { kind: 'set', actor: last('staging').actor, at: last('staging').at },
    });
    assert.deepEqual([body.metricColumns, body.versionPage], [LISTED_METRICS, VERSION_PAGE]);
    // No card, description, artifact or unlisted metric of any version travels with the list.
    for (const absent of ['"card"', '# clf v', 'trained the', '"artifacts"', 'per_class', '"params"'])
      assert.ok(!text.includes(absent), `${absent} in the list`);
  });

  it('gives the older versions a page at a time, with no overlap or gap, and says when none remain', async () => {
    const oldest = VERSIONS - VERSION_PAGE + 1;
    const rest = await get(`/api/models/clf/versions?before=${oldest}`);
    assert.equal(rest.status, 200, rest.text);
    assert.deepEqual(rest.body, {
      name: 'clf',
      versions: every
        .slice(0, oldest - 1)
        .reverse()
        .map(row),
      more: false,
    });

    const seen: number[] = ((await get('/api/models')).body.models as ModelView[])[0]!.versions.map((v) => v.version);
    for (let before = seen.at(-1)!, more = true; more; ) {
      const page = await get(`/api/models/clf/versions?before=v${before}&limit=3`);
      const versions = (page.body.versions as VersionRowView[]).map((v) => v.version);
      assert.ok(versions.length <= 3);
      seen.push(...versions);
      more = page.body.more as boolean;
      before = versions.at(-1)!;
    }
    assert.deepEqual(seen, down(VERSIONS, 1));
    // Without before: the newest page, as the list has it.
    assert.deepEqual(
      ((await get('/api/models/tiny/versions?limit=1')).body.versions as VersionRowView[]).map((v) => v.version),
      [2],
    );
  });

  it("gives a version's card and recorded lineage when asked", async () => {
    const { status, body } = await get('/api/models/clf/versions/5/card');
    assert.equal(status, 200);
    const reg = await openRegistry(statePaths(dir).registryDb);
    try {
      assert.deepEqual(body, { name: 'clf', version: 5, card: await reg.modelCard('clf', 5), lineage: every[4]!.lineage });
    } finally {
      await reg.close();
    }
    assert.match(body.card as string, /^# clf v5\n/);
  });

  it("answers an unknown model or version with 404 and the registry's hint, and a bad parameter with 400 naming it", async () => {
    for (const path of [
      '/api/models/nope/versions',
      '/api/models/nope/versions/1/card',
      '/api/models/nope/versions/1/lineage',
      '/api/models/nope/diff?a=1&b=2',
    ]) {
      const r = await get(path);
      assert.equal(r.status, 404, path);
      assert.equal(r.body.error, "no model named 'nope'");
      assert.equal(r.body.hint, 'registered models: clf, tiny');
    }
    const v99 = await get('/api/models/clf/versions/99/card');
    assert.equal(v99.status, 404);
    assert.equal(v99.body.error, "model 'clf' has no version or alias '99'");
    assert.equal(v99.body.hint, `versions 1..${VERSIONS}, aliases production, staging, or 'latest'`);
    for (const [query, message] of [
      ['before=0', /^before must be a version number .* got "0"/],
      ['before=x', /^before must be a version number .* got "x"/],
      ['before=', /^before must be a version number .* got ""/],
      ['limit=0', /^limit must be a whole number from 1 to 100, got "0"/],
      ['limit=101', /^limit must be a whole number from 1 to 100, got "101"/],
      ['limit=2.5', /^limit must be a whole number from 1 to 100, got "2.5"/],
      ['before=3&limit=-1', /^limit must be a whole number/],
    ] as const) {
      const r = await get(`/api/models/clf/versions?${query}`);
      assert.equal(r.status, 400, query);
      assert.match(r.body.error!, message);
    }
    const card = await get('/api/models/clf/versions/latest/card');
    assert.equal(card.status, 400);
    assert.match(card.body.error!, /^version must be a version number/);
  });

  it('keeps the API rules: a name other than loopback refused, and the token needed where reads need it', async () => {
    await assertApiRules(url, statePaths(dir), TOKEN, [
      '/api/models',
      '/api/models/clf/versions?before=3',
      '/api/models/clf/versions/3/card',
    ]);
  });
});

describe('dashboard models API, causal LM', () => {
  // Two trials of an instruction tune: the rows must carry what tells them apart beside the base model, or the page
  // lists loss, perplexity and val_loss only and the generated answers' scores are a card away.
  it("lists a causal LM's generation scores and its base model's beside them", async () => {
    const lmDir = mkdtempSync(join(tmpdir(), 'ui-models-lm-'));
    const paths = statePaths(lmDir);
    const reg = await openRegistry(paths.registryDb);
    const scores = (x: number) => ({ loss: 1.6 + x, perplexity: 5 + x, exact_match: x, rouge_l: 0.3 + x, chrf: 0.3 });
    for (const [v, x] of [
      ['a', 0.1],
      ['b', 0.2],
    ] as const)
      await reg.registerVersion(testVersion('lm', v, { metrics: { ...scores(x), val_loss: 2.3 - x, baseline: scores(0) } }));
    await reg.close();
    await (await openAudit(paths.auditDb)).close();
    const lmUi = await testUiServer(paths, TOKEN);
    try {
      const { status, text, body } = await get('/api/models', await lmUi.listen(0, '127.0.0.1'));
      assert.equal(status, 200, text);
      const [lm] = body.models as ModelView[];
      assert.deepEqual(Object.keys(lm!.versions[0]!.metrics).sort(), [
        'baseline.exact_match',
        'baseline.loss',
        'exact_match',
        'loss',
        'perplexity',
        'rouge_l',
        'val_loss',
      ]);
      assert.equal(lm!.versions[0]!.metrics.rouge_l, 0.5);
    } finally {
      await lmUi.close();
      rmSync(lmDir, { recursive: true, force: true });
    }
  });
});

describe('dashboard models page', () => {
  const chrome = useBrowser();
  const pageErrors: string[] = [];

  const open = (hash: string) => openDashboard(chrome.browser!, url, TOKEN, hash, pageErrors);
  const shown = (page: Page) =>
    page.locator('[data-model="clf"] tr[data-version]').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-version'))));

  it("shows the newest versions, loads older ones on request, opens a version's card, and promotes and rolls back an older one", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('#/models');
    const clf = page.locator('[data-model="clf"]');
    // The aliases cell (the seventh: version, created, by, run, f1_macro, accuracy), not the buttons' "promote to staging".
    const aliasesOf = (v: number) => clf.locator(`tr[data-version="${v}"] td:nth-child(7)`);
    await clf.locator(`tr[data-version="${VERSIONS}"]`).waitFor();
    assert.deepEqual(await shown(page), down(VERSIONS, VERSIONS - VERSION_PAGE + 1));
    assert.equal((await page.locator('[data-shown="clf"]').innerText()).trim(), `${VERSION_PAGE} of ${VERSIONS} versions older versions`);
    assert.deepEqual(
      await clf.locator(`tr[data-version="${VERSIONS}"] td`).evaluateAll((tds) => tds.slice(4, 7).map((td) => td.textContent)),
      ['0.6700', '0.7700', 'staging'],
    );
    assert.equal(await page.locator('[data-model="tiny"] button[data-older]').count(), 0, 'tiny has both its versions shown');

    await page.click('button[data-older="clf"]');
    await clf.locator('tr[data-version="1"]').waitFor();
    assert.deepEqual(await shown(page), down(VERSIONS, 1));
    assert.equal(await page.locator('button[data-older="clf"]').count(), 0, 'no older versions remain');
    assert.equal(await aliasesOf(3).innerText(), 'production');
    // The heading says who promoted it and when; the version production holds offers no promotion to it.
    assert.match(await clf.locator('h2 [data-alias="production"]').innerText(), /^production → v3 \(set by lead, .+\)$/);
    assert.equal(await clf.locator('tr[data-version="3"] button[data-promote]').count(), 0);
    assert.equal(await clf.locator('tr[data-version="3"] [data-holds="production"]').innerText(), 'production now');
    assert.equal(await clf.locator(`tr[data-version="${VERSIONS}"] button[data-promote]`).count(), 1);

    // A card opened from an older row is read then: the list had none.
    await clf.locator('tr[data-version="3"] button', { hasText: 'card' }).click();
    await page.locator('#version-card[data-version="3"] div.model-card h1').waitFor();
    assert.equal(await page.locator('#version-card div.model-card h1').innerText(), 'clf v3');
    assert.match(await page.locator('#version-card').innerText(), /clf trained the 3th time[\s\S]*run-3 · stage register/);

    // An older version promoted: the rows stay loaded after the page refreshes, the alias moves and its history shows.
    await clf.locator('input').first().fill('staging');
    await clf.locator('tr[data-version="2"] button[data-promote]').click();
    await page.locator('#banner.ok').waitFor();
    await aliasesOf(2).filter({ hasText: 'staging' }).waitFor();
    assert.deepEqual(await shown(page), down(VERSIONS, 1));
    await clf
      .locator('td', { hasText: `v${VERSIONS} → v2` })
      .first()
      .waitFor();
    // The rollback says what `models rollback` says: the version it left is held from runs' deploys until promoted by hand.
    assert.match(
      (await page.locator('#rollback-clf').getAttribute('title')) ?? '',
      /then held: no run's deploy promotes it to staging again/,
    );
    await page.click('#rollback-clf');
    const rolled = page.locator('#banner', { hasText: 'rolled back to' });
    await rolled.waitFor();
    assert.equal(
      await rolled.innerText(),
      `clf@staging rolled back to v${VERSIONS}. v2 is held: no run's deploy promotes it to staging again (a rerun on the same data registers the same version); promoting it by hand does (its row's "promote to staging", or \`tempered models promote clf@2 --alias staging\`)`,
    );
    await aliasesOf(VERSIONS).filter({ hasText: 'staging' }).waitFor();
    assert.equal(await aliasesOf(2).innerText(), '');

    // Versions from the older page can be diffed.
    await clf.locator('select[data-diff="a"]').selectOption('1');
    await clf.locator('select[data-diff="b"]').selectOption('2');
    await page.click('#diff-clf');
    await page.locator('#version-diff[data-a="1"][data-b="2"] #diff-metrics tr[data-metric="accuracy"]').waitFor();
    await page.context().close();
    assert.deepEqual(pageErrors, []);
  });

  /**
   * The registry refuses to move an alias to a twin of its holder (one model's bytes) and answers `already`; the page
   * said "spam@production → v2" for a click on v3's promote. And a history written before that refusal holds twins
   * one after the other: rolling back between them said v3 was held, while production served its model as before.
   */
  it("says that nothing served changed for a promote of the holder's twin and a rollback to a twin", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const twinDir = mkdtempSync(join(tmpdir(), 'ui-models-twin-'));
    t.after(() => rmSync(twinDir, { recursive: true, force: true }));
    const paths = statePaths(twinDir);
    const reg = await openRegistry(paths.registryDb);
    for (const [m, run] of [
      ['a', 'r1'],
      ['b', 'r2'],
      ['b', 'r3'],
    ] as const)
      await reg.registerVersion(testVersion('spam', m, { runId: run }));
    for (const v of [1, 2, 3]) await setAliasAsBefore(reg, 'spam', 'production', v);
    await reg.close();
    await (await openAudit(paths.auditDb)).close();
    const twinUi = await testUiServer(paths, TOKEN);
    t.after(() => twinUi.close());
    const page = await openDashboard(chrome.browser!, await twinUi.listen(0, '127.0.0.1'), TOKEN, '#/models', pageErrors);
    const spam = page.locator('[data-model="spam"]');
    await spam.locator('tr[data-version="3"] [data-holds="production"]').waitFor();
    await page.click('#rollback-spam');
    const rolled = page.locator('#banner', { hasText: 'rolled back to' });
    await rolled.waitFor();
    assert.equal(
      await rolled.innerText(),
      'spam@production rolled back to v2. v2 has the same model bytes as v3: what production serves has not changed; `tempered models rollback spam` again goes back to v1',
    );
    await spam.locator('tr[data-version="2"] [data-holds="production"]').waitFor();
    await spam.locator('tr[data-version="3"] button[data-promote]').click();
    const stays = page.locator('#banner', { hasText: 'stays on' });
    await stays.waitFor();
    assert.equal(
      await stays.innerText(),
      'spam@production stays on v2: production is v2, which has the same model bytes as v3: nothing to promote; production stays on v2',
    );
    await page.context().close();
    assert.deepEqual(pageErrors, []);
  });

  it("keeps both of a model's action fields when they change before the page renders again", async (t) => {
    if (chrome.skip) return t.skip(chrome.skip);
    const page = await open('#/models');
    const inputs = page.locator('[data-model="clf"] .bar input');
    await inputs.first().waitFor();
    // Two input events in one task, as autofill or a fast paste gives them: the second must not undo the first.
    await inputs.evaluateAll((els) => {
      const [alias, gate] = els as unknown as { value: string; dispatchEvent(e: Event): boolean }[];
      alias.value = 'staging';
      alias.dispatchEvent(new Event('input', { bubbles: true }));
      gate.value = 'f1_macro >= 0.5';
      gate.dispatchEvent(new Event('input', { bubbles: true }));
    });
    await page.locator('#rollback-clf', { hasText: 'roll back staging' }).waitFor({ timeout: 5000 });
    assert.deepEqual(await inputs.evaluateAll((els) => els.map((e) => (e as unknown as { value: string }).value)), [
      'staging',
      'f1_macro >= 0.5',
    ]);
    await page.context().close();
    assert.deepEqual(pageErrors, []);
  });
});
