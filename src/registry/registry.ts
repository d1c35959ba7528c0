/**
 * The model registry: named models, numbered versions with their artifacts, metrics, parameters
 * and lineage, and movable aliases (`staging`, `production`) with a full history.
 *
 * Idempotent by an idempotency key (default `runId/stageId`; the register stage passes the run id,
 * the workflow execution's id and the stage): a Temporal activity that is retried after it already
 * wrote its version gets that same version back (`created: false`) instead of a duplicate.
 *
 * Audit records of registry changes are written to an outbox table in the same transaction as the
 * change, and `drainAuditOutbox` moves them into the audit log (another database) under their
 * dedupe key. A writer that dies between the two leaves the record in the outbox; the next drain
 * (a retry, or any later register/deploy) delivers it, and the dedupe key makes delivering twice
 * harmless: exactly one audit record per change.
 */
import { InputError } from '../errors.ts';
import { NamedRefusal } from './named-refusal.ts';
import { canonicalJson } from '../util/canonical-json.ts';
import { defaultActor } from '../audit/actor.ts';
import { validateAuditEntry, type AuditEntry } from '../audit/log.ts';
import { openDatabase, type Database, type OpenOptions, type Queryable } from '../db/database.ts';
import { REGISTRY_SCHEMA } from './schema.ts';
import { modelCard } from './card.ts';
import { diffModelVersions } from './diff.ts';
import { aliasStack, rollbackHolding, type HeldModel } from './held-model.ts';
import type { AliasChange, DataRef, ModelSummary, ModelVersion, RegisterInput, RegisteredArtifact, VersionDiff } from './types.ts';

export interface RegistryOptions extends OpenOptions {
  /** Clock, injectable so tests and reproducible demos get stable timestamps. */
  now?: () => Date;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Whether `s` can be a registered model's name (a model source such as `pypi:…` cannot). */
export const isModelName = (s: string): boolean => NAME_RE.test(s);
const ALIAS_RE = /^[a-z][a-z0-9_-]{0,63}$/;
const SHA_RE = /^[0-9a-f]{64}$/;

/** `location`: a SQLite file, or a postgres:// URL (see db/database.ts). */
export async function openRegistry(location: string, opts: RegistryOptions = {}): Promise<Registry> {
  return new Registry(await openDatabase(location, REGISTRY_SCHEMA, opts), opts);
}

/**
 * One segment of a dotted metric name. Segments come from data (class labels), so `.` and `%` are
 * percent-encoded: the label `a.b` stays one segment (`per_class.a%2Eb.f1`) instead of becoming a
 * path that `unflattenMetrics` would walk.
 */
export function escapeMetricSegment(s: string): string {
  return s.replace(/%/g, '%25').replace(/\./g, '%2E');
}

function unescapeMetricSegment(s: string): string {
  return s.replace(/%(25|2E)/g, (_, c: string) => (c === '25' ? '%' : '.'));
}

/** Segments that would reach an object's prototype machinery if used as keys of a plain object. */
const UNSAFE_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);

/** Nested numbers → dotted names (segments escaped); anything else is an input error naming the field. */
export function flattenMetrics(metrics: Record<string, unknown>, where = 'metrics'): Record<string, number> {
  const out = new Map<string, number>();
  const walk = (v: unknown, path: string, field: string) => {
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new InputError(`metric is ${v}`, { where: field, hint: 'metrics must be finite numbers' });
      out.set(path, v);
    } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) {
        const seg = escapeMetricSegment(k);
        walk(x, path ? `${path}.${seg}` : seg, `${field}.${k}`);
      }
    } else {
      throw new InputError(`metric must be a number or an object of numbers, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`, {
        where: field,
      });
    }
  };
  walk(metrics, '', where);
  // Object.fromEntries defines own properties, so a key such as `__proto__` stays a plain key.
  return Object.fromEntries([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * `per_class.spam.f1` → { per_class: { spam: { f1 } } }, so gates read registry metrics like
 * evaluation output. Objects have no prototype, and names with a `__proto__`, `constructor` or
 * `prototype` segment are left out (a gate cannot name them anyway), so a label taken from data
 * can never write into Object.prototype.
 */
export function unflattenMetrics(flat: Record<string, number>): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null);
  for (const [name, v] of Object.entries(flat)) {
    const parts = name.split('.').map(unescapeMetricSegment);
    if (parts.some((p) => UNSAFE_SEGMENTS.has(p))) continue;
    let cur: Record<string, unknown> | undefined = out;
    for (const p of parts.slice(0, -1)) {
      const next: unknown = Object.hasOwn(cur, p) ? cur[p] : (cur[p] = Object.create(null));
      // `a` = 1 beside `a.b` = 2: the number wins, the deeper name is dropped.
      cur = next !== null && typeof next === 'object' ? (next as Record<string, unknown>) : undefined;
      if (!cur) break;
    }
    const leaf = parts[parts.length - 1]!;
    if (cur && !Object.hasOwn(cur, leaf)) cur[leaf] = v;
  }
  return out;
}

