/** Planning a scheduled run reads the file's bytes itself, so it must refuse what `validate` refuses. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { planScheduledRun, SpecLoadError } from './schedules.ts';

test('a schedule refuses a pipeline file with invalid UTF-8 and a bad gate, with positions', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-sched-plan-'));
  const store = new ArtifactStore(join(dir, 'store'));
  const registry = kindRegistry(await loadStageKinds());
  const plan = (name: string, bytes: Buffer) => {
    writeFileSync(join(dir, name), bytes);
    return planScheduledRun({ file: join(dir, name), params: [], registry, store, actor: 't', name: 's' });
  };
  const text = 'name: p\ndescription: caf\xe9\nstages:\n  ingest:\n    uses: ingest\n    with: { path: a.jsonl, task: classification }\n';
  await assert.rejects(plan('latin1.yaml', Buffer.from(text, 'latin1')), (e: unknown) => {
    assert.ok(e instanceof SpecLoadError);
    assert.deepEqual(
      e.errors.map((x) => [x.code, x.line, x.column]),
      [['bad-encoding', 2, 17]],
    );
    return true;
  });
  const deploy = '  deploy:\n    uses: deploy\n    with: { name: m, version: 1, gate: "f1_macro >= 0.9" }\n';
  await assert.rejects(plan('gate.yaml', Buffer.from(text.replace('caf\xe9', 'ok') + deploy)), (e: unknown) => {
    assert.ok(e instanceof SpecLoadError);
    assert.deepEqual(
      e.errors.map((x) => [x.code, x.line, x.column, x.path]),
      [['bad-config', 9, 41, 'stages.deploy.with.gate']],
    );
    assert.match(e.errors[0]!.message, /unknown name 'f1_macro'/);
    return true;
  });
});
