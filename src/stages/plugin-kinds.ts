/**
 * Stage kinds from the modules TEMPERED_PLUGINS names. A plugin is user code loaded into every worker
 * and CLI process, so what it hands over is checked before any pipeline can use it: each failure
 * names the variable, the module and the kind. A kind may not take a built-in's name or another
 * plugin's (the last one loaded used to win, silently, and shared the other's cache records).
 *
 * A plugin kind's code version gets the sha256 of its module file appended: an edit of the file
 * misses the cache even when its author forgot to bump `codeVersion`. Modules the file imports are
 * not hashed; their changes still need a new `codeVersion`.
 */
import { readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InputError } from '../errors.ts';
import { PLUGINS_VAR, sha256Of, type PluginFile } from './plugin-file.ts';

export { PLUGINS_VAR, type PluginFile } from './plugin-file.ts';
import type { AnyStageKind } from './types.ts';
import type { KindIssue } from '../spec/types.ts';
import { withDefaults, withValidator } from '../spec/schema.ts';

const KIND_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;
const OUTPUT_TYPES = new Set(['table', 'artifact', 'json', 'string', 'number', 'boolean']);
const HOW = `${PLUGINS_VAR} is a comma-separated list of module files, relative to the folder the command runs in; set the same list on every worker and CLI process`;

