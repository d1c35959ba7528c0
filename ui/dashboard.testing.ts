/** The dashboard as the light UI tests run it: a real server on real state files, with no Temporal behind it. */
import type { Browser, Page } from 'playwright-core';
import type { StatePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { createUiServer, type UiServer } from './server.ts';

/** A dashboard server on `paths` (not listening yet) whose pages need no Temporal; acting as `tester`. */
export function testUiServer(paths: StatePaths, token: string): Promise<UiServer> {
  return createUiServer({
    paths,
    store: new ArtifactStore(paths.store),
    client: () => Promise.reject(new Error('no Temporal in this test')),
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
