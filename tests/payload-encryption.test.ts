/**
 * TEMPERED_PAYLOAD_KEY end to end, through the real `tempered` command against a real dev server: a run submitted with
 * the key completes (client and in-process worker both encrypting), its history holds none of the secrets planted in
 * its params, read raw by a client without the codec and in the server's own SQLite files, while a client with the key
 * reads the input back; a process without the key, or with another, is told which key it lacks; a malformed key is
 * refused before anything connects. The spec file's text does not go to Temporal at all, with or without the key.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { runCli, startCliServer, startCliWorker, stopCliWorker } from './helpers/cli.ts';
import { getRunStatus, listRuns, runInput, type RunSummary } from '../client/runs.ts';
import { statePaths } from '../src/state-paths.ts';
import { testUiServer } from '../ui/dashboard.testing.ts';
import { temporalDataConverter } from '../infra/payload-codec.ts';

const FIX = fileURLToPath(new URL('./fixtures/', import.meta.url));
const TOKEN = 'SECRET123tok';
const SIGNATURE = 'SIG456deadbeef';
const SPEC = `name: enc
params:
  hf_token: { type: string, default: "" }
  source_url: { type: string, default: "" }
stages:
  ingest:
    uses: ingest
    with:
      path: tiny.jsonl
      task: classification
`;
const KEY = randomBytes(32).toString('base64');
/**
 * Planted in the only field of the only row of bad.jsonl: ingest's error quotes the fields the row has, so the stage's
 * failure message (and the run's, which quotes the stage's) carries it, as an error quoting a bad row's text would.
 */
const FAIL_SECRET = 'FAILSECRET789rowtext';
const FAIL_SPEC = `name: encfail
stages:
  ingest:
    uses: ingest
    with:
      path: bad.jsonl
      task: classification
`;

let cluster: Awaited<ReturnType<typeof startCliServer>>;
let env: Record<string, string>;
let file: string;
let failFile: string;
let connection: Connection;

before(async () => {
  cluster = await startCliServer('tempered-enc-');
  env = {
    TEMPORAL_ADDRESS: cluster.server.address,
    TEMPERED_HOME: cluster.home,
    TEMPERED_TASK_QUEUE: 'enc-test',
    TEMPERED_ACTOR: 'enc-tester',
  };
  file = join(cluster.home, 'enc.yaml');
  writeFileSync(file, SPEC);
  copyFileSync(join(FIX, 'tiny.jsonl'), join(cluster.home, 'tiny.jsonl'));
  failFile = join(cluster.home, 'encfail.yaml');
  writeFileSync(failFile, FAIL_SPEC);
  writeFileSync(join(cluster.home, 'bad.jsonl'), `{"${FAIL_SECRET}": "x"}\n`);
  connection = await Connection.connect({ address: cluster.server.address });
});
after(async () => {
  await connection?.close().catch(() => undefined);
  await cluster?.close();
});

