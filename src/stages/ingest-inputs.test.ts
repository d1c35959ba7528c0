import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { confinedOpenHooks } from '../data/roots.ts';
import { ingestStage } from './ingest.ts';

test(
  'a folder of more files than the process may hold open is hashed for the cache key (the files were all opened at once: EMFILE)',
  { skip: process.platform === 'win32' && 'no ulimit' },
  () => {
    const base = mkdtempSync(join(tmpdir(), 'ingest-inputs-'));
    mkdirSync(join(base, 'd'));
    for (let i = 0; i < 600; i++) writeFileSync(join(base, 'd', `f${String(i).padStart(3, '0')}.jsonl`), `{"text":"x${i}","label":"y"}\n`);
    // A process allowed 256 open files, as a worker under a low limit is; the key is computed in it.
    const script = `const { ingestStage } = await import(${JSON.stringify(new URL('./ingest.ts', import.meta.url).href)});
const keys = await ingestStage.externalInputs({ task: 'classification', path: 'd' }, { baseDir: ${JSON.stringify(base)}, stateDir: ${JSON.stringify(base)} });
console.log(JSON.stringify(keys));`;
    const out = execFileSync(
      'bash',
      ['-c', 'ulimit -n 256 && exec "$0" --import tsx --input-type=module -e "$1"', process.execPath, script],
      {
        encoding: 'utf8',
        env: { ...process.env, TEMPERED_DATA_ROOTS: '' },
      },
    );
    const keys = JSON.parse(out) as string[];
    assert.equal(keys.length, 600);
    assert.match(keys[0]!, /^d\/f000\.jsonl:[0-9a-f]{64}$/);
    assert.match(keys[599]!, /^d\/f599\.jsonl:[0-9a-f]{64}$/);
  },
);

test('the cache key opens each listed file confined, as the run does: one swapped for a link that leads out is refused, not hashed', async () => {
  const base = mkdtempSync(join(tmpdir(), 'ingest-inputs-'));
  const outside = mkdtempSync(join(tmpdir(), 'ingest-inputs-outside-'));
  writeFileSync(join(outside, 'secret.jsonl'), '{"text":"secret","label":"y"}\n');
  mkdirSync(join(base, 'd'));
  for (const n of ['a', 'b']) writeFileSync(join(base, 'd', `${n}.jsonl`), `{"text":"${n}","label":"y"}\n`);
  let swapped = false;
  // Between the file's check and its opening, where a race would have to hit.
  confinedOpenHooks.beforeOpen = (real) => {
    if (swapped || !real.endsWith('b.jsonl')) return;
    swapped = true;
    rmSync(real);
    symlinkSync(join(outside, 'secret.jsonl'), real);
  };
  try {
    await assert.rejects(
      ingestStage.externalInputs!({ task: 'classification', path: 'd' }, { baseDir: base, stateDir: base }),
      (e: unknown) => {
        assert.ok(e instanceof InputError && e.where === 'd/b.jsonl', String(e));
        assert.match(e.message, /the file was replaced by a symbolic link as it was opened after "d" was listed/);
        return true;
      },
    );
  } finally {
    confinedOpenHooks.beforeOpen = undefined;
  }
  assert.ok(swapped);
});