/** Where the audit records of registry changes go; an AuditLog, or a wrapper in tests. */
export interface AuditSink {
  append(entry: AuditEntry): unknown | Promise<unknown>;
}

/**
 * Builds the audit record of an alias move from the change, the artifacts of the version it moved the alias to, and
 * whether that version has the model bytes of the one it left (`sameModel`: a rollback between twins, which changes
 * nothing served; a promotion never moves between them, held-model.ts).
 */
export type AliasAudit = (change: AliasChange, target: RegisteredArtifact[], facts: { sameModel: boolean }) => AuditEntry;

type ArtifactRow = { role: string; uri: string; sha256: string; bytes: number; media_type: string | null };

function artifactOf(a: ArtifactRow): RegisteredArtifact {
  return { role: a.role, uri: a.uri, sha256: a.sha256, bytes: a.bytes, ...(a.media_type ? { mediaType: a.media_type } : {}) };
}

/** Thrown when `setAlias({ expect })` finds the alias moved since the caller read it. Retrying re-reads. */
export class AliasMovedError extends Error {
  override name = 'AliasMovedError';
}

function validateInput(inp: RegisterInput): void {
  const w = 'register';
  const str = (v: unknown, field: string) => {
    if (typeof v !== 'string' || v.length === 0) throw new InputError('must be a non-empty string', { where: `${w}.${field}` });
  };
  if (typeof inp.name !== 'string' || !NAME_RE.test(inp.name)) {
    throw new InputError(`model name ${JSON.stringify(inp.name)} is not valid`, {
      where: `${w}.name`,
      hint: 'use letters, digits, ".", "_" or "-" (up to 128), starting with a letter or digit',
    });
  }
  str(inp.runId, 'runId');
  str(inp.stageId, 'stageId');
  str(inp.specHash, 'specHash');
  if (inp.idempotencyKey !== undefined) str(inp.idempotencyKey, 'idempotencyKey');
  if (!Array.isArray(inp.artifacts) || inp.artifacts.length === 0) {
    throw new InputError('a version needs at least one artifact', {
      where: `${w}.artifacts`,
      hint: "pass the exported model, e.g. { role: 'onnx', uri, sha256, bytes }",
    });
  }
  const roles = new Set<string>();
  inp.artifacts.forEach((a, i) => {
    const f = `artifacts[${i}]`;
    str(a.role, `${f}.role`);
    str(a.uri, `${f}.uri`);
    if (typeof a.sha256 !== 'string' || !SHA_RE.test(a.sha256))
      throw new InputError('sha256 must be 64 lowercase hex digits', { where: `${w}.${f}.sha256` });
    if (!Number.isSafeInteger(a.bytes) || a.bytes < 0) throw new InputError('bytes must be an integer ≥ 0', { where: `${w}.${f}.bytes` });
    if (roles.has(a.role))
      throw new InputError(`role '${a.role}' appears twice`, { where: `${w}.${f}.role`, hint: 'one artifact per role' });
    roles.add(a.role);
  });
  if (!Array.isArray(inp.data)) throw new InputError('must be an array of { name, sha256 }', { where: `${w}.data` });
  inp.data.forEach((d, i) => {
    str(d.name, `data[${i}].name`);
    if (typeof d.sha256 !== 'string' || !SHA_RE.test(d.sha256))
      throw new InputError('sha256 must be 64 lowercase hex digits', { where: `${w}.data[${i}].sha256` });
  });
  for (const [k, v] of Object.entries(inp.tags ?? {})) {
    if (typeof v !== 'string') throw new InputError('tag values must be strings', { where: `${w}.tags.${k}` });
  }
}

interface VersionRow {
  id: number;
  model: string;
  version: number;
  run_id: string;
  stage_id: string;
  idempotency_key: string;
  created_at: string;
  created_by: string;
  description: string | null;
  intended_use: string | null;
  limitations: string | null;
  spec_hash: string;
  code_version: string | null;
  base_model_json: string | null;
  params_json: string;
  data_json: string;
}

interface HistoryRow {
  id: number;
  model: string;
  alias: string;
  kind: 'set' | 'rollback';
  from_version: number | null;
  to_version: number;
  actor: string;
  reason: string | null;
  at: string;
}

function changeOf(r: HistoryRow): AliasChange {
  return {
    id: r.id,
    model: r.model,
    alias: r.alias,
    kind: r.kind,
    fromVersion: r.from_version,
    toVersion: r.to_version,
    actor: r.actor,
    reason: r.reason,
    at: r.at,
  };
}

/**
 * Common table expressions ending in `same`: the versions among `versions` (a SELECT of version numbers) that are one
 * model with a target version (held-model.ts says when), judged in SQL for all of them at once. Parameters, in order:
 * the model's name and the target version, the name again, then those of `versions`. The one definition of "one
 * model": a write transaction decides a promotion on it, a deploy the hold a rollback put on a model.
 */
