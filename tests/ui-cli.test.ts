// `tempered ui` refuses an exposed bind without a token, and a short token, before starting anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'tempered.js');

function ui(args: string[], env: Record<string, string>) {
  const home = mkdtempSync(join(tmpdir(), 'ui-cli-'));
  const { TEMPERED_UI_TOKEN: _a, TEMPERED_SERVE_TOKEN: _b, ...rest } = process.env;
  const r = spawnSync(process.execPath, [BIN, 'ui', ...args], {
    env: { ...rest, TEMPERED_HOME: home, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { ...r, home };
}

test('a non-loopback bind without TEMPERED_UI_TOKEN is refused (exit 2) and starts no dev server', () => {
  const r = ui(['--host', '0.0.0.0'], {});
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /binding 0\.0\.0\.0 exposes the dashboard.*TEMPERED_UI_TOKEN/);
  assert.deepEqual(readdirSync(r.home), [], 'nothing was started or written');
});

test('the serve token does not open the dashboard: an exposed bind with only TEMPERED_SERVE_TOKEN is refused', () => {
  // Every client of a served model holds the serve token; the dashboard's promotes models.
  const r = ui(['--host', '0.0.0.0'], { TEMPERED_SERVE_TOKEN: 'a-serve-token-0123456789abcdef' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /set TEMPERED_UI_TOKEN/);
});

test('a token shorter than 16 characters is refused', () => {
  const r = ui([], { TEMPERED_UI_TOKEN: 'short' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /at least 16 characters/);
});
