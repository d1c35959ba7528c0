/** AtomicFile's commit without replacing (what `tempered predict` relies on without --force) and removeAtomicTemps. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AtomicFile, removeAtomicTemps } from './atomic.ts';

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'atomic-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('commit({ replace: false }) keeps a file made at the target meanwhile, and leaves no temp file; replacing commits overwrite', (t) => {
  const dir = scratch(t);
  const target = join(dir, 'out.jsonl');

  const late = new AtomicFile(target);
  late.write(Buffer.from('ours\n'));
  writeFileSync(target, 'theirs\n');
  assert.throws(() => late.commit({ replace: false }), { code: 'EEXIST' });
  assert.equal(readFileSync(target, 'utf8'), 'theirs\n');
  assert.deepEqual(readdirSync(dir), ['out.jsonl']);

  const fresh = new AtomicFile(join(dir, 'new.jsonl'));
  fresh.write(Buffer.from('ours\n'));
  fresh.commit({ replace: false });
  assert.equal(readFileSync(join(dir, 'new.jsonl'), 'utf8'), 'ours\n');

  const replacing = new AtomicFile(target);
  replacing.write(Buffer.from('ours\n'));
  replacing.commit();
  assert.equal(readFileSync(target, 'utf8'), 'ours\n');
  assert.deepEqual(readdirSync(dir).sort(), ['new.jsonl', 'out.jsonl']);
});

test("removeAtomicTemps removes this process's temp files for a path, not another process's or another path's", (t) => {
  const dir = scratch(t);
  const target = join(dir, 'out.jsonl');
  const open = new AtomicFile(target);
  open.write(Buffer.from('partial\n'));
  open.flush();
  const other = new AtomicFile(join(dir, 'other.jsonl'));
  // Another process's, writing the same target (its pid in the name).
  const theirs = `.out.jsonl.${process.pid + 1}.0000abcd.tmp`;
  writeFileSync(join(dir, theirs), '');

  removeAtomicTemps(target);
  assert.deepEqual(readdirSync(dir).sort(), [theirs, other.tempPath.slice(dir.length + 1)].sort());
  other.abort();
  open.abort();
});