async function submit(extra: Record<string, string>): Promise<string> {
  const params = ['--param', `hf_token=${TOKEN}`, '--param', `source_url=https://b.example/x.csv?X-Amz-Signature=${SIGNATURE}`];
  const r = await runCli(['submit', file, ...params, '--wait', '--local-worker', '--json'], { ...env, ...extra }, { timeoutMs: 180_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const st = JSON.parse(r.stdout) as { runId: string; state: string };
  assert.equal(st.state, 'succeeded');
  return st.runId;
}

/** A run of encfail.yaml, whose ingest fails quoting FAIL_SECRET: its id, once it has failed. */
async function submitFailing(extra: Record<string, string>): Promise<string> {
  const r = await runCli(['submit', failFile, '--wait', '--local-worker', '--json'], { ...env, ...extra }, { timeoutMs: 180_000 });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const st = JSON.parse(r.stdout) as { runId: string; state: string };
  assert.equal(st.state, 'failed');
  return st.runId;
}

/** The secrets of `secrets` that are in the dev server's own files (the history, the visibility store, the WAL). */
function inServerFiles(secrets: string[]): string[] {
  const db = cluster.server.dbFile!;
  const found: string[] = [];
  for (const f of [db, `${db}-wal`].filter(existsSync)) {
    const bytes = readFileSync(f);
    for (const secret of secrets) if (bytes.indexOf(secret) !== -1) found.push(`${secret} in ${f}`);
  }
  return found;
}

/** Every byte of the run's history as the server keeps it, read by a client without any codec. */
async function rawHistory(runId: string): Promise<Buffer> {
  const history = await new Client({ connection }).workflow.getHandle(runId).fetchHistory();
  return Buffer.from(proto.temporal.api.history.v1.History.encode(history).finish());
}

let encrypted: Promise<string> | undefined;
/** The run submitted with the key and its planted secrets, submitted once for the tests that read it. */
function encryptedRun(): Promise<string> {
  encrypted ??= submit({ TEMPERED_PAYLOAD_KEY: KEY });
  return encrypted;
}

test('with TEMPERED_PAYLOAD_KEY the run completes, and its history and the server database hold no planted secret', async () => {
  const runId = await encryptedRun();
  const raw = rawHistory(runId);
  for (const secret of [TOKEN, SIGNATURE, 'source_url', 'tiny.jsonl'])
    assert.equal((await raw).indexOf(secret), -1, `${secret} is in the raw history`);
  // The server's own files: the history, the visibility store (memo) and anything else it wrote.
  assert.deepEqual(inServerFiles([TOKEN, SIGNATURE]), []);

  // With the key, the input reads back, and the status and logs commands work.
  const input = await runInput(new Client({ connection, dataConverter: temporalDataConverter({ TEMPERED_PAYLOAD_KEY: KEY }) }), runId);
  assert.equal(input.plan.params.hf_token, TOKEN);
  const st = await runCli(['status', runId, '--json'], { ...env, TEMPERED_PAYLOAD_KEY: KEY });
  assert.equal(st.code, 0, st.stderr);
  assert.equal((JSON.parse(st.stdout) as { state: string }).state, 'succeeded');
  const logs = await runCli(['logs', runId], { ...env, TEMPERED_PAYLOAD_KEY: KEY });
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /stage-ingest.*\n.*completed/);

  // Without the key: what Temporal keeps in clear (state, times, the stages that ran), the rest marked, and one note
  // saying which key and which variable, not "Unknown encoding". With another key: its id is unknown.
  const noKey = await runCli(['status', runId], env);
  assert.equal(noKey.code, 0, noKey.stderr);
  assert.match(
    noKey.stdout,
    new RegExp(
      `^run ${runId}  pipeline \\(encrypted\\)  succeeded  by \\(encrypted\\)  started \\S+  ended \\S+\n.*ingest +ingest +succeeded`,
    ),
  );
  assert.match(noKey.stderr, /^note: .*encrypted \(key id [0-9a-f]{16}\) and this process has no key: set TEMPERED_PAYLOAD_KEY/);
  assert.equal(noKey.stderr.trim().split('\n').length, 1, noKey.stderr);
  const noKeyJson = JSON.parse((await runCli(['status', runId, '--json'], env)).stdout) as {
    state: string;
    params: object;
    encrypted?: string;
  };
  assert.deepEqual([noKeyJson.state, noKeyJson.params], ['succeeded', {}]);
  assert.match(noKeyJson.encrypted ?? '', /set TEMPERED_PAYLOAD_KEY/);
  const watched = await runCli(['status', runId, '--watch'], env);
  assert.equal(watched.code, 0, watched.stderr);
  assert.match(watched.stdout, /pipeline \(encrypted\)  succeeded/);
  const noKeyLogs = await runCli(['logs', runId], env);
  assert.equal(noKeyLogs.code, 0, noKeyLogs.stderr);
  assert.match(
    noKeyLogs.stdout,
    /run started\n.*scheduled  stage-ingest \(ingest on enc-test\)\n.*started  stage-ingest .*\n.*completed  stage-ingest .*\n.*run succeeded/,
  );
  assert.match(noKeyLogs.stderr, /^note: .*this process has no key: set TEMPERED_PAYLOAD_KEY/);
  for (const out of [noKey, noKeyJson, watched, noKeyLogs].map((r) => JSON.stringify(r)))
    for (const secret of [TOKEN, SIGNATURE, 'tiny.jsonl']) assert.equal(out.indexOf(secret), -1, `${secret} shown without the key`);
  const otherKey = await runCli(['status', runId], { ...env, TEMPERED_PAYLOAD_KEY: randomBytes(32).toString('hex') });
  assert.equal(otherKey.code, 0, otherKey.stderr);
  assert.match(otherKey.stderr, /encrypted with key id [0-9a-f]{16}, which is unknown here/);
  // The old key, kept for decryption after a rotation, still reads it.
  const rotated = await runCli(['status', runId, '--json'], {
    ...env,
    TEMPERED_PAYLOAD_KEY: randomBytes(32).toString('base64'),
    TEMPERED_PAYLOAD_KEYS_OLD: KEY,
  });
  assert.equal(rotated.code, 0, rotated.stderr);
});

test("with TEMPERED_PAYLOAD_KEY a stage's failure message is encrypted: status and logs read it with the key; without, they show it marked (encrypted) and resume is refused", async () => {
  const runId = await submitFailing({ TEMPERED_PAYLOAD_KEY: KEY });
  const raw = await rawHistory(runId);
  assert.equal(raw.indexOf(FAIL_SECRET), -1, `${FAIL_SECRET} is in the raw history`);
  // What the history keeps in its place: the failure converter's stand-in.
  assert.notEqual(raw.indexOf('Encoded failure'), -1, 'no failure was encoded');
  assert.deepEqual(inServerFiles([FAIL_SECRET]), []);

  // With the key, the stage's and the run's messages read as written: from the run's result, and from the history.
  const keyed = { ...env, TEMPERED_PAYLOAD_KEY: KEY };
  const st = await runCli(['status', runId, '--json'], keyed);
  assert.equal(st.code, 0, st.stderr);
  const ingest = (JSON.parse(st.stdout) as { stages: { id: string; error?: { message: string } }[] }).stages.find((s) => s.id === 'ingest');
  assert.match(ingest?.error?.message ?? '', new RegExp(FAIL_SECRET));
  const text = await runCli(['status', runId], keyed);
  assert.match(text.stdout, new RegExp(`ingest.*\\n?.*${FAIL_SECRET}`));
  const logs = await runCli(['logs', runId], keyed);
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, new RegExp(`failed  stage-ingest .*${FAIL_SECRET}`));
  assert.match(logs.stdout, new RegExp(`run failed  stage 'ingest' failed: .*${FAIL_SECRET}`));
  assert.doesNotMatch(st.stdout + text.stdout + logs.stdout, /Encoded failure/);

  // Without the key, status and logs show the failure where and when it happened, its message marked, and say once
  // which key; never the stand-in or the secret. Resume, which resubmits the run's input, needs the key: it is refused.
  const noKey = await runCli(['status', runId], env);
  assert.equal(noKey.code, 0, noKey.stderr);
  assert.match(noKey.stdout, /pipeline \(encrypted\)  failed  by \(encrypted\)/);
  assert.match(noKey.stdout, /ingest +ingest +failed .*\(not retried: input error\)  \(encrypted\)$/m);
  const noKeyLogs = await runCli(['logs', runId], env);
  assert.equal(noKeyLogs.code, 0, noKeyLogs.stderr);
  assert.match(
    noKeyLogs.stdout,
    /failed  stage-ingest \(ingest on enc-test\)  \(encrypted\)  not retried: non-retryable\n.*run failed  \(encrypted\)$/m,
  );
  // --watch of a failed run exits as `submit --wait` does.
  assert.equal((await runCli(['status', runId, '--watch'], env)).code, 1);
  const resume = await runCli(['resume', runId], env);
  assert.equal(resume.code, 1, resume.stdout + resume.stderr);
  assert.match(resume.stderr, /encrypted \(key id [0-9a-f]{16}\) and this process has no key: set TEMPERED_PAYLOAD_KEY/);
  for (const r of [noKey, noKeyLogs]) assert.match(r.stderr, /^note: .*set TEMPERED_PAYLOAD_KEY/);
  for (const r of [noKey, noKeyLogs, resume]) assert.doesNotMatch(r.stdout + r.stderr, new RegExp(`Encoded failure|${FAIL_SECRET}`));

  // The dashboard's run page without the key shows what `status` does (it answered 500 with the codec's error).
  const uiHome = mkdtempSync(join(tmpdir(), 'tempered-enc-ui-'));
  const ui = await testUiServer(statePaths(uiHome), 'tok', new Client({ connection, dataConverter: temporalDataConverter({}) }));
  try {
    const base = await ui.listen(0, '127.0.0.1');
    const get = (path: string) => fetch(`${base}${path}`, { headers: { authorization: 'Bearer tok' } });
    const page = await get(`/api/runs/${runId}`);
    const text = await page.text();
    assert.equal(page.status, 200, text);
    const view = JSON.parse(text) as {
      status: {
        name: string;
        state: string;
        actor: string;
        encrypted?: string;
        stages: { id: string; state: string; error?: { message: string } }[];
      };
      temporalStatus: string;
    };
    assert.deepEqual(
      [view.status.name, view.status.state, view.status.actor, view.temporalStatus],
      ['(encrypted)', 'failed', '(encrypted)', 'FAILED'],
    );
    assert.deepEqual(
      view.status.stages.map((s) => [s.id, s.state, s.error?.message]),
      [['ingest', 'failed', '(encrypted)']],
    );
    assert.match(view.status.encrypted ?? '', /key id [0-9a-f]{16}\) and this process has no key: set TEMPERED_PAYLOAD_KEY/);
    const curves = await get(`/api/runs/${runId}/curves`);
    assert.equal(curves.status, 200, await curves.clone().text());
    assert.deepEqual(await curves.json(), { stages: {}, states: {} });
    assert.doesNotMatch(text, new RegExp(`Encoded failure|${FAIL_SECRET}|bad\\.jsonl`));
    // Resume resubmits the run's input, which only the key reads: refused saying so (it answered 500).
    const resumed = await fetch(`${base}/api/runs/${runId}/resume`, { method: 'POST', headers: { authorization: 'Bearer tok' } });
    const refusal = (await resumed.json()) as { error: string; hint: string };
    assert.equal(resumed.status, 409, JSON.stringify(refusal));
    assert.match(
      refusal.error,
      new RegExp(`^resuming run ${runId} needs the key its input was encrypted with: .*set TEMPERED_PAYLOAD_KEY`),
    );
    assert.match(refusal.hint, /TEMPERED_PAYLOAD_KEY/);
  } finally {
    await ui.close();
    rmSync(uiHome, { recursive: true, force: true });
  }
});

