/**
 * `tempered validate` and `--help` answer at once because they load only the spec library and the
 * stage kinds' contracts: no Temporal, onnxruntime, Arrow or SQLite (seconds of loading between
 * them). Checked by recording every module the command resolves, not by timing it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { test } from 'node:test';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const HEAVY = [
  '@temporalio/',
  'onnxruntime-node',
  'apache-arrow',
  'better-sqlite3',
  'adm-zip',
  'hyparquet',
  'fastify',
  '@huggingface/tokenizers',
];

function modulesLoadedBy(args: string[]): { loaded: string[]; status: number | null; stdout: string } {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-loads-'));
  const log = join(dir, 'loaded.txt');
  writeFileSync(
    join(dir, 'hooks.mjs'),
    `import { appendFileSync } from 'node:fs';\nexport async function resolve(s, c, next) { const r = await next(s, c); appendFileSync(${JSON.stringify(log)}, r.url + '\\n'); return r; }\n`,
  );
  writeFileSync(
    join(dir, 'register.mjs'),
    `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)});\n`,
  );
  writeFileSync(log, '');
  const r = spawnSync(
    process.execPath,
    ['--import', pathToFileURL(join(dir, 'register.mjs')).href, join(root, 'bin', 'tempered.js'), ...args],
    { cwd: root, encoding: 'utf8', env: { ...process.env, TEMPERED_HOME: dir } },
  );
  return { loaded: readFileSync(log, 'utf8').split('\n').filter(Boolean), status: r.status, stdout: r.stdout };
}

for (const args of [['validate', 'pipelines/sms-spam.yaml'], ['--help']]) {
  test(`tempered ${args.join(' ')} loads no Temporal, onnxruntime, Arrow or SQLite`, () => {
    const r = modulesLoadedBy(args);
    assert.equal(r.status, 0, r.stdout);
    assert.ok(
      r.loaded.some((u) => u.includes('/cli/main.ts')),
      'the hook saw the CLI load',
    );
    const heavy = r.loaded.filter((u) => HEAVY.some((h) => u.includes(`/node_modules/${h}`)));
    assert.deepEqual(heavy, []);
  });
}
