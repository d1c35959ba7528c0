import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDevServer, stopProcess } from './dev-server.ts';
import { PayloadKeyError } from './payload-codec.ts';
import { WorkerLogger } from './runtime.ts';

test("the worker logger drops only the SDK's warning about a worker that runs no workflows (an --activities-only worker)", () => {
  const seen: string[] = [];
  const log = new WorkerLogger('WARN', (e) => void seen.push(`${e.level} ${e.message}`));
  log.warn('No workflows registered, not polling for workflow tasks', { taskQueue: 'gpu' });
  log.warn('Worker failed to heartbeat');
  log.info('below the level');
  log.error('No workflows here, but an error');
  assert.deepEqual(seen, ['WARN Worker failed to heartbeat', 'ERROR No workflows here, but an error']);
});

test('a worker without the key says once per run that it cannot decrypt a workflow task; every other failure is logged in full, each time', () => {
  const seen: string[] = [];
  const log = new WorkerLogger(
    'WARN',
    (e) => void seen.push(`${e.level} ${e.message}${e.meta?.error ? ` [${(e.meta.error as Error).message}]` : ''}`),
  );
  const keyless = new PayloadKeyError('no key here');
  for (const runId of ['r1', 'r1', 'r2', 'r1']) {
    log.error('Failed to process Workflow Activation', { runId, taskQueue: 'q', error: keyless });
    log.warn('Failing workflow task', { runId, failure: 'Failure { message: "PayloadKeyError: no key here" }' });
  }
  // The same run's workflow task failing otherwise (a bug, a nondeterminism) is not taken for the missing key.
  for (let i = 0; i < 2; i++) {
    log.error('Failed to process Workflow Activation', { runId: 'r1', taskQueue: 'q', error: new Error('boom') });
    log.warn('Failing workflow task', { runId: 'r1', failure: 'Failure { message: "boom" }' });
  }
  const once = (r: string) =>
    `ERROR this worker cannot run a workflow task of run execution ${r} (task queue 'q'): no key here; Temporal retries it until a worker with the key takes it (said once per run)`;
  assert.deepEqual(seen, [
    once('r1'),
    once('r2'),
    'ERROR Failed to process Workflow Activation [boom]',
    'WARN Failing workflow task',
    'ERROR Failed to process Workflow Activation [boom]',
    'WARN Failing workflow task',
  ]);
});

test("the SDK core's own logs go through the logger to stderr, never to stdout (where a command's --json goes)", async () => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-runtime-'));
  const server = await startDevServer({ dbFile: join(home, 'temporal.db'), logFile: join(home, 'server.log'), headless: true });
  // A worker at a standalone worker's level (WARN) whose server goes away: core retries its polls and says so.
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import { NativeConnection, Worker } from '@temporalio/worker';
       import { installRuntime } from './infra/runtime.ts';
       installRuntime('WARN');
       const connection = await NativeConnection.connect({ address: ${JSON.stringify(server.address)} });
       const worker = await Worker.create({ connection, taskQueue: 'runtime-log', activities: { a: async () => 1 } });
       void worker.run();
       process.stderr.write('polling\\n');`,
    ],
    { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  try {
    await new Promise<void>((resolve, reject) => {
      let stopping = false;
      const look = () => {
        if (!stopping && stderr.includes('polling\n')) {
          stopping = true;
          void stopProcess(server.pid);
        }
        if (/retried \d+ times/.test(stdout + stderr)) resolve();
      };
      child.stdout!.on('data', (d: Buffer) => ((stdout += d.toString()), look()));
      child.stderr!.on('data', (d: Buffer) => ((stderr += d.toString()), look()));
      child.on('exit', (code) => reject(new Error(`the worker exited (${code}) before core logged a retry\n${stdout}\n${stderr}`)));
    });
  } finally {
    child.kill('SIGKILL');
    await stopProcess(server.pid);
    rmSync(home, { recursive: true, force: true });
  }
  assert.equal(stdout, '', 'core wrote to stdout');
  assert.match(stderr, /\[WARN\] gRPC call poll_\w+ retried \d+ times/);
});

/** Runs `script` (an ES module, from the repository root) in a child process: its exit code, stdout and stderr. */
async function runScript(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

test("a line forwarded through the runtime's logger just before the process exits reaches stderr", async () => {
  // The logger the runtime forwards core's lines through, which holds each for 100 ms before writing it: logged, then
  // process.exit at once, as a command does once its output is written.
  const { code, stdout, stderr } = await runScript(
    `import { Runtime } from '@temporalio/worker';
     import { installRuntime } from './infra/runtime.ts';
     installRuntime('WARN');
     Runtime.instance().logger.warn('the last line before exit', { sdkComponent: 'core' });
     process.exit(3);`,
  );
  assert.equal(code, 3, stderr);
  assert.equal(stdout, '');
  assert.match(stderr, /\[WARN\] the last line before exit/);
});

test('a line forwarded through a runtime the SDK built after the installed one shut down reaches stderr at the exit too', async () => {
  // The SDK shuts the installed runtime down when its last worker and connection close, and builds another, with the
  // same logger, for the next worker: the flush at the exit is of that one.
  const { code, stderr } = await runScript(
    `import { Runtime } from '@temporalio/worker';
     import { installRuntime } from './infra/runtime.ts';
     installRuntime('WARN');
     await Runtime.instance().shutdown();
     Runtime.instance().logger.warn('the last line of the second runtime', { sdkComponent: 'core' });
     process.exit(3);`,
  );
  assert.equal(code, 3, stderr);
  assert.match(stderr, /\[WARN\] the last line of the second runtime/);
});