function sameModelSql(versions: string): string {
  return `target AS (SELECT a.role, a.sha256 FROM artifacts a JOIN versions v ON v.id = a.version_id WHERE v.model = ? AND v.version = ?),
    seen AS (SELECT v.version, v.id FROM versions v WHERE v.model = ? AND v.version IN (${versions})),
    facts AS (SELECT s.version,
        (SELECT COUNT(*) FROM artifacts a WHERE a.version_id = s.id) AS n,
        (SELECT COUNT(*) FROM artifacts a JOIN target t ON t.role = a.role AND t.sha256 = a.sha256 WHERE a.version_id = s.id) AS matched,
        (SELECT a.sha256 FROM artifacts a WHERE a.version_id = s.id AND a.role = 'model') AS m
      FROM seen s),
    same AS (SELECT version FROM facts WHERE
      CASE WHEN m IS NOT NULL AND (SELECT sha256 FROM target WHERE role = 'model') IS NOT NULL
        THEN m = (SELECT sha256 FROM target WHERE role = 'model')
        ELSE n > 0 AND n = (SELECT COUNT(*) FROM target) AND matched = n END)`;
}

export class Registry {
  private readonly now: () => Date;
  constructor(
    readonly db: Database,
    opts: RegistryOptions = {},
  ) {
    this.now = opts.now ?? (() => new Date());
  }

  close(): Promise<void> {
    return this.db.close();
  }

  /**
   * Registers a new version (number = previous max + 1 for that name). If the idempotency key was
   * already used, returns that version with `created: false` and writes nothing; if that version's
   * artifacts differ from these, it is an error (the same work produced other bytes). With
   * `reuseVersionWithSame: role`, a version of this model whose artifact of that role has the same
   * sha256 is returned instead of minting a copy; the check runs in the write transaction, so two
   * concurrent identical registrations get one version.
   * `opts.audit` builds the audit record of a new version; it is committed to the outbox with it.
   * `reusedBy` says why an existing version came back: this idempotency key registered it (an earlier
   * attempt of the same work), or it is a version with the same artifact (`reuseVersionWithSame`).
   */
  async registerVersion(
    input: RegisterInput,
    opts: { audit?: (v: { name: string; version: number }) => AuditEntry } = {},
  ): Promise<{ version: ModelVersion; created: boolean; reusedBy?: 'idempotency-key' | 'same-artifact' }> {
    validateInput(input);
    const metrics = flattenMetrics(input.metrics ?? {}, 'register.metrics');
    const paramsJson = canonicalJson(input.params ?? {}, 'register.params');
    const baseJson = input.baseModel === undefined ? null : canonicalJson(input.baseModel, 'register.baseModel');
    const dataJson = canonicalJson(
      input.data.map((d) => ({ name: d.name, sha256: d.sha256, uri: d.uri, rows: d.rows })),
      'register.data',
    );
    const actor = input.actor ?? defaultActor();
    const key = input.idempotencyKey ?? `${input.runId}/${input.stageId}`;

    type Outcome = { name: string; version: number; created: boolean; reusedBy?: 'idempotency-key' | 'same-artifact' };
    const r = await this.db.write('registry', async (q): Promise<Outcome> => {
      const existing = await q.get<{ id: number; model: string; version: number }>(
        'SELECT id, model, version FROM versions WHERE idempotency_key = ?',
        [key],
      );
      if (existing) {
        if (existing.model !== input.name) {
          throw new InputError(
            `run ${input.runId} stage ${input.stageId} already registered model '${existing.model}' v${existing.version}`,
            { where: 'register.name', hint: 'a stage registers one model; use a different stage id for another' },
          );
        }
        const stored = await q.all<{ role: string; sha256: string }>(
          'SELECT role, sha256 FROM artifacts WHERE version_id = ? ORDER BY role',
          [existing.id],
        );
        const given = input.artifacts
          .map((a) => ({ role: a.role, sha256: a.sha256 }))
          .sort((a, b) => (a.role < b.role ? -1 : a.role > b.role ? 1 : 0));
        if (canonicalJson(stored) !== canonicalJson(given)) {
          const diff = given.filter((g) => !stored.some((x) => x.role === g.role && x.sha256 === g.sha256)).map((g) => g.role);
          throw new InputError(
            `'${existing.model}' v${existing.version} was registered under the same key (${key}) with other artifacts (${diff.join(', ') || 'a different set of roles'} differ)`,
            {
              where: 'register.artifacts',
              hint: 'a retried registration must carry the bytes of the first attempt; this run produced different ones, so nothing was registered',
            },
          );
        }
        return { name: existing.model, version: existing.version, created: false, reusedBy: 'idempotency-key' };
      }
      if (input.reuseVersionWithSame !== undefined) {
        const same = input.artifacts.find((a) => a.role === input.reuseVersionWithSame);
        const hit = same
          ? await q.get<{ version: number }>(
              'SELECT v.version FROM versions v JOIN artifacts a ON a.version_id = v.id WHERE v.model = ? AND a.role = ? AND a.sha256 = ? ORDER BY v.version LIMIT 1',
              [input.name, same.role, same.sha256],
            )
          : undefined;
        if (hit) return { name: input.name, version: hit.version, created: false, reusedBy: 'same-artifact' };
      }
      const at = this.now().toISOString();
      await q.run('INSERT INTO models (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING', [input.name, at]);
      const { v } = (await q.get<{ v: number }>('SELECT COALESCE(MAX(version), 0) + 1 AS v FROM versions WHERE model = ?', [input.name]))!;
      const { id } = (await q.get<{ id: number }>(
        `INSERT INTO versions (model, version, run_id, stage_id, idempotency_key, created_at, created_by, description, intended_use, limitations,
                spec_hash, code_version, base_model_json, params_json, data_json) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id`,
        [
          input.name,
          v,
          input.runId,
          input.stageId,
          key,
          at,
          actor,
          input.description ?? null,
          input.intendedUse ?? null,
          input.limitations ?? null,
          input.specHash,
          input.codeVersion ?? null,
          baseJson,
          paramsJson,
          dataJson,
        ],
      ))!;
      for (const a of input.artifacts)
        await q.run('INSERT INTO artifacts (version_id, role, uri, sha256, bytes, media_type) VALUES (?,?,?,?,?,?)', [
          id,
          a.role,
          a.uri,
          a.sha256,
          a.bytes,
          a.mediaType ?? null,
        ]);
      for (const [k, val] of Object.entries(metrics))
        await q.run('INSERT INTO metrics (version_id, name, value) VALUES (?,?,?)', [id, k, val]);
      for (const [k, val] of Object.entries(input.tags ?? {}))
        await q.run('INSERT INTO tags (version_id, key, value) VALUES (?,?,?)', [id, k, val]);
      if (opts.audit) await this.enqueueAudit(q, opts.audit({ name: input.name, version: v }));
      return { name: input.name, version: v, created: true };
    });
    return { version: await this.getVersion(r.name, r.version), created: r.created, ...(r.reusedBy ? { reusedBy: r.reusedBy } : {}) };
  }

