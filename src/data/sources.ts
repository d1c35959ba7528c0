/**
 * Turns a source path (file, directory or glob) into a sorted, deterministic file list.
 * Sorting is by UTF-16 code units (not locale) so every machine lists files in the same order.
 *
 * A pipeline file is hostile until checked, so: every path must resolve (symlinks included) inside
 * the allowed data roots (roots.ts); globs are matched by a linear-time engine (RE2), because a
 * backtracking RegExp turns a pattern like `*a*a*a*a*a*a*b` into minutes per file name; and walks
 * are asynchronous, follow links (to folders too) only into the roots and never round a loop, and stop with an error
 * past an entry, file or time budget.
 */
import type { Dirent } from 'node:fs';
import { opendir, readlink, realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { RE2JS } from 're2js';
import { InputError } from '../errors.ts';
import { DATA_ROOTS_ENV, dataRoots, isInside, missingInside, outsideRootsError, realRoots } from './roots.ts';

export type SourceFormat = 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'arrow';

const EXTENSIONS: Record<string, SourceFormat> = {
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.csv': 'csv',
  '.tsv': 'tsv',
  '.tab': 'tsv',
  '.parquet': 'parquet',
  '.arrow': 'arrow',
  '.feather': 'arrow',
  '.ipc': 'arrow',
};

/**
 * The format a file's name says; a text format's name may end in `.gz` (the readers gunzip any file that starts with
 * gzip's magic number). Parquet and Arrow compress inside the file, so `.parquet.gz` is no format.
 */
export function formatFromExtension(path: string): SourceFormat | undefined {
  let lower = path.toLowerCase();
  const gz = lower.endsWith('.gz');
  if (gz) lower = lower.slice(0, -3);
  for (const [ext, fmt] of Object.entries(EXTENSIONS))
    if (lower.endsWith(ext)) return gz && (fmt === 'parquet' || fmt === 'arrow') ? undefined : fmt;
  return undefined;
}

/** What to do about a file whose name says no format: set `format`, or, for a JSON array, convert it to JSON Lines. */
export function formatHint(path: string): string {
  const set = "set format: 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'arrow'";
  if (/\.json(\.gz)?$/i.test(path))
    return `a .json file of one object per line is JSON Lines: ${set.replace(/'jsonl'.*/, "'jsonl'")}; one JSON array of objects (pandas' to_json(orient='records')) is not read: convert it, e.g. jq -c '.[]' file.json > file.jsonl`;
  if (/\.(zip|bz2|xz|zst|7z|tar)$/i.test(path)) return `unpack it first (only gzip is read as is), then ${set}`;
  return set;
}

export interface SourceFile {
  /** Absolute path on disk. */
  abs: string;
  /** Path as reported in provenance and errors: relative to baseDir when inside it. */
  display: string;
  format: SourceFormat;
}

/** Budgets of one source resolution; past one the stage fails with an error naming the limit. */
export const SOURCE_LIMITS = {
  /** Directory entries a walk may look at. */
  maxEntries: 200_000,
  /** Files one source may resolve to. */
  maxFiles: 50_000,
  /** Wall time of the walk. */
  timeoutMs: 60_000,
  /** Longest glob pattern accepted. */
  maxGlobLength: 1024,
};

export interface ResolveOptions {
  /** When set, every file of a directory counts, whatever its extension. */
  format?: SourceFormat;
  /** Config field named in errors. Default 'path'. */
  field?: string;
  /** Allowed data roots. Default: `dataRoots(baseDir)`. */
  roots?: readonly string[];
  maxEntries?: number;
  maxFiles?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** What the walk left out with a reason to say (a link to a folder it came through, or one outside the roots). */
  onWarning?: (message: string) => void;
  /**
   * A path outside the roots that does not exist is said missing (`source-missing`) rather than outside: for submit's
   * look on the submitter's own machine, which warns of a missing source. A worker leaves it unset, so that its answer
   * does not tell a submitter which paths outside the roots exist.
   */
  sayMissingOutside?: boolean;
}

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function hasGlob(p: string): boolean {
  return /[*?[{]/.test(p);
}

/** Index of the `}` closing the `{` at `open`, counting nested braces; -1 when unclosed. */
function closingBrace(glob: string, open: number): number {
  let depth = 0;
  for (let i = open; i < glob.length; i++) {
    if (glob[i] === '{') depth++;
    else if (glob[i] === '}' && --depth === 0) return i;
  }
  return -1;
}

/** Splits brace contents on commas that are not inside a nested brace. */
function alternatives(body: string): string[] {
  const out: string[] = [];
  let depth = 0,
    start = 0;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === '{') depth++;
    else if (body[i] === '}') depth--;
    else if (body[i] === ',' && depth === 0) {
      out.push(body.slice(start, i));
      start = i + 1;
    }
  }
  out.push(body.slice(start));
  return out;
}

const escapeRe2 = (s: string) => s.replace(/[\\^$.|?*+()[\]{}]/g, '\\$&');

function charClass(body: string): string {
  const negate = body[0] === '!' || body[0] === '^';
  const chars = (negate ? body.slice(1) : body).replace(/[\\[\]^]/g, '\\$&');
  // A negated class must not cross a folder boundary either.
  return negate ? `[^/${chars}]` : `[${chars}]`;
}

/** Glob → RE2 syntax over '/'-separated paths: `**` crosses folders, `*` and `?` do not, `{a,b}` (nestable) and `[...]` as usual. */
export function globToRe2(glob: string): string {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '{') {
      const end = closingBrace(glob, i);
      if (end === -1) throw new InputError(`unclosed '{' in glob ${JSON.stringify(glob)}`, { hint: 'close the brace or escape it' });
      re +=
        '(?:' +
        alternatives(glob.slice(i + 1, end))
          .map(globToRe2)
          .join('|') +
        ')';
      i = end;
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      const body = end === -1 ? '' : glob.slice(i + 1, end);
      if (body === '' || body === '!' || body === '^') re += '\\[';
      else {
        re += charClass(body);
        i = end;
      }
    } else re += escapeRe2(c);
  }
  return re;
}

