/**
 * Where the shared real datasets live. CI lays `shared/` beside the clone rather than at a fixed
 * path, so tests look in order: $TEMPERED_DATASETS, <repo>/../shared/datasets,
 * <repo>/shared/datasets, /work/shared/datasets.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export function datasetsDir(): string {
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const candidates = [process.env.TEMPERED_DATASETS, join(repo, '..', 'shared', 'datasets'), join(repo, 'shared', 'datasets'), '/work/shared/datasets'];
  for (const c of candidates) if (c && existsSync(join(c, 'sms_spam'))) return c;
  throw new Error(`shared datasets not found (looked in ${candidates.filter(Boolean).join(', ')}); set TEMPERED_DATASETS`);
}