  /** Inside a registry transaction: the audit record commits (or not) with the change it describes. */
  private async enqueueAudit(q: Queryable, entry: AuditEntry): Promise<void> {
    validateAuditEntry(entry);
    if (entry.dedupeKey === undefined)
      throw new Error('an outbox audit record needs a dedupe key, or delivering it twice would log it twice');
    await q.run('INSERT INTO audit_outbox (dedupe_key, entry_json) VALUES (?, ?) ON CONFLICT DO NOTHING', [
      entry.dedupeKey,
      canonicalJson(entry, 'audit'),
    ]);
  }

  /**
   * Appends every pending outbox record to the audit log, oldest first, removing each once it is
   * there. Safe to run from several processes at once and after a crash: the dedupe key turns a
   * second delivery into a no-op. Returns how many records were delivered.
   */
  async drainAuditOutbox(audit: AuditSink): Promise<number> {
    const rows = await this.db.all<{ id: number; entry_json: string }>('SELECT id, entry_json FROM audit_outbox ORDER BY id');
    for (const r of rows) {
      await audit.append(JSON.parse(r.entry_json) as AuditEntry);
      await this.db.run('DELETE FROM audit_outbox WHERE id = ?', [r.id]);
    }
    return rows.length;
  }

  /** Audit records committed with a registry change but not yet in the audit log. */
  async pendingAudit(): Promise<AuditEntry[]> {
    return (await this.db.all<{ entry_json: string }>('SELECT entry_json FROM audit_outbox ORDER BY id')).map(
      (r) => JSON.parse(r.entry_json) as AuditEntry,
    );
  }

  /** The version an alias points at now, or null when the model or the alias does not exist. */
  async aliasVersion(name: string, alias: string): Promise<number | null> {
    const row = await this.db.get<{ version: number }>('SELECT version FROM aliases WHERE model = ? AND alias = ?', [name, alias]);
    return row?.version ?? null;
  }