/** The modules TEMPERED_PLUGINS names, as written. */
export function pluginList(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env[PLUGINS_VAR] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export async function loadPluginKinds(
  list: readonly string[],
  builtins: ReadonlySet<string>,
  cwd = process.cwd(),
): Promise<AnyStageKind[]> {
  const out: AnyStageKind[] = [];
  const from = new Map<string, string>();
  for (const p of list) {
    const fail = (message: string, hint = HOW) => new InputError(`${PLUGINS_VAR}: ${p}: ${message}`, { hint });
    const abs = resolve(cwd, p);
    let bytes: Buffer;
    try {
      if (statSync(abs).isDirectory()) throw fail(`${abs} is a folder; name the module file that exports stageKinds()`);
      bytes = readFileSync(abs);
    } catch (e) {
      if (e instanceof InputError) throw e;
      throw fail(`no module file at ${abs} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    let mod: { stageKinds?: unknown };
    try {
      mod = (await import(pathToFileURL(abs).href)) as { stageKinds?: unknown };
    } catch (e) {
      const message = (e as Error).message;
      // tsx reads a .ts file as CommonJS unless a package.json above it says "type": "module"; its imports then fail oddly.
      const commonJs = /\brequire\(|ES Module|Cannot use import statement|"cjs" output format/.test(message) && abs.endsWith('.ts');
      throw fail(
        `the module does not load: ${message}`,
        commonJs
          ? 'outside a folder whose package.json says "type": "module" a .ts file is read as CommonJS: name it .mts, or add that package.json'
          : 'fix the module; it is loaded as an ES module (TypeScript through tsx)',
      );
    }
    if (typeof mod.stageKinds !== 'function')
      throw fail('exports no stageKinds() function', 'export function stageKinds() { return [myKind]; }');
    let kinds: unknown;
    try {
      kinds = (mod.stageKinds as () => unknown)();
    } catch (e) {
      throw fail(`stageKinds() threw: ${(e as Error).message}`, 'stageKinds() must return the kinds without failing');
    }
    if (!Array.isArray(kinds)) throw fail(`stageKinds() returned ${describe(kinds)}, not an array of stage kinds`, 'return [kindA, kindB]');
    // The file is read again after its import: an edit saved in between would put the old code's outputs under
    // the new code's cache key (or the reverse). Equal reads on both sides bound the import's read.
    let after: Buffer | undefined;
    try {
      after = readFileSync(abs);
    } catch {
      after = undefined;
    }
    if (!after?.equals(bytes)) throw fail('the module file changed while it was loaded', 'run the command again once the file is saved');
    const sha256 = sha256Of(bytes);
    // An ES module is evaluated once per process: a second import of an edited file runs the code first imported.
    const first = imported.get(abs);
    if (first !== undefined && first !== sha256)
      throw fail(
        'the module file changed since this process first loaded it, and a module loads once per process: the code that would run is not the code in the file',
        'restart the process to load the edited file',
      );
    imported.set(abs, sha256);
    const hash = sha256.slice(0, 12);
    kinds.forEach((k: unknown, i) => {
      const problem = shapeProblem(k);
      const name = typeof (k as AnyStageKind | null)?.kind === 'string' ? `'${(k as AnyStageKind).kind}'` : `#${i + 1}`;
      if (problem) throw fail(`stage kind ${name}: ${problem}`, 'see docs/plugins.md for what a stage kind holds');
      const kind = k as AnyStageKind;
      if (builtins.has(kind.kind))
        throw fail(
          `stage kind '${kind.kind}' has the name of a built-in kind`,
          `give it a name of its own; the built-in kinds are ${[...builtins].join(', ')}`,
        );
      const other = from.get(kind.kind);
      if (other !== undefined)
        throw fail(
          other === p ? `stage kind '${kind.kind}' is defined twice` : `stage kind '${kind.kind}' is also defined by ${other}`,
          'give each kind a name of its own, and name each module once',
        );
      try {
        withValidator(kind.kind, kind.withSchema);
        withDefaults(kind.kind, kind.withSchema, {});
      } catch (e) {
        throw fail((e as Error).message, "withSchema must be a JSON Schema (draft 2020-12) of the stage's with");
      }
      from.set(kind.kind, p);
      out.push(asLoaded(kind, { path: abs, sha256 }, p));
    });
  }
  return out;
}

/**
 * The kind as tempered uses it: its module file's hash in its code version (the cache key's, so an edit
 * misses), the withSchema's defaults filled in wherever a hook reads the config, and its check held to its
 * contract, so a check that throws or returns no array is reported as the plugin's, not as a bare TypeError
 * from validate. Hooks run with the kind as written as `this` (a class keeps its private fields).
 */
function asLoaded(kind: AnyStageKind, file: PluginFile, module: string): AnyStageKind {
  const loaded = Object.assign(Object.create(Object.getPrototypeOf(kind) as object) as AnyStageKind, kind, {
    codeVersion: `${kind.codeVersion}+file.${file.sha256.slice(0, 12)}`,
  });
  loadedPlugins.set(loaded, file);
  // Each call gets a filled copy of its own: what one hook changes, the next does not see.
  const filled = <T>(config: T): T => withDefaults(kind.kind, kind.withSchema, config);
  const onFilled =
    <A extends unknown[], R>(hook: (config: any, ...rest: A) => R) =>
    (config: unknown, ...rest: A): R =>
      hook.call(kind, filled(config), ...rest);
  loaded.run = onFilled(kind.run);
  if (kind.externalInputs) loaded.externalInputs = onFilled(kind.externalInputs);
  if (kind.audit) loaded.audit = onFilled(kind.audit);
  if (kind.absentOutputs) loaded.absentOutputs = onFilled(kind.absentOutputs);
  if (kind.outputShape) {
    const outputShape = kind.outputShape;
    loaded.outputShape = (output, config, ctx) => outputShape.call(kind, output, filled(config), ctx);
  }
  if (kind.isolation?.device) {
    const device = kind.isolation.device;
    loaded.isolation = { ...kind.isolation, device: (config) => device.call(kind.isolation, filled(config)) };
  }
  const check = kind.check;
  if (check) {
    const where = `${PLUGINS_VAR}: ${module}: stage kind '${kind.kind}'`;
    const hint =
      'check(config, ctx) returns its issues as an array, [] when there are none; config may still hold ${{ … }} references and lack optional fields';
    loaded.check = (config, ctx) => {
      let issues: unknown;
      try {
        issues = check.call(kind, filled(config), ctx);
      } catch (e) {
        throw new InputError(`${where}: check() threw: ${(e as Error)?.message ?? String(e)}`, { hint });
      }
      if (!Array.isArray(issues)) throw new InputError(`${where}: check() returned ${describe(issues)}, not an array of issues`, { hint });
      return issues as KindIssue[];
    };
  }
  return loaded;
}

const loadedPlugins = new WeakMap<AnyStageKind, PluginFile>();
/** Module files this process imported, by absolute path: the sha256 of the bytes it imported. */
const imported = new Map<string, string>();

/**
 * The module file a loaded plugin kind came from, as loaded; undefined for a built-in kind. A child process that
 * runs the kind imports its module afresh, so it checks the file is still what the worker loaded (and keyed by).
 */
export function pluginFileOf(kind: AnyStageKind): PluginFile | undefined {
  return loadedPlugins.get(kind);
}

/**
 * The config a plugin kind's code gets: its withSchema's defaults filled in. The loaded kind's hooks do
 * this themselves; a stage run in a child process needs it done before the config is sent, since the
 * child loads the plugin's module as written. A built-in kind's config is given as it is: its code
 * applies its own defaults.
 */
export function configForKind<T>(kind: AnyStageKind, config: T): T {
  return loadedPlugins.has(kind) ? withDefaults(kind.kind, kind.withSchema, config) : config;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

/** What is wrong with a stage kind's shape, or undefined. */
function shapeProblem(k: unknown): string | undefined {
  if (typeof k !== 'object' || k === null) return `is ${describe(k)}, not a stage kind object`;
  const o = k as Record<string, unknown>;
  if (typeof o.kind !== 'string' || !KIND_NAME.test(o.kind))
    return `kind must be a name of letters, digits, _ and -, starting with a letter; got ${JSON.stringify(o.kind)}`;
  if (typeof o.description !== 'string') return 'description (a string) is missing';
  if (typeof o.codeVersion !== 'string' || o.codeVersion === '')
    return 'codeVersion (a non-empty string, changed whenever what the kind computes changes) is missing';
  if (typeof o.withSchema !== 'object' || o.withSchema === null) return "withSchema (the JSON Schema of the stage's with) is missing";
  if (typeof o.outputs !== 'object' || o.outputs === null) return 'outputs (name → { type }) is missing';
  for (const [name, out] of Object.entries(o.outputs as Record<string, unknown>)) {
    const type = (out as { type?: unknown } | null)?.type;
    if (typeof type !== 'string' || !OUTPUT_TYPES.has(type))
      return `output '${name}' has type ${JSON.stringify(type)}; one of ${[...OUTPUT_TYPES].join(', ')}`;
  }
  if (typeof o.run !== 'function') return 'run(config, ctx) is missing';
  for (const f of ['check', 'externalInputs', 'audit', 'absentOutputs', 'outputShape'])
    if (o[f] !== undefined && typeof o[f] !== 'function') return `${f} must be a function`;
  if (o.cacheable !== undefined && typeof o.cacheable !== 'boolean') return 'cacheable must be true or false';
  if (o.isolation !== undefined && typeof (o.isolation as { module?: unknown } | null)?.module !== 'string')
    return 'isolation.module must be the module (path or URL) that exports stageKinds() with this kind';
  return undefined;
}
