/**
 * `tempered status` read from a shell whose store is not the run's: the stages' data reports are artifacts in the store
 * the run's workers wrote to, so a CLI without the team's TEMPERED_STORE (its own TEMPERED_HOME, as on an operator's
 * laptop) cannot show them. It left them out without a word, and the status looked complete; it says why now.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitForRun } from '../client/runs.ts';
import { loadStageKinds } from '../src/stages/stage-kinds.ts';
import { runCli } from './helpers/cli.ts';
import { startTestEnv, submitPipelineFile, type TestEnv } from './helpers/temporal-env.ts';

const fixtures = join(import.meta.dirname, 'fixtures');
let env: TestEnv;
let elsewhere: string;

before(async () => {
  env = await startTestEnv(await loadStageKinds());
  elsewhere = mkdtempSync(join(tmpdir(), 'status-elsewhere-'));
  await env.startWorker();
});
after(async () => {
  await env?.close();
  if (elsewhere) rmSync(elsewhere, { recursive: true, force: true });
});

test("status from a home without the run's store says its reports are not there, and what to set", async () => {
  for (const f of ['tiny-pipeline.yaml', 'tiny.jsonl']) copyFileSync(join(fixtures, f), join(env.dir, f));
  const runId = await submitPipelineFile(env, join(env.dir, 'tiny-pipeline.yaml'), { actor: 'status-tester', noCache: true });
  assert.equal((await waitForRun(env.client, runId)).state, 'succeeded');
  // The workers' own home has the reports: shown, with no note.
  const there = await runCli(['status', runId], { TEMPORAL_ADDRESS: env.server.address, TEMPERED_HOME: env.dir });
  assert.equal(there.code, 0, there.stderr);
  assert.match(there.stdout, /\| split \(seed 1/);
  assert.doesNotMatch(there.stderr, /report/);
  const away = await runCli(['status', runId], { TEMPORAL_ADDRESS: env.server.address, TEMPERED_HOME: elsewhere });
  assert.equal(away.code, 0, away.stderr);
  assert.doesNotMatch(away.stdout, /\| split \(seed 1/);
  assert.match(away.stderr, /note: 2 stage report\(s\) are not in this host's store .*TEMPERED_STORE/);
});
