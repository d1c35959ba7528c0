import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
