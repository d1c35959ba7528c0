/**
 * Commands that cannot go on without TEMPERED_PAYLOAD_KEY (resume, runs --compare), run by a process without it or
 * with another key, against a real dev server: each exits 1 saying what it needed the key for, which key id and which
 * variable, and what works without it, and changes nothing (no run submitted, no audit record); a keyless worker says
 * in a line that it cannot run an encrypted run; --watch --json is JSON alone with the key or without. What works
 * without the key (status, logs, cancel, schedules) is tests/payload-encryption.test.ts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { runCli, startCliServer, startCliWorker, stopCliWorker } from './helpers/cli.ts';

const KEY = randomBytes(32).toString('base64');
/** Fails at once on its only row (no text field): a run that ended, which resume is for, with no data to copy in. */
const SPEC = `name: keyless
stages:
  ingest:
    uses: ingest
    with:
      path: bad.jsonl
      task: classification
`;

let cluster: Awaited<ReturnType<typeof startCliServer>>;
let env: Record<string, string>;
let keyed: Record<string, string>;
let file: string;
let failed: string;

before(async () => {
  cluster = await startCliServer('tempered-keyless-');
  env = { TEMPORAL_ADDRESS: cluster.server.address, TEMPERED_HOME: cluster.home, TEMPERED_TASK_QUEUE: 'keyless-test' };
  keyed = { ...env, TEMPERED_PAYLOAD_KEY: KEY };
  file = join(cluster.home, 'keyless.yaml');
  writeFileSync(file, SPEC);
  writeFileSync(join(cluster.home, 'bad.jsonl'), '{"label": "x"}\n');
  const r = await runCli(['submit', file, '--wait', '--local-worker', '--json'], keyed, { timeoutMs: 180_000 });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  failed = (JSON.parse(r.stdout) as { runId: string }).runId;
});
after(async () => {
  await cluster?.close();
});

/** The runs the server lists and the audit records, read with the key: what a refused command must leave as it was. */
async function state(): Promise<{ runs: string[]; audit: unknown[] }> {
  const runs = await runCli(['runs', '--json', '--limit', '100'], keyed);
  const audit = await runCli(['audit', '--json'], keyed);
  assert.equal(runs.code + audit.code, 0, runs.stderr + audit.stderr);
  return {
    runs: (JSON.parse(runs.stdout) as { runId: string }[]).map((r) => r.runId).sort(),
    audit: JSON.parse(audit.stdout) as unknown[],
  };
}

test('resume without the key, or with another, says it needs the key to submit the run input again, exits 1 and submits nothing', async () => {
  const before = await state();
  const noKey = await runCli(['resume', failed], env);
  assert.equal(noKey.code, 1, noKey.stdout + noKey.stderr);
  assert.equal(noKey.stdout, '');
  assert.match(
    noKey.stderr,
    new RegExp(
      `^tempered: resume ${failed} needs the key the run was encrypted with: resuming submits the run's input \\(its plan and params\\) again, which only the key reads; this Temporal payload is encrypted \\(key id [0-9a-f]{16}\\) and this process has no key: set TEMPERED_PAYLOAD_KEY[^\\n]*\\n  hint: \`tempered status ${failed}\` and \`tempered logs ${failed}\` show where it stopped without the key\\n$`,
    ),
  );
  const otherKey = await runCli(['resume', failed, '--json'], { ...env, TEMPERED_PAYLOAD_KEY: randomBytes(32).toString('hex') });
  assert.equal(otherKey.code, 1, otherKey.stdout + otherKey.stderr);
  assert.equal(otherKey.stdout, '');
  assert.match(
    otherKey.stderr,
    new RegExp(`^tempered: resume ${failed} needs the key .*encrypted with key id [0-9a-f]{16}, which is unknown here`),
  );
  assert.deepEqual(await state(), before);

  // With the key it resumes, as ever.
  const resumed = await runCli(['resume', failed, '--json'], keyed);
  assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
  const { runId } = JSON.parse(resumed.stdout) as { runId: string };
  assert.deepEqual((await state()).runs, [...before.runs, runId].sort());
  await runCli(['cancel', runId], keyed);
});

test('resume without the key of a run still running says it is running, as with the key, not which key it lacks', async () => {
  // Submitted with the key to a queue no worker serves: it stays running.
  const r = await runCli(['submit', file, '--json'], { ...keyed, TEMPERED_TASK_QUEUE: 'keyless-nobody' });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const { runId } = JSON.parse(r.stdout) as { runId: string };
  try {
    const noKey = await runCli(['resume', runId], env);
    assert.equal(noKey.code, 1, noKey.stdout + noKey.stderr);
    assert.match(noKey.stderr, new RegExp(`^tempered: run ${runId} is still running`));
    assert.doesNotMatch(noKey.stderr, /TEMPERED_PAYLOAD_KEY/);
  } finally {
    await runCli(['cancel', runId], env);
  }
});

