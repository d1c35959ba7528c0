/** resolveModelFilter: what `tempered audit --model` and the dashboard's audit filter both read a reference as. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeptOpen } from '../db/kept-open.ts';
import { openAudit } from '../audit/log.ts';
import { ModelFilterError, modelRecords, resolveModelFilter } from './model-filter.ts';
import { openRegistry } from './registry.ts';
import { changeAlias } from './alias-change.ts';
import { testVersion } from './versions.testing.ts';

test('name and name@N as given; an alias, latest or vN the version it is now; errors say which kind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'model-filter-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const location = join(dir, 'registry.db');
  const reg = await openRegistry(location);
  for (const bytes of ['a', 'b']) await reg.registerVersion(testVersion('spam-clf', bytes));
  await reg.setAlias('spam-clf', 'production', 1);
  await reg.close();
  const kept = new KeptOpen(() => openRegistry(location));
  t.after(() => kept.close());

  for (const registry of [{ location }, { location, kept }]) {
    const f = (ref: string) => resolveModelFilter(ref, registry);
    assert.deepEqual(await f('spam-clf'), { model: 'spam-clf' });
    assert.deepEqual(await f('spam-clf@2'), { model: 'spam-clf@2' });
    assert.deepEqual(await f('spam-clf@production'), {
      model: 'spam-clf@1',
      resolved: { ref: 'spam-clf@production', name: 'spam-clf', at: 'production', version: 1 },
    });
    assert.equal((await f('spam-clf@latest')).model, 'spam-clf@2');
    assert.equal((await f('spam-clf@v2')).model, 'spam-clf@2');
    const refused = async (ref: string, reason: ModelFilterError['reason'], message: RegExp) =>
      assert.rejects(f(ref), (e: unknown) => e instanceof ModelFilterError && e.reason === reason && message.test(e.message));
    await refused('spam-clf@', 'syntax', /^bad model reference 'spam-clf@'; write name, name@version or name@alias$/);
    await refused('a@b@c', 'syntax', /bad model reference/);
    await refused('spam-clf@staging', 'unknown', /^cannot resolve 'spam-clf@staging': model 'spam-clf' has no version or alias 'staging'$/);
    await refused('ham@production', 'unknown', /^cannot resolve 'ham@production': no model named 'ham'$/);
    // A bare name the registry lacks is a typo, not a model without records.
    await assert.rejects(f('SPAM-clf'), (e: unknown) => {
      assert.ok(e instanceof ModelFilterError && e.reason === 'unknown', String(e));
      assert.equal(e.message, "no model named 'SPAM-clf'");
      assert.equal(e.hint, "did you mean 'spam-clf'? registered models: spam-clf");
      return true;
    });
  }
  // No registry: an alias cannot be resolved; a version needs none.
  const none = { location: join(dir, 'none.db') };
  await assert.rejects(
    resolveModelFilter('spam-clf@production', none),
    (e: unknown) => e instanceof ModelFilterError && e.reason === 'no-registry',
  );
  assert.deepEqual(await resolveModelFilter('spam-clf@1', none), { model: 'spam-clf@1' });
});

test('name@N is checked against the registry where there is one; a model source reads as given', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'model-filter-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const location = join(dir, 'registry.db');
  const reg = await openRegistry(location);
  await reg.registerVersion(testVersion('spam-clf', 'a', { runId: 'r' }));
  await reg.close();
  const f = (ref: string) => resolveModelFilter(ref, { location });
  assert.deepEqual(await f('spam-clf@1'), { model: 'spam-clf@1' });
  await assert.rejects(f('spam-clf@9'), (e: unknown) => {
    assert.ok(e instanceof ModelFilterError && e.reason === 'unknown', String(e));
    assert.equal(e.message, "no such version 'spam-clf@9': model 'spam-clf' has no version or alias '9'");
    assert.match(e.hint!, /^versions 1\.\.1.*; filter by 'spam-clf' for the records of every version$/);
    return true;
  });
  await assert.rejects(
    f('ham@1'),
    (e: unknown) => e instanceof ModelFilterError && /^no such version 'ham@1': no model named 'ham'$/.test(e.message),
  );
  // What tempered serve records for a model source is no registry name: as given, whatever follows the @.
  assert.deepEqual(await f('file:/models/x@2'), { model: 'file:/models/x@2' });
  assert.deepEqual(await f('hf:org/model@main'), { model: 'hf:org/model@main' });
});

test("a version's records include the serve.swapped records that swapped it out", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'model-filter-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const log = await openAudit(join(dir, 'audit.db'));
  t.after(() => log.close());
  const swap = (from: string, to: string) => ({
    action: 'serve.swapped',
    subject: to,
    model: to,
    details: { from, to, alias: 'production' },
  });
  await log.append({ action: 'serve.started', subject: 'spam-clf@2', model: 'spam-clf@2' });
  await log.append({ action: 'model.registered', subject: 'spam-clf@3', model: 'spam-clf@3' });
  await log.append(swap('spam-clf@2', 'spam-clf@3'));
  await log.append({ action: 'serve.swapped', subject: 'other@3', model: 'other@3', details: { from: 'other@2', to: 'other@3' } });
  await log.append(swap('spam-clf@3', 'spam-clf@2'));
  await log.append({ action: 'serve.stopped', subject: 'spam-clf@2', model: 'spam-clf@2' });
  const trail = async (model: string, action?: string) =>
    (await modelRecords(log, model, { action })).map(
      (r) => `${r.seq} ${r.action} ${r.model}${r.details.from ? ` from ${r.details.from}` : ''}`,
    );
  assert.deepEqual(await trail('spam-clf@2'), [
    '1 serve.started spam-clf@2',
    '3 serve.swapped spam-clf@3 from spam-clf@2',
    '5 serve.swapped spam-clf@2 from spam-clf@3',
    '6 serve.stopped spam-clf@2',
  ]);
  assert.deepEqual(await trail('spam-clf@3'), [
    '2 model.registered spam-clf@3',
    '3 serve.swapped spam-clf@3 from spam-clf@2',
    '5 serve.swapped spam-clf@2 from spam-clf@3',
  ]);
  assert.deepEqual(await trail('spam-clf@2', 'serve.swapped'), [
    '3 serve.swapped spam-clf@3 from spam-clf@2',
    '5 serve.swapped spam-clf@2 from spam-clf@3',
  ]);
  assert.deepEqual(await trail('spam-clf@2', 'serve.started'), ['1 serve.started spam-clf@2']);
  // The name alone has every version's records already, each once.
  assert.equal((await trail('spam-clf')).length, 5);
});

test("a version's records include the promotion and the rollback that moved an alias off it", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'model-filter-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const registryDb = join(dir, 'registry.db');
  const auditDb = join(dir, 'audit.db');
  const reg = await openRegistry(registryDb);
  for (const bytes of ['a', 'b', 'c']) await reg.registerVersion(testVersion('spam-clf', bytes));
  await reg.close();
  // The records the CLI's and the dashboard's promote and rollback write (changeAlias), not hand-made ones.
  const move = (op: 'promote' | 'rollback', actor: string, at?: number, reason?: string) =>
    changeAlias(registryDb, auditDb, {
      op,
      name: 'spam-clf',
      alias: 'production',
      actor,
      ...(at ? { at } : {}),
      ...(reason ? { reason } : {}),
    });
  await move('promote', 'ann', 1);
  await move('promote', 'bob', 2);
  await move('rollback', 'carol', undefined, 'precision fell');
  await move('promote', 'dave', 2, 'fixed upstream');
  await move('promote', 'erin', 3);
  const log = await openAudit(auditDb);
  t.after(() => log.close());
  const trail = async (model: string, action?: string) =>
    (await modelRecords(log, model, { action })).map(
      (r) => `${r.seq} ${r.action} ${r.model} ${r.actor} ${r.details.from ?? '-'}→${r.details.to}`,
    );
  // v2 went on production twice: the rollback between (carol's) and the promotion of v3 that replaced it are v2's too.
  assert.deepEqual(await trail('spam-clf@2'), [
    '2 model.promoted spam-clf@2 bob 1→2',
    '3 model.rolled_back spam-clf@1 carol 2→1',
    '4 model.promoted spam-clf@2 dave 1→2',
    '5 model.promoted spam-clf@3 erin 2→3',
  ]);
  assert.deepEqual(await trail('spam-clf@1'), [
    '1 model.promoted spam-clf@1 ann -→1',
    '2 model.promoted spam-clf@2 bob 1→2',
    '3 model.rolled_back spam-clf@1 carol 2→1',
    '4 model.promoted spam-clf@2 dave 1→2',
  ]);
  assert.deepEqual(await trail('spam-clf@2', 'model.rolled_back'), ['3 model.rolled_back spam-clf@1 carol 2→1']);
  assert.deepEqual(await trail('spam-clf@3', 'model.rolled_back'), []);
  // The name alone has every version's records already, each once.
  assert.equal((await trail('spam-clf')).length, 5);
});
