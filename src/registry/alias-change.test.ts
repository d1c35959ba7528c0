import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../audit/log.ts';
import { changeAlias, GateRefused } from './alias-change.ts';
import { AliasMovedError, openRegistry } from './registry.ts';
import { KeptOpen } from '../db/kept-open.ts';
import type { RegisterInput } from './types.ts';

const sha = (c: string) => c.repeat(64);

function version(run: string, f1: number, onnx: string): RegisterInput {
  return {
    name: 'clf',
    runId: run,
    stageId: 'register',
    specHash: sha('a'),
    data: [{ name: 'train', sha256: sha('b'), rows: 10 }],
    artifacts: [{ role: 'onnx', uri: `artifact://sha256/${sha(onnx)}`, sha256: sha(onnx), bytes: 10 }],
    metrics: { f1_macro: f1 },
    params: {},
    actor: 'alice',
  };
}

test('a gated promotion judges against the holder, moves nothing when refused, and audits what it did', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'alias-change-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const registryDb = join(dir, 'registry.db');
  const auditDb = join(dir, 'audit.db');
  const reg = await openRegistry(registryDb);
  await reg.registerVersion(version('r1', 0.9, 'c'));
  await reg.registerVersion(version('r2', 0.8, 'd'));
  await reg.close();
  const gate = '!has(production) || f1_macro >= production.f1_macro';

  const first = await changeAlias(registryDb, auditDb, { op: 'promote', name: 'clf', at: 1, alias: 'production', actor: 'bob', gate });
  assert.equal(first.version, 1);
  assert.equal(first.gate?.passed, true);
  await assert.rejects(
    () => changeAlias(registryDb, auditDb, { op: 'promote', name: 'clf', at: 2, alias: 'production', actor: 'bob', gate }),
    (e: unknown) => e instanceof GateRefused && /0\.8/.test(e.explanation),
  );
  const forced = await changeAlias(registryDb, auditDb, {
    op: 'promote',
    name: 'clf',
    at: 2,
    alias: 'production',
    actor: 'carol',
    details: { via: 'ui' },
  });
  assert.equal(forced.version, 2);
  const back = await changeAlias(registryDb, auditDb, { op: 'rollback', name: 'clf', alias: 'production', actor: 'dave' });
  assert.equal(back.version, 1);

  const log = await openAudit(auditDb);
  try {
    const recs = await log.query();
    assert.deepEqual(
      recs.map((r) => [r.action, r.model, r.actor]),
      [
        ['model.promoted', 'clf@1', 'bob'],
        ['model.promoted', 'clf@2', 'carol'],
        ['model.rolled_back', 'clf@1', 'dave'],
      ],
    );
    assert.equal(recs[0]!.details.gate, gate);
    assert.equal(recs[1]!.details.via, 'ui');
    assert.equal(recs[0]!.modelHash, sha('c'));
  } finally {
    await log.close();
  }
});

test('a gated promotion that another promotion overtakes after the gate was judged moves nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'alias-change-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const registryDb = join(dir, 'registry.db');
  const reg = await openRegistry(registryDb);
  await reg.registerVersion(version('r1', 0.5, 'c'));
  await reg.registerVersion(version('r2', 0.7, 'd'));
  await reg.registerVersion(version('r3', 0.9, 'e'));
  await reg.setAlias('clf', 'production', 1);
  // Right after the gate's holder (v1) is read, bob promotes v3 through another connection.
  const other = await openRegistry(registryDb);
  const read = reg.aliasVersion.bind(reg);
  reg.aliasVersion = async (name: string, alias: string) => {
    const v = await read(name, alias);
    await other.setAlias('clf', 'production', 3, { actor: 'bob' });
    return v;
  };
  await assert.rejects(
    changeAlias(new KeptOpen(async () => reg), join(dir, 'audit.db'), {
      op: 'promote',
      name: 'clf',
      at: 2,
      alias: 'production',
      actor: 'alice',
      gate: 'f1_macro > production.f1_macro',
    }),
    (e: unknown) => e instanceof AliasMovedError,
  );
  assert.equal(await other.aliasVersion('clf', 'production'), 3, 'v2 (0.7) did not replace v3 (0.9) on a verdict against v1');
  await other.close();
  await reg.close();
});
