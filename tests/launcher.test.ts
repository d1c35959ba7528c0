import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { MALLOC_TUNABLES, withMallocTuning } from '../scripts/malloc-tuning.mjs';

const root = join(import.meta.dirname, '..');

test('the npm launcher runs the CLI and hands back its exit status', () => {
  const bad = spawnSync(process.execPath, [join(root, 'scripts', 'tempered.mjs'), 'nosuchcommand'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown command 'nosuchcommand'/);
  const help = spawnSync(process.execPath, [join(root, 'scripts', 'tempered.mjs'), '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /commands:/);
});

test('malloc tuning is added to the environment unless the user set GLIBC_TUNABLES', () => {
  assert.equal(withMallocTuning({ PATH: '/bin' }).GLIBC_TUNABLES, MALLOC_TUNABLES);
  assert.equal(withMallocTuning({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES, 'glibc.malloc.arena_max=2');
  assert.match(MALLOC_TUNABLES, /^glibc\.malloc\.mmap_threshold=33554432:glibc\.malloc\.trim_threshold=\d+:glibc\.malloc\.mmap_max=0$/);
});
