/**
 * stageCompletedHook keeps one audit log open for all the stages a worker runs, and does not keep a
 * failed open: the stage after it opens the log again. Real SQLite files.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import type { RunEndRecord, StageRequest } from '../workflows/types.ts';
import { KeptOpen } from '../src/db/kept-open.ts';
import { runEndedHook, stageCompletedHook } from './audit.ts';
import { sourcesOf as recordedSpecSources } from '../src/audit/run-spec.ts';

const request = (stageId: string): StageRequest =>
  ({ runId: 'run-1', stageId, kind: 'noop', config: {}, baseDir: '/', specHash: 'h', actor: 'tester', writeCache: true }) as StageRequest;

it('records every completed stage through one open log, and opens again after a failed open', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'audit-hook-'));
  const auditDb = join(stateDir, 'audit.db');
  // A folder where the database file should be: opening fails.
  mkdirSync(auditDb);
  const hook = stageCompletedHook(stateDir);
  await assert.rejects(hook(request('a'), { outputs: {} }));
  rmSync(auditDb, { recursive: true });

  await hook(request('a'), { outputs: {} });
  await hook(request('b'), { outputs: {} });
  const log = await openAudit(auditDb);
  try {
    assert.deepEqual(
      (await log.query({})).map((r) => r.subject),
      ['run-1/a', 'run-1/b'],
    );
    assert.equal((await log.verify()).ok, true);
  } finally {
    await log.close();
  }
});

it("records how a run ended once per execution, however often the workflow's worker retries it", async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'audit-end-'));
  const audit = new KeptOpen(() => openAudit(join(stateDir, 'audit.db')));
  try {
    const hook = runEndedHook(audit);
    const ended = (execution: string, state: RunEndRecord['state'], error?: string): RunEndRecord => ({
      runId: 'run-1',
      execution,
      state,
      actor: 'tester',
      specHash: 'h',
      pipeline: 'p',
      stages: { a: state === 'succeeded' ? 'succeeded' : 'failed' },
      ...(error ? { error } : {}),
    });
    await hook(ended('exec-1', 'failed', "stage 'a' failed: boom"));
    await hook(ended('exec-1', 'failed', "stage 'a' failed: boom"));
    // The run id reused later (a resume with --run-id, a schedule): another execution, another record.
    await hook(ended('exec-2', 'succeeded'));
    const records = await (await audit.get()).query({ run: 'run-1' });
    assert.deepEqual(
      records.map((r) => [r.action, r.details?.execution, r.details?.error]),
      [
        ['run.failed', 'exec-1', "stage 'a' failed: boom"],
        ['run.completed', 'exec-2', undefined],
      ],
    );
  } finally {
    await audit.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

it("writes what the kind's audit adds into the stage's record: data hashes beside the artifacts', the model it is, details", async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'audit-extra-'));
  const audit = new KeptOpen(() => openAudit(join(stateDir, 'audit.db')));
  try {
    const hook = stageCompletedHook(stateDir, audit);
    const card = { uri: 'sha256:' + 'c'.repeat(64), sha256: 'c'.repeat(64), bytes: 1, mediaType: 'text/markdown' };
    await hook(
      request('register'),
      { outputs: { card, version: 3 } },
      {
        model: 'spam@3',
        modelHash: 'd'.repeat(64),
        dataHashes: { 'source:data/a.jsonl': 'a'.repeat(64), 'out:card': 'not the artifact' },
        details: { registered: 'existing', stage: 'not the adapter' },
      },
    );
    await hook(request('plain'), { outputs: {} });
    const [withExtra, plain] = await (await audit.get()).query({ run: 'run-1' });
    assert.equal(withExtra!.model, 'spam@3');
    assert.equal(withExtra!.modelHash, 'd'.repeat(64));
    // The artifacts' own hashes and the adapter's details win over a kind's.
    assert.deepEqual(withExtra!.dataHashes, { 'source:data/a.jsonl': 'a'.repeat(64), 'out:card': 'c'.repeat(64) });
    assert.deepEqual(withExtra!.details, { registered: 'existing', stage: 'register', kind: 'noop' });
    assert.deepEqual([plain!.model, plain!.modelHash, plain!.details], [undefined, undefined, { stage: 'plain', kind: 'noop' }]);
    assert.deepEqual(
      (await (await audit.get()).query({ model: 'spam@3' })).map((r) => r.subject),
      ['run-1/register'],
    );
    assert.equal((await (await audit.get()).verify()).ok, true);
  } finally {
    await audit.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
});

it('records outputs a stage took from the cache as stage.reused, naming the run that made them, beside what the kind adds', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'audit-reused-'));
  const hook = stageCompletedHook(stateDir);
  const outputs = { table: { uri: 'artifact://sha256/' + 'a'.repeat(64), sha256: 'a'.repeat(64), bytes: 1 } };
  const req = { ...request('ingest'), runId: 'run-2', cacheKey: 'k' };
  const sources = { sources: [{ path: 'd.jsonl', sha256: 'd'.repeat(64), bytes: 3 }] };
  await hook(req, { outputs, cacheKey: 'k', cachedFrom: { runId: 'run-1', stageId: 'ingest' } }, { details: sources });
  await hook(req, { outputs, cacheKey: 'k', cachedFrom: { runId: 'run-1', stageId: 'ingest' } }, { details: sources });
  const log = await openAudit(join(stateDir, 'audit.db'));
  try {
    const records = await log.query({ run: 'run-2' });
    assert.deepEqual(
      records.map((r) => [r.action, r.details.reusedFrom, r.dataHashes]),
      [['stage.reused', { runId: 'run-1', stageId: 'ingest' }, { 'out:table': 'a'.repeat(64) }]],
    );
    // What the run's data was, found from the run that registered a model, though its ingest ran in another run.
    assert.deepEqual(
      (await recordedSpecSources(log, 'run-2')).map((s) => s.path),
      ['d.jsonl'],
    );
  } finally {
    await log.close();
    rmSync(stateDir, { recursive: true, force: true });
  }
});