/** A matcher for whole '/'-separated paths; linear in the path length whatever the pattern. */
export function globMatcher(glob: string): (path: string) => boolean {
  if (glob.length > SOURCE_LIMITS.maxGlobLength)
    throw new InputError(`glob is ${glob.length} characters long (limit ${SOURCE_LIMITS.maxGlobLength})`, {
      hint: 'use a shorter pattern or a directory',
    });
  let re: RE2JS;
  try {
    re = RE2JS.compile(globToRe2(glob), RE2JS.DOTALL);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`glob ${JSON.stringify(glob)} is not a valid pattern: ${(e as Error).message}`, {
      hint: 'check brackets and braces',
    });
  }
  return (path) => re.matches(path);
}

interface Budget {
  what: string;
  field: string;
  entries: number;
  maxEntries: number;
  deadline: number;
  timeoutMs: number;
  signal?: AbortSignal;
}

function spend(b: Budget): void {
  if (++b.entries > b.maxEntries) {
    throw new InputError(`listing ${b.what} looked at more than ${b.maxEntries} directory entries (the walk budget)`, {
      where: b.field,
      hint: 'narrow the pattern or point at a smaller folder',
    });
  }
  if ((b.entries & 255) === 0) {
    b.signal?.throwIfAborted();
    if (Date.now() > b.deadline) {
      throw new InputError(`listing ${b.what} took longer than ${b.timeoutMs / 1000} s (the walk budget)`, {
        where: b.field,
        hint: 'narrow the pattern or point at a smaller folder',
      });
    }
  }
}

/** A folder a walk lists: where it was reached (`dir`), what it is (`real`), and the folder it was reached from. */
interface Walked {
  dir: string;
  real: string;
  depth: number;
  up?: Walked;
  /** Reached through a link to a folder: its files are read under the link's name only when no other name lists them. */
  viaLink: boolean;
}

/** What a walk needs to follow a link to a folder: the roots it must stay in, and where to say it left a loop out. */
interface LinkWalk {
  roots: readonly string[];
  baseDir: string;
  field: string;
  /** Files found in a folder reached through a link. */
  viaLink: Set<string>;
  onWarning?: (message: string) => void;
  warned: Set<string>;
  /**
   * A folder walk's real folders walked or queued: a link to one of them is not walked again. Folders linked to each
   * other (each to all the others) were walked once per route through them, every ordering: 8 such folders of one file
   * each ran into the walk's 200,000-entry budget. Only where every file counts whatever its name (a folder, not a
   * glob, whose pattern may match one name of a folder and not another).
   */
  walked?: Set<string>;
}

/** Says `m` once per listing, however many ways the walk comes upon what it names. */
function warnOnce(w: LinkWalk, m: string): void {
  if (w.warned.has(m)) return;
  w.warned.add(m);
  w.onWarning?.(m);
}