test('without the key, `tempered runs` and the dashboard list an encrypted run, its memo fields marked encrypted', async () => {
  const runId = await encryptedRun();
  const text = await runCli(['runs', '--limit', '100'], env);
  assert.equal(text.code, 0, text.stderr);
  // The pipeline's name is in the TemperedPipeline search attribute (tempered's dev server registers it), never
  // encrypted; the memo's fields (who ran it, its params) are.
  assert.match(text.stdout, new RegExp(`^${runId} +enc +COMPLETED +\\d{4}-`, 'm'));
  // One note, naming the key id and the variable.
  assert.match(text.stderr, /^note: \d+ run\(s\) listed as \(encrypted\).*encrypted \(key id [0-9a-f]{16}\).*set TEMPERED_PAYLOAD_KEY/m);
  assert.equal(text.stderr.trim().split('\n').length, 1, text.stderr);
  const json = await runCli(['runs', '--json', '--limit', '100'], env);
  assert.equal(json.code, 0, json.stderr);
  const listed = (JSON.parse(json.stdout) as RunSummary[]).find((r) => r.runId === runId);
  assert.equal(listed?.pipeline, 'enc');
  assert.equal(listed?.status, 'COMPLETED');
  assert.ok(listed?.closeTime, 'no close time');
  assert.equal(listed?.actor, undefined);
  assert.match(listed?.memoEncrypted ?? '', /set TEMPERED_PAYLOAD_KEY/);

  // The dashboard's Runs list reads the same listing.
  const uiHome = mkdtempSync(join(tmpdir(), 'tempered-enc-ui-'));
  const ui = await testUiServer(statePaths(uiHome), 'tok', new Client({ connection, dataConverter: temporalDataConverter({}) }));
  try {
    const res = await fetch(`${await ui.listen(0, '127.0.0.1')}/api/runs?limit=100`, { headers: { authorization: 'Bearer tok' } });
    assert.equal(res.status, 200, await res.clone().text());
    const run = ((await res.json()) as { runs: RunSummary[] }).runs.find((r) => r.runId === runId);
    assert.equal(run?.pipeline, 'enc');
    assert.match(run?.memoEncrypted ?? '', /set TEMPERED_PAYLOAD_KEY/);
  } finally {
    await ui.close();
    rmSync(uiHome, { recursive: true, force: true });
  }

  // A listing is two list requests (the running runs, the ended ones: listRuns), whether every memo reads or some
  // cannot be decrypted (it listed again on meeting one: twice as many for a one-shot `tempered runs` without the key).
  const counted = await Connection.connect({ address: cluster.server.address });
  try {
    let requests = 0;
    const service = counted.workflowService;
    const list = service.listWorkflowExecutions.bind(service);
    service.listWorkflowExecutions = ((request: Parameters<typeof list>[0]) => (requests++, list(request))) as typeof list;
    const withKey = new Client({ connection: counted, dataConverter: temporalDataConverter({ TEMPERED_PAYLOAD_KEY: KEY }) });
    assert.equal((await listRuns(withKey, 100)).find((r) => r.runId === runId)?.pipeline, 'enc');
    assert.equal(requests, 2, 'list requests for a listing whose memos all read');
    const keyless = new Client({ connection: counted, dataConverter: temporalDataConverter({}) });
    assert.equal((await listRuns(keyless, 100)).find((r) => r.runId === runId)?.pipeline, 'enc');
    assert.equal(requests, 2 + 2, 'list requests for a first listing without the key');
    for (let i = 0; i < 2; i++) assert.equal((await listRuns(keyless, 100)).find((r) => r.runId === runId)?.pipeline, 'enc');
    assert.equal(requests, 2 + 3 * 2, 'list requests for three listings without the key');
  } finally {
    await counted.close();
  }

  // With the key, as ever.
  const keyed = await runCli(['runs', '--limit', '100'], { ...env, TEMPERED_PAYLOAD_KEY: KEY });
  assert.match(keyed.stdout, new RegExp(`^${runId} +enc +COMPLETED .* enc-tester`, 'm'));
  assert.equal(keyed.stderr, '');
});

