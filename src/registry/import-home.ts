/**
 * `tempered import-home DIR`: carries a one-machine state folder (TEMPERED_HOME: SQLite registry and audit log, folder
 * store, stage-cache records) into the shared backends a team moves to (PostgreSQL, an S3-compatible store), so the
 * models it registered, their aliases and history, and its audit chain go on there instead of starting empty.
 *
 * - Only into an empty registry and audit log: a hash chain cannot be merged with another, and version numbers and
 *   aliases of one name from two homes would collide. Anything there refuses the import, named, before a byte moves.
 * - Objects first, the database last: every object the registry, the audit trail and the stage-cache records name is
 *   re-hashed against its name and stored with the backend's create-only, checksummed put ("already stored" is
 *   success), so a rerun after a failure part-way uploads only what is missing, and no row ever names a missing object.
 * - The database part is one transaction holding the registry and audit locks: the registry's rows with their ids,
 *   the audit rows byte for byte (the chain verifies and keeps its head), a `home.imported` record after them, and the
 *   stage-cache records. A failure leaves the database as it was.
 *
 * The source is only read, except that an older registry or audit file is brought up to this release first, as any
 * command that opens it would.
 */
import { createReadStream, existsSync, promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import {
  auditRecordBuilder,
  auditRowValues,
  insertAuditRows,
  openAudit,
  AUDIT_SCHEMA,
  type AuditAnchor,
  type AuditRow,
} from '../audit/log.ts';
import { insertRows, isDatabaseUrl, openDatabase, redactUrl, type Database, type Queryable } from '../db/database.ts';
import { InputError } from '../errors.ts';
import { statePaths } from '../state-paths.ts';
import { objectKey, TREE_MEDIA, type TreeEntry } from '../store/artifact-store.ts';
import { scanNames } from '../store/garbage.ts';
import type { ObjectBackend } from '../store/object-backend.ts';
import { insertRecordsIfAbsent, STAGE_CACHE_SCHEMA } from '../store/shared-records.ts';
import { localRecordFiles, recordRefs } from '../store/stage-cache.ts';
import { forEachInFlight } from '../util/in-flight.ts';
import { sha256File } from '../util/hash-file.ts';
import { openRegistry } from './registry.ts';
import { REGISTRY_SCHEMA } from './schema.ts';

export interface ImportHomeOptions {
  /** The one-machine state folder to read (a TEMPERED_HOME). */
  home: string;
  /** The shared database, a postgres:// URL (TEMPERED_DATABASE_URL). */
  database: string;
  /** The shared store's backend (TEMPERED_STORE). */
  backend: ObjectBackend;
  /** Who imports, for the `home.imported` record. */
  actor: string;
  /** Report what would be copied; write nothing anywhere. */
  dryRun?: boolean;
  /** Progress lines (phases, and the object copy every few seconds). */
  log?: (line: string) => void;
  /** Objects hashed and uploaded at once (default 8). */
  inFlight?: number;
  now?: () => Date;
}

export interface ImportHomeReport {
  home: string;
  database: string;
  store: string;
  dryRun: boolean;
  models: number;
  versions: number;
  aliasChanges: number;
  /** Audit records of registry changes not yet delivered to the audit log (the registry's outbox): carried as they are. */
  outbox: number;
  audit: { records: number; head: AuditAnchor | null };
  /** `present`: already in the shared store (not uploaded again); `uploaded`: stored now (on a dry run: would be). */
  objects: { count: number; bytes: number; present: number; presentBytes: number; uploaded: number; uploadedBytes: number };
  /** Stage-cache records carried, and those left out because an object they name is in neither store (they would be misses). */
  cacheRecords: { copied: number; skipped: number };
  /** The `home.imported` record appended after the copied chain (not on a dry run). */
  imported?: AuditAnchor;
}

/** The import cannot go ahead: said with what to do; nothing was written to the database. */
export class ImportRefused extends InputError {
  override name = 'ImportRefused';
}

/**
 * The registry's tables in the order their references need, each with its columns and the order rows are read in. A
 * table or column left out here is not carried: tests/import-home.test.ts holds this list to the schema.
 */
export const REGISTRY_TABLES = [
  { table: 'models', columns: ['name', 'created_at'], order: 'name' },
  {
    table: 'versions',
    columns: [
      'id',
      'model',
      'version',
      'run_id',
      'stage_id',
      'idempotency_key',
      'created_at',
      'created_by',
      'description',
      'intended_use',
      'limitations',
      'spec_hash',
      'code_version',
      'base_model_json',
      'params_json',
      'data_json',
    ],
    order: 'id',
  },
  { table: 'artifacts', columns: ['version_id', 'role', 'uri', 'sha256', 'bytes', 'media_type'], order: 'version_id, role' },
  { table: 'metrics', columns: ['version_id', 'name', 'value'], order: 'version_id, name' },
  { table: 'tags', columns: ['version_id', 'key', 'value'], order: 'version_id, key' },
  { table: 'aliases', columns: ['model', 'alias', 'version'], order: 'model, alias' },
  {
    table: 'alias_history',
    columns: ['id', 'model', 'alias', 'kind', 'from_version', 'to_version', 'actor', 'reason', 'at'],
    order: 'id',
  },
  { table: 'audit_outbox', columns: ['id', 'dedupe_key', 'entry_json'], order: 'id' },
] as const;
type RegistryTable = (typeof REGISTRY_TABLES)[number]['table'];
/** Tables whose ids are copied as they are: PostgreSQL's identity sequences must then start after them. */
const IDENTITY_TABLES = ['versions', 'alias_history', 'audit_outbox'] as const;

type Rows = Record<RegistryTable, Record<string, unknown>[]>;

const HEX64 = /^[0-9a-f]{64}$/;
const NAMES = /[0-9a-f]{64}/g;

/**
 * Refuses the import when the shared database holds anything of a registry or an audit log, saying what. A
 * `home.imported` record of this very home there is an earlier import that completed (a rerun after a lost answer to
 * its COMMIT, or after a crash just past it): said so, with nothing left to do, rather than as a stranger's records.
 */
async function refuseIfHeld(
  q: Queryable,
  has: { registry: boolean; audit: boolean },
  where: string,
  home: { dir: string; head: AuditAnchor | null },
): Promise<void> {
  const count = async (table: string) => Number((await q.get<{ n: number | string }>(`SELECT COUNT(*) AS n FROM ${table}`))?.n ?? 0);
  const held: string[] = [];
  if (has.registry) {
    const models = await q.all<{ name: string }>('SELECT name FROM models ORDER BY name LIMIT 5');
    const versions = await count('versions');
    const history = await count('alias_history');
    const outbox = await count('audit_outbox');
    if (models.length || versions || history || outbox)
      held.push(
        `the registry holds ${await count('models')} model(s) (${models.map((m) => m.name).join(', ') || 'none'}${models.length === 5 ? ', …' : ''}), ${versions} version(s), ${history} alias change(s) and ${outbox} undelivered audit record(s)`,
      );
  }
  if (has.audit) {
    const n = await count('audit_log');
    if (n) {
      const first = await q.all<{ action: string; actor: string; time: string }>(
        'SELECT action, actor, time FROM audit_log ORDER BY seq LIMIT 3',
      );
      held.push(
        `the audit log holds ${n} record(s), the first ${first.map((r) => `${r.action} by ${r.actor} at ${r.time}`).join('; ')}${n > 3 ? '; …' : ''}`,
      );
      // This home's folder, and the chain it had then (another machine's home may sit at the same path).
      const done = (
        await q.all<{ seq: number | string; actor: string; time: string; details_json: string }>(
          "SELECT seq, actor, time, details_json FROM audit_log WHERE action = 'home.imported' AND subject = ? ORDER BY seq",
          [home.dir],
        )
      ).find((r) => {
        try {
          return (JSON.parse(r.details_json) as { head?: string }).head === (home.head ? `${home.head.seq}:${home.head.hash}` : undefined);
        } catch {
          return false;
        }
      });
      if (done)
        throw new ImportRefused(
          `${home.dir} was imported into ${where} already: its home.imported record is seq ${done.seq}, by ${done.actor} at ${done.time} (${held.join('; ')})`,
          { hint: 'nothing is left to do: the shared backends hold this home; see `tempered audit --action home.imported`' },
        );
    }
  }
  if (!held.length) return;
  throw new ImportRefused(`the shared database ${where} is not empty: ${held.join('; ')}`, {
    hint:
      'import-home moves a home into an empty shared registry and audit log only: an audit chain cannot be merged with another, and versions and aliases of one model from two homes would collide. ' +
      'Point TEMPERED_DATABASE_URL at a new, empty database (CREATE DATABASE …) and run import-home there before anything else writes to it (workers, `tempered db migrate`: import-home creates the tables itself), ' +
      'or keep this home on its own',
  });
}

/** A stage-cache record file of the home, with its text. */
interface CacheRecordFile {
  key: string;
  text: string;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

export async function importHome(opts: ImportHomeOptions): Promise<ImportHomeReport> {
  const log = opts.log ?? (() => {});
  const now = opts.now ?? (() => new Date());
  const home = resolve(opts.home);
  if (!isDatabaseUrl(opts.database))
    throw new ImportRefused('TEMPERED_DATABASE_URL is not set: there is no shared database to import into', {
      hint: 'set TEMPERED_DATABASE_URL=postgres://… (and TEMPERED_STORE=s3://…) as on the shared workers, then run import-home again',
    });
  // The home's own files, whatever this process's TEMPERED_DATABASE_URL says.
  const paths = statePaths(home, {});
  const storeDir = join(paths.store, 'sha256');
  const hasRegistry = existsSync(paths.registryDb);
  const hasAudit = existsSync(paths.auditDb);
  if (!hasRegistry && !hasAudit && !existsSync(storeDir) && !existsSync(paths.cache))
    throw new ImportRefused(`${home} is not a tempered state folder: it has no registry.db, audit.db, store/ or cache/`, {
      hint: 'name the folder that was TEMPERED_HOME on the old machine (by default .tempered/ in its checkout)',
    });
  const where = redactUrl(opts.database);

  // The source, read whole: its registry rows, its chain (verified first), its stage-cache records.
  const rows = Object.fromEntries(REGISTRY_TABLES.map((t) => [t.table, []])) as unknown as Rows;
  if (hasRegistry) {
    const reg = await openRegistry(paths.registryDb);
    try {
      await reg.db.snapshot(async (q) => {
        for (const t of REGISTRY_TABLES) rows[t.table] = await q.all(`SELECT ${t.columns.join(', ')} FROM ${t.table} ORDER BY ${t.order}`);
      });
    } finally {
      await reg.close();
    }
  }
  const auditRows: AuditRow[] = [];
  if (hasAudit) {
    const source = await openAudit(paths.auditDb);
    try {
      // The rows copied are the ones verified, read once in one snapshot.
      const verified = await source.verify({ onRow: (r) => auditRows.push(r) });
      if (!verified.ok)
        throw new ImportRefused(`the audit log ${paths.auditDb} does not verify: ${verified.message}`, {
          hint: `a copy would carry a broken chain into the shared log; see \`TEMPERED_HOME=${home} tempered audit --verify\``,
        });
    } finally {
      await source.close();
    }
  }
  const lastRow = auditRows[auditRows.length - 1];
  const head = lastRow ? { seq: Number(lastRow.seq), hash: lastRow.hash } : null;
  const cacheFiles: CacheRecordFile[] = [];
  for await (const { key, text } of localRecordFiles(paths.cache)) if (HEX64.test(key)) cacheFiles.push({ key, text });

  // The shared database must hold nothing of a registry or an audit log. A dry run creates no tables to find out.
  let target: { registry: Database; close(): Promise<void> } | undefined;
  if (opts.dryRun) {
    const { schemaVersions } = await import('../db/postgres.ts');
    const [reg, aud] = await schemaVersions(opts.database, [REGISTRY_SCHEMA, AUDIT_SCHEMA]);
    if (reg!.at > 0 || aud!.at > 0) {
      // Opened only where at this release: that reads (a scope behind is refused, naming `tempered db migrate`).
      const db = await openDatabase(opts.database, reg!.at > 0 ? REGISTRY_SCHEMA : AUDIT_SCHEMA);
      try {
        await refuseIfHeld(db, { registry: reg!.at > 0, audit: aud!.at > 0 }, where, { dir: home, head });
      } finally {
        await db.close();
      }
    }
  } else {
    // Opening creates the tables of a new database, or refuses ones behind this release.
    const registry = await openRegistry(opts.database);
    const closers: (() => Promise<void>)[] = [() => registry.close()];
    try {
      closers.push(
        ...(await Promise.all([openAudit(opts.database), openDatabase(opts.database, STAGE_CACHE_SCHEMA)])).map((d) => () => d.close()),
      );
      await refuseIfHeld(registry.db, { registry: true, audit: true }, where, { dir: home, head });
    } catch (e) {
      for (const c of closers) await c();
      throw e;
    }
    target = { registry: registry.db, close: async () => void (await Promise.all(closers.map((c) => c()))) };
  }

  try {
    // What to copy: every object of the home's store that the registry, the audit trail or a stage-cache record names,
    // and what those objects name in turn (a tree's files, a report's model), as garbage collection keeps them.
    const local = new Map<string, { path: string; bytes: number }>();
    const unread: string[] = [];
    const seen = new Set<string>();
    const mark = (text: string) => {
      for (const [hex] of text.matchAll(NAMES))
        if (!seen.has(hex)) {
          seen.add(hex);
          unread.push(hex);
        }
    };
    mark(JSON.stringify(rows.versions));
    mark(JSON.stringify(rows.artifacts));
    for (const r of auditRows) mark(`${r.details_json} ${r.data_hashes_json ?? ''} ${r.model_hash ?? ''}`);
    for (const f of cacheFiles) mark(f.text);
    log(
      `looking for the objects the registry, ${auditRows.length} audit records and ${cacheFiles.length} stage-cache records name in ${paths.store}`,
    );
    while (unread.length)
      await forEachInFlight(unread.splice(0), opts.inFlight ?? 8, async (hex) => {
        const path = join(paths.store, objectKey(hex));
        const st = await fsp.lstat(path).catch(() => undefined);
        if (!st?.isFile()) return;
        local.set(hex, { path, bytes: st.size });
        await scanNames(createReadStream(path), mark);
      });

    // Whether the shared store has an object of this size already (a rerun, or an object another home stored).
    const inShared = new Map<string, boolean>();
    const sharedHas = async (hex: string, bytes: number): Promise<boolean> => {
      let has = inShared.get(hex);
      if (has === undefined) inShared.set(hex, (has = (await opts.backend.head(objectKey(hex)))?.bytes === bytes));
      return has;
    };
    // A name that is no sha256 (an odd row or manifest: a path, say) names nothing, in either store.
    const available = async (hex: string, bytes: number) =>
      HEX64.test(hex) && (local.get(hex)?.bytes === bytes || (await sharedHas(hex, bytes)));
    /** A reference and, for a tree, each file its manifest lists: what is in neither store. */
    const missingOf = async (ref: { sha256: string; bytes: number; mediaType?: string | null }): Promise<string[]> => {
      if (!(await available(ref.sha256, ref.bytes))) return [ref.sha256];
      const manifest = ref.mediaType === TREE_MEDIA ? local.get(ref.sha256) : undefined;
      if (!manifest) return [];
      let files: TreeEntry[] = [];
      try {
        files = (JSON.parse(await fsp.readFile(manifest.path, 'utf8')) as { files?: TreeEntry[] }).files ?? [];
      } catch {
        return [ref.sha256];
      }
      const missing: string[] = [];
      for (const f of files) if (!(await available(f.sha256, f.bytes))) missing.push(f.sha256);
      return missing;
    };

    // A registry version whose artifact is in neither store cannot be carried over whole: said, and nothing copied.
    const byId = new Map(rows.versions.map((v) => [v.id, `${String(v.model)}@${String(v.version)}`]));
    const lost: string[] = [];
    for (const a of rows.artifacts) {
      const missing = await missingOf({ sha256: String(a.sha256), bytes: Number(a.bytes), mediaType: a.media_type as string | null });
      for (const hex of missing)
        lost.push(
          `${byId.get(a.version_id)} ${String(a.role)}: ${HEX64.test(hex) ? `${hex} (${join(paths.store, objectKey(hex))})` : `${JSON.stringify(hex)}, which is no sha256`}`,
        );
    }
    if (lost.length)
      throw new ImportRefused(
        `registered models name objects that are in neither ${paths.store} nor ${opts.backend.url}:\n  ${lost.join('\n  ')}`,
        {
          hint: 'restore those files from a backup of the home (each is named by its sha256) and run import-home again',
        },
      );

    // A record naming an object neither store has would be a miss on every worker: left out.
    const records: CacheRecordFile[] = [];
    for (const f of cacheFiles) {
      const refs = recordRefs(f.text, f.key);
      if (!refs) continue;
      let whole = true;
      for (const r of refs) if ((await missingOf(r)).length) whole = false;
      if (whole) records.push(f);
    }

    // Objects: each one the shared store lacks is re-hashed against its name, then stored create-only with its sha256
    // for the server to check. A damaged one is named, and the import refused once the others are stored.
    const report: ImportHomeReport = {
      home,
      database: where,
      store: opts.backend.url,
      dryRun: !!opts.dryRun,
      models: rows.models.length,
      versions: rows.versions.length,
      aliasChanges: rows.alias_history.length,
      outbox: rows.audit_outbox.length,
      audit: { records: auditRows.length, head },
      objects: { count: local.size, bytes: 0, present: 0, presentBytes: 0, uploaded: 0, uploadedBytes: 0 },
      cacheRecords: { copied: records.length, skipped: cacheFiles.length - records.length },
    };
    const o = report.objects;
    for (const { bytes } of local.values()) o.bytes += bytes;
    log(`${local.size} objects (${mb(o.bytes)}) to ${opts.dryRun ? 'look for' : 'copy'} in ${opts.backend.url}`);
    const damaged: string[] = [];
    let lastSaid = Date.now();
    const say = (force = false) => {
      if (!force && Date.now() - lastSaid < 2000) return;
      lastSaid = Date.now();
      log(
        `  objects: ${o.present + o.uploaded + damaged.length}/${o.count} (${mb(o.presentBytes + o.uploadedBytes)} of ${mb(o.bytes)}), ${o.uploaded} ${opts.dryRun ? 'to store' : 'stored'}, ${o.present} already there`,
      );
    };
    await forEachInFlight(local.entries(), opts.inFlight ?? 8, async ([hex, { path, bytes }]) => {
      const key = objectKey(hex);
      const there = await opts.backend.head(key);
      if (there?.bytes === bytes) {
        o.present++;
        o.presentBytes += bytes;
      } else if (opts.dryRun) {
        o.uploaded++;
        o.uploadedBytes += bytes;
      } else {
        const got = await sha256File(path);
        if (got.sha256 !== hex) {
          damaged.push(`${path}: its content hashes to ${got.sha256} (${got.bytes} bytes)`);
          return;
        }
        // A wrong-sized object under this name is damage in the bucket: moved aside, as a put of the store does.
        if (there) await opts.backend.quarantine(key);
        if ((await opts.backend.putFile(key, path, { sha256: hex, bytes, ifAbsent: true })) === 'exists') {
          const now = await opts.backend.head(key);
          if (now?.bytes !== bytes) throw new Error(`artifact ${hex} in ${opts.backend.url} has ${now?.bytes} bytes, expected ${bytes}`);
        }
        o.uploaded++;
        o.uploadedBytes += bytes;
      }
      say();
    });
    say(true);
    if (damaged.length)
      throw new ImportRefused(`${damaged.length} object(s) of the home do not match their names:\n  ${damaged.join('\n  ')}`, {
        hint: `no record was written to the database; the ${o.uploaded + o.present} intact objects are in ${opts.backend.url} and are not copied again. Restore the damaged files from a backup (each is named by its sha256) and run import-home again`,
      });
    if (!target) return report;

    // The database, in one transaction holding both locks; checked empty again now that no one else can write.
    const entry = auditRecordBuilder({
      action: 'home.imported',
      subject: home,
      actor: opts.actor,
      details: {
        host: hostname(),
        home,
        store: opts.backend.url,
        models: report.models,
        versions: report.versions,
        aliasChanges: report.aliasChanges,
        auditRecords: report.audit.records,
        ...(head ? { head: `${head.seq}:${head.hash}` } : {}),
        objects: o.count,
        bytes: o.bytes,
        cacheRecords: report.cacheRecords.copied,
      },
    });
    log(`writing ${report.versions} versions, ${report.audit.records} audit records and ${records.length} stage-cache records to ${where}`);
    report.imported = await target.registry.write(['registry', 'audit'], async (q) => {
      await refuseIfHeld(q, { registry: true, audit: true }, where, { dir: home, head });
      for (const t of REGISTRY_TABLES)
        await insertRows(
          q,
          t.table,
          t.columns,
          rows[t.table].map((r) => t.columns.map((c) => r[c] ?? null)),
        );
      // Ids were copied as they were: the next one each table hands out must come after them.
      if (q.dialect === 'postgres')
        for (const t of IDENTITY_TABLES)
          if (rows[t].length) await q.get(`SELECT setval(pg_get_serial_sequence('${t}', 'id'), (SELECT MAX(id) FROM ${t}))`);
      await insertAuditRows(q, auditRows.map(auditRowValues));
      const { record, values } = entry(head ?? undefined, now());
      await insertAuditRows(q, [values]);
      await insertRecordsIfAbsent(q, records, now().toISOString());
      return { seq: record.seq, hash: record.hash };
    });
    return report;
  } finally {
    await target?.close();
  }
}
