/**
 * A local model source's files are hashed once while unchanged (hash-record.ts): every resolve read them whole again
 * (every stage, every `serve` load, every cache lookup of train and evaluate). A file changed in any way the file
 * system shows is hashed again, including a rewrite in place to the same size with its mtime set back; a file changed
 * moments ago is not recorded; a damaged or foreign record is a miss. Real files, the real resolver.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RACY_MS } from './hash-record.ts';
import { resolveModelSource } from './sources.ts';
import { TINY_MINILM, tinyBertDir } from './tiny.testing.ts';

const TINY_GGUF = new URL('../formats/fixtures/tiny-llama.gguf', import.meta.url).pathname;

test('an unchanged local model file is not read again; a changed one, even rewritten in place with its mtime set back, is', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'hash-record-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const cacheDir = join(root, 'models');
  const dir = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
  const weights = join(dir, 'model.safetensors');
  // Whole seconds, so the test can set the very same mtime back after a rewrite (utimes takes no nanoseconds).
  const stamp = new Date(Math.floor(Date.now() / 1000) * 1000 - 3_600_000);
  utimesSync(weights, stamp, stamp);
  const gguf = join(root, 'tiny.gguf');
  copyFileSync(TINY_GGUF, gguf);
  // A file changed less than RACY_MS ago is not recorded: wait until these have settled.
  await sleep(RACY_MS + 200);
  const resolve = (source: string) => resolveModelSource(source, { cacheDir });
  const folderBytes = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);

  const first = await resolve(dir);
  assert.equal(first.hashedBytes, folderBytes);
  const second = await resolve(dir);
  assert.equal(second.hashedBytes, 0, 'the unchanged folder was read again');
  assert.deepEqual(second.identity, first.identity);

  // The same size, rewritten in place (same inode), its mtime set back: only the change time tells.
  const fd = openSync(weights, 'r+');
  writeSync(fd, Buffer.from([0x5a, 0xa5, 0x5a, 0xa5]), 0, 4, statSync(weights).size - 4);
  closeSync(fd);
  utimesSync(weights, stamp, stamp);
  const sha = (r: typeof first) => r.identity.files.find((f) => f.name === 'model.safetensors')!.sha256;
  const rewritten = await resolve(dir);
  assert.equal(rewritten.hashedBytes, statSync(weights).size);
  assert.notEqual(sha(rewritten), sha(first), 'the rewritten weights kept their old hash');
  // Changed moments ago: hashed each time until its times have settled (a write in the same tick would not show).
  assert.equal((await resolve(dir)).hashedBytes, statSync(weights).size);

  // A GGUF file the same way; a damaged record, or one of another host, is a miss, never an error.
  const g1 = await resolve(gguf);
  assert.equal(g1.hashedBytes, statSync(gguf).size);
  assert.equal((await resolve(gguf)).hashedBytes, 0);
  const records = join(cacheDir, 'hashes');
  const ggufRecord = readdirSync(records)
    .map((n) => join(records, n))
    .find((p) => readFileSync(p, 'utf8').includes(gguf))!;
  writeFileSync(ggufRecord, '{"v":1,"sha2');
  const g2 = await resolve(gguf);
  assert.deepEqual([g2.hashedBytes, g2.identity], [statSync(gguf).size, g1.identity]);
  writeFileSync(ggufRecord, readFileSync(ggufRecord, 'utf8').replace(/"host":"[^"]*"/, '"host":"another-host"'));
  assert.equal((await resolve(gguf)).hashedBytes, statSync(gguf).size);
  assert.equal((await resolve(gguf)).hashedBytes, 0);
});
