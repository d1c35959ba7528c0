import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { formatFromExtension, globMatcher, resolveSources } from './sources.ts';
import { dataRoots, DATA_ROOTS_ENV } from './roots.ts';

test('glob syntax: * stays in a folder, ** crosses folders, ? [] {} as usual', () => {
  const m = (g: string, p: string) => globMatcher(g)(p);
  assert.ok(m('/d/*.jsonl', '/d/a.jsonl'));
  assert.ok(!m('/d/*.jsonl', '/d/sub/a.jsonl'));
  assert.ok(m('/d/**/*.jsonl', '/d/a.jsonl'));
  assert.ok(m('/d/**/*.jsonl', '/d/x/y/a.jsonl'));
  assert.ok(m('/d/part-?.csv', '/d/part-1.csv') && !m('/d/part-?.csv', '/d/part-10.csv'));
  assert.ok(m('/d/[ab].tsv', '/d/b.tsv') && !m('/d/[!ab].tsv', '/d/b.tsv'));
  assert.ok(!m('/d/[!ab]x', '/d//x'), 'a negated class does not match a folder separator');
  assert.ok(m('/d/*.{csv,tsv}', '/d/x.tsv') && !m('/d/*.{csv,tsv}', '/d/x.json'));
  assert.ok(m('/d/{a,{b,c}*}.csv', '/d/cc.csv') && !m('/d/{a,{b,c}*}.csv', '/d/d.csv'), 'braces nest');
  assert.ok(!m('/d/a.csv', '/d/aXcsv'), 'dots are literal');
  assert.ok(m('/d/(x)+$.csv', '/d/(x)+$.csv') && !m('/d/(x)+$.csv', '/d/xx.csv'), 'regex metacharacters are literal');
  assert.throws(() => globMatcher('/d/{a,b'), InputError);
});

test('a pathological glob is matched in linear time: *a*a*a…b over long names answers', { timeout: 60_000 }, () => {
  // With a backtracking RegExp each of these names takes longer than the test suite's whole
  // budget (~10x per extra `*a`); the test's timeout fails it if matching hangs.
  const m = globMatcher('*a*a*a*a*a*a*a*a*a*a*a*a*b');
  const names = [10, 40, 200, 5000].map((n) => 'a'.repeat(n));
  assert.deepEqual(names.map(m), [false, false, false, false]);
  assert.equal(m('a'.repeat(40) + 'b'), true);
  assert.equal(m('a'.repeat(11) + 'b'), false);
});

test('the pathological glob over a folder of long file names lists the right files', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sources-'));
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, 'a'.repeat(60 + i) + '.jsonl'), '');
  writeFileSync(join(dir, 'a'.repeat(30) + 'b'), '');
  const got = await resolveSources('*a*a*a*a*a*a*a*a*a*a*a*a*b', dir, { format: 'jsonl' });
  assert.deepEqual(
    got.map((s) => s.display),
    ['a'.repeat(30) + 'b'],
  );
});

test('formats from extensions', () => {
  assert.equal(formatFromExtension('x/TRAIN.JSONL'), 'jsonl');
  assert.equal(formatFromExtension('a.ndjson'), 'jsonl');
  assert.equal(formatFromExtension('a.tab'), 'tsv');
  assert.equal(formatFromExtension('a.feather'), 'arrow');
  assert.equal(formatFromExtension('a.txt'), undefined);
});

test('sources are sorted by code units, hidden files skipped, display paths relative to baseDir', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sources-'));
  mkdirSync(join(dir, 'd', 'B'), { recursive: true });
  for (const f of ['d/b.jsonl', 'd/B/a.csv', 'd/a.jsonl', 'd/.hidden.jsonl', 'd/readme.md']) writeFileSync(join(dir, f), '');
  assert.deepEqual(
    (await resolveSources('d', dir)).map((s) => `${s.display}:${s.format}`),
    ['d/B/a.csv:csv', 'd/a.jsonl:jsonl', 'd/b.jsonl:jsonl'],
  );
  // With an explicit format every file counts, whatever its extension.
  assert.equal((await resolveSources('d', dir, { format: 'jsonl' })).length, 4);
  assert.deepEqual(
    (await resolveSources(join(dir, 'd', 'a.jsonl'), '/')).map((s) => s.display),
    [join(dir, 'd', 'a.jsonl').slice(1)],
  );
  assert.deepEqual(
    (await resolveSources('d/*.jsonl', dir)).map((s) => s.display),
    ['d/a.jsonl', 'd/b.jsonl'],
    '* does not descend',
  );
  assert.deepEqual(
    (await resolveSources('d/**/*.csv', dir)).map((s) => s.display),
    ['d/B/a.csv'],
  );
  await assert.rejects(resolveSources('d/*.parquet', dir), (e: unknown) => e instanceof InputError && e.where === 'path');
  await assert.rejects(resolveSources('d/{a,b', dir), InputError);
});

