import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { confinedOpenHooks, DATA_ROOTS_ENV } from '../data/roots.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { ingestStage } from './ingest.ts';
import { testStageContext } from './stage-context.testing.ts';

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

/** `TEMPERED_DATA_ROOTS` as the worker process has it, for the length of `body`. */
async function withWorkerRoots(value: string, body: () => Promise<void>): Promise<void> {
  const saved = process.env[DATA_ROOTS_ENV];
  process.env[DATA_ROOTS_ENV] = value;
  try {
    await body();
  } finally {
    if (saved === undefined) delete process.env[DATA_ROOTS_ENV];
    else process.env[DATA_ROOTS_ENV] = saved;
  }
}

// A run's baseDir is the folder its submitter's pipeline file sits in on their machine (RunOptions.baseDir, in the
// workflow input): a pipeline file at /etc/p.yaml with `path: shadow` and `onBadRow: quarantine` made /etc a data root
// on the worker, and the file's lines came back in the quarantine table. Where the worker lists its roots, they alone
// count: neither the submitter's folder nor the worker's state folder (its registry and audit databases) is one.
test('a worker with TEMPERED_DATA_ROOTS set reads local inputs from those folders alone, not from the folder the submitter names', async () => {
  const top = mkdtempSync(join(tmpdir(), 'ingest-roots-'));
  const allowed = join(top, 'data');
  const submitted = join(top, 'etc');
  const state = join(top, 'state');
  for (const d of [allowed, submitted, state]) mkdirSync(d);
  writeFileSync(join(submitted, 'shadow'), 'root:$6$secret:19000:0:99999:7:::\n');
  writeFileSync(join(state, 'registry.db'), 'SQLite format 3\n');
  writeFileSync(join(allowed, 'train.jsonl'), '{"text":"a","label":"y"}\n{"text":"b","label":"n"}\n');
  const store = new ArtifactStore(join(state, 'store'));
  const ctx = (baseDir: string) => testStageContext({ root: state, store, baseDir, workDir: mkdtempSync(join(top, 'work-')) });
  const refusal = (path: string) => (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.where, 'path');
    assert.ok(e.message.includes(path), e.message);
    assert.ok(e.message.includes(`outside the allowed data roots (${allowed}`), e.message);
    assert.match(e.message, /reads local inputs only from the folders TEMPERED_DATA_ROOTS names/);
    assert.match(e.hint ?? '', /add a folder that holds .* to TEMPERED_DATA_ROOTS on the workers/);
    assert.doesNotMatch(e.hint ?? '', /pipeline file's folder/);
    return true;
  };
  try {
    await withWorkerRoots(allowed, async () => {
      const attack = {
        task: 'classification' as const,
        path: 'shadow',
        format: 'jsonl' as const,
        onBadRow: 'quarantine' as const,
        maxBadFraction: 1,
      };
      await assert.rejects(ingestStage.run(attack, ctx(submitted)), refusal(join(submitted, 'shadow')));
      await assert.rejects(
        ingestStage.externalInputs!(attack, { baseDir: submitted, stateDir: state }),
        refusal(join(submitted, 'shadow')),
      );
      // The state folder is not a root either, nor TEMPERED_HOME.
      const db = { ...attack, path: join(state, 'registry.db') };
      await assert.rejects(ingestStage.run(db, ctx(submitted)), refusal(join(state, 'registry.db')));
      process.env.TEMPERED_HOME = state;
      try {
        await assert.rejects(ingestStage.run(db, ctx(submitted)), refusal(join(state, 'registry.db')));
      } finally {
        delete process.env.TEMPERED_HOME;
      }
      // What the operator listed is read, whichever folder the pipeline file came from.
      const ok = { task: 'classification' as const, path: join(allowed, 'train.jsonl') };
      const out = await ingestStage.run(ok, ctx(submitted));
      assert.equal(out.rows, 2);
      assert.equal((await ingestStage.externalInputs!(ok, { baseDir: submitted, stateDir: state })).length, 1);
    });
    // Unset (one machine: the pipeline folder is its user's), the pipeline's folder is a root, as before.
    await withWorkerRoots('', async () => {
      const out = await ingestStage.run({ task: 'classification', path: 'train.jsonl' }, ctx(allowed));
      assert.equal(out.rows, 2);
    });
  } finally {
    rmSync(top, { recursive: true, force: true });
  }
});