/**
 * The real folder a link found by a walk leads to, when the walk is to go into it: undefined when it leads to no
 * folder (a file, nothing: followedLinks decides), null when it is left out with a warning naming it: it leads to a
 * folder the walk came through to reach it (a link to an ancestor, or links that lead round), as following it would
 * never end, or out of the roots. Whether a folder outside holds files the walk wants cannot be known without walking
 * it, and a pipeline folder holds such links for other ends (`venv -> /opt/...`, a cache): failing on one made a `**`
 * glob or a folder path unusable there. A link to a FILE that leads out still fails (followedLinks): it is data.
 */
async function linkedFolder(p: string, here: Walked, w: LinkWalk): Promise<string | null | undefined> {
  const st = await stat(p).catch(() => undefined);
  if (!st?.isDirectory()) return undefined;
  const real = await realOrMissing(p);
  if (real === undefined) return undefined;
  if (!isInside(real, w.roots)) {
    warnOnce(
      w,
      `${display(p, w.baseDir)} is a symbolic link to ${real}, a folder outside the allowed data roots: not walked (to read it, add that folder to ${DATA_ROOTS_ENV} on the worker)`,
    );
    return null;
  }
  const inside = real.endsWith(sep) ? real : real + sep;
  for (let a: Walked | undefined = here; a; a = a.up)
    if (a.real === real || a.real.startsWith(inside)) {
      warnOnce(
        w,
        `${display(p, w.baseDir)} is a symbolic link to ${display(real, w.baseDir)}, a folder the walk came through to reach it: not walked, as it would lead round for ever`,
      );
      return null;
    }
  return real;
}

/**
 * Lists regular files under `dir` (hidden entries skipped), at most `maxDepth` folders deep. A link to a folder is
 * walked like a folder once confined (linkedFolder: a folder of shards linked in from elsewhere lost its rows without a
 * word), except one that leads round; other symbolic links go to `links`, for the caller to take or refuse one by one
 * (followedLinks).
 */
async function walk(dir: string, maxDepth: number, b: Budget, out: string[], links: string[], w: LinkWalk): Promise<void> {
  const stack: Walked[] = [{ dir, real: (await realOrMissing(dir)) ?? dir, depth: 1, viaLink: false }];
  w.walked?.add(stack[0]!.real);
  while (stack.length > 0) {
    const here = stack.pop()!;
    let handle;
    try {
      handle = await opendir(here.dir);
    } catch (e) {
      if (here.dir === dir) throw e;
      continue; // a folder that vanished or cannot be read mid-walk contributes nothing
    }
    const entries: Dirent[] = [];
    for await (const ent of handle) {
      spend(b);
      if (!ent.name.startsWith('.')) entries.push(ent);
    }
    // In name order, not the order the file system lists them in (ext4: by hash): which of two folders linked to each
    // other is named as the loop in the report's warnings, so the report's bytes, must not depend on the disk.
    entries.sort((x, y) => byCodeUnits(x.name, y.name));
    const below: Walked[] = [];
    for (const ent of entries) {
      const p = join(here.dir, ent.name);
      if (ent.isDirectory()) {
        if (here.depth < maxDepth) {
          below.push({ dir: p, real: join(here.real, ent.name), depth: here.depth + 1, up: here, viaLink: here.viaLink });
          w.walked?.add(join(here.real, ent.name));
        }
      } else if (ent.isFile()) {
        out.push(p);
        if (here.viaLink) w.viaLink.add(p);
      } else if (ent.isSymbolicLink()) {
        const real = here.depth < maxDepth ? await linkedFolder(p, here, w) : undefined;
        if (real === undefined) links.push(p);
        else if (real !== null && !w.walked?.has(real)) {
          below.push({ dir: p, real, depth: here.depth + 1, up: here, viaLink: true });
          w.walked?.add(real);
        }
      }
    }
    // The first by name walked first.
    for (let k = below.length - 1; k >= 0; k--) stack.push(below[k]!);
  }
}

/**
 * Why the link `l` leads to no file, by stat's error: its target (the last of a chain of links, which is the one
 * missing) does not exist, the links go round in a loop, or the target cannot be reached (permissions).
 */