test("the dashboard's run page, its curves and `status` describe the run once, with the key or without (twice on a keyless process's first read)", async () => {
  const runId = await encryptedRun();
  // Counted on the real connection the clients share: every describe request the server gets, whether it read or not.
  const counted = await Connection.connect({ address: cluster.server.address });
  let describes = 0;
  const service = counted.workflowService;
  const describe = service.describeWorkflowExecution.bind(service);
  service.describeWorkflowExecution = ((request: Parameters<typeof describe>[0]) => (describes++, describe(request))) as typeof describe;
  const uiHome = mkdtempSync(join(tmpdir(), 'tempered-enc-ui-'));
  // `firstCost`: a keyless process's first read describes through its client (refused: the memo is encrypted), then
  // through listingClient; every later read of the run goes to listingClient alone.
  const pageOf = async (client: Client, paths: string[], firstCost = 1) => {
    const ui = await testUiServer(statePaths(uiHome), 'tok', client);
    try {
      const base = await ui.listen(0, '127.0.0.1');
      const out: { status: { name: string; state: string; stages: { id: string }[] }; temporalStatus: string }[] = [];
      for (const [i, path] of paths.entries()) {
        const before = describes;
        const res = await fetch(`${base}${path}`, { headers: { authorization: 'Bearer tok' } });
        assert.equal(res.status, 200, await res.clone().text());
        if (!path.endsWith('/curves')) out.push((await res.json()) as (typeof out)[number]);
        assert.equal(describes - before, i === 0 ? firstCost : 1, `describe requests for ${path} (read ${i + 1})`);
      }
      return out;
    } finally {
      await ui.close();
    }
  };
  try {
    const page = `/api/runs/${runId}`;
    const [keyed] = await pageOf(new Client({ connection: counted, dataConverter: temporalDataConverter({ TEMPERED_PAYLOAD_KEY: KEY }) }), [
      page,
      `${page}/curves`,
    ]);
    assert.deepEqual([keyed?.status.name, keyed?.temporalStatus], ['enc', 'COMPLETED']);
    // Without the key: one describe a read once the first has found the memo encrypted (the dashboard polls the page).
    const keyless = await pageOf(
      new Client({ connection: counted, dataConverter: temporalDataConverter({}) }),
      [page, `${page}/curves`, page],
      2,
    );
    for (const view of keyless)
      assert.deepEqual(
        [view.status.name, view.status.state, view.temporalStatus, view.status.stages.map((s) => s.id)],
        ['(encrypted)', 'succeeded', 'COMPLETED', ['ingest']],
      );
    // `tempered status` without the key: two describes on its first read, one on each next (--watch).
    const statusClient = new Client({ connection: counted, dataConverter: temporalDataConverter({}) });
    for (let i = 0; i < 3; i++) {
      const before = describes;
      assert.equal((await getRunStatus(statusClient, runId, { showClear: true })).name, '(encrypted)');
      assert.equal(describes - before, i === 0 ? 2 : 1, `describe requests for a status without the key (read ${i + 1})`);
    }
  } finally {
    await counted.close();
    rmSync(uiHome, { recursive: true, force: true });
  }
});

