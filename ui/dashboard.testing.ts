/** The dashboard as the light UI tests run it: a real server on real state files, with no Temporal behind it. */
import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import type { Client } from '@temporalio/client';
import type { Browser, Page } from 'playwright-core';
import type { StatePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { createUiServer, type UiServer } from './server.ts';

/**
 * A dashboard server on `paths` (not listening yet) whose pages need no Temporal, or ask `client` (a stand-in for the
 * few calls a test answers); acting as `tester`.
 */
export function testUiServer(paths: StatePaths, token: string, client?: Client): Promise<UiServer> {
  return createUiServer({
    paths,
    store: new ArtifactStore(paths.store),
    client: client ? async () => client : () => Promise.reject(new Error('no Temporal in this test')),
    token,
    actor: 'tester',
    taskQueue: 'q',
  });
}

/** A page of the dashboard at `url`, opened with the token's link and moved to `hash`; its script errors go to `errors`. */
export async function openDashboard(browser: Browser, url: string, token: string, hash: string, errors: string[]): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1360, height: 900 } })).newPage();
  page.on('pageerror', (e) => errors.push(`${hash}: ${e.message}`));
  await page.goto(`${url}/#token=${token}`);
  await page.evaluate(`location.hash = ${JSON.stringify(hash)}`);
  return page;
}

/**
 * The server's API rules on `routes`: the dashboard at `url` (bound to loopback) refuses another name in Host (421),
 * and one on `paths` bound beyond loopback answers 401 without the token and 200 with it.
 */
export async function assertApiRules(url: string, paths: StatePaths, token: string, routes: string[]): Promise<void> {
  // fetch sends its own Host: node:http sends the one given, as a page on another site would.
  const asHost = (path: string) =>
    new Promise<number>((resolve, reject) =>
      httpGet(`${url}${path}`, { headers: { host: 'attacker.example' } }, (res) => (res.resume(), resolve(res.statusCode!))).on(
        'error',
        reject,
      ),
    );
  for (const path of routes) assert.equal(await asHost(path), 421, path);
  const exposed = await testUiServer(paths, token);
  try {
    const at = `http://127.0.0.1:${new URL(await exposed.listen(0, '0.0.0.0')).port}`;
    for (const path of routes) {
      assert.equal((await fetch(`${at}${path}`)).status, 401, path);
      assert.equal((await fetch(`${at}${path}`, { headers: { authorization: `Bearer ${token}` } })).status, 200, path);
    }
  } finally {
    await exposed.close();
  }
}