async function unfollowable(l: string, e: NodeJS.ErrnoException, baseDir: string, field: string): Promise<InputError> {
  const target = await readlink(l).catch(() => '?');
  const link = `${display(l, baseDir)} is a symbolic link to ${target}`;
  if (e.code === 'ELOOP')
    return new InputError(`${link}, and the links lead round in a loop`, {
      where: field,
      hint: 'make the links again so that they lead to a file, or remove them',
    });
  if (e.code !== 'ENOENT')
    return new InputError(`${link}, which cannot be followed (${e.code ?? e.message})`, {
      where: field,
      hint: 'let the worker read the folders the link leads through, or remove the link',
    });
  // A link to a link: name the end of the chain, the name that is missing.
  let last = resolve(dirname(l), target);
  for (let hop = 0; hop < 40; hop++) {
    const next = await readlink(last).catch(() => undefined);
    if (next === undefined) break;
    last = resolve(dirname(last), next);
  }
  const end = last === resolve(dirname(l), target) ? '' : `, which leads to ${display(last, baseDir)}`;
  return new InputError(`${link}${end}, which does not exist`, {
    where: field,
    hint: 'fetch the data it stands for (git annex get, dvc pull) or make the link again, or remove the link',
    code: 'source-missing',
  });
}

/**
 * The symbolic links a walk found that stand for data files: a link to a file is read like one (git-annex, DVC and
 * hand-made shard folders are links; left out, their rows went missing without a word), once confined like every
 * file; a link to nothing (git-annex content not fetched) fails naming it. A link to a folder the walk went into
 * (walk) or left out (a loop, or past the depth a glob reaches), and one to a named pipe or device, is not read.
 */
async function followedLinks(links: string[], baseDir: string, field: string, taken: Set<string>): Promise<string[]> {
  const out: string[] = [];
  for (const l of links) {
    let st;
    try {
      st = await stat(l);
    } catch (e) {
      throw await unfollowable(l, e as NodeJS.ErrnoException, baseDir, field);
    }
    if (st.isFile()) {
      out.push(l);
      taken.add(l);
    }
  }
  return out;
}

function display(abs: string, baseDir: string): string {
  const rel = relative(baseDir, abs);
  return rel.startsWith('..') || isAbsolute(rel) ? abs : rel.split(sep).join('/');
}

async function realOrMissing(abs: string): Promise<string | undefined> {
  try {
    return await realpath(abs);
  } catch {
    return undefined;
  }
}

/**
 * Resolves `path` against `baseDir`. A directory contributes its files with a known extension
 * (recursively, hidden entries skipped, links to files and folders followed within the roots) unless `format` is
 * given, in which case all its files.
 */