  private async resolve(q: Queryable, name: string, ref: number | string): Promise<VersionRow> {
    await this.resolveModel(q, name);
    let row: VersionRow | undefined;
    const asNum = typeof ref === 'number' ? ref : /^v?\d+$/.test(ref) ? Number(ref.replace(/^v/, '')) : null;
    if (asNum !== null) {
      // Beyond INTEGER no version exists; PostgreSQL would refuse the comparison instead of finding nothing.
      row =
        Number.isSafeInteger(asNum) && asNum <= 2 ** 31 - 1
          ? await q.get<VersionRow>('SELECT * FROM versions WHERE model = ? AND version = ?', [name, asNum])
          : undefined;
    } else if (ref === 'latest') {
      row = await q.get<VersionRow>('SELECT * FROM versions WHERE model = ? ORDER BY version DESC LIMIT 1', [name]);
    } else {
      row = await q.get<VersionRow>(
        'SELECT v.* FROM aliases a JOIN versions v ON v.model = a.model AND v.version = a.version WHERE a.model = ? AND a.alias = ?',
        [name, ref],
      );
    }
    if (!row) {
      const s = (await this.models(q)).find((m) => m.name === name)!;
      const aliases = Object.keys(s.aliases);
      throw new NamedRefusal(`model '${name}' has no version or alias '${ref}'`, {
        where: 'model',
        hint: `versions 1..${s.latestVersion}${aliases.length ? `, aliases ${aliases.join(', ')}` : ''}, or 'latest'`,
      });
    }
    return row;
  }

  /** `ref`: a version number, 'v3' / '3', an alias, or 'latest'. */
  async getVersion(name: string, ref: number | string): Promise<ModelVersion> {
    return this.db.snapshot(async (q) => this.hydrate(q, await this.resolve(q, name, ref)));
  }

  private async hydrate(q: Queryable, r: VersionRow): Promise<ModelVersion> {
    return (await this.hydrateAll(q, [r], 'v.id = ?', [r.id]))[0]!;
  }

  /**
   * Versions of one model with their artifacts, metrics, tags and aliases: four queries whatever the
   * number of versions (`where` picks the versions, `v` being `versions`). Per version it was four each:
   * the dashboard's Models page made 1,290 queries for 300 versions, a round trip each on PostgreSQL.
   */
  private async hydrateAll(q: Queryable, rows: VersionRow[], where: string, args: unknown[]): Promise<ModelVersion[]> {
    if (rows.length === 0) return [];
    // BIGINT ids may come back as strings from PostgreSQL: grouped by their text.
    const byVersion = <T extends { version_id: unknown }>(list: T[]) => {
      const m = new Map<string, T[]>();
      for (const x of list) {
        const k = String(x.version_id);
        const group = m.get(k);
        if (group) group.push(x);
        else m.set(k, [x]);
      }
      return m;
    };
    const artifacts = byVersion(
      await q.all<ArtifactRow & { version_id: unknown }>(
        `SELECT a.version_id, a.role, a.uri, a.sha256, a.bytes, a.media_type FROM artifacts a JOIN versions v ON v.id = a.version_id
         WHERE ${where} ORDER BY a.version_id, a.role`,
        args,
      ),
    );
    const metrics = byVersion(
      await q.all<{ version_id: unknown; name: string; value: number }>(
        `SELECT m.version_id, m.name, m.value FROM metrics m JOIN versions v ON v.id = m.version_id WHERE ${where} ORDER BY m.version_id, m.name`,
        args,
      ),
    );
    const tags = byVersion(
      await q.all<{ version_id: unknown; key: string; value: string }>(
        `SELECT t.version_id, t.key, t.value FROM tags t JOIN versions v ON v.id = t.version_id WHERE ${where} ORDER BY t.version_id, t.key`,
        args,
      ),
    );
    const aliases = new Map<number, string[]>();
    for (const a of await q.all<{ alias: string; version: number }>('SELECT alias, version FROM aliases WHERE model = ? ORDER BY alias', [
      rows[0]!.model,
    ]))
      aliases.set(Number(a.version), [...(aliases.get(Number(a.version)) ?? []), a.alias]);
    return rows.map((r) => {
      const id = String(r.id);
      const data = (JSON.parse(r.data_json) as DataRef[]).map((d) => ({ ...d }));
      return {
        name: r.model,
        version: r.version,
        createdAt: r.created_at,
        createdBy: r.created_by,
        description: r.description,
        intendedUse: r.intended_use,
        limitations: r.limitations,
        lineage: {
          specHash: r.spec_hash,
          runId: r.run_id,
          stageId: r.stage_id,
          data,
          ...(r.base_model_json ? { baseModel: JSON.parse(r.base_model_json) as Record<string, unknown> } : {}),
          ...(r.code_version ? { codeVersion: r.code_version } : {}),
        },
        params: JSON.parse(r.params_json) as Record<string, unknown>,
        metrics: Object.fromEntries((metrics.get(id) ?? []).map((m) => [m.name, m.value])),
        artifacts: (artifacts.get(id) ?? []).map(artifactOf),
        tags: Object.fromEntries((tags.get(id) ?? []).map((t) => [t.key, t.value])),
        aliases: aliases.get(Number(r.version)) ?? [],
      };
    });
  }

  listModels(): Promise<ModelSummary[]> {
    return this.models(this.db);
  }

