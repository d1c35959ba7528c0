import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRegistry } from '../registry/registry.ts';
import { registryAliasSource } from './registry-source.ts';
import { createModelServer } from './server.ts';
import { FakePredictor } from './fake-predictor.testing.ts';

const TOKEN = 'registry-source-token';

test('promoting and rolling back in the registry moves the running server', { timeout: 30_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-serve-reg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'registry.db');
  // Each version registered on its own day: the server reports it as the model's `created` (OpenAI's), not its load time.
  let day = '2026-03-01';
  const reg = await openRegistry(path, { now: () => new Date(`${day}T12:00:00Z`) });
  const createdOn = (d: string) => Date.parse(`${d}T12:00:00Z`) / 1000;
  for (const [run, on] of [
    ['r1', '2026-03-01'],
    ['r2', '2026-04-01'],
  ]) {
    day = on!;
    await reg.registerVersion({
      name: 'spam',
      runId: run,
      stageId: 'register',
      specHash: 'a'.repeat(64),
      data: [],
      // Two models: the registry does not move an alias between versions with the same bytes.
      artifacts: [{ role: 'onnx', uri: 'u', sha256: (run === 'r1' ? 'b' : 'c').repeat(64), bytes: 1 }],
    });
  }
  await reg.setAlias('spam', 'production', 1, { actor: 'test' });

  const loaded: string[] = [];
  const server = await createModelServer({
    token: TOKEN,
    pollMs: 10,
    resolveCurrent: registryAliasSource({
      registryPath: path,
      name: 'spam',
      load: async (v) => {
        loaded.push(`${v.name}@${v.version}`);
        return new FakePredictor(`${v.name}@${v.version}`);
      },
    }),
  });
  const url = await server.listen();
  t.after(() => server.close());
  const servedModel = async () => {
    const res = await fetch(`${url}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: '{"inputs":["hi"]}',
    });
    return ((await res.json()) as { model: string }).model;
  };
  const waitFor = async (id: string) => {
    for (let i = 0; i < 500 && (await servedModel()) !== id; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(await servedModel(), id);
  };

  assert.equal(await servedModel(), 'spam@1');
  assert.equal(server.model.created, createdOn('2026-03-01'));
  await reg.setAlias('spam', 'production', 2, { actor: 'test' });
  await waitFor('spam@2');
  assert.equal(server.model.created, createdOn('2026-04-01'));
  await reg.rollback('spam', 'production', { actor: 'test' });
  await waitFor('spam@1');
  assert.equal(server.model.created, createdOn('2026-03-01'));
  await reg.close();
  assert.deepEqual(loaded, ['spam@1', 'spam@2', 'spam@1']);
  assert.equal(server.model.swaps, 2);
});

test('an unknown model or alias fails the start with the registry error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-serve-reg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'registry.db');
  (await openRegistry(path)).close();
  await assert.rejects(
    createModelServer({
      token: TOKEN,
      resolveCurrent: registryAliasSource({ registryPath: path, name: 'nope', load: async () => new FakePredictor('x') }),
    }),
    /no model named 'nope'/,
  );
});