export async function resolveSources(path: string, baseDir: string, opts: ResolveOptions = {}): Promise<SourceFile[]> {
  const field = opts.field ?? 'path';
  const format = opts.format;
  const listedRoots = opts.roots ?? dataRoots(baseDir);
  const roots = realRoots(listedRoots);
  // A path that does not exist is refused as outside where it would lie outside (missingInside says why).
  const outsideIfMissing = (abs: string, shown: string) => {
    if (!opts.sayMissingOutside && !missingInside(abs, roots, listedRoots)) throw outsideRootsError(shown, abs, roots, field);
  };
  const timeoutMs = opts.timeoutMs ?? SOURCE_LIMITS.timeoutMs;
  const budget: Budget = {
    what: JSON.stringify(path),
    field,
    entries: 0,
    maxEntries: opts.maxEntries ?? SOURCE_LIMITS.maxEntries,
    deadline: Date.now() + timeoutMs,
    timeoutMs,
    signal: opts.signal,
  };
  const confined = async (abs: string, shown = path): Promise<string> => {
    const real = await realOrMissing(abs);
    if (real === undefined) {
      outsideIfMissing(abs, shown);
      throw new InputError(`${JSON.stringify(path)} does not exist (resolved to ${abs})`, {
        where: field,
        hint: "fix the path; relative paths are resolved against the pipeline file's folder",
        code: 'source-missing',
      });
    }
    if (!isInside(real, roots)) throw outsideRootsError(shown, real, roots, field);
    return real;
  };

  let files: string[];
  /** The files a walk took as links (followedLinks) or found in a linked folder, told apart from those it found as files. */
  const walkedLinks = new Set<string>();
  const linkWalk: LinkWalk = { roots, baseDir, field, viaLink: walkedLinks, onWarning: opts.onWarning, warned: new Set() };
  if (hasGlob(path)) {
    const absGlob = resolve(baseDir, path).split(sep).join('/');
    // Walk from the deepest folder without glob characters; match the rest of each path.
    const parts = absGlob.split('/');
    const firstGlob = parts.findIndex(hasGlob);
    const root = parts.slice(0, firstGlob).join('/') || '/';
    const rest = parts.slice(firstGlob).join('/');
    const matches = globMatcher(rest);
    const maxDepth = rest.includes('**') || rest.includes('{') ? Infinity : parts.length - firstGlob;
    const realRoot = await realOrMissing(root);
    const all: string[] = [];
    const links: string[] = [];
    if (realRoot === undefined) outsideIfMissing(resolve(root), path);
    else {
      if (!isInside(realRoot, roots)) throw outsideRootsError(path, realRoot, roots, field);
      await walk(root, maxDepth, budget, all, links, linkWalk);
    }
    const matching = (f: string) => matches(relative(root, f).split(sep).join('/'));
    files = [...all.filter(matching), ...(await followedLinks(links.filter(matching), baseDir, field, walkedLinks))];
    if (files.length === 0)
      throw new InputError(`glob ${JSON.stringify(path)} matches no files (resolved against ${baseDir})`, {
        where: field,
        hint: 'check the pattern and the base directory',
        code: 'source-missing',
      });
  } else {
    const abs = resolve(baseDir, path);
    await confined(abs);
    const st = await stat(abs);
    if (st.isDirectory()) {
      files = [];
      const links: string[] = [];
      await walk(abs, Infinity, budget, files, links, { ...linkWalk, walked: new Set() });
      files.push(
        ...(await followedLinks(
          format === undefined ? links.filter((f) => formatFromExtension(f) !== undefined) : links,
          baseDir,
          field,
          walkedLinks,
        )),
      );
      if (format === undefined) {
        files = files.filter((f) => formatFromExtension(f) !== undefined);
        // `a.csv.gz` beside `a.csv` is a compressed copy, and was ignored before .gz files were read: reading it too
        // would take every row twice, and change the files (the cache key) of a folder that was read before.
        const listed = new Set(files);
        files = files.filter((f) => !(f.toLowerCase().endsWith('.gz') && listed.has(f.slice(0, -3))));
      }
      if (files.length === 0)
        throw new InputError(
          `directory ${JSON.stringify(path)} holds no data files (.jsonl, .csv, .tsv, .parquet, .arrow; .gz of the first three)`,
          {
            where: field,
            code: 'source-missing',
          },
        );
    } else if (st.isFile()) files = [abs];
    else
      // A named pipe waits for a writer, for ever if none comes; a device never ends: neither is a file to read.
      throw new InputError(`${JSON.stringify(path)} is not a regular file or a folder (a named pipe, socket or device)`, {
        where: field,
        hint: 'point path at a file or folder of data; to read a stream, save it to a file first',
      });
  }
  const maxFiles = opts.maxFiles ?? SOURCE_LIMITS.maxFiles;
  if (files.length > maxFiles) {
    throw new InputError(`${JSON.stringify(path)} matches ${files.length} files, more than the limit of ${maxFiles}`, {
      where: field,
      hint: 'narrow the pattern, or merge small files into larger ones',
    });
  }
  // A walk follows links into the roots only, but a folder swapped for one mid-walk leads anywhere, and a link to a file
  // leads where it leads: check every file, naming the walked one.
  const real = new Map<string, string>();
  for (const f of files) real.set(f, await confined(f, files.length === 1 && f === resolve(baseDir, path) ? path : display(f, baseDir)));
  files.sort(byCodeUnits);
  // A link to a file the walk reads already (`latest.jsonl` -> `v3.jsonl` beside it), or a second link to one file,
  // would read its rows twice: each file is read once, under its own name when the walk lists it, else under its
  // first link's (as before links were read, such a folder lists the same files, so its cache key stays).
  const readAs = new Map<string, string>();
  for (const f of files) {
    const r = real.get(f)!;
    const had = readAs.get(r);
    if (had === undefined || (walkedLinks.has(had) && !walkedLinks.has(f))) readAs.set(r, f);
  }
  files = files.filter((f) => readAs.get(real.get(f)!) === f);
  return files.map((abs) => {
    const fmt = format ?? formatFromExtension(abs);
    if (!fmt) {
      throw new InputError(`cannot tell the format of ${display(abs, baseDir)} from its extension`, {
        where: field,
        hint: formatHint(abs),
      });
    }
    return { abs, display: display(abs, baseDir), format: fmt };
  });
}