  private async models(q: Queryable): Promise<ModelSummary[]> {
    const rows = await q.all<{ name: string; created_at: string; n: number; latest: number }>(
      `SELECT m.name, m.created_at, COUNT(v.id) AS n, COALESCE(MAX(v.version), 0) AS latest
      FROM models m LEFT JOIN versions v ON v.model = m.name GROUP BY m.name ORDER BY m.name`,
    );
    const aliases = await q.all<{ model: string; alias: string; version: number }>(
      'SELECT model, alias, version FROM aliases ORDER BY model, alias',
    );
    return rows.map((r) => ({
      name: r.name,
      createdAt: r.created_at,
      versions: r.n,
      latestVersion: r.latest,
      aliases: Object.fromEntries(aliases.filter((a) => a.model === r.name).map((a) => [a.alias, a.version])),
    }));
  }

  async listVersions(name: string): Promise<ModelVersion[]> {
    return this.db.snapshot(async (q) => {
      await this.resolveModel(q, name);
      const rows = await q.all<VersionRow>('SELECT * FROM versions WHERE model = ? ORDER BY version', [name]);
      return this.hydrateAll(q, rows, 'v.model = ?', [name]);
    });
  }

  /**
   * A page of a model's versions, newest first: at most `limit` below version `before` (from the newest
   * when absent). Only those versions are read and hydrated, so a page costs the same however many
   * versions the model has (the dashboard's Models page: the newest page, then older ones on request).
   * `more`: older versions remain below the page.
   */
  async listVersionPage(name: string, page: { before?: number; limit: number }): Promise<{ versions: ModelVersion[]; more: boolean }> {
    if (!Number.isSafeInteger(page.limit) || page.limit < 1)
      throw new NamedRefusal(`limit must be a whole number ≥ 1, got ${page.limit}`, { where: 'limit' });
    // Beyond INTEGER every version is below it; PostgreSQL would refuse the comparison instead.
    const before = page.before === undefined || page.before > 2 ** 31 - 1 ? undefined : page.before;
    return this.db.snapshot(async (q) => {
      await this.resolveModel(q, name);
      // One row past the page says whether older ones remain; it is not hydrated.
      const rows = await q.all<VersionRow>(
        `SELECT * FROM versions WHERE model = ?${before === undefined ? '' : ' AND version < ?'} ORDER BY version DESC LIMIT ?`,
        before === undefined ? [name, page.limit + 1] : [name, before, page.limit + 1],
      );
      const more = rows.length > page.limit;
      const shown = rows.slice(0, page.limit);
      if (shown.length === 0) return { versions: [], more };
      const range = [name, shown[shown.length - 1]!.version, shown[0]!.version];
      return { versions: await this.hydrateAll(q, shown, 'v.model = ? AND v.version BETWEEN ? AND ?', range), more };
    });
  }

  private async resolveModel(q: Queryable, name: string): Promise<void> {
    if (!(await q.get('SELECT 1 AS one FROM models WHERE name = ?', [name]))) {
      const names = (await this.models(q)).map((m) => m.name);
      throw new NamedRefusal(`no model named '${name}'`, {
        where: 'model',
        hint: names.length ? `registered models: ${names.join(', ')}` : 'nothing is registered yet',
      });
    }
  }

  async diffVersions(name: string, a: number | string, b: number | string): Promise<VersionDiff> {
    return diffModelVersions(await this.getVersion(name, a), await this.getVersion(name, b));
  }

  /**
   * The version on `alias` (null: unset), and `held` when it serves `version`'s model already: that version, or
   * another with its model bytes (held-model.ts). A caller deciding before a gate; `setAlias` decides again.
   */
  async heldModel(name: string, alias: string, version: number): Promise<{ holder: number | null; held?: HeldModel }> {
    const cur = await this.db.get<{ version: number }>('SELECT version FROM aliases WHERE model = ? AND alias = ?', [name, alias]);
    return this.heldBy(this.db, name, alias, version, cur?.version ?? null);
  }

  private async heldBy(
    q: Queryable,
    name: string,
    alias: string,
    version: number,
    holder: number | null,
  ): Promise<{ holder: number | null; held?: HeldModel }> {
    if (holder === null) return { holder };
    const same = holder === version || (await this.sameModelIn(q, name, holder, version));
    return same ? { holder, held: { alias, version, holder } } : { holder };
  }

  /** Whether versions `a` and `b` of `name` are one model (held-model.ts says when). */
  sameModel(name: string, a: number, b: number): Promise<boolean> {
    return a === b ? Promise.resolve(true) : this.sameModelIn(this.db, name, a, b);
  }

  /** Whether versions `a` and `b` are one model (held-model.ts says when), read as one row. */
  private async sameModelIn(q: Queryable, name: string, a: number, b: number): Promise<boolean> {
    // The version as an INTEGER: a bare parameter would be text to PostgreSQL, which compares no INTEGER with it.
    const r = await q.get<{ n: number | string }>(`WITH ${sameModelSql('SELECT CAST(? AS INTEGER)')} SELECT COUNT(*) AS n FROM same`, [
      name,
      b,
      name,
      a,
    ]);
    // PostgreSQL's COUNT is a bigint, which its client hands back as text.
    return Number(r!.n) === 1;
  }

