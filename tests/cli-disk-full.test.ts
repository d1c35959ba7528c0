/**
 * The CLI, a real process, with TEMPERED_HOME on a full tmpfs: a command about a run names that run in the commands
 * its low-space note suggests. It said `tempered status <run>` and `tempered resume <run>`, which read like a template
 * left unfilled, when the command had been given the id.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fillDisk, mountTmpfs, NO_TMPFS } from '../src/util/tmpfs.testing.ts';
import { runCli } from './helpers/cli.ts';

test('tempered resume RUN on a full disk: the note names that run in what to run next', { skip: NO_TMPFS }, async (t) => {
  const disk = mountTmpfs(t, 512);
  const home = join(disk, 'home');
  mkdirSync(home);
  fillDisk(disk);
  // The embedded dev server's port, held: the command fails at once, for a reason that says nothing of space.
  const held = createServer();
  await new Promise<void>((r) => held.listen(0, '127.0.0.1', r));
  t.after(() => held.close());
  const port = (held.address() as AddressInfo).port;
  const env = { TEMPERED_HOME: home, TEMPERED_DEV_PORT: String(port), TEMPORAL_ADDRESS: undefined };
  const res = await runCli(['resume', 'spam-0042'], env);
  assert.equal(res.code, 1, res.stderr);
  assert.match(res.stderr, new RegExp(`port ${port} is already in use`));
  assert.match(
    res.stderr,
    /note: the disk that holds .*\/home has 0 B free of 512\.0 KiB, .*\(`tempered status spam-0042` says what the run waits for; `tempered resume spam-0042` takes it up again if it failed\)/,
  );
  assert.doesNotMatch(res.stderr, /<run>|RUN_ID/);
});
