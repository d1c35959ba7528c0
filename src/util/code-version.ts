import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** tempered's version for lineage: package version plus the git commit when run from a checkout. */
export function codeVersion(): string {
  if (cached) return cached;
  const root = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  let commit = '';
  try {
    commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim();
    if (dirty) commit += '-dirty';
  } catch {
    /* not a git checkout */
  }
  cached = commit ? `${pkg.version}+${commit}` : pkg.version;
  return cached;
}
