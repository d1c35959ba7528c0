/**
 * What the CLI, a real process, prints for an error: an input error (the user's to fix) says what and what to do, and
 * only an unexpected error offers TEMPERED_DEBUG for its stack trace.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { statePaths } from '../src/state-paths.ts';
import { runCli } from './helpers/cli.ts';

const root = mkdtempSync(join(tmpdir(), 'tempered-cli-messages-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A state folder whose registry has clf v1 and v2, `staging` on v2. */
async function homeWithRegistry(): Promise<Record<string, string>> {
  const home = join(root, 'home');
  const reg = await openRegistry(statePaths(home).registryDb);
  try {
    await reg.registerVersion(testVersion('clf', 'a'));
    await reg.registerVersion(testVersion('clf', 'b'));
    await reg.setAlias('clf', 'staging', 2);
  } finally {
    await reg.close();
  }
  return { TEMPERED_HOME: home };
}
const env = homeWithRegistry();

test('an input error says what to do, without offering a stack trace; an unexpected error still offers it', async () => {
  const input = await runCli(['models', 'show', 'clf@99'], await env);
  assert.equal(input.code, 1, input.stderr);
  assert.match(input.stderr, /has no version or alias '99'\n {2}versions 1\.\.2/);
  assert.doesNotMatch(input.stderr, /TEMPERED_DEBUG/);

  // A registry file that is no database: not the user's input, so the stack trace may help whoever reports it.
  const broken = join(root, 'broken');
  mkdirSync(broken);
  writeFileSync(statePaths(broken).registryDb, 'not a database '.repeat(20));
  const unexpected = await runCli(['models', 'show', 'clf'], { TEMPERED_HOME: broken });
  assert.equal(unexpected.code, 1, unexpected.stderr);
  assert.match(unexpected.stderr, /^tempered: file is not a database\n\(set TEMPERED_DEBUG=1 for the stack trace\)\n$/);
});

// The registry's where ('model', 'alias') prefixed a message that names the same thing: "model: model 'clf' has no …".
test("the registry's refusals name the model or alias once", async () => {
  const show = await runCli(['models', 'show', 'clf@99'], await env);
  assert.match(show.stderr, /^tempered: model 'clf' has no version or alias '99'\n/);
  const reserved = await runCli(['models', 'promote', 'clf@1', '--alias', 'latest'], await env);
  assert.equal(reserved.code, 1, reserved.stderr);
  assert.match(reserved.stderr, /^tempered: alias 'latest' is reserved: it already means a version\n/);
  const rollback = await runCli(['models', 'rollback', 'clf', '--alias', 'staging'], await env);
  assert.equal(rollback.code, 1, rollback.stderr);
  assert.match(
    rollback.stderr,
    /^tempered: alias 'staging' of 'clf' has no earlier version to roll back to\n {2}it has only ever pointed at v2\n$/,
  );
});

// The registry's hint offered 'latest', which serve refuses ("@latest is refused, since serve follows an alias").
test('serve of an alias the model lacks says what serve takes: its aliases, a fixed version, or promoting one', async () => {
  const serveEnv = { ...(await env), TEMPERED_SERVE_TOKEN: 'cli-messages-serve-token-xxxxxxxxxx' };
  const bad = await runCli(['serve', 'clf@canary', '--port', '0'], serveEnv);
  assert.equal(bad.code, 1, bad.stderr);
  assert.equal(
    bad.stderr,
    "tempered: cannot serve clf@canary: model 'clf' has no version or alias 'canary'\n" +
      '  serve an alias it has, clf@staging (v2), or a fixed version (clf@1 to clf@2), or point canary at a version: tempered models promote clf@2 --alias canary\n',
  );
  const bare = await runCli(['serve', 'clf', '--port', '0'], serveEnv);
  assert.equal(bare.code, 1, bare.stderr);
  assert.match(bare.stderr, /\n {2}serve an alias it has, clf@staging \(v2\), .*: tempered models promote clf@2\n$/);
  const version = await runCli(['serve', 'clf@9', '--port', '0'], serveEnv);
  assert.equal(version.code, 1, version.stderr);
  assert.match(version.stderr, /\n {2}serve an alias, clf@staging \(v2\), or a version from clf@1 to clf@2\n$/);
  assert.doesNotMatch(bad.stderr + bare.stderr + version.stderr, /latest/);
});