test('walk budgets: too many entries or files fail with an error naming the pattern and the limit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sources-'));
  mkdirSync(join(dir, 'd'));
  for (let i = 0; i < 50; i++) writeFileSync(join(dir, 'd', `f${i}.jsonl`), '');
  await assert.rejects(
    resolveSources('d/**/*.jsonl', dir, { maxEntries: 20 }),
    (e: unknown) =>
      e instanceof InputError && e.where === 'path' && e.message.includes('"d/**/*.jsonl"') && e.message.includes('20 directory entries'),
  );
  await assert.rejects(
    resolveSources('d', dir, { maxFiles: 10 }),
    (e: unknown) => e instanceof InputError && /50 files, more than the limit of 10/.test(e.message),
  );
  assert.equal((await resolveSources('d', dir, { maxEntries: 50, maxFiles: 50 })).length, 50);
});

test('confinement: .. and absolute paths outside the data roots are refused, naming the setting', async () => {
  const base = mkdtempSync(join(tmpdir(), 'pipeline-'));
  const outside = mkdtempSync(join(tmpdir(), 'outside-'));
  writeFileSync(join(outside, 'secret.jsonl'), '{"text":"x","label":"y"}\n');
  const roots = dataRoots(base, { env: {} });
  const refused = (e: unknown) =>
    e instanceof InputError &&
    e.where === 'path' &&
    e.message.includes('outside the allowed data roots') &&
    (e.hint ?? '').includes(DATA_ROOTS_ENV);
  const rel = join('..', outside.split('/').pop()!, 'secret.jsonl');
  await assert.rejects(resolveSources(rel, base, { roots }), refused);
  await assert.rejects(resolveSources(join(outside, 'secret.jsonl'), base, { roots }), refused);
  await assert.rejects(resolveSources('../../../../../../../../etc/passwd', base, { roots, format: 'jsonl' }), refused);
  await assert.rejects(resolveSources('/etc/*', base, { roots, format: 'jsonl' }), refused);
  await assert.rejects(resolveSources('/**', base, { roots, format: 'jsonl' }), refused, 'a whole-filesystem walk never starts');
  // A path outside that does not exist is refused as outside too: "does not exist" told which paths outside exist.
  await assert.rejects(resolveSources(join(outside, 'none.jsonl'), base, { roots }), refused);
  await assert.rejects(resolveSources(join(outside, 'none', '*.jsonl'), base, { roots }), refused);
  await assert.rejects(
    resolveSources('none.jsonl', base, { roots }),
    (e: unknown) => e instanceof InputError && e.code === 'source-missing',
    'one missing under the roots is still missing',
  );
  // Submit's look on the submitter's own machine says it missing, to warn of it.
  await assert.rejects(
    resolveSources(join(outside, 'none.jsonl'), base, { roots, sayMissingOutside: true }),
    (e: unknown) => e instanceof InputError && e.code === 'source-missing',
  );
  // The setting lets its folders in, and is then the whole list: the pipeline's folder, which a worker takes from
  // whoever submitted the run, is no longer one.
  const listed = dataRoots(base, { env: { [DATA_ROOTS_ENV]: outside } });
  assert.deepEqual(
    (await resolveSources(rel, base, { roots: listed })).map((s) => s.abs),
    [join(base, rel)],
  );
  writeFileSync(join(base, 'own.jsonl'), '{"text":"x","label":"y"}\n');
  assert.equal((await resolveSources('own.jsonl', base, { roots })).length, 1);
  await assert.rejects(resolveSources('own.jsonl', base, { roots: listed }), refused);
});

