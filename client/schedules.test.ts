/**
 * Schedule operations that need no Temporal server: what `update` plans when the pipeline file
 * changes, the metric-trigger check against the registry, the gate `describe` shows, and the
 * backfill range check (made before the server is asked).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Client } from '@temporalio/client';
import { InputError } from '../src/errors.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { gateFrom, gateText, runLine } from '../cli/commands/schedule.ts';
import { backfillSchedule, checkMetricTrigger, planScheduledRun, SpecLoadError } from './schedules.ts';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-sched-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const INGEST = 'stages:\n  ingest:\n    uses: ingest\n    with: { path: a.jsonl, task: classification }\n';

describe('schedule update with another pipeline file', () => {
  it('drops kept params the new file does not declare, and says which; refuses them when given', async (t) => {
    const dir = tempDir(t);
    const store = new ArtifactStore(join(dir, 'store'));
    const registry = kindRegistry(await loadStageKinds());
    writeFileSync(join(dir, 'plain.yaml'), `name: plain\n${INGEST}`);
    writeFileSync(join(dir, 'tagged.yaml'), `name: tagged\nparams:\n  seed:\n    type: integer\n    default: 1\n${INGEST}`);
    const base = { registry, store, actor: 't', name: 's' };
    const p = await planScheduledRun({ ...base, file: join(dir, 'plain.yaml'), params: ['tag=v7'], dropUndeclared: true });
    assert.deepEqual(p.spec.params, []);
    assert.deepEqual(p.dropped, ['tag=v7']);
    const q = await planScheduledRun({ ...base, file: join(dir, 'tagged.yaml'), params: ['tag=v7', 'seed=3'], dropUndeclared: true });
    assert.deepEqual([q.spec.params, q.dropped, q.input.plan.params], [['seed=3'], ['tag=v7'], { seed: 3 }]);
    // Given on the command line, an unknown param is still an error.
    await assert.rejects(planScheduledRun({ ...base, file: join(dir, 'plain.yaml'), params: ['tag=v7'] }), SpecLoadError);
    // A declared param with a bad value is not dropped.
    await assert.rejects(
      planScheduledRun({ ...base, file: join(dir, 'tagged.yaml'), params: ['seed=x'], dropUndeclared: true }),
      SpecLoadError,
    );
  });
});

describe('schedule gates', () => {
  const file = { skipIfUnchanged: true };
  it('describe shows the pipeline file triggers that gate the runs, and --no-gate turns them off', () => {
    assert.equal(gateText({ pipelineTriggers: file }), "skip when spec and data are unchanged (from the pipeline file's triggers)");
    assert.equal(gateText({}), 'none (every run retrains)');
    assert.equal(
      gateText({ gate: {}, pipelineTriggers: file }),
      "none (--no-gate: every run retrains; the pipeline file's triggers are off)",
    );
    assert.match(gateText({ gate: { labelDrift: { threshold: 0.2 } }, pipelineTriggers: file }), /drift.*the schedule's own/);
  });

  it('--no-gate is an explicit empty gate, which the run prefers to the file triggers; other updates keep it', async (t) => {
    assert.deepEqual(gateFrom({}, { skipIfUnchanged: true }, true), {});
    assert.deepEqual(gateFrom({}, {}), {}, 'an update of something else keeps the explicit none');
    assert.deepEqual(gateFrom({ 'trigger-drift': '0.2' }, { skipIfUnchanged: true }, true), {
      labelDrift: { distance: 'jensen-shannon', threshold: 0.2 },
    });
    assert.equal(gateFrom({}, undefined), undefined);
    const dir = tempDir(t);
    writeFileSync(join(dir, 'p.yaml'), `name: p\ntriggers:\n  skipIfUnchanged: true\n${INGEST}`);
    const planned = await planScheduledRun({
      file: join(dir, 'p.yaml'),
      params: [],
      registry: kindRegistry(await loadStageKinds()),
      store: new ArtifactStore(join(dir, 'store')),
      actor: 't',
      name: 's',
      gate: {},
    });
    // pipelineRun gates on `options.gate ?? plan.triggers`: {} wins, and decides nothing.
    assert.deepEqual(planned.input.options.gate, {});
    assert.deepEqual(planned.input.plan.triggers, { skipIfUnchanged: true });
  });

  it('finds a metric trigger on a model that lacks the metric, naming the metrics it has', async (t) => {
    const dir = tempDir(t);
    const db = join(dir, 'registry.db');
    const reg = await openRegistry(db);
    await reg.registerVersion(testVersion('clf', 'c', { metrics: { f1_macro: 0.91, accuracy: 0.95 } }));
    await reg.close();
    const bad = await checkMetricTrigger(db, { metricBelow: { model: 'clf', alias: 'latest', metric: 'f1', threshold: 0.9 } });
    assert.equal(bad.problem, "clf@latest (v1) has no metric 'f1' (it has accuracy, f1_macro)");
    assert.match(bad.hint!, /clf@latest:f1_macro:0\.9/);
    assert.deepEqual(
      await checkMetricTrigger(db, { metricBelow: { model: 'clf', alias: 'latest', metric: 'f1_macro', threshold: 0.9 } }),
      {},
    );
    const none = await checkMetricTrigger(db, { metricBelow: { model: 'other', metric: 'f1', threshold: 0.9 } });
    assert.match(none.note!, /no model other@production is registered yet/);
    assert.deepEqual(await checkMetricTrigger(db, { skipIfUnchanged: true }), {});
  });
});

describe('schedule backfill', () => {
  it('refuses a range that ends in the future before asking the server', async () => {
    const client = {} as Client; // never reached
    const from = new Date(Date.now() - 3_600_000);
    const to = new Date(Date.now() + 3_600_000);
    await assert.rejects(backfillSchedule(client, 'nightly', from, to), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.equal(e.where, '--to');
      assert.match(e.message, /--to \S+ is in the future/);
      assert.ok(e.hint);
      return true;
    });
  });
});

describe('schedule describe', () => {
  it("indents an error's continuation lines under its first, not at the line's start", () => {
    const run = { runId: 'nightly-2026-12-07T03:00:00Z', executionRunId: 'x', scheduledAt: '', takenAt: '', state: 'failed' };
    const text = runLine({ ...run, error: "stage 'ingest' failed: 2 rows have no label\n  a.jsonl:1\n  a.jsonl:7" });
    const [first, ...rest] = text.split('\n');
    const column = first!.indexOf('failed: ');
    assert.ok(column > 40, first);
    assert.deepEqual(rest, [`${' '.repeat(column)}  a.jsonl:1`, `${' '.repeat(column)}  a.jsonl:7`]);
  });
});
