// The library (src/) knows nothing of Temporal: no file under src/ imports @temporalio/* or reaches
// into the Temporal-facing folders beside it. Workflows, activities, the worker, the command line and
// the client depend on the library, never the other way round.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SRC = join(ROOT, 'src');
const EDGE_FOLDERS = ['infra', 'activities', 'workflows', 'cli', 'client', 'ui', 'tests', 'bench'];

function tsFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) tsFiles(p, out);
    else if (/\.(ts|mts|js|mjs)$/.test(name)) out.push(p);
  }
  return out;
}

/** Module specifiers of static imports, re-exports, side-effect imports and dynamic imports. */
function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  const patterns = [/\bfrom\s*(['"])([^'"]+)\1/g, /\bimport\s*(['"])([^'"]+)\1/g, /\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g];
  for (const re of patterns) for (const m of source.matchAll(re)) out.push(m[2]!);
  return out;
}

/** Why `spec`, imported by `file`, breaks the layering; undefined when it does not. */
function violation(file: string, spec: string): string | undefined {
  if (spec.startsWith('@temporalio/')) return `imports ${spec}`;
  if (!spec.startsWith('.')) return undefined;
  const target = relative(ROOT, resolve(dirname(file), spec));
  const top = target.split(sep)[0]!;
  if (EDGE_FOLDERS.includes(top)) return `reaches into ${top}/ (${spec})`;
  return undefined;
}

test('the scanner finds every form of import', () => {
  const sample = [
    "import { Client } from '@temporalio/client';",
    "import type { RunInput } from '../../workflows/types.ts';",
    'export { x } from "../../cli/args.ts";',
    "import '../../infra/runtime.ts';",
    "const m = await import('../../activities/index.ts');",
    'import {\n  a,\n  b,\n} from "../../client/runs.ts";',
  ].join('\n');
  const specs = importSpecifiers(sample);
  assert.deepEqual(
    specs.sort(),
    [
      '../../activities/index.ts',
      '../../cli/args.ts',
      '../../client/runs.ts',
      '../../infra/runtime.ts',
      '../../workflows/types.ts',
      '@temporalio/client',
    ].sort(),
  );
  const file = join(SRC, 'spec', 'x.ts');
  for (const s of specs) assert.ok(violation(file, s), `${s} should count as a violation`);
  assert.equal(violation(file, '../store/artifact-store.ts'), undefined);
  assert.equal(violation(file, '../activities/x.ts'), undefined, 'src/activities would be inside the library');
  assert.equal(violation(file, 'apache-arrow'), undefined);
});

test('no file under src/ imports Temporal or the folders that wrap the library', () => {
  const files = tsFiles(SRC);
  assert.ok(files.length > 50, `expected the library's files under ${SRC}, found ${files.length}`);
  const problems: string[] = [];
  let seen = 0;
  for (const file of files) {
    for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
      seen++;
      const why = violation(file, spec);
      if (why) problems.push(`${relative(ROOT, file)}: ${why}`);
    }
  }
  assert.ok(seen > 200, `expected to see the library's imports, saw ${seen}`);
  assert.deepEqual(problems, [], `src/ is the Temporal-free library; move Temporal-facing code beside infra/:\n${problems.join('\n')}`);
});

test('library and edge code never import test support (*.testing.ts)', () => {
  const dirs = ['src', 'cli', 'client', 'infra', 'activities', 'workflows'].map((d) => join(ROOT, d));
  const files = dirs.flatMap((d) => tsFiles(d)).filter((f) => !/\.test(ing)?\.ts$/.test(f));
  assert.ok(files.length > 50);
  const problems = files.flatMap((f) =>
    importSpecifiers(readFileSync(f, 'utf8'))
      .filter((s) => s.endsWith('.testing.ts'))
      .map((s) => `${relative(ROOT, f)} imports ${s}`),
  );
  assert.deepEqual(problems, [], 'test support is for tests and benches; move what the library needs out of the *.testing.ts file');
});