test('without the key, status says where an encrypted run waits, and cancel stops it: neither needs its payloads', async () => {
  // Submitted with the key to a queue no worker serves, so it is still running when cancelled.
  const r = await runCli(['submit', file, '--json'], { ...env, TEMPERED_TASK_QUEUE: 'enc-nobody', TEMPERED_PAYLOAD_KEY: KEY });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const { runId } = JSON.parse(r.stdout) as { runId: string };
  // Its status without the key says where it waits, as with it.
  const st = await runCli(['status', runId], env);
  assert.equal(st.code, 0, st.stderr);
  assert.match(
    st.stdout,
    /pipeline \(encrypted\)  running .*\nwaiting: no worker has picked this run up yet; it starts when a worker serving task queue 'enc-nobody' runs/,
  );
  const c = await runCli(['cancel', runId], { ...env, TEMPERED_TASK_QUEUE: 'enc-nobody' });
  assert.equal(c.code, 0, c.stdout + c.stderr);
  // Whether a worker took it is read from the event types of its encrypted history: none has.
  assert.match(c.stdout, new RegExp(`cancellation requested for ${runId}; no worker has picked it up yet, so it ends`));
  // Read without any codec: the server's own record of the request.
  const history = await new Client({ connection }).workflow.getHandle(runId).fetchHistory();
  assert.ok(
    history.events?.some((e) => e.workflowExecutionCancelRequestedEventAttributes),
    'no cancel request in the history',
  );

  // The dashboard's Cancel button, without the key, as `tempered cancel` (it answered 500 with the codec's error).
  const again = await runCli(['submit', file, '--json'], { ...env, TEMPERED_TASK_QUEUE: 'enc-nobody', TEMPERED_PAYLOAD_KEY: KEY });
  const other = (JSON.parse(again.stdout) as { runId: string }).runId;
  const uiHome = mkdtempSync(join(tmpdir(), 'tempered-enc-ui-'));
  const ui = await testUiServer(statePaths(uiHome), 'tok', new Client({ connection, dataConverter: temporalDataConverter({}) }));
  try {
    const res = await fetch(`${await ui.listen(0, '127.0.0.1')}/api/runs/${other}/cancel`, {
      method: 'POST',
      headers: { authorization: 'Bearer tok' },
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { cancelled: true });
  } finally {
    await ui.close();
    rmSync(uiHome, { recursive: true, force: true });
  }
  const otherHistory = await new Client({ connection }).workflow.getHandle(other).fetchHistory();
  assert.ok(
    otherHistory.events?.some((e) => e.workflowExecutionCancelRequestedEventAttributes),
    'the dashboard requested no cancel',
  );
});

test('without the key, schedule list and describe show an encrypted schedule from what Temporal keeps in clear; pause, unpause and trigger work and are audited; update and delete are refused, saying why', async () => {
  const keyed = { ...env, TEMPERED_PAYLOAD_KEY: KEY, TEMPERED_TASK_QUEUE: 'enc-sched' };
  const made = await runCli(['schedule', 'create', 'encsched', '--pipeline', failFile, '--cron', '15 4 * * *'], keyed);
  assert.equal(made.code, 0, made.stdout + made.stderr);
  // Runs of it, failing with FAIL_SECRET in its error, by a worker with the key.
  const worker = await startCliWorker(['--queue', 'enc-sched'], keyed);
  try {
    const fired = await runCli(['schedule', 'trigger', 'encsched'], keyed);
    assert.equal(fired.code, 0, fired.stdout + fired.stderr);
    const runId = /run (\S+)/.exec(fired.stdout)?.[1];
    assert.ok(runId, fired.stdout);
    assert.equal((await runCli(['status', runId, '--watch'], keyed, { timeoutMs: 180_000 })).code, 1);
    // Triggered without the key, the server starts the run from the encrypted action as it is: a worker with the key
    // reads its input and runs it (its stage fails quoting the row, read back with the key).
    const keyless = await runCli(['schedule', 'trigger', 'encsched'], env);
    assert.equal(keyless.code, 0, keyless.stdout + keyless.stderr);
    const keylessRun = /run (\S+)/.exec(keyless.stdout)?.[1];
    assert.ok(keylessRun, keyless.stdout);
    assert.equal((await runCli(['status', keylessRun, '--watch'], keyed, { timeoutMs: 180_000 })).code, 1);
    const ran = await runCli(['status', keylessRun], keyed);
    assert.match(ran.stdout, new RegExp(`pipeline encfail  failed  by enc-tester[\\s\\S]*ingest +ingest +failed .*${FAIL_SECRET}`));
  } finally {
    await stopCliWorker(worker);
  }
  const withKey = await runCli(['schedule', 'describe', 'encsched'], keyed);
  assert.match(withKey.stdout, new RegExp(`failed: stage 'ingest' failed: .*${FAIL_SECRET}`));

  const list = await runCli(['schedule', 'list'], env);
  assert.equal(list.code, 0, list.stderr);
  assert.match(
    list.stdout,
    /^encsched +\(encrypted\) +\(encrypted\) +cron 15 4 \* \* \* +next \S+  last failed \S+ \(2 in a row\): \(encrypted\)$/m,
  );
  assert.match(list.stderr, /^note: .*set TEMPERED_PAYLOAD_KEY/);
  assert.equal(list.stderr.trim().split('\n').length, 1, list.stderr);
  const described = await runCli(['schedule', 'describe', 'encsched'], env);
  assert.equal(described.code, 0, described.stderr);
  for (const line of [
    /^  pipeline    \(encrypted\), spec \(encrypted\)$/m,
    /^  params      \(encrypted\)$/m,
    /^  when        cron "15 4 \* \* \*" \(UTC\), overlap skip/m,
    /^  gate        \(encrypted\)$/m,
    /^  queue       enc-sched   actor \(encrypted\)$/m,
    /^  actions     2 taken/m,
    /^    encsched-\S+ +failed: \(encrypted\)$/m,
  ])
    assert.match(described.stdout, line);
  assert.equal(described.stderr.trim().split('\n').length, 1, described.stderr);
  const json = JSON.parse((await runCli(['schedule', 'describe', 'encsched', '--json'], env)).stdout) as { encrypted?: string };
  assert.match(json.encrypted ?? '', /set TEMPERED_PAYLOAD_KEY/);
  for (const r of [list, described])
    assert.doesNotMatch(r.stdout + r.stderr, new RegExp(`Encoded failure|${FAIL_SECRET}|bad\\.jsonl|encfail`));
  // Writing the definition back needs the key: without it the action would go to Temporal in clear. Deleting needs it
  // for its audit record, which keeps what the schedule ran. Each says why, and what works without the key.
  const update = await runCli(['schedule', 'update', 'encsched', '--every', '2d'], env);
  assert.equal(update.code, 1, update.stdout + update.stderr);
  assert.match(
    update.stderr,
    /^tempered: schedule update 'encsched' needs the key the schedule was encrypted with: it writes the schedule's definition back, which without the key would go to Temporal unencrypted; .*set TEMPERED_PAYLOAD_KEY.*\n  hint: pause, unpause, trigger and backfill work without the key/,
  );
  const deleted = await runCli(['schedule', 'delete', 'encsched'], env);
  assert.equal(deleted.code, 1, deleted.stdout + deleted.stderr);
  assert.match(
    deleted.stderr,
    /schedule delete 'encsched' needs the key .*: the audit record of a deletion keeps the pipeline and spec .*set TEMPERED_PAYLOAD_KEY/,
  );
  // Pausing, unpausing and triggering write no payload (Temporal keeps the action as it is): they work without the
  // key, and the trail records who did each, saying which key the spec hash could not be read without.
  const pause = await runCli(['schedule', 'pause', 'encsched', '--note', 'on call'], env);
  assert.equal(pause.code, 0, pause.stdout + pause.stderr);
  assert.match(pause.stdout, /^paused schedule 'encsched' \(note: on call\)$/m);
  assert.match((await runCli(['schedule', 'describe', 'encsched'], env)).stdout, /^schedule encsched: PAUSED \(note: on call\)$/m);
  const fired = await runCli(['schedule', 'trigger', 'encsched'], env);
  assert.equal(fired.code, 0, fired.stdout + fired.stderr);
  const firedRun = /run (\S+)/.exec(fired.stdout)?.[1];
  assert.ok(firedRun, fired.stdout);
  // Started by the server from the encrypted action: its status, without the key, is what is in clear.
  assert.match((await runCli(['status', firedRun], env)).stdout, /pipeline \(encrypted\)  running/);
  assert.equal((await runCli(['cancel', firedRun], env)).code, 0);
  const unpause = await runCli(['schedule', 'unpause', 'encsched'], env);
  assert.equal(unpause.code, 0, unpause.stdout + unpause.stderr);
  assert.match((await runCli(['schedule', 'describe', 'encsched'], env)).stdout, /^schedule encsched: active/);
  // The dashboard's spec panel of the schedule says why it has no file to show (it answered 500 with the codec's error).
  const uiHome = mkdtempSync(join(tmpdir(), 'tempered-enc-ui-'));
  const ui = await testUiServer(statePaths(uiHome), 'tok', new Client({ connection, dataConverter: temporalDataConverter({}) }));
  try {
    const base = await ui.listen(0, '127.0.0.1');
    // Its Pause, Resume and Run now buttons work without the key, as the CLI's (they answered 500 with the codec's error).
    for (const op of ['pause', 'trigger', 'unpause']) {
      const res = await fetch(`${base}/api/schedules/encsched/${op}`, {
        method: 'POST',
        headers: { authorization: 'Bearer tok', 'content-type': 'application/json' },
        body: JSON.stringify(op === 'pause' ? { note: 'from the dashboard' } : {}),
      });
      assert.equal(res.status, 200, `${op}: ${await res.text()}`);
    }
    const uiEnv = { ...env, TEMPERED_HOME: uiHome };
    for (const [action, details] of [
      ['schedule.paused', { note: 'from the dashboard', via: 'ui' }],
      ['schedule.triggered', { via: 'ui' }],
      ['schedule.unpaused', { via: 'ui' }],
    ] as const) {
      const [rec, ...more] = JSON.parse((await runCli(['audit', '--action', action, '--json'], uiEnv)).stdout) as {
        specHash?: string;
        details: Record<string, unknown>;
      }[];
      assert.equal(more.length, 0, action);
      assert.deepEqual([rec?.specHash, rec?.details.note, rec?.details.via], [undefined, details.note, details.via], action);
      assert.match(String(rec?.details.encrypted), /set TEMPERED_PAYLOAD_KEY/, action);
    }
    // Records without a spec hash keep the chain whole, and `audit` shows them.
    const verified = await runCli(['audit', '--verify'], uiEnv);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    const shown = await runCli(['audit'], uiEnv);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /schedule\.paused +encsched/);
    assert.doesNotMatch(shown.stdout, /undefined|spec \(encrypted/);
    // A run's spec panel, for a run this dashboard's trail has no record of and Temporal has (it answered 404 with the
    // codec's error, as if Temporal did not have it).
    const spec = await fetch(`${base}/api/runs/${firedRun}/spec`, { headers: { authorization: 'Bearer tok' } });
    const specText = await spec.text();
    assert.equal(spec.status, 200, specText);
    assert.match((JSON.parse(specText) as { missing: string }).missing, /^not recorded: the audit trail has no record of run /);
    const res = await fetch(`${base}/api/schedules/encsched/spec`, { headers: { authorization: 'Bearer tok' } });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    const view = JSON.parse(text) as { pipeline: string; missing?: string; text?: string };
    assert.equal(view.pipeline, '(encrypted)');
    assert.match(
      view.missing ?? '',
      /^the spec file of schedule encsched is named in its definition, which is encrypted: .*set TEMPERED_PAYLOAD_KEY/,
    );
    assert.doesNotMatch(text, /encfail|bad\.jsonl/);
  } finally {
    await ui.close();
    rmSync(uiHome, { recursive: true, force: true });
  }
  for (const [action, details] of [
    ['schedule.paused', { note: 'on call' }],
    ['schedule.triggered', { runId: firedRun }],
    ['schedule.unpaused', {}],
  ] as const) {
    const records = JSON.parse((await runCli(['audit', '--action', action, '--json'], env)).stdout) as {
      subject: string;
      actor: string;
      specHash?: string;
      details: Record<string, unknown>;
    }[];
    // The trigger made with the key above has its own record: each is found by what it did.
    const rec = records.find((r) => r.subject === 'encsched' && Object.entries(details).every(([k, v]) => r.details[k] === v));
    assert.ok(rec, `no ${action} record`);
    assert.deepEqual([rec.actor, rec.specHash], ['enc-tester', undefined], action);
    assert.match(String(rec.details.encrypted), /set TEMPERED_PAYLOAD_KEY/, action);
  }
  const verified = await runCli(['audit', '--verify'], env);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);

  // An interval is read back as such; a spec changed outside tempered (a second timing) is not shown as one of its parts.
  assert.equal((await runCli(['schedule', 'update', 'encsched', '--every', '2d'], keyed)).code, 0);
  assert.match((await runCli(['schedule', 'describe', 'encsched'], env)).stdout, /^  when        every 2d, overlap skip/m);
  const withCodec = new Client({ connection, dataConverter: temporalDataConverter({ TEMPERED_PAYLOAD_KEY: KEY }) });
  await withCodec.schedule
    .getHandle('encsched')
    .update((prev) => ({ ...prev, spec: { ...prev.spec, calendars: [{ hour: 5, minute: 30 }] } }));
  const outside = await runCli(['schedule', 'describe', 'encsched'], env);
  assert.match(outside.stdout, /^  when        not one cron or interval \(temporal schedule describe shows it\), overlap skip/m);
  assert.doesNotMatch(outside.stdout, /every 2d|undefined/);
});