test('runs --compare without the key says it needs the key for the runs params and outputs, and exits 1', async () => {
  const other = await runCli(['submit', file, '--wait', '--local-worker', '--json'], keyed, { timeoutMs: 180_000 });
  const second = (JSON.parse(other.stdout) as { runId: string }).runId;
  const noKey = await runCli(['runs', '--compare', failed, second, '--json'], env);
  assert.equal(noKey.code, 1, noKey.stdout + noKey.stderr);
  assert.equal(noKey.stdout, '');
  assert.match(
    noKey.stderr,
    /^tempered: runs --compare needs the key run \S+ was encrypted with: what is compared, its params and its stages' outputs, is in its encrypted payloads; this Temporal payload is encrypted \(key id [0-9a-f]{16}\) and this process has no key: set TEMPERED_PAYLOAD_KEY[^\n]*\n  hint: `tempered status \S+` shows how it went without the key\n$/,
  );
  const withKey = await runCli(['runs', '--compare', failed, second, '--json'], keyed);
  assert.equal(withKey.code, 0, withKey.stdout + withKey.stderr);
});

test('status --watch --json prints the JSON alone on stdout, with the key or without', async () => {
  for (const e of [keyed, env]) {
    const r = await runCli(['status', failed, '--watch', '--json'], e);
    // --watch exits as `submit --wait` does: 1 for a run that did not succeed.
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const st = JSON.parse(r.stdout) as { runId: string; state: string };
    assert.deepEqual([st.runId, st.state], [failed, 'failed']);
  }
});

test('a worker without the key says once per run, in one line, that it cannot run an encrypted run', async () => {
  // Submitted with the key to a queue that only a keyless worker serves: each of its workflow tasks fails there.
  const queue = { TEMPERED_TASK_QUEUE: 'keyless-worker' };
  const r = await runCli(['submit', file, '--json'], { ...keyed, ...queue });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const { runId } = JSON.parse(r.stdout) as { runId: string };
  const logFile = join(cluster.home, 'keyless-worker.log');
  const worker = await startCliWorker([], { ...env, ...queue }, { logFile });
  const connection = await Connection.connect({ address: cluster.server.address });
  let execution = '';
  try {
    // Until the server has given it the run's workflow task three times (Temporal keeps a failed task's retries out of
    // the history: the description counts them).
    for (let attempt = 0; attempt < 3; ) {
      const d = await connection.workflowService.describeWorkflowExecution({ namespace: 'default', execution: { workflowId: runId } });
      execution = d.workflowExecutionInfo?.execution?.runId ?? '';
      attempt = d.pendingWorkflowTask?.attempt ?? 0;
      if (attempt < 3) await sleep(200);
    }
  } finally {
    await connection.close();
    await stopCliWorker(worker);
    await runCli(['cancel', runId], keyed);
  }
  const log = readFileSync(logFile, 'utf8');
  const lines = log.split('\n').filter((l) => l.includes(execution));
  assert.equal(lines.length, 1, log);
  assert.match(
    lines[0]!,
    new RegExp(
      `\\[ERROR\\] this worker cannot run a workflow task of run execution ${execution} \\(task queue 'keyless-worker'\\): this Temporal payload is encrypted \\(key id [0-9a-f]{16}\\) and this process has no key: set TEMPERED_PAYLOAD_KEY.*; Temporal retries it until a worker with the key takes it \\(said once per run\\)$`,
    ),
  );
  assert.doesNotMatch(log, /at EncryptionCodec|Failed to process Workflow Activation|Failing workflow task/);
});

test('cancel of a run whose cancellation was requested already says so and records nothing again, with the key or without', async () => {
  // On a queue no worker serves, the run stays open after the request: it ends once a worker takes it.
  const r = await runCli(['submit', file, '--json'], { ...keyed, TEMPERED_TASK_QUEUE: 'keyless-nobody' });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const { runId } = JSON.parse(r.stdout) as { runId: string };
  const first = await runCli(['cancel', runId], env);
  assert.equal(first.code, 0, first.stdout + first.stderr);
  assert.match(first.stdout, new RegExp(`^cancellation requested for ${runId}; no worker has picked it up yet`));
  for (const e of [env, keyed]) {
    const again = await runCli(['cancel', runId], e);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, new RegExp(`^cancellation was requested already for ${runId}; no worker has picked it up yet`));
  }
  const trail = await runCli(['audit', '--run', runId, '--action', 'run.cancel_requested', '--json'], keyed);
  assert.equal((JSON.parse(trail.stdout) as unknown[]).length, 1, trail.stdout);
});

test('submit --wait without the key, of a run a keyed worker took, says which key to set without calling it the one the run was submitted with, and resume without the key resubmits its clear input', async () => {
  // The run goes to Temporal in clear (no key here); the worker encrypts what it writes: its stage's failure.
  const queue = { TEMPERED_TASK_QUEUE: 'keyless-keyed-worker' };
  const worker = await startCliWorker([], { ...keyed, ...queue });
  try {
    const r = await runCli(['submit', file, '--wait', '--no-local-worker'], { ...env, ...queue }, { timeoutMs: 180_000 });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(
      r.stderr,
      /this Temporal payload is encrypted \(key id [0-9a-f]{16}\) and this process has no key: set TEMPERED_PAYLOAD_KEY to the key it was encrypted with, the one tempered's workers and clients share/,
    );
    // This process submitted it, without a key: "the key the run was submitted with" sent its reader to look for none.
    assert.doesNotMatch(r.stderr, /submitted with/);
    // Its input is in clear, as this process wrote it: resumed without the key (only the worker's results are not).
    const runId = /^submitted run (\S+)/.exec(r.stdout)?.[1];
    assert.ok(runId, r.stdout);
    const resumed = await runCli(['resume', runId, '--json'], { ...env, ...queue });
    assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
    await runCli(['cancel', (JSON.parse(resumed.stdout) as { runId: string }).runId], env);
  } finally {
    await stopCliWorker(worker);
  }
});
