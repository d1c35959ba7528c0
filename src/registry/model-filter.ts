/**
 * A model reference as an audit filter takes it (`tempered audit --model`, the dashboard's audit page):
 * `name` (every version) and `name@3` as given; an alias (`name@production`), `name@latest` or `name@v3`
 * becomes the version the registry says it is now. One function, so the CLI and the dashboard read
 * `spam-clf@production` alike.
 */
import { databaseExists } from '../db/database.ts';
import { useOpen, type KeptOpen } from '../db/kept-open.ts';
import { InputError } from '../errors.ts';
import { openRegistry, type Registry } from './registry.ts';

export interface ModelFilter {
  /** What the audit log is queried with: `name` or `name@version`. */
  model: string;
  /** Set when the reference named an alias (or `latest`, `v3`): what it was resolved to. */
  resolved?: {
    /** The reference as given, e.g. `spam-clf@production`. */
    ref: string;
    name: string;
    /** What followed the `@`: the alias, `latest` or `v3`. */
    at: string;
    version: number;
  };
}

/**
 * Why a reference could not become a filter: `syntax` (not name, name@version or name@alias), `no-registry`
 * (an alias needs the registry, and there is none at `location`), `unknown` (no such model, version or alias).
 */
export class ModelFilterError extends InputError {
  override name = 'ModelFilterError';
  constructor(
    readonly reason: 'syntax' | 'no-registry' | 'unknown',
    message: string,
    hint?: string,
  ) {
    super(message, { hint });
  }
}

/**
 * `ref` as the audit log stores models. `registry` is the registry's path or URL, and optionally a
 * connection the caller keeps open (the dashboard's); without one it is opened for this call.
 */
export async function resolveModelFilter(ref: string, registry: { location: string; kept?: KeptOpen<Registry> }): Promise<ModelFilter> {
  const [name, at, ...more] = ref.split('@');
  if (!name || more.length || at === '')
    throw new ModelFilterError('syntax', `bad model reference '${ref}'; write name, name@version or name@alias`);
  if (at === undefined || /^\d+$/.test(at)) return { model: ref };
  if (!databaseExists(registry.location))
    throw new ModelFilterError('no-registry', `cannot resolve '${ref}': no model registry at ${registry.location}`);
  try {
    const v = await useOpen(registry.kept ?? registry.location, openRegistry, (reg) => reg.getVersion(name, at));
    return { model: `${v.name}@${v.version}`, resolved: { ref, name: v.name, at, version: v.version } };
  } catch (e) {
    if (e instanceof InputError) {
      // The registry's message without its `model: ` prefix: the reference is named already.
      const msg = e.where && e.message.startsWith(`${e.where}: `) ? e.message.slice(e.where.length + 2) : e.message;
      throw new ModelFilterError('unknown', `cannot resolve '${ref}': ${msg}`, e.hint);
    }
    throw e;
  }
}