  /**
   * The rollback that took `version`'s model (its bytes, under any version number) off `alias`, when nothing has put
   * that model back since (held-model.ts): a run's deploy does not promote it again. One query, whatever the history's
   * length: every deploy asks, and it asked sameModel once per version in the history (a nightly alias: 365 a year).
   */
  async rolledBackFrom(name: string, alias: string, version: number): Promise<AliasChange | undefined> {
    // Beyond INTEGER (either end) no version exists, nor one with its bytes; PostgreSQL would refuse the comparison instead.
    if (!Number.isSafeInteger(version) || version > 2 ** 31 - 1 || version < -(2 ** 31)) return undefined;
    const rows = await this.db.all<HistoryRow & { to_same: number | string; from_same: number | string }>(
      `WITH h AS (SELECT * FROM alias_history WHERE model = ? AND alias = ?),
       ${sameModelSql('SELECT to_version FROM h UNION SELECT from_version FROM h')}
       SELECT h.*,
              CASE WHEN h.to_version IN (SELECT version FROM same) THEN 1 ELSE 0 END AS to_same,
              CASE WHEN h.from_version IN (SELECT version FROM same) THEN 1 ELSE 0 END AS from_same
       FROM h ORDER BY h.id`,
      [name, alias, name, version, name],
    );
    const same = new Set<number>([version]);
    for (const r of rows) {
      if (Number(r.to_same) === 1) same.add(r.to_version);
      if (Number(r.from_same) === 1 && r.from_version !== null) same.add(r.from_version);
    }
    return rollbackHolding(rows.map(changeOf), (v) => same.has(v));
  }

  /**
   * Points `alias` at a version. Setting it to a version whose model the alias serves already (that version, or
   * another with its model bytes: held-model.ts) changes nothing and returns `changed: false` with `held` (so a
   * retried promote does not add history, and a twin of the holder does not replace it). With `expect` (a
   * version, or null for "unset"), the move is a compare-and-swap: if the alias points elsewhere
   * now, nothing changes and AliasMovedError is thrown. `audit` builds the record of the change,
   * committed to the outbox with it, from the change and the artifacts of the version the alias now
   * holds (read in the same transaction); it runs inside the write transaction, so it must not call the
   * registry.
   */
  async setAlias(
    name: string,
    alias: string,
    ref: number | string,
    opts: { actor?: string; reason?: string; expect?: number | null; audit?: AliasAudit } = {},
  ): Promise<{ changed: boolean; change?: AliasChange; held?: HeldModel }> {
    if (alias === 'latest' || /^v\d+$/.test(alias)) {
      throw new NamedRefusal(`alias '${alias}' is reserved: it already means a version`, {
        where: 'alias',
        hint: "choose another name, e.g. 'production' or 'staging'",
      });
    }
    if (typeof alias !== 'string' || !ALIAS_RE.test(alias)) {
      throw new NamedRefusal(`alias ${JSON.stringify(alias)} is not valid`, {
        where: 'alias',
        hint: "use lowercase letters, digits, '_' or '-', starting with a letter",
      });
    }
    return this.db.write('registry', async (q) => {
      const target = await this.resolve(q, name, ref);
      const cur = await q.get<{ version: number }>('SELECT version FROM aliases WHERE model = ? AND alias = ?', [name, alias]);
      // Decided in the write transaction, against the holder as committed: two promotions racing agree on it.
      const { held } = await this.heldBy(q, name, alias, target.version, cur?.version ?? null);
      if (held) return { changed: false, held };
      if (opts.expect !== undefined && (cur?.version ?? null) !== opts.expect) {
        throw new AliasMovedError(
          `${name}@${alias} moved to ${cur ? `v${cur.version}` : 'nothing'} since it was read (expected ${opts.expect === null ? 'nothing' : `v${opts.expect}`}); not moved to v${target.version}`,
        );
      }
      const change = await this.moveAlias(q, {
        model: name,
        alias,
        fromVersion: cur?.version ?? null,
        toVersion: target.version,
        kind: 'set',
        actor: opts.actor ?? defaultActor(),
        reason: opts.reason ?? null,
      });
      if (opts.audit)
        await this.enqueueAudit(q, opts.audit(change, await this.artifactsOf(q, name, change.toVersion), { sameModel: false }));
      return { changed: true, change };
    });
  }

  /**
   * The artifacts of one version, for the audit record of an alias move: reading that version alone, not the
   * model's (a rollback's target is known only inside its transaction, so the caller cannot read it first).
   */
  private async artifactsOf(q: Queryable, name: string, version: number): Promise<RegisteredArtifact[]> {
    const rows = await q.all<ArtifactRow>(
      `SELECT a.role, a.uri, a.sha256, a.bytes, a.media_type FROM artifacts a JOIN versions v ON v.id = a.version_id
       WHERE v.model = ? AND v.version = ? ORDER BY a.role`,
      [name, version],
    );
    return rows.map(artifactOf);
  }

