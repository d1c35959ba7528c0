#!/usr/bin/env node
// Runs every *.test.ts with node's built-in test runner (through tsx). Extra arguments are passed
// on, e.g. `npm test -- --test-name-pattern=cache` or a list of files. Three files at a time on 2 cores
// (TEMPERED_TEST_CONCURRENCY to change it): the integration files spend most of their time waiting (a heartbeat
// timeout, a retry's backoff, a worker's stop deadline); with two, process accounting of a whole run counted
// about a quarter of the CPU time idle. (node --test runs files in the order of their paths, whatever order it is
// given them in, so the longest cannot be put first.)
//
// No --test-force-exit: on Node 20 it ends a test file's process early at random (validate.test.ts
// reported between 57 and 68 of its 68 tests in six runs, and the run still passed), so tests went
// unrun without a failure. A file that leaves a handle open would instead hang the run, so the whole
// run has a deadline after which it is killed and fails.
//
// The tests' temporary folders go into one scratch folder (TMPDIR) that is deleted when the run ends:
// many tests (and the servers they start) leave theirs behind when they fail or are killed, and on a
// CI machine that runs the suite again and again those would pile up in /tmp.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SKIP = new Set(['node_modules', '.git', '.tempered', 'bench']);

function find(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (SKIP.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

const args = process.argv.slice(2);
const files = args.some((a) => a.endsWith('.ts')) ? [] : find(root).sort();
const CONCURRENCY = process.env.TEMPERED_TEST_CONCURRENCY ?? '3';
if (!/^[1-9]\d*$/.test(CONCURRENCY)) {
  console.error(`npm test: TEMPERED_TEST_CONCURRENCY must be a whole number of test files at a time (1 or more), got '${CONCURRENCY}'`);
  process.exit(2);
}
const DEADLINE_MIN = Number(process.env.TEMPERED_TEST_DEADLINE_MIN ?? 45);
const scratch = mkdtempSync(join(tmpdir(), 'tempered-tests-'));
// As /tmp itself: the servers some tests start as another user (PostgreSQL runs as nobody under root)
// must reach their folders inside it.
chmodSync(scratch, 0o1777);
// The settings that point tempered at a team's servers and state stay out of the tests: each test starts its own
// Temporal, store and database, and a CLI it runs inherits this environment, so with a shell set up for the team's
// cluster (README, Scaling out) tests that set no address of their own submitted to it, wrote into its bucket and
// database, and TEMPORAL_NAMESPACE failed every test against its own dev server, which has only 'default'.
const TEAM_SETTINGS = /^(TEMPORAL_(?!CLI_PATH$).+|TEMPERED_(STORE|DATABASE_URL|HOME|TASK_QUEUE|PAYLOAD_KEY|PAYLOAD_KEYS_OLD))$/;
const dropped = Object.keys(process.env)
  .filter((k) => TEAM_SETTINGS.test(k))
  .sort();
if (dropped.length) console.error(`npm test: left out of the tests' environment, which start servers of their own: ${dropped.join(', ')}`);
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !TEAM_SETTINGS.test(k)));
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${CONCURRENCY}`, '--test-timeout=600000', ...args, ...files],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...env, TEMPERED_TESTING: '1', TMPDIR: scratch },
    timeout: DEADLINE_MIN * 60_000,
    killSignal: 'SIGKILL',
  },
);
const { servers: orphans, others } = killProcessesOf(scratch);
if (orphans.length) console.error(`npm test: stopped ${orphans.length} server process(es) a test file left running: ${orphans.join('; ')}`);
if (others.length) console.error(`npm test: stopped ${others.length} process(es) of the tests still running: ${others.join('; ')}`);
// A server killed just now may still be writing into its folder: a scratch folder that will not go is said, not thrown,
// or its ENOTEMPTY stack trace hid why the run failed (a passed deadline's line below never printed).
try {
  rmSync(scratch, { recursive: true, force: true, maxRetries: 3 });
} catch (e) {
  console.error(`npm test: could not delete the tests' scratch folder ${scratch}: ${e.message}`);
}
if (r.error?.code === 'ETIMEDOUT') {
  console.error(
    `\nnpm test: the run passed its ${DEADLINE_MIN}-minute deadline and was killed; a test file probably left a handle (socket, timer, child process) open.`,
  );
  process.exit(1);
}
process.exit(r.status ?? 1);

/**
 * The servers tests start (SeaweedFS, PostgreSQL, Temporal dev servers) are detached so a test can
 * kill and restart them; a test file that crashes or is killed leaves them running. Each keeps its
 * data in the scratch folder, so any process whose command line names that folder is one of them.
 * The deadline's SIGKILL reaches `node --test` alone: the test files it runs, each its own process, went on (a
 * hung one for good, writing into the scratch folder as it was deleted: ENOTEMPTY). Every process the run started
 * has the scratch folder as its TMPDIR, so one whose environment says so is stopped too.
 * Linux only (/proc); elsewhere nothing is found.
 */
function killProcessesOf(dir) {
  const servers = [];
  const others = [];
  let pids = [];
  try {
    pids = readdirSync('/proc').filter((n) => /^\d+$/.test(n));
  } catch {
    return { servers, others };
  }
  for (const pid of pids) {
    if (Number(pid) === process.pid) continue;
    let cmd;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      continue; // gone meanwhile
    }
    const server = cmd.includes(dir);
    if (!server) {
      try {
        if (!readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`TMPDIR=${dir}`)) continue;
      } catch {
        continue; // gone meanwhile, or another user's (a server as nobody names the folder on its command line)
      }
    }
    try {
      process.kill(Number(pid), 'SIGKILL');
      (server ? servers : others).push(`${pid} ${cmd.slice(0, 80)}`);
    } catch {
      /* gone meanwhile */
    }
  }
  return { servers, others };
}
