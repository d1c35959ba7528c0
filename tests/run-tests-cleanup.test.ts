/**
 * npm test's runner stops the servers a test file leaves running: any process whose command line
 * names the run's scratch folder (scripts/run-tests.mjs); and at its deadline, the test files still running.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Alive and not a zombie waiting to be reaped. */
function running(pid: number): boolean {
  const stat = `/proc/${pid}/stat`;
  if (!existsSync(stat)) return false;
  return readFileSync(stat, 'utf8').split(') ')[1]![0] !== 'Z';
}

/**
 * `npm test`'s runner on one fixture file, `env` added, in a scratch folder whose `pid` file the fixture writes (its
 * name passed in `pidVar`); `check` reads the result, and whatever the fixture left is killed after.
 */
function runFixture(
  prefix: string,
  fixture: string,
  pidVar: string,
  env: Record<string, string>,
  check: (r: SpawnSyncReturns<string>, pidFile: string) => void,
): void {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const pidFile = join(dir, 'pid');
  try {
    const r = spawnSync(process.execPath, ['scripts/run-tests.mjs', join('tests', 'fixtures', fixture)], {
      encoding: 'utf8',
      // Without the test runner's marker, which would make the inner `node --test` report to this one.
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')),
        [pidVar]: pidFile,
        ...env,
      },
    });
    check(r, pidFile);
  } finally {
    try {
      process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    } catch {
      /* stopped, as it should be */
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

test(
  'a server a test file left running is stopped when the run ends, and the run says so',
  { skip: !existsSync('/proc/self/stat') && 'needs /proc' },
  () =>
    runFixture('run-tests-cleanup-', 'leaves-a-server.ts', 'LEFT_SERVER_PID_FILE', {}, (r, pidFile) => {
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const pid = Number(readFileSync(pidFile, 'utf8'));
      assert.match(r.stderr, new RegExp(`stopped 1 server process\\(es\\) a test file left running: ${pid} left-server -dir=`));
      assert.equal(running(pid), false, `the left server (pid ${pid}) was stopped`);
    }),
);

test(
  'a test file still running at the deadline is stopped with the run, and the run says why it failed',
  { skip: !existsSync('/proc/self/stat') && 'needs /proc' },
  () =>
    // 30 s: time for the file to start on a loaded machine; it then waits 10 minutes.
    runFixture(
      'run-tests-deadline-',
      'hangs-past-deadline.ts',
      'HUNG_TEST_PID_FILE',
      { TEMPERED_TEST_DEADLINE_MIN: '0.5' },
      (r, pidFile) => {
        assert.equal(r.status, 1, r.stdout + r.stderr);
        assert.match(r.stderr, /the run passed its 0\.5-minute deadline and was killed/);
        assert.ok(existsSync(pidFile), `the hung file started within the deadline: ${r.stdout}${r.stderr}`);
        const pid = Number(readFileSync(pidFile, 'utf8'));
        assert.equal(running(pid), false, `the hung test file (pid ${pid}) was stopped`);
        // With it, tsx's esbuild service.
        assert.match(r.stderr, new RegExp(`stopped \\d+ process\\(es\\) of the tests still running: (.*; )?${pid} `));
      },
    ),
);