  private async moveAlias(q: Queryable, c: Omit<AliasChange, 'id' | 'at'>): Promise<AliasChange> {
    const at = this.now().toISOString();
    await q.run(
      'INSERT INTO aliases (model, alias, version) VALUES (?, ?, ?) ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version',
      [c.model, c.alias, c.toVersion],
    );
    const { id } = (await q.get<{ id: number }>(
      'INSERT INTO alias_history (model, alias, kind, from_version, to_version, actor, reason, at) VALUES (?,?,?,?,?,?,?,?) RETURNING id',
      [c.model, c.alias, c.kind, c.fromVersion, c.toVersion, c.actor, c.reason, at],
    ))!;
    return {
      id,
      model: c.model,
      alias: c.alias,
      kind: c.kind,
      fromVersion: c.fromVersion,
      toVersion: c.toVersion,
      actor: c.actor,
      reason: c.reason,
      at,
    };
  }

  /**
   * Moves `alias` back to the version it pointed to before its latest promotion. Repeated
   * rollbacks keep walking back (v1 → v2 → v3, rollback → v2, rollback → v1): the history is
   * replayed as a stack where a `set` pushes and a `rollback` pops.
   *
   * With `expect` (the version the caller saw and means to roll back from) a rollback is done once:
   * if the alias's latest change is already a rollback from that version (this caller's, committed
   * before its answer was lost, or another operator's at the same moment), that change is returned
   * and nothing moves; if the alias moved otherwise, AliasMovedError. Without it, two rollbacks
   * meant as one walk back two versions.
   */
  async rollback(
    name: string,
    alias: string,
    opts: { actor?: string; reason?: string; expect?: number; audit?: AliasAudit } = {},
  ): Promise<AliasChange> {
    return this.db.write('registry', async (q) => {
      await this.resolveModel(q, name);
      const history = await this.history(q, name, alias);
      const stack = aliasStack(history);
      if (opts.expect !== undefined && stack[stack.length - 1] !== opts.expect) {
        const last = history[history.length - 1];
        if (last?.kind === 'rollback' && last.fromVersion === opts.expect) return last;
        const now = stack.length ? `v${stack[stack.length - 1]}` : 'nothing';
        throw new AliasMovedError(`${name}@${alias} moved to ${now} since it was read (expected v${opts.expect}); not rolled back`);
      }
      if (stack.length < 2) {
        throw new NamedRefusal(`alias '${alias}' of '${name}' has no earlier version to roll back to`, {
          where: 'alias',
          hint: !stack.length
            ? 'it has never been set'
            : history.some((h) => h.kind === 'rollback')
              ? `it is back at v${stack[0]}, its first version: rollbacks have undone every later promotion (\`tempered models history ${name}\`); promote a version to move it`
              : `it has only ever pointed at v${stack[0]}`,
        });
      }
      const from = stack[stack.length - 1]!;
      const to = stack[stack.length - 2]!;
      const change = await this.moveAlias(q, {
        model: name,
        alias,
        fromVersion: from,
        toVersion: to,
        kind: 'rollback',
        actor: opts.actor ?? defaultActor(),
        reason: opts.reason ?? `rollback from v${from}`,
      });
      if (opts.audit) {
        // Read with the move, so the record says what the rollback did to what is served as it happened.
        const sameModel = from === to || (await this.sameModelIn(q, name, from, to));
        await this.enqueueAudit(q, opts.audit(change, await this.artifactsOf(q, name, change.toVersion), { sameModel }));
      }
      return change;
    });
  }

  /**
   * Oldest first. Without `alias`, the history of every alias of the model. With `newest`, only the
   * newest that many changes (still oldest first), read without the rest.
   */
  aliasHistory(name: string, alias?: string, opts: { newest?: number } = {}): Promise<AliasChange[]> {
    return this.history(this.db, name, alias, opts.newest);
  }

  private async history(q: Queryable, name: string, alias?: string, newest?: number): Promise<AliasChange[]> {
    const where = alias === undefined ? 'model = ?' : 'model = ? AND alias = ?';
    const args: unknown[] = alias === undefined ? [name] : [name, alias];
    const rows = await q.all<HistoryRow>(
      newest === undefined
        ? `SELECT * FROM alias_history WHERE ${where} ORDER BY id`
        : `SELECT * FROM (SELECT * FROM alias_history WHERE ${where} ORDER BY id DESC LIMIT ?) newest ORDER BY id`,
      newest === undefined ? args : [...args, newest],
    );
    return rows.map(changeOf);
  }

  /** Markdown model card of one version (see card.ts). */
  async modelCard(name: string, ref: number | string): Promise<string> {
    return modelCard(await this.getVersion(name, ref));
  }
}
