/**
 * `tempered server start`'s port flags and TEMPERED_DEV_PORT are checked before anything starts, naming the flag or the
 * variable: `--port abc` said `options.port should be >= 0 and < 65536. Received type number (NaN)`, `--ui-port x`
 * the Temporal CLI's `invalid argument "NaN" for "--ui-port" flag`, and TEMPERED_DEV_PORT=abc reached every command as
 * the address `127.0.0.1:abc`; all exit 1, as if the server had failed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../tests/helpers/cli.ts';
import { devServerPort } from '../../infra/dev-server.ts';

test('a port flag that is not a port is a usage error naming the flag, and starts nothing', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'server-flags-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home, TEMPORAL_ADDRESS: '', TEMPERED_DEV_PORT: '' };
  for (const [args, said] of [
    [['--port', 'abc'], /--port takes a port number, 1 to 65535, not "abc"/],
    [['--port', '99999'], /--port takes a port number, 1 to 65535, not "99999"/],
    [['--port', '27400', '--ui-port', 'x'], /--ui-port takes a port number, 1 to 65535, not "x"/],
    [['--port', '65000'], /Web UI goes on its port \+ 1000, past 65535 for port 65000: give --ui-port too/],
  ] as const) {
    const r = await runCli(['server', 'start', ...args], env);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, said);
    const status = await runCli(['server', 'status'], env);
    assert.match(status.stdout, /not running/, 'nothing was started');
  }
});

test('TEMPERED_DEV_PORT that is not a port is named by every command that reads it', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'server-env-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const r = await runCli(['runs'], { TEMPERED_HOME: home, TEMPORAL_ADDRESS: '', TEMPERED_DEV_PORT: 'abc' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /TEMPERED_DEV_PORT=abc is not a port number \(1 to 65535\); unset it for the default, 7233/);
  assert.doesNotMatch(r.stderr, /TEMPERED_DEBUG/, "the user's setting to fix: no stack trace is offered");
  assert.equal(devServerPort({ TEMPERED_DEV_PORT: '' }), 7233, 'set but empty is unset');
  assert.equal(devServerPort({ TEMPERED_DEV_PORT: '17433' }), 17433);
});
