/**
 * TEMPERED_PLUGINS modules, loaded for real from files: what a broken plugin gets told, and why a kind
 * may not take a name already in use (the last one loaded used to win silently, sharing the cache
 * records of the kind it replaced).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { configForKind, loadPluginKinds } from './plugin-kinds.ts';

const dir = mkdtempSync(join(tmpdir(), 'tempered-plugins-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const BUILTINS = new Set(['ingest', 'split', 'train']);

const kindSource = (name: string, extra = '') =>
  `{ kind: '${name}', description: 'd', codeVersion: '${name}-1', withSchema: { type: 'object' }, outputs: { rows: { type: 'number' } }, async run() { return { rows: 1 }; }${extra} }`;
let n = 0;
/** A module file of its own (an ES module is loaded once per path), relative to `dir`. */
function plugin(body: string): string {
  const name = `p${++n}.mjs`;
  writeFileSync(join(dir, name), body);
  return name;
}
const exporting = (...kinds: string[]) => plugin(`export function stageKinds() { return [${kinds.join(', ')}]; }\n`);

async function refused(list: string[], message: RegExp, hint?: RegExp): Promise<void> {
  await assert.rejects(loadPluginKinds(list, BUILTINS, dir), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, message);
    if (hint) assert.match(e.hint ?? '', hint);
    return true;
  });
}

