/**
 * `submit` of a pipeline whose local ingest source is not there. With the embedded dev server the
 * workers are this machine's, so the run could only fail: nothing is submitted (and no server is
 * started for it). Against a cluster the path may exist where the worker runs: a warning, and the run.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { freePort } from '../src/util/port-race.ts';
import { runCli, startCliServer } from './helpers/cli.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tempered-sources-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function pipeline(path: string): string {
  const file = join(dir, `p-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    file,
    [
      'name: sources',
      'stages:',
      `  ingest: { uses: ingest, with: { path: ${JSON.stringify(path)}, task: classification } }`,
      '  split: { uses: split, needs: ingest, with: { table: "${{ stages.ingest.outputs.table }}", ratios: { train: 0.5, test: 0.5 } } }',
      '',
    ].join('\n'),
  );
  return file;
}

describe('submit with a local ingest source that is not there', () => {
  it('on the embedded dev server: nothing is submitted, and no server is started for it', async () => {
    const home = join(dir, 'home');
    const env = { TEMPERED_HOME: home, TEMPERED_DEV_PORT: String(await freePort()), TEMPORAL_ADDRESS: '' };
    for (const path of ['data/missing.jsonl', 'data/*.csv']) {
      const r = await runCli(['submit', pipeline(path)], env);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.match(
        r.stderr,
        /error: stages\.ingest\.with\.path: (glob )?"data\/(missing\.jsonl|\*\.csv)" (does not exist|matches no files)/,
      );
      assert.match(r.stderr, /nothing submitted: the run's first stage would fail on a source that is not there/);
      assert.doesNotMatch(r.stdout, /submitted run/);
    }
    assert.equal(existsSync(join(home, 'temporal')), false, 'no dev server was started');
  });

  describe('against a Temporal server of its own', () => {
    let cluster: Awaited<ReturnType<typeof startCliServer>>;
    before(async () => {
      cluster = await startCliServer('tempered-sources-server-');
    });
    after(async () => cluster?.close());

    it('warns and submits: a worker elsewhere may see the path', async () => {
      const env = { TEMPERED_HOME: join(dir, 'home2'), TEMPORAL_ADDRESS: cluster.server.address, TEMPERED_TASK_QUEUE: 'nobody-here' };
      const r = await runCli(['submit', pipeline('data/missing.jsonl')], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /warning: stages\.ingest\.with\.path: "data\/missing\.jsonl" does not exist/);
      assert.match(r.stderr, /submitting anyway: the stage reads the path on the worker that takes it/);
      const runId = /submitted run (\S+)/.exec(r.stdout)?.[1];
      assert.ok(runId, r.stdout);
      const connection = await Connection.connect({ address: cluster.server.address });
      try {
        await new Client({ connection }).workflow.getHandle(runId!).terminate('test done');
      } finally {
        await connection.close();
      }
    });
  });
});
