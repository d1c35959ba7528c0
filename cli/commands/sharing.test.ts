import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createContext } from '../context.ts';
import { runBackends } from './sharing.ts';

const root = mkdtempSync(join(tmpdir(), 'sharing-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function backendsOf(home: string) {
  const saved = { home: process.env.TEMPERED_HOME, store: process.env.TEMPERED_STORE, db: process.env.TEMPERED_DATABASE_URL };
  process.env.TEMPERED_HOME = home;
  delete process.env.TEMPERED_STORE;
  delete process.env.TEMPERED_DATABASE_URL;
  try {
    const ctx = await createContext();
    try {
      return await runBackends(ctx, (m) => assert.fail(m));
    } finally {
      await ctx.close();
    }
  } finally {
    for (const [k, v] of [
      ['TEMPERED_HOME', saved.home],
      ['TEMPERED_STORE', saved.store],
      ['TEMPERED_DATABASE_URL', saved.db],
    ] as const)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

test("a local store has an instance id of its own home: two homes' runs differ by it, one home's agree", async () => {
  // Both are 'local' by name, so a worker of one home took the other's stages when their dev servers shared an address.
  const a = await backendsOf(join(root, 'a'));
  const b = await backendsOf(join(root, 'b'));
  const again = await backendsOf(join(root, 'a'));
  assert.deepEqual([a.store, b.store], ['local', 'local']);
  assert.match(a.storeId ?? '', /^[0-9a-f-]{36}$/);
  assert.notEqual(a.storeId, b.storeId);
  assert.equal(again.storeId, a.storeId);
});
