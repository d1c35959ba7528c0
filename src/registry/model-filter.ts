/**
 * A model reference as an audit filter takes it (`tempered audit --model`, the dashboard's audit page):
 * `name` (every version) and `name@3` as given (both checked against the registry where there is
 * one); an alias (`name@production`) or `name@latest` becomes the version the registry says it is now,
 * `name@v3` version 3. A reference that is no registry name (a model source `tempered serve` served,
 * `file:…`) reads as given. One function, so the CLI and the dashboard read `spam-clf@production` alike.
 */
import { databaseExists } from '../db/database.ts';
import { useOpen, type KeptOpen } from '../db/kept-open.ts';
import { InputError } from '../errors.ts';
import type { AuditLog, AuditRecord } from '../audit/log.ts';
import { closest, nameList } from '../spec/suggest.ts';
import { isModelName, openRegistry, type Registry } from './registry.ts';

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
  // A served model source (`pypi:…`, `file:/…`) is no registry model: its records read as given.
  if (!isModelName(name)) return { model: ref };
  if (at === undefined) {
    // A name the registry does not have is a typo (the registry never deletes one), not "no records".
    if (databaseExists(registry.location)) {
      const names = (await useOpen(registry.kept ?? registry.location, openRegistry, (reg) => reg.listModels())).map((m) => m.name);
      if (!names.includes(name)) {
        const near = closest(name, names);
        throw new ModelFilterError(
          'unknown',
          `no model named '${name}'`,
          near
            ? `did you mean '${near}'? registered models: ${nameList(names)}`
            : names.length
              ? `registered models: ${nameList(names)}`
              : 'nothing is registered yet',
        );
      }
    }
    return { model: ref };
  }
  const numeric = /^\d+$/.test(at);
  if (!databaseExists(registry.location)) {
    // Without a registry a version still reads as given (its records do not need one).
    if (numeric) return { model: ref };
    throw new ModelFilterError('no-registry', `cannot resolve '${ref}': no model registry at ${registry.location}`);
  }
  try {
    const v = await useOpen(registry.kept ?? registry.location, openRegistry, (reg) => reg.getVersion(name, numeric ? Number(at) : at));
    // A version the registry has reads as given (the registry never deletes one), so a typo is an error, not "no records".
    if (numeric) return { model: ref };
    return { model: `${v.name}@${v.version}`, resolved: { ref, name: v.name, at, version: v.version } };
  } catch (e) {
    if (e instanceof InputError) {
      // The registry's message without its `model: ` prefix: the reference is named already.
      const msg = e.where && e.message.startsWith(`${e.where}: `) ? e.message.slice(e.where.length + 2) : e.message;
      throw new ModelFilterError(
        'unknown',
        `${numeric ? 'no such version' : 'cannot resolve'} '${ref}': ${msg}`,
        numeric && e.hint ? `${e.hint}; filter by '${name}' for the records of every version` : e.hint,
      );
    }
    throw e;
  }
}

/** `name@v3`: a fixed version written with its `v` (it names the same version whatever the aliases do). */
export function isFixedVersion(at: string): boolean {
  return /^v\d+$/.test(at);
}

/** Alias moves: a record names the version the alias went to; the one it left is `details.from` (a number). */
const ALIAS_MOVES = ['model.promoted', 'model.rolled_back'];

/**
 * The audit records about `model` (query({ model })), and, for a version (`name@3`), the records that took it
 * off where it was: a record has one `model`, the version moved or swapped in, and names the one it replaced in
 * `details.from`. So `name@2`'s trail shows where a server stopped serving it (serve.swapped, from `name@2`) and
 * which promotion or rollback moved an alias off it (from 2): without them v2's trail read "promoted" twice
 * in a row, the rollback between them, who did it and why, missing. Oldest first.
 */
export async function modelRecords(
  log: Pick<AuditLog, 'query'>,
  model: string,
  q: { action?: string; actor?: string; newest?: number } = {},
): Promise<AuditRecord[]> {
  // `newest`: only the newest that many (a page), read as such from the log; oldest first all the same.
  const page = q.newest === undefined ? {} : { newestFirst: true, limit: q.newest };
  const records = await log.query({ model, action: q.action, actor: q.actor, ...page });
  if (q.newest !== undefined) records.reverse();
  const at = model.lastIndexOf('@');
  if (at < 0) return records;
  const name = model.slice(0, at);
  const version = model.slice(at + 1);
  const leaving = ['serve.swapped', ...ALIAS_MOVES].filter((a) => q.action === undefined || q.action === a);
  if (leaving.length === 0) return records;
  // Matched on details.from after the query, so not limited there: the model's swaps and alias moves, not the log.
  const left = (await Promise.all(leaving.map((action) => log.query({ model: name, action, actor: q.actor }))))
    .flat()
    .filter((r) =>
      r.model === model
        ? false
        : r.action === 'serve.swapped'
          ? r.details.from === model
          : typeof r.details.from === 'number' && String(r.details.from) === version,
    );
  if (left.length === 0) return records;
  const all = [...records, ...left].sort((x, y) => x.seq - y.seq);
  return q.newest === undefined ? all : all.slice(-q.newest);
}
