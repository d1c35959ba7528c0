/**
 * Where the shared real datasets live. CI lays `shared/` beside the clone rather than at a fixed
 * path, so tests look in order: $TEMPERED_DATASETS, <repo>/../shared/datasets,
 * <repo>/shared/datasets, /work/shared/datasets.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function candidates(env: NodeJS.ProcessEnv): string[] {
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  return [env.TEMPERED_DATASETS, join(repo, '..', 'shared', 'datasets'), join(repo, 'shared', 'datasets'), '/work/shared/datasets'].filter(
    (c): c is string => !!c,
  );
}

/** The datasets folder, or undefined when none of the candidates holds it. */
export function findDatasetsDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  // A folder the user names is taken as it is, whichever datasets it holds; the guesses after it
  // count only when they hold the shared collection (its sms_spam/).
  if (env.TEMPERED_DATASETS) return existsSync(env.TEMPERED_DATASETS) ? env.TEMPERED_DATASETS : undefined;
  return candidates(env).find((c) => existsSync(join(c, 'sms_spam')));
}

export function datasetsDir(): string {
  const found = findDatasetsDir();
  if (found) return found;
  if (process.env.TEMPERED_DATASETS) throw new Error(`TEMPERED_DATASETS names ${process.env.TEMPERED_DATASETS}, which does not exist`);
  throw new Error(`shared datasets not found (looked in ${candidates(process.env).join(', ')}); set TEMPERED_DATASETS`);
}