test('confinement holds after symlinks: a link to a file or folder outside is refused, a walk refuses a file link out and leaves a folder link out with a warning', async () => {
  const base = mkdtempSync(join(tmpdir(), 'pipeline-'));
  const outside = mkdtempSync(join(tmpdir(), 'outside-'));
  writeFileSync(join(outside, 'secret.jsonl'), '{"text":"x","label":"y"}\n');
  mkdirSync(join(base, 'data'));
  writeFileSync(join(base, 'data', 'ok.jsonl'), '{"text":"x","label":"y"}\n');
  symlinkSync(join(outside, 'secret.jsonl'), join(base, 'data', 'link.jsonl'));
  symlinkSync(outside, join(base, 'escape'));
  const roots = dataRoots(base, { env: {} });
  const refused = (e: unknown) =>
    e instanceof InputError &&
    e.message.includes(realpathSync(join(outside, 'secret.jsonl'))) &&
    e.message.includes('outside the allowed data roots');
  await assert.rejects(resolveSources('data/link.jsonl', base, { roots }), refused);
  await assert.rejects(resolveSources('escape/secret.jsonl', base, { roots }), refused);
  await assert.rejects(
    resolveSources('escape/*.jsonl', base, { roots }),
    (e: unknown) => e instanceof InputError && e.message.includes('outside the allowed data roots'),
  );
  await assert.rejects(
    resolveSources('escape', base, { roots }),
    (e: unknown) => e instanceof InputError && e.message.includes('outside the allowed data roots'),
  );
  // A walk that comes upon the link refuses it by its name, as the path itself is refused: leaving it out lost its rows
  // without a word.
  const linkRefused = (e: unknown) =>
    e instanceof InputError &&
    e.message.startsWith(`path: "data/link.jsonl" resolves to ${realpathSync(join(outside, 'secret.jsonl'))}, which is outside`);
  await assert.rejects(resolveSources('data', base, { roots }), linkRefused);
  // A link to a folder that a walk finds is walked when it stays inside; `escape` leads out and is left out with a
  // warning naming it (whether it holds matches cannot be known without walking outside; a `venv -> /opt/...` link in
  // a pipeline folder made every `**` glob fail), while a matched link to a FILE that leads out still fails.
  const escapeWarning = `escape is a symbolic link to ${realpathSync(outside)}, a folder outside the allowed data roots: not walked (to read it, add that folder to TEMPERED_DATA_ROOTS on the worker)`;
  await assert.rejects(resolveSources('**/*.jsonl', base, { roots }), linkRefused);
  const warnings: string[] = [];
  assert.deepEqual(
    (await resolveSources('**/ok.jsonl', base, { roots, onWarning: (w) => warnings.push(w) })).map((s) => s.display),
    ['data/ok.jsonl'],
  );
  assert.deepEqual(warnings, [escapeWarning]);
  // A link that stays inside the roots is fine, given as the path or found by a walk.
  symlinkSync(join(base, 'data', 'ok.jsonl'), join(base, 'inside.jsonl'));
  assert.equal((await resolveSources('inside.jsonl', base, { roots })).length, 1);
  assert.deepEqual(
    (await resolveSources('*.jsonl', base, { roots })).map((s) => s.display),
    ['inside.jsonl'],
  );
});

test('a walk reads the links to data files it finds (git-annex, DVC, shard folders) and fails on a link to nothing', async () => {
  const base = mkdtempSync(join(tmpdir(), 'pipeline-'));
  const roots = dataRoots(base, { env: {} });
  mkdirSync(join(base, 'store'));
  mkdirSync(join(base, 'data'));
  writeFileSync(join(base, 'store', 'a.jsonl'), '{"text":"x","label":"y"}\n');
  writeFileSync(join(base, 'data', 'b.jsonl'), '{"text":"x","label":"y"}\n');
  symlinkSync('../store/a.jsonl', join(base, 'data', 'a.jsonl'));
  symlinkSync('../store', join(base, 'data', 'more'));
  for (const path of ['data', 'data/*.jsonl', 'data/**'])
    assert.deepEqual(
      (await resolveSources(path, base, { roots })).map((s) => [s.display, s.abs]),
      [
        ['data/a.jsonl', join(base, 'data', 'a.jsonl')],
        ['data/b.jsonl', join(base, 'data', 'b.jsonl')],
      ],
      path,
    );
  // git-annex's link to content not fetched here.
  symlinkSync('../.git/annex/objects/c.jsonl', join(base, 'data', 'c.jsonl'));
  for (const path of ['data', 'data/*.jsonl'])
    await assert.rejects(resolveSources(path, base, { roots }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === 'path', String(e));
      assert.equal(e.message, 'path: data/c.jsonl is a symbolic link to ../.git/annex/objects/c.jsonl, which does not exist');
      assert.match(e.hint ?? '', /git annex get/);
      return true;
    });
  // A link to a link to nothing names the missing end; links in a loop say so (both said 'which does not exist').
  const refused = async (path: string, message: string) =>
    assert.rejects(resolveSources(path, base, { roots }), (e: unknown) => {
      assert.ok(e instanceof InputError && e.where === 'path', String(e));
      assert.equal(e.message, message);
      return true;
    });
  symlinkSync('c.jsonl', join(base, 'data', 'd.jsonl'));
  await refused(
    'data/d.*',
    'path: data/d.jsonl is a symbolic link to c.jsonl, which leads to .git/annex/objects/c.jsonl, which does not exist',
  );
  symlinkSync('f.jsonl', join(base, 'data', 'e.jsonl'));
  symlinkSync('e.jsonl', join(base, 'data', 'f.jsonl'));
  await refused('data/e.*', 'path: data/e.jsonl is a symbolic link to f.jsonl, and the links lead round in a loop');
  // Not a data file's name: left out, as a file of that name is.
  assert.deepEqual(
    (await resolveSources('data/b.*', base, { roots })).map((s) => s.display),
    ['data/b.jsonl'],
  );
});