test('a run submitted before the key was set still reads with it; the spec text never goes to Temporal', async () => {
  const runId = await submit({});
  const input = await runInput(new Client({ connection, dataConverter: temporalDataConverter({ TEMPERED_PAYLOAD_KEY: KEY }) }), runId);
  assert.equal(input.plan.params.hf_token, TOKEN);
  assert.equal(input.options.specText, undefined, 'the spec text is in the run input');
  assert.equal((await rawHistory(runId)).indexOf('stages:\n  ingest:'), -1, 'the spec text is in the history');
  const st = await runCli(['status', runId, '--json'], { ...env, TEMPERED_PAYLOAD_KEY: KEY });
  assert.equal(st.code, 0, st.stderr);
  // A failure recorded in clear reads as it is.
  const failed = await runCli(['logs', await submitFailing({})], { ...env, TEMPERED_PAYLOAD_KEY: KEY });
  assert.match(failed.stdout, new RegExp(`run failed  stage 'ingest' failed: .*${FAIL_SECRET}`));
  // The audit trail keeps the text, as it did.
  const audit = await runCli(['audit', '--run', runId, '--json'], env);
  const submitted = (JSON.parse(audit.stdout) as { action: string; details: { spec?: { text: string } } }[]).find(
    (r) => r.action === 'run.submitted',
  );
  assert.match(submitted?.details.spec?.text ?? '', /^name: enc\n/);
});

