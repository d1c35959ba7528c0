/**
 * A hyperparameter search from the command line, against a real dev server: `submit --sweep` with a parameter given
 * more than once submits one run per combination of values (without a worker the runs wait, and what each was
 * submitted with is read back from Temporal); with `--wait` they run one after another in the CLI's worker, and
 * `runs --compare` puts the trials side by side.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { getRunStatus, runInput } from '../client/runs.ts';
import { tableFromIPC } from 'apache-arrow';
import { isArtifactRef } from '../src/types.ts';
import { writeE2EPipeline } from './helpers/e2e-fixture.ts';
import { runCli, startCliServer } from './helpers/cli.ts';

let dir: string;
let file: string;
let cluster: Awaited<ReturnType<typeof startCliServer>>;
let connection: Connection;
let client: Client;
let env: Record<string, string>;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tempered-sweep-'));
  // The e2e pipeline with its learning rate and LoRA rank as parameters, as a user makes them to sweep them.
  file = writeE2EPipeline(dir, { epochs: 1, rows: 120 });
  const text = readFileSync(file, 'utf8')
    .replace('params:\n', 'params:\n  lr: { type: number, default: 0.02 }\n  r: { type: integer, default: 4 }\n')
    .replace('lr: 0.02', 'lr: ${{ params.lr }}')
    .replace('r: 4\n', 'r: ${{ params.r }}\n');
  for (const name of ['lr', 'r']) assert.match(text, new RegExp(`\\n\\s+${name}: \\$\\{\\{ params\\.${name} \\}\\}\\n`));
  writeFileSync(file, text);
  cluster = await startCliServer('tempered-sweep-server-');
  connection = await Connection.connect({ address: cluster.server.address });
  client = new Client({ connection });
  env = { TEMPERED_HOME: join(dir, 'home'), TEMPORAL_ADDRESS: cluster.server.address, TEMPERED_TASK_QUEUE: 'sweep-nobody' };
});
after(async () => {
  await connection?.close();
  await cluster?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('submit --sweep', () => {
  it('submits one run per combination of the values given, each with its own parameters', async () => {
    const r = await runCli(
      ['submit', file, '--sweep', '--param', 'lr=0.01', '--param', 'lr=0.05', '--param', 'r=2', '--param', 'r=8'],
      env,
    );
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const ids = [...r.stdout.matchAll(/submitted run (\S+)/g)].map((m) => m[1]!);
    assert.equal(ids.length, 4, r.stdout);
    assert.equal(new Set(ids).size, 4);
    // Each run is announced with what varies, and the command ends with the way to compare them.
    assert.match(r.stdout, /run 1 of 4: lr=0\.01 r=2\n/);
    assert.match(r.stdout, /run 4 of 4: lr=0\.05 r=8\n/);
    assert.match(r.stdout, new RegExp(`compare them: tempered runs --compare ${ids.join(' ')}`));
    // The e2e pipeline deploys behind a gate: the sweep says that trials promote as they end, and how to choose instead.
    assert.match(
      r.stderr,
      /note: every run of the sweep goes through stage deploy: each trial that passes its gate moves e2e-clf@production as it ends, the last to pass keeps it, not the best; .*--param gate=false/,
    );
    const params = await Promise.all(ids.map(async (id) => (await runInput(client, id)).plan.params));
    assert.deepEqual(
      params.map((p) => [p.lr, p.r, p.seed]),
      [
        [0.01, 2, 3],
        [0.01, 8, 3],
        [0.05, 2, 3],
        [0.05, 8, 3],
      ],
    );
    // tempered runs tells the trials apart by their parameters (visibility lists a run a moment after it starts).
    let listed: { runId: string; params?: Record<string, unknown> }[] = [];
    for (let i = 0; i < 50 && !ids.every((id) => listed.some((l) => l.runId === id)); i++) {
      if (i) await new Promise((res) => setTimeout(res, 200));
      listed = JSON.parse((await runCli(['runs', '--json'], env)).stdout) as typeof listed;
    }
    assert.deepEqual(
      ids.map((id) => listed.find((l) => l.runId === id)?.params),
      params,
    );
    const text = await runCli(['runs'], env);
    assert.match(text.stdout, new RegExp(`${ids[3]} .*  lr=0\\.05 r=8 seed=3\\n`));
    for (const id of ids) await client.workflow.getHandle(id).terminate('test done');
  });

  it('says nothing of promotion when every trial has gate false', async () => {
    const gated = join(dir, 'gated.yaml');
    writeFileSync(
      gated,
      readFileSync(file, 'utf8')
        .replace('params:\n', 'params:\n  gate: { type: string, default: "f1_macro >= 0.8" }\n')
        .replace(/gate: ".*"/, 'gate: ${{ params.gate }}'),
    );
    const r = await runCli(['submit', gated, '--sweep', '--param', 'lr=0.01', '--param', 'lr=0.05', '--param', 'gate=false'], env);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.doesNotMatch(r.stderr, /goes through stage deploy/);
    const ids = [...r.stdout.matchAll(/submitted run (\S+)/g)].map((m) => m[1]!);
    assert.equal(ids.length, 2);
    for (const id of ids) await client.workflow.getHandle(id).terminate('test done');
  });

  it('--json prints one JSON document, an array with one entry per trial, with and without --wait', async () => {
    // Ingest alone: the trials end in seconds in the CLI's worker.
    const small = join(dir, 'small.yaml');
    writeFileSync(
      small,
      'name: sweep-json\nparams:\n  data: { type: string, default: a.jsonl }\nstages:\n  ingest:\n    uses: ingest\n    with:\n      path: ${{ params.data }}\n      task: classification\n',
    );
    for (const f of ['a', 'b'])
      writeFileSync(join(dir, `${f}.jsonl`), `{"text":"${f} one","label":"x"}\n{"text":"${f} two","label":"y"}\n`);
    const sweep = ['submit', small, '--sweep', '--param', 'data=a.jsonl', '--param', 'data=b.jsonl', '--json'];
    const submitted = await runCli(sweep, env);
    assert.equal(submitted.code, 0, submitted.stdout + submitted.stderr);
    const queued = JSON.parse(submitted.stdout) as { runId: string }[];
    assert.equal(queued.length, 2, submitted.stdout);
    for (const q of queued) await client.workflow.getHandle(q.runId).terminate('test done');
    const waited = await runCli(
      [...sweep, '--wait', '--local-worker'],
      { ...env, TEMPERED_TASK_QUEUE: 'sweep-json' },
      { timeoutMs: 120_000 },
    );
    assert.equal(waited.code, 0, waited.stdout + waited.stderr);
    const ended = JSON.parse(waited.stdout) as { runId: string; state: string; params: { data: string } }[];
    assert.deepEqual(
      ended.map((r) => [r.state, r.params.data]),
      [
        ['succeeded', 'a.jsonl'],
        ['succeeded', 'b.jsonl'],
      ],
    );
  });

  it('plans every combination first: one bad value submits nothing', async () => {
    const r = await runCli(['submit', file, '--sweep', '--param', 'lr=0.01', '--param', 'lr=fast'], env);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(r.stderr, /--param lr must be a number, got 'fast'/);
    assert.doesNotMatch(r.stdout, /submitted run/);
  });

  it('without --sweep a repeated parameter is an error that names --sweep; --sweep with nothing repeated is one too', async () => {
    const twice = await runCli(['submit', file, '--param', 'lr=0.01', '--param', 'lr=0.05'], env);
    assert.equal(twice.code, 2);
    assert.match(twice.stderr, /parameter 'lr' is given more than once\n\s+hint: .*submit with --sweep/);
    const once = await runCli(['submit', file, '--sweep', '--param', 'lr=0.01'], env);
    assert.equal(once.code, 2);
    assert.match(once.stderr, /--sweep runs once per value of a parameter given more than once, and none is/);
    for (const out of [twice.stdout, once.stdout]) assert.doesNotMatch(out, /submitted run/);
  });

  it('with --wait runs the trials one after another; runs --compare shows them side by side and names the best on validation', async () => {
    const local = { ...env, TEMPERED_TASK_QUEUE: 'sweep-local' };
    const r = await runCli(['submit', file, '--sweep', '--param', 'lr=0.002', '--param', 'lr=0.05', '--wait', '--local-worker'], local, {
      timeoutMs: 600_000,
    });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /2 runs submitted, 2 succeeded/);
    const ids = [...r.stdout.matchAll(/submitted run (\S+)/g)].map((m) => m[1]!);
    const statuses = await Promise.all(ids.map((id) => getRunStatus(client, id)));
    // One after another: the second started after the first ended, and took ingest from its cache.
    assert.ok(Date.parse(statuses[1]!.startedAt) >= Date.parse(statuses[0]!.endedAt!));
    assert.equal(statuses[1]!.stages.find((s) => s.id === 'ingest')!.state, 'cached');

    const json = await runCli(['runs', '--compare', ...ids, '--json'], local);
    assert.equal(json.code, 0, json.stderr);
    const cmp = JSON.parse(json.stdout) as {
      runs: { runId: string }[];
      params: { name: string; values: unknown[] }[];
      rows: { name: string; values: number[]; best?: number }[];
      flags: { name: string; values: boolean[] }[];
      bestOnValidation?: { metric: string; run: number };
    };
    assert.deepEqual(
      cmp.runs.map((x) => x.runId),
      ids,
    );
    assert.deepEqual(cmp.params, [{ name: 'lr', values: [0.002, 0.05] }]);
    const row = (name: string) => cmp.rows.find((x) => x.name === name);
    // The numeric outputs as the runs report them, and the validation at the end of training from each history.
    for (const name of ['f1_macro', 'accuracy'])
      assert.deepEqual(
        row(`evaluate.${name}`)?.values,
        statuses.map((st) => st.stages.find((s) => s.id === 'evaluate')!.outputs![name]),
      );
    const lastVal = statuses.map((st) => {
      const ref = st.stages.find((s) => s.id === 'train')!.outputs!.history;
      assert.ok(isArtifactRef(ref));
      const hex = ref.sha256;
      const col = tableFromIPC(readFileSync(join(env.TEMPERED_HOME!, 'store', 'sha256', hex.slice(0, 2), hex))).getChild('val_f1_macro')!;
      return Array.from(col.toArray() as Float64Array)
        .filter((x) => !Number.isNaN(x))
        .at(-1);
    });
    assert.deepEqual(row('train.val_f1_macro')?.values, lastVal);
    // The evaluate stage's scores that are no outputs, from its metrics document (a causal LM's exact_match is one).
    const stored = (ref: unknown) => {
      assert.ok(isArtifactRef(ref));
      return join(env.TEMPERED_HOME!, 'store', 'sha256', ref.sha256.slice(0, 2), ref.sha256);
    };
    const weighted = statuses.map(
      (st) =>
        (JSON.parse(readFileSync(stored(st.stages.find((s) => s.id === 'evaluate')!.outputs!.metrics), 'utf8')) as { f1_weighted: number })
          .f1_weighted,
    );
    assert.deepEqual(row('evaluate.f1_weighted')?.values, weighted);
    assert.equal(row('evaluate.baseline.f1_macro'), undefined, "the baseline's scores, the same in every trial, are left out");
    const best = lastVal[1]! > lastVal[0]! ? 1 : 0;
    assert.equal(row('train.val_f1_macro')?.best, best);
    assert.deepEqual(cmp.bestOnValidation, { metric: 'train.val_f1_macro', run: best });
    assert.deepEqual(
      cmp.flags.find((f) => f.name === 'deploy.promoted')?.values,
      statuses.map((st) => st.stages.find((s) => s.id === 'deploy')!.outputs!.promoted),
    );
    assert.ok(row('time.train')!.values.every((x) => x > 0));
    assert.equal(row('ingest.rows'), undefined, 'a count the same in every run is left out');

    const text = await runCli(['runs', '--compare', ...ids], local);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`#1  ${ids[0]}  succeeded\n#2  ${ids[1]}  succeeded`));
    assert.match(text.stdout, /\nparams\.lr +0\.002 +0\.05\n/);
    assert.match(
      text.stdout,
      new RegExp(`best on validation \\(train\\.val_f1_macro\\): #${best + 1} ${ids[best]} \\(lr=${[0.002, 0.05][best]}\\)`),
    );
  });
});
