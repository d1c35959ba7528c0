/**
 * Turns a source path (file, directory or glob) into a sorted, deterministic file list.
 * Sorting is by UTF-16 code units (not locale) so every machine lists files in the same order.
 */
import { readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { InputError } from '../errors.ts';

export type SourceFormat = 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'arrow';

const EXTENSIONS: Record<string, SourceFormat> = {
  '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.csv': 'csv', '.tsv': 'tsv', '.tab': 'tsv',
  '.parquet': 'parquet', '.arrow': 'arrow', '.feather': 'arrow', '.ipc': 'arrow',
};

export function formatFromExtension(path: string): SourceFormat | undefined {
  const lower = path.toLowerCase();
  for (const [ext, fmt] of Object.entries(EXTENSIONS)) if (lower.endsWith(ext)) return fmt;
  return undefined;
}

export interface SourceFile {
  /** Absolute path on disk. */
  abs: string;
  /** Path as reported in provenance and errors: relative to baseDir when inside it. */
  display: string;
  format: SourceFormat;
}

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function hasGlob(p: string): boolean {
  return /[*?[{]/.test(p);
}

/** Glob → RegExp over '/'-separated paths: `**` crosses folders, `*` and `?` do not, `{a,b}` and `[...]` as usual. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') { i++; re += '(?:.*/)?'; } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '{') {
      const end = glob.indexOf('}', i);
      if (end === -1) throw new InputError(`unclosed '{' in glob ${JSON.stringify(glob)}`, { hint: 'close the brace or escape it' });
      re += '(?:' + glob.slice(i + 1, end).split(',').map((s) => s.replace(/[.+^$()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('|') + ')';
      i = end;
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end === -1) re += '\\[';
      else { re += '[' + glob.slice(i + 1, end).replace(/^!/, '^').replace(/\\/g, '\\\\') + ']'; i = end; }
    } else re += c.replace(/[.+^$()|\\\]]/g, '\\$&');
  }
  return new RegExp('^' + re + '$');
}

function walk(dir: string, out: string[]): void {
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    if (ent.name.startsWith('.')) continue;
    const p = join(dir, ent.name);
    if (ent.isDirectory()) walk(p, out);
    else if (ent.isFile()) out.push(p);
  }
}

function display(abs: string, baseDir: string): string {
  const rel = relative(baseDir, abs);
  return rel.startsWith('..') || isAbsolute(rel) ? abs : rel.split(sep).join('/');
}

/**
 * Resolves `path` against `baseDir`. A directory contributes its files with a known extension
 * (recursively, hidden entries skipped) unless `format` is given, in which case all its files.
 */
export function resolveSources(path: string, baseDir: string, format: SourceFormat | undefined, field = 'path'): SourceFile[] {
  let files: string[];
  if (hasGlob(path)) {
    const absGlob = resolve(baseDir, path).split(sep).join('/');
    // Walk from the deepest folder without glob characters.
    const parts = absGlob.split('/');
    const firstGlob = parts.findIndex(hasGlob);
    const root = parts.slice(0, firstGlob).join('/') || '/';
    const re = globToRegExp(absGlob);
    const all: string[] = [];
    try { walk(root, all); } catch { /* missing root: no matches, reported below */ }
    files = all.filter((f) => re.test(f.split(sep).join('/')));
    if (files.length === 0) throw new InputError(`glob ${JSON.stringify(path)} matches no files (resolved against ${baseDir})`, { where: field, hint: 'check the pattern and the base directory' });
  } else {
    const abs = resolve(baseDir, path);
    let st;
    try { st = statSync(abs); } catch {
      throw new InputError(`${JSON.stringify(path)} does not exist (resolved to ${abs})`, { where: field, hint: 'fix the path; relative paths are resolved against the pipeline file\'s folder' });
    }
    if (st.isDirectory()) {
      files = [];
      walk(abs, files);
      if (format === undefined) files = files.filter((f) => formatFromExtension(f) !== undefined);
      if (files.length === 0) throw new InputError(`directory ${JSON.stringify(path)} holds no data files (.jsonl, .csv, .tsv, .parquet, .arrow)`, { where: field });
    } else files = [abs];
  }
  files.sort(byCodeUnits);
  return files.map((abs) => {
    const fmt = format ?? formatFromExtension(abs);
    if (!fmt) {
      throw new InputError(`cannot tell the format of ${display(abs, baseDir)} from its extension`, { where: field, hint: "set format: 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'arrow'" });
    }
    return { abs, display: display(abs, baseDir), format: fmt };
  });
}