describe('plugin stage kinds', () => {
  test("load with their module file's hash in their code version, so an edit of the file misses the cache", async () => {
    const file = exporting(kindSource('filter'));
    const [first] = await loadPluginKinds([file], BUILTINS, dir);
    assert.match(first!.codeVersion, /^filter-1\+file\.[0-9a-f]{12}$/);
    assert.equal(typeof first!.run, 'function');
    // The same kind in a file edited (a comment added): another code version, so its stages miss the cache.
    const edited = plugin(`export function stageKinds() { return [${kindSource('filter')}]; }\n// edited\n`);
    const [second] = await loadPluginKinds([edited], BUILTINS, dir);
    assert.notEqual(second!.codeVersion, first!.codeVersion);
    assert.equal((await loadPluginKinds([file], BUILTINS, dir))[0]!.codeVersion, first!.codeVersion, 'loaded again unchanged');
  });

  // A module loads once per process: the edited file's hash went with the code first imported.
  test('a module file edited since this process loaded it is refused, not hashed as the code that runs', async () => {
    const file = exporting(kindSource('reloaded'));
    await loadPluginKinds([file], BUILTINS, dir);
    writeFileSync(join(dir, file), `export function stageKinds() { return [${kindSource('reloaded')}]; }\n// edited\n`);
    await refused(
      [file],
      /^TEMPERED_PLUGINS: p\d+\.mjs: the module file changed since this process first loaded it, and a module loads once per process/,
      /restart the process/,
    );
  });

  // The hash was of the bytes read before the import: an edit saved during the import put one code's outputs under the other's key.
  test('a module file that changes while it is loaded is refused, not hashed as the code that did not run', async () => {
    const file = plugin(
      `import { appendFileSync } from 'node:fs';\nappendFileSync(new URL(import.meta.url), '// saved again\\n');\nexport function stageKinds() { return [${kindSource('racy')}]; }\n`,
    );
    await refused([file], /^TEMPERED_PLUGINS: p\d+\.mjs: the module file changed while it was loaded$/, /run the command again/);
  });

  test('a module that is not there, a folder, or one that does not load, names the variable and the module', async () => {
    await refused(
      ['my/nope.ts'],
      /^TEMPERED_PLUGINS: my\/nope\.ts: no module file at .*my\/nope\.ts \(ENOENT\)$/,
      /relative to the folder the command runs in/,
    );
    mkdirSync(join(dir, 'folder'));
    await refused(['folder'], /^TEMPERED_PLUGINS: folder: .*folder is a folder; name the module file/);
    await refused([plugin('export function stageKinds( {')], /^TEMPERED_PLUGINS: p\d+\.mjs: the module does not load: /);
    // A TypeScript plugin outside the checkout, where no package.json makes .ts an ES module.
    const cjs = join(dir, 'outside.ts');
    writeFileSync(
      cjs,
      "import { join } from 'node:path';\nexport function stageKinds() { return []; }\nexport default await Promise.resolve(join('a'));\n",
    );
    await refused(['outside.ts'], /the module does not load: /, /name it \.mts/);
  });

  test('what the module exports, and what stageKinds() returns, is checked', async () => {
    await refused([plugin('export const kinds = [];\n')], /exports no stageKinds\(\) function/);
    await refused(
      [plugin('export function stageKinds() { return {}; }\n')],
      /stageKinds\(\) returned an object, not an array of stage kinds/,
    );
    await refused([plugin("export function stageKinds() { throw new Error('no config'); }\n")], /stageKinds\(\) threw: no config/);
  });

  test("each kind's shape: its name, run, outputs' types", async () => {
    await refused([exporting(kindSource('Bad Name!'))], /stage kind 'Bad Name!': kind must be a name of letters, digits/);
    await refused(
      [exporting(`{ kind: 'norun', description: 'd', codeVersion: '1', withSchema: {}, outputs: {} }`)],
      /stage kind 'norun': run\(config, ctx\) is missing/,
    );
    await refused(
      [
        exporting(
          `{ kind: 'odd', description: 'd', codeVersion: '1', withSchema: {}, outputs: { n: { type: 'integer' } }, async run() { return {}; } }`,
        ),
      ],
      /stage kind 'odd': output 'n' has type "integer"; one of table, artifact, json, string, number, boolean/,
    );
    await refused([exporting('null')], /stage kind #1: is null, not a stage kind object/);
  });

  test("a kind may not take a built-in's name, nor another plugin's", async () => {
    await refused(
      [exporting(kindSource('split'))],
      /stage kind 'split' has the name of a built-in kind/,
      /the built-in kinds are ingest, split, train/,
    );
    const twice = exporting(kindSource('export'));
    await refused([twice, twice], /stage kind 'export' is defined twice/);
    const other = exporting(kindSource('export'));
    await refused(
      [twice, other],
      new RegExp(`^TEMPERED_PLUGINS: ${other.replace('.', '\\.')}: stage kind 'export' is also defined by ${twice.replace('.', '\\.')}$`),
    );
    await refused([exporting(kindSource('dup'), kindSource('dup'))], /stage kind 'dup' is defined twice/);
  });

  // Found only when a pipeline used the kind, as a bare error naming no module; and a check that threw
  // crashed validate with a TypeError.
  test("a kind's withSchema is compiled at load, and its check is held to returning an array", async () => {
    await refused(
      [exporting(kindSource('schema-bad').replace("withSchema: { type: 'object' }", "withSchema: { type: 'objekt' }"))],
      /^TEMPERED_PLUGINS: p\d+\.mjs: stage kind 'schema-bad' has an invalid withSchema: /,
    );
    const [throwing] = await loadPluginKinds(
      [exporting(kindSource('throws', ', check(cfg) { return Object.keys(cfg.mapping); }'))],
      BUILTINS,
      dir,
    );
    assert.throws(
      () => throwing!.check!({}, {} as never),
      (e: unknown) =>
        e instanceof InputError &&
        /^TEMPERED_PLUGINS: p\d+\.mjs: stage kind 'throws': check\(\) threw: Cannot convert undefined or null to object$/.test(e.message),
    );
    const [single] = await loadPluginKinds(
      [exporting(kindSource('single', ", check() { return { path: ['x'], message: 'm' }; }"))],
      BUILTINS,
      dir,
    );
    assert.throws(() => single!.check!({}, {} as never), /check\(\) returned an object, not an array of issues/);
    const [fine] = await loadPluginKinds(
      [exporting(kindSource('fine', ", check() { return [{ path: ['x'], message: 'm' }]; }"))],
      BUILTINS,
      dir,
    );
    assert.deepEqual(fine!.check!({}, {} as never), [{ path: ['x'], message: 'm' }]);
  });
  // `default` in withSchema used to be documentation only: a kind read `cfg.column` as undefined.
  test("every hook of a kind gets its withSchema's defaults filled in; the caller's config is left as it is", async () => {
    const schema = `{ type: 'object', properties: {
      column: { type: 'string', default: 'text' },
      limit: { type: 'integer', default: 10 },
      filter: { type: 'object', default: {}, properties: { minLength: { type: 'integer', default: 3 } } },
    } }`;
    const body = `, check(cfg) { globalThis.seenBy.check = cfg; return []; },
      async externalInputs(cfg) { globalThis.seenBy.externalInputs = cfg; return []; },
      async audit(cfg) { globalThis.seenBy.audit = cfg; return {}; },
      absentOutputs(cfg) { globalThis.seenBy.absentOutputs = cfg; return undefined; },
      outputShape(output, cfg) { globalThis.seenBy.outputShape = cfg; return undefined; },
      isolation: { module: 'x', device(cfg) { globalThis.seenBy.device = cfg; return 'cpu'; } }`;
    const source = kindSource('defaults', body)
      .replace("withSchema: { type: 'object' }", `withSchema: ${schema}`)
      .replace('async run() {', 'async run(cfg) { globalThis.seenBy.run = cfg;');
    const [k] = await loadPluginKinds([exporting(source)], BUILTINS, dir);
    const seenBy: Record<string, unknown> = {};
    (globalThis as { seenBy?: unknown }).seenBy = seenBy;
    const config = { limit: 2, extra: 'kept' };
    await k!.run(config, {} as never);
    k!.check!(config, {} as never);
    await k!.externalInputs!(config, {} as never);
    await k!.audit!(config, {}, {} as never);
    k!.isolation!.device!(config);
    k!.absentOutputs!(config, {} as never);
    k!.outputShape!('rows', config, {} as never);
    const filled = { limit: 2, extra: 'kept', column: 'text', filter: { minLength: 3 } };
    assert.deepEqual(seenBy, {
      run: filled,
      check: filled,
      externalInputs: filled,
      audit: filled,
      device: filled,
      absentOutputs: filled,
      outputShape: filled,
    });
    assert.deepEqual(config, { limit: 2, extra: 'kept' }, 'the caller keeps the config as the file wrote it');
    // Each call gets a copy of its own: what one hook changes in it, the next does not see.
    (seenBy.check as { filter: { minLength: number } }).filter.minLength = 99;
    k!.absentOutputs!(config, {} as never);
    assert.deepEqual(seenBy.absentOutputs, filled);
    // A stage run in a child process gets its config filled before it is sent: the child loads the module as written.
    assert.deepEqual(configForKind(k!, config), filled);
    const builtin = { ...k!, kind: 'split' };
    assert.equal(configForKind(builtin, config), config, "a built-in kind's code applies its own defaults");
  });
  // Hooks were called with a copy of the kind as `this`: a kind written as a class lost its private fields.
  test('a kind written as a class keeps its own `this`, private fields and all', async () => {
    const file = plugin(`class Counter {
  #offset = 10;
  kind = 'counter'; description = 'd'; codeVersion = 'counter-1';
  withSchema = { type: 'object', properties: { n: { type: 'integer', default: 3 } } };
  outputs = { n: { type: 'number' } };
  async run(cfg) { return { n: cfg.n + this.#offset }; }
  check(cfg) { return cfg.n + this.#offset > 100 ? [{ path: ['n'], message: 'too big' }] : []; }
}
export function stageKinds() { return [new Counter()]; }
`);
    const [counter] = await loadPluginKinds([file], BUILTINS, dir);
    assert.deepEqual(await counter!.run({}, {} as never), { n: 13 });
    assert.deepEqual(counter!.check!({ n: 95 }, {} as never), [{ path: ['n'], message: 'too big' }]);
  });
});