test('a malformed TEMPERED_PAYLOAD_KEY is refused before connecting, naming the variable and how to make a key', async () => {
  // An address nothing listens on: the key's error comes first, not "cannot reach Temporal".
  const r = await runCli(['status', 'any'], { ...env, TEMPORAL_ADDRESS: '127.0.0.1:1', TEMPERED_PAYLOAD_KEY: 'hunter2' });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^tempered: TEMPERED_PAYLOAD_KEY is not 32 bytes as base64 .*openssl rand -base64 32/);
  // Without TEMPORAL_ADDRESS, a command that starts the local dev server (resume) is refused before starting one,
  // which the error would have left running.
  const home = mkdtempSync(join(tmpdir(), 'tempered-enc-nokey-'));
  try {
    const local = await runCli(['resume', 'any'], {
      TEMPERED_HOME: home,
      TEMPORAL_ADDRESS: '',
      TEMPERED_DEV_PORT: String(20000 + Math.floor(Math.random() * 20000)),
      TEMPERED_PAYLOAD_KEY: 'hunter2',
    });
    assert.equal(local.code, 1, local.stderr);
    assert.match(local.stderr, /^tempered: TEMPERED_PAYLOAD_KEY is not 32 bytes as base64 /);
    assert.doesNotMatch(local.stderr, /dev server/);
    assert.deepEqual(readdirSync(home), []);
  } finally {
    // A dev server the command did start would outlive it: stopped here, so a failing run leaves none behind.
    const started = join(home, 'temporal', 'server.json');
    if (existsSync(started)) process.kill((JSON.parse(readFileSync(started, 'utf8')) as { pid: number }).pid);
    rmSync(home, { recursive: true, force: true });
  }
});
