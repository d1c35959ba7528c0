import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MALLOC_TUNABLES, withMallocTuning } from '../scripts/malloc-tuning.mjs';
import { groupAlive, startCliServer, startWorkerGroup } from './helpers/cli.ts';

const root = join(import.meta.dirname, '..');

test('the npm launcher runs the CLI and hands back its exit status', () => {
  const bad = spawnSync(process.execPath, [join(root, 'scripts', 'tempered.mjs'), 'nosuchcommand'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown command 'nosuchcommand'/);
  const help = spawnSync(process.execPath, [join(root, 'scripts', 'tempered.mjs'), '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /commands:/);
});

test('malloc tuning is added to the environment unless the user set GLIBC_TUNABLES', () => {
  assert.equal(withMallocTuning({ PATH: '/bin' }).GLIBC_TUNABLES, MALLOC_TUNABLES);
  assert.equal(withMallocTuning({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=2');
  // Not for the commands that hold models for long and never train: an untrimmed heap kept every model a swap replaced.
  assert.equal(withMallocTuning({}, ['worker', '--queue', 'gpu']).GLIBC_TUNABLES, MALLOC_TUNABLES);
  for (const cmd of ['serve', 'ui']) assert.equal(withMallocTuning({}, [cmd, 'm@production']).GLIBC_TUNABLES, undefined, cmd);
  assert.match(MALLOC_TUNABLES, /^glibc\.malloc\.mmap_threshold=33554432:glibc\.malloc\.trim_threshold=\d+:glibc\.malloc\.mmap_max=0$/);
});

// npm's postinstall writes the lock stamp, so an `npm ci` of one's own is not redone by the first `npm run demo`; it
// must never fail an install: a packed install has no lock file, hoisted dependencies no node_modules of their own.
test('ensure-setup --stamp-only stamps a checkout whose packages are installed in full, and does nothing elsewhere', () => {
  const dir = mkdtempSync(join(tmpdir(), 'stamp-'));
  try {
    mkdirSync(join(dir, 'scripts'));
    copyFileSync(join(root, 'scripts', 'ensure-setup.mjs'), join(dir, 'scripts', 'ensure-setup.mjs'));
    const stampOnly = (env: Record<string, string> = {}) =>
      spawnSync(process.execPath, [join(dir, 'scripts', 'ensure-setup.mjs'), '--stamp-only'], {
        encoding: 'utf8',
        env: { PATH: process.env.PATH, ...env },
      });
    const stamp = join(dir, 'node_modules', '.tempered-lock-sha256');
    assert.equal(stampOnly().status, 0, 'no lock file, no node_modules: nothing to stamp');
    writeFileSync(join(dir, 'package-lock.json'), '{"lockfileVersion": 3}\n');
    assert.equal(stampOnly().status, 0);
    assert.equal(existsSync(stamp), false, 'no node_modules of its own');
    mkdirSync(join(dir, 'node_modules'));
    assert.equal(stampOnly({ npm_config_omit: 'dev' }).status, 0);
    assert.equal(existsSync(stamp), false, 'without the dev packages the tests need, a later npm test installs them');
    assert.equal(stampOnly().status, 0);
    assert.equal(readFileSync(stamp, 'utf8').trim(), createHash('sha256').update('{"lockfileVersion": 3}\n').digest('hex'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// A supervisor (systemd with KillMode=process, Docker's and Kubernetes' stop, a person's `kill PID`) signals the one
// process it started. `npm run` runs its script through `sh -c`, and sh does not pass a SIGTERM on: the launcher and
// the worker under it were left running, orphaned, still taking stages (an upgrade's "old" worker never stopped), and
// in a container were SIGKILLed without their grace once npm, PID 1, had gone.
test('a SIGTERM to `npm run tempered -- worker` reaches the worker, which stops as it does for Ctrl-C', async (t) => {
  const { server, home, close } = await startCliServer('launcher-sigterm-');
  t.after(close);
  const {
    child: npm,
    exited,
    stderr,
  } = await startWorkerGroup(t, 'npm', ['run', '-s', 'tempered', '--', 'worker', '--queue', 'launcher-sigterm'], {
    TEMPORAL_ADDRESS: server.address,
    TEMPERED_HOME: home,
  });
  npm.kill('SIGTERM');
  await exited;
  // npm exits once its child has; the worker is that child's child, and has had its own exit waited for.
  for (let i = 0; i < 100 && groupAlive(npm.pid!); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(groupAlive(npm.pid!), false, `a process of the worker's group outlived npm: ${stderr()}`);
  assert.match(stderr(), /worker: SIGTERM: stopping/);
});

// A launcher killed with SIGKILL (`kill -9` of a hung `npm run tempered -- worker`, the OOM killer) passes nothing on: its
// worker went on, orphaned, polling and taking stages, while the person who killed it took it for gone.
test('a SIGKILL to the launcher stops the worker under it too', async (t) => {
  const { server, home, close } = await startCliServer('launcher-sigkill-');
  t.after(close);
  const {
    child: launcher,
    exited,
    stderr,
  } = await startWorkerGroup(t, process.execPath, [join(root, 'scripts', 'tempered.mjs'), 'worker', '--queue', 'launcher-sigkill'], {
    TEMPORAL_ADDRESS: server.address,
    TEMPERED_HOME: home,
  });
  launcher.kill('SIGKILL');
  await exited;
  // The launcher is gone at once; the worker, its child in the same process group, has to notice and stop.
  for (let i = 0; i < 300 && groupAlive(launcher.pid!); i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(groupAlive(launcher.pid!), false, `the worker outlived its SIGKILLed launcher: ${stderr()}`);
  assert.match(stderr(), /worker: SIGTERM: stopping/);
});
