/**
 * `npx tempered worker` runs the worker under npm's `sh -c`, which passes no SIGTERM on (README, Deployment: the
 * processes): the worker says so when it starts, with the command that does pass it on; started otherwise, it does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { npxNote } from '../cli/commands/worker.ts';
import { startCliServer } from './helpers/cli.ts';

const root = join(import.meta.dirname, '..');

/** Whether any process of group `pgid` is alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

test('a worker started through npx says that a SIGTERM to npx does not reach it, and how to start it instead', async (t) => {
  const { server, home, close } = await startCliServer('worker-npx-');
  t.after(close);
  const env = { ...process.env, TEMPORAL_ADDRESS: server.address, TEMPERED_HOME: home };
  // --offline: the package is this checkout, which npx links without the registry.
  const npx = spawn('npx', ['--offline', '--yes', 'tempered', 'worker', '--queue', 'npx-note'], {
    cwd: root,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
    // A group of its own, so that the orphaned worker is found and stopped after the test.
    detached: true,
  });
  t.after(() => {
    if (groupAlive(npx.pid!)) process.kill(-npx.pid!, 'SIGKILL');
  });
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    npx.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      // The note comes before the polling line, on the same stream.
      if (stderr.includes('worker polling')) resolve();
    });
    npx.once('exit', () => reject(new Error(`the worker exited before polling: ${stderr}`)));
  });
  assert.match(stderr, /worker: note: started through npx[^\n]*a SIGTERM to npx's process ends npx and leaves this worker running/);
  assert.match(stderr, /start it with `npm run tempered -- worker …`/);
  // `npm run tempered` (run-script) execs its launcher, which passes signals on; node itself gets them.
  assert.equal(npxNote({ npm_command: 'run-script' }), undefined);
  assert.equal(npxNote({}), undefined);
});
