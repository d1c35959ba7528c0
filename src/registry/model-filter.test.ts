/** resolveModelFilter: what `tempered audit --model` and the dashboard's audit filter both read a reference as. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeptOpen } from '../db/kept-open.ts';
import { ModelFilterError, resolveModelFilter } from './model-filter.ts';
import { openRegistry } from './registry.ts';

test('name and name@N as given; an alias, latest or vN the version it is now; errors say which kind', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'model-filter-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const location = join(dir, 'registry.db');
  const reg = await openRegistry(location);
  for (const bytes of ['a', 'b'])
    await reg.registerVersion({
      name: 'spam-clf',
      runId: `r-${bytes}`,
      stageId: 'register',
      specHash: 's',
      data: [],
      artifacts: [{ role: 'model', uri: 'u', sha256: bytes.repeat(64), bytes: 1 }],
    });
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
  }
  // No registry: an alias cannot be resolved; a version needs none.
  const none = { location: join(dir, 'none.db') };
  await assert.rejects(
    resolveModelFilter('spam-clf@production', none),
    (e: unknown) => e instanceof ModelFilterError && e.reason === 'no-registry',
  );
  assert.deepEqual(await resolveModelFilter('spam-clf@1', none), { model: 'spam-clf@1' });
});
