/**
 * A real headless browser for the dashboard tests: Debian's `chromium`, driven by playwright-core with
 * an explicit executable path (playwright's own browser download is never used: only package
 * registries are reachable). When no browser is installed and we are root on a Debian-like system,
 * it is installed with apt-get, as the rest of the setup installs the Temporal CLI on first use.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { after, before } from 'node:test';
import type { Browser } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

function found(): string | undefined {
  const own = process.env.TEMPERED_CHROMIUM;
  if (own) return existsSync(own) ? own : undefined;
  return CANDIDATES.find((p) => existsSync(p));
}

/** The browser's path, installing Debian's chromium when missing and possible; otherwise why not. */
export function chromiumPath(): { path: string } | { missing: string } {
  const have = found();
  if (have) return { path: have };
  if (process.env.TEMPERED_CHROMIUM) return { missing: `TEMPERED_CHROMIUM=${process.env.TEMPERED_CHROMIUM} does not exist` };
  const root = process.getuid?.() === 0;
  const apt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status === 0;
  if (!root || !apt)
    return {
      missing: `no chromium at ${CANDIDATES.join(', ')}, and ${root ? 'no apt-get' : 'not root'} to install it (apt-get install chromium, or set TEMPERED_CHROMIUM)`,
    };
  console.error('installing Debian chromium for the dashboard browser tests (apt-get install chromium) …');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env, timeout: 10 * 60_000 });
  const install = spawnSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'inherit', env, timeout: 15 * 60_000 });
  const now = found();
  if (now) return { path: now };
  return { missing: `apt-get install chromium failed (update exit ${update.status}, install exit ${install.status})` };
}

/** Says loudly, on stderr, that the browser tests did not run and why. */
export function announceSkip(why: string): string {
  const line = '!'.repeat(100);
  console.error(`\n${line}\n!!! DASHBOARD BROWSER TESTS SKIPPED: ${why}\n${line}\n`);
  return `no browser: ${why}`;
}

/**
 * A headless chromium for the tests of the describe block this is called in: launched before them and closed
 * after. `skip` says why there is none (announced loudly), for `t.skip(chrome.skip)`.
 */
export function useBrowser(): { readonly browser: Browser | undefined; readonly skip: string | false } {
  const state: { browser: Browser | undefined; skip: string | false } = { browser: undefined, skip: false };
  before(async () => {
    const found = chromiumPath();
    if ('missing' in found) {
      state.skip = announceSkip(found.missing);
      return;
    }
    const { chromium } = await import('playwright-core');
    state.browser = await chromium.launch({ executablePath: found.path, args: ['--disable-gpu', '--disable-dev-shm-usage'] });
  });
  after(async () => {
    await state.browser?.close();
  });
  return state;
}
