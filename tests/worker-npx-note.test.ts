/**
 * `npx tempered worker` runs the worker under npm's `sh -c`, which passes no SIGTERM on (README, Deployment: the
 * processes): the worker says so when it starts, with the command that does pass it on; started otherwise, it does not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { npxNote } from '../cli/commands/worker.ts';
import { startCliServer, startWorkerGroup } from './helpers/cli.ts';

test('a worker started through npx says that a SIGTERM to npx does not reach it, and how to start it instead', async (t) => {
  const { server, home, close } = await startCliServer('worker-npx-');
  t.after(close);
  // --offline: the package is this checkout, which npx links without the registry. The note comes before the polling
  // line, on the same stream.
  const { stderr } = await startWorkerGroup(t, 'npx', ['--offline', '--yes', 'tempered', 'worker', '--queue', 'npx-note'], {
    TEMPORAL_ADDRESS: server.address,
    TEMPERED_HOME: home,
  });
  assert.match(stderr(), /worker: note: started through npx[^\n]*a SIGTERM to npx's process ends npx and leaves this worker running/);
  assert.match(stderr(), /start it with `npm run tempered -- worker …`/);
  // `npm run tempered` (run-script) execs its launcher, which passes signals on; node itself gets them.
  assert.equal(npxNote({ npm_command: 'run-script' }), undefined);
  assert.equal(npxNote({}), undefined);
});