test('a walk goes into links to folders inside the roots, each file read once; a link that leads round is left out with a warning', async () => {
  const base = mkdtempSync(join(tmpdir(), 'pipeline-'));
  const roots = dataRoots(base, { env: {} });
  const row = '{"text":"x","label":"y"}\n';
  for (const d of ['store/shard1', 'data/p', 'data/q']) mkdirSync(join(base, d), { recursive: true });
  for (const f of ['store/shard1/a.jsonl', 'store/shard1/b.jsonl', 'data/x.jsonl', 'data/p/f.jsonl', 'data/q/g.jsonl'])
    writeFileSync(join(base, f), row);
  // A shard folder linked in from elsewhere: its rows went missing without a word.
  symlinkSync('../store/shard1', join(base, 'data', 'shard1'));
  // Links to the folder itself and to its parent, and two folders linked to each other: walked, they never end.
  symlinkSync('.', join(base, 'data', 'self'));
  symlinkSync('..', join(base, 'data', 'up'));
  symlinkSync('../q', join(base, 'data', 'p', 'to-q'));
  symlinkSync('../p', join(base, 'data', 'q', 'to-p'));
  for (const path of ['data', 'data/**/*.jsonl']) {
    const warnings: string[] = [];
    assert.deepEqual(
      (await resolveSources(path, base, { roots, onWarning: (w) => warnings.push(w) })).map((s) => [s.display, s.abs]),
      [
        // Each real file once, under the name the walk found it by where it is no link (data/p/f.jsonl, not
        // data/q/to-p/f.jsonl), else under the first name (up/store/... sorts after data/...).
        ['data/p/f.jsonl', join(base, 'data/p/f.jsonl')],
        ['data/q/g.jsonl', join(base, 'data/q/g.jsonl')],
        ['data/shard1/a.jsonl', join(base, 'data/shard1/a.jsonl')],
        ['data/shard1/b.jsonl', join(base, 'data/shard1/b.jsonl')],
        ['data/x.jsonl', join(base, 'data/x.jsonl')],
      ],
      path,
    );
    assert.ok(
      warnings.includes(
        'data/self is a symbolic link to data, a folder the walk came through to reach it: not walked, as it would lead round for ever',
      ),
      warnings.join('\n'),
    );
    assert.ok(
      warnings.some((w) => w.startsWith('data/up is a symbolic link to ')),
      warnings.join('\n'),
    );
    // A glob walk follows p/to-q into q and finds the way back; a folder walk goes into no folder twice (q is listed
    // already), so it never comes upon that loop.
    if (path !== 'data')
      assert.ok(
        warnings.some((w) =>
          /^data\/(p\/to-q\/to-p|q\/to-p\/to-q) is a symbolic link to data\/[pq], a folder the walk came through/.test(w),
        ),
        warnings.join('\n'),
      );
    assert.equal(new Set(warnings).size, warnings.length, 'each loop said once');
  }
  // A glob that does not reach past the link's own level does not go into it.
  assert.deepEqual(
    (await resolveSources('data/*.jsonl', base, { roots })).map((s) => s.display),
    ['data/x.jsonl'],
  );
});

