/**
 * The outputs check against a real folder store: what a kind may return for each declared type, and that a
 * store which does not answer is a fault to retry, not the kind's breach.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore } from '../store/artifact-store.ts';
import { outputProblems } from './output-check.ts';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { MEDIA } from '../types.ts';

const dir = mkdtempSync(join(tmpdir(), 'tempered-outputs-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const store = new ArtifactStore(join(dir, 'store'));
const kind = {
  outputs: {
    doc: { type: 'json' as const },
    n: { type: 'number' as const },
    model: { type: 'artifact' as const },
    table: { type: 'table' as const },
  },
};
const absent = { uri: `artifact://sha256/${'b'.repeat(64)}`, sha256: 'b'.repeat(64), bytes: 3, mediaType: 'application/octet-stream' };

describe('the outputs check', () => {
  test('an inline json value may hold a uri and a sha256 of its own (a source file): only artifact:// is a store reference', async () => {
    const doc = { uri: 'https://example.org/data.csv', sha256: 'c'.repeat(64) };
    assert.deepEqual(await outputProblems(kind, { doc }, store), []);
    assert.match(
      (await outputProblems(kind, { doc: absent }, store)).join(),
      /'doc' \(json\) refers to bbbbbbbbbbbb…, which is not in the store/,
    );
  });

  test('a number output may be null: NaN and Infinity cross a child process as null', async () => {
    assert.deepEqual(await outputProblems(kind, { n: null }, store), []);
    assert.deepEqual(await outputProblems(kind, { n: 'x' }, store), [`'n' (number) is string "x"`]);
  });

  test('a store that does not answer is thrown (the stage is retried), not reported as the kind breaking its contract', async () => {
    const down = Object.assign(Object.create(store) as ArtifactStore, {
      has: () => false,
      verify: async () => {
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      },
    });
    await assert.rejects(outputProblems(kind, { model: absent }, down), /socket hang up/);
  });

  // Bytes labelled Arrow passed: the stage was cached, and split failed on them three times a run.
  test('a table output must be an Arrow table, not only labelled one', async () => {
    const fake = await store.putBytes('hello', { mediaType: MEDIA.arrow });
    assert.match((await outputProblems(kind, { table: fake }, store)).join(), /^'table' \(table\) is not an Arrow IPC table \(/);
    const path = join(dir, 't.arrow');
    const w = new ArrowTableWriter(path, { text: 'utf8' });
    w.push({ text: 'a' });
    w.close();
    assert.deepEqual(await outputProblems(kind, { table: await store.putFile(path, { mediaType: MEDIA.arrow, rows: 1 }) }, store), []);
  });
});