test('a walk goes through each folder in name order, so its warnings are the same on every file system', async () => {
  const base = mkdtempSync(join(tmpdir(), 'pipeline-'));
  const roots = dataRoots(base, { env: {} });
  // Folders linked to each other in pairs, made in an order that is not the names' (ext4 lists a folder by hash).
  const pairs = ['3', '1', '2'];
  for (const n of pairs) {
    for (const [x, y] of [
      [`b${n}`, `a${n}`],
      [`a${n}`, `b${n}`],
    ]) {
      mkdirSync(join(base, 'data', x!), { recursive: true });
      writeFileSync(join(base, 'data', x!, 'f.jsonl'), '{"text":"x","label":"y"}\n');
      symlinkSync(`../${y}`, join(base, 'data', x!, 'to'));
    }
  }
  const loop = (n: string) =>
    `data/${n}/to/to is a symbolic link to data/${n}, a folder the walk came through to reach it: not walked, as it would lead round for ever`;
  for (const path of ['data', 'data/**/*.jsonl']) {
    const warnings: string[] = [];
    await resolveSources(path, base, { roots, onWarning: (w) => warnings.push(w) });
    // A folder walk lists every folder of data/ before it goes into a link, and goes into no folder twice: no loop.
    assert.deepEqual(warnings, path === 'data' ? [] : ['a1', 'a2', 'a3', 'b1', 'b2', 'b3'].map(loop), path);
  }
});

test('a folder walk goes into each real folder once, however many links lead to it: folders linked each to all the others', async () => {
  const base = mkdtempSync(join(tmpdir(), 'pipeline-'));
  const roots = dataRoots(base, { env: {} });
  const n = 8;
  for (let i = 1; i <= n; i++) {
    mkdirSync(join(base, 'd', `f${i}`), { recursive: true });
    writeFileSync(join(base, 'd', `f${i}`, 'r.jsonl'), '{"text":"a","label":"x"}\n');
  }
  for (let i = 1; i <= n; i++) for (let j = 1; j <= n; j++) if (i !== j) symlinkSync(`../f${j}`, join(base, 'd', `f${i}`, `l${j}`));
  // Walked once per route through them (every ordering), 8 such folders ran into the 200,000-entry budget.
  const warnings: string[] = [];
  assert.deepEqual(
    (await resolveSources('d', base, { roots, onWarning: (w) => warnings.push(w) })).map((s) => s.display),
    Array.from({ length: n }, (_, i) => `d/f${i + 1}/r.jsonl`),
  );
  assert.deepEqual(warnings, []);
});

test('a link to a file the walk reads already, or a second link to one file, is read once', async () => {
  const base = mkdtempSync(join(tmpdir(), 'pipeline-'));
  const roots = dataRoots(base, { env: {} });
  mkdirSync(join(base, 'store'));
  mkdirSync(join(base, 'data'));
  writeFileSync(join(base, 'store', 'x.jsonl'), '{"text":"x","label":"y"}\n');
  writeFileSync(join(base, 'data', 'v3.jsonl'), '{"text":"v","label":"y"}\n');
  // The latest version named beside the versions: its rows were read twice.
  symlinkSync('v3.jsonl', join(base, 'data', 'latest.jsonl'));
  // Two shard names for one stored file, one through a link to a link.
  symlinkSync('../store/x.jsonl', join(base, 'data', 'b.jsonl'));
  symlinkSync('b.jsonl', join(base, 'data', 'a.jsonl'));
  for (const path of ['data', 'data/*.jsonl', '**/*.jsonl'])
    assert.deepEqual(
      (await resolveSources(path, base, { roots })).map((s) => s.display),
      path === '**/*.jsonl' ? ['data/v3.jsonl', 'store/x.jsonl'] : ['data/a.jsonl', 'data/v3.jsonl'],
      path,
    );
  // Given as the path, a link is read as it is.
  assert.deepEqual(
    (await resolveSources('data/latest.jsonl', base, { roots })).map((s) => s.display),
    ['data/latest.jsonl'],
  );
});

test(
  'a named pipe given as the path is refused, not read (it waits for a writer, for ever if none comes)',
  { skip: process.platform === 'win32' && 'no mkfifo' },
  async () => {
    const base = mkdtempSync(join(tmpdir(), 'pipeline-'));
    const roots = dataRoots(base, { env: {} });
    execFileSync('mkfifo', [join(base, 'pipe.jsonl')]);
    symlinkSync('pipe.jsonl', join(base, 'link.jsonl'));
    for (const path of ['pipe.jsonl', 'link.jsonl'])
      await assert.rejects(resolveSources(path, base, { roots }), (e: unknown) => {
        assert.ok(e instanceof InputError && e.where === 'path', String(e));
        assert.match(e.message, new RegExp(`^path: "${path.replace('.', '\\.')}" is not a regular file or a folder \\(a named pipe`));
        return true;
      });
    // A walk leaves it out, as it always did.
    writeFileSync(join(base, 'ok.jsonl'), '{"text":"x","label":"y"}\n');
    assert.deepEqual(
      (await resolveSources('*.jsonl', base, { roots })).map((s) => s.display),
      ['ok.jsonl'],
    );
  },
);
