/**
 * Append-only, hash-chained audit log in SQLite or PostgreSQL. Each record's `hash` is the SHA-256 of the
 * canonical JSON of the record without `hash` (so including `seq` and `prevHash`); each
 * `prevHash` is the previous record's `hash`. Editing, deleting or reordering any stored row
 * breaks the chain, and `verify()` names the first bad record and what happened to it.
 * A one-row head table (seq and hash of the last record) also catches deletion of the newest
 * records, which the chain alone cannot see.
 *
 * Appends run in a write transaction that holds the `audit` lock before it reads the last record
 * (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so concurrent writers in different
 * processes and on different hosts serialise and never fork the chain. On PostgreSQL an entry with a
 * dedupe key skips the lock: one statement appends it after the last record this log saw, only if
 * that record is still there and the next seq (the primary key) and the dedupe key are free
 * (appendWithoutLock).
 */
import { InputError } from '../errors.ts';
import { canonicalJson, sha256Hex } from '../util/canonical-json.ts';
import { defaultActor } from './actor.ts';
import { insertRows, openDatabase, type Database, type Migration, type OpenOptions, type Queryable, type Schema } from '../db/database.ts';
import { redactJson } from '../util/redact.ts';

export const GENESIS_HASH = '0'.repeat(64);

/**
 * Every action tempered writes: `tempered audit --action` knows the trail's actions by it (cli/commands/audit-actions.test.ts
 * checks each action written in the source is here). The log itself accepts others of the same dotted shape, for
 * extensions.
 */
export const AUDIT_ACTIONS = [
  'run.submitted',
  'run.triggered',
  'run.gate_passed',
  'run.skipped_unchanged',
  'run.skipped_not_triggered',
  'run.completed',
  'run.failed',
  'run.cancelled',
  'run.cancel_requested',
  'stage.completed',
  'stage.failed',
  'stage.reused',
  'model.registered',
  'model.promoted',
  'model.not_promoted',
  'model.rolled_back',
  'model.pulled',
  'model.predicted',
  'model.reproduced',
  'model.not_reproduced',
  'serve.started',
  'serve.swapped',
  'serve.stopped',
  'schedule.created',
  'schedule.updated',
  'schedule.paused',
  'schedule.unpaused',
  'schedule.triggered',
  'schedule.backfilled',
  'schedule.deleted',
  'store.collected',
  'db.migrated',
  'home.imported',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number] | (string & {});

export interface AuditEntry {
  action: AuditAction;
  /** What the action is about, e.g. a run id or `spam-clf@3`. */
  subject: string;
  details?: Record<string, unknown>;
  /** Defaults to TEMPERED_ACTOR or the OS user. */
  actor?: string;
  /** Run the record belongs to, for `query({ run })`. */
  runId?: string;
  /** `name@version` (or just `name`) the record is about, for `query({ model })`. */
  model?: string;
  specHash?: string;
  /** Input name → sha256. */
  dataHashes?: Record<string, string>;
  modelHash?: string;
  /**
   * Unique key for idempotency, e.g. `${runId}/${stageId}/completed`: a retried activity that
   * appends the same key gets the existing record back instead of a second one.
   */
  dedupeKey?: string;
}

export interface AuditRecord {
  seq: number;
  time: string;
  actor: string;
  action: string;
  subject: string;
  details: Record<string, unknown>;
  runId?: string;
  model?: string;
  specHash?: string;
  dataHashes?: Record<string, string>;
  modelHash?: string;
  dedupeKey?: string;
  prevHash: string;
  hash: string;
}

export type AuditProblem = 'edited' | 'removed' | 'reordered' | 'truncated' | 'rewritten' | 'empty';

/** A record's position and hash, kept outside the log to pin its history. */
export interface AuditAnchor {
  seq: number;
  hash: string;
}

export interface VerifyResult {
  ok: boolean;
  /** Records checked before stopping (all of them when ok). */
  checked: number;
  firstBadSeq?: number;
  problem?: AuditProblem;
  message?: string;
}

export interface AuditQuery {
  run?: string;
  /** `name` matches every version of the model; `name@3` only that version. */
  model?: string;
  action?: string;
  /** Only records with seq greater than this (for tailing). */
  afterSeq?: number;
  actor?: string;
  /**
   * Only records whose details, as stored (canonical JSON: `"resumeOf":"run-1"`, no spaces), contain this text: the
   * database drops the others before they are read. A narrowing, not a match (the text may sit anywhere in the
   * details): the caller still checks the field it wants.
   */
  detailsContain?: string;
  limit?: number;
  /** The newest first: with `limit`, the newest `limit` records, read without the rest of the log. */
  newestFirst?: boolean;
}

const SQLITE: readonly Migration[] = [
  {
    version: 1,
    name: 'audit log',
    sql: `
      CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY,
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        details_json TEXT NOT NULL,
        run_id TEXT,
        model TEXT,
        spec_hash TEXT,
        data_hashes_json TEXT,
        model_hash TEXT,
        dedupe_key TEXT UNIQUE,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX audit_by_run ON audit_log (run_id);
      CREATE INDEX audit_by_model ON audit_log (model);
      CREATE INDEX audit_by_action ON audit_log (action);
      CREATE INDEX audit_by_hash ON audit_log (hash);
      CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'audit records by subject',
    // A run's records are those whose run_id or subject is the run (query({ run })); without this the subject half
    // read every record: 27–48 ms on SQLite, 90–193 ms on PostgreSQL at 100,000 records (bench/audit-run-filter.bench.ts).
    sql: 'CREATE INDEX audit_by_subject ON audit_log (subject);',
  },
];

/** Same tables; seq is BIGINT, and `model` sorts and compares by bytes as in SQLite. */
const POSTGRES: readonly Migration[] = [
  {
    version: 1,
    name: 'audit log',
    sql: `
      CREATE TABLE audit_log (
        seq BIGINT PRIMARY KEY,
        time TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        details_json TEXT NOT NULL,
        run_id TEXT,
        model TEXT COLLATE "C",
        spec_hash TEXT,
        data_hashes_json TEXT,
        model_hash TEXT,
        dedupe_key TEXT UNIQUE,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      CREATE INDEX audit_by_run ON audit_log (run_id);
      CREATE INDEX audit_by_model ON audit_log (model);
      CREATE INDEX audit_by_action ON audit_log (action);
      CREATE INDEX audit_by_hash ON audit_log (hash);
      CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: 'audit records by subject',
    sql: 'CREATE INDEX audit_by_subject ON audit_log (subject);',
  },
];

export const AUDIT_SCHEMA: Schema = { scope: 'audit', sqlite: SQLITE, postgres: POSTGRES };

/** A stored record as its columns hold it: what a verbatim copy of a log carries (insertAuditRows). */
export interface AuditRow {
  seq: number;
  time: string;
  actor: string;
  action: string;
  subject: string;
  details_json: string;
  run_id: string | null;
  model: string | null;
  spec_hash: string | null;
  data_hashes_json: string | null;
  model_hash: string | null;
  dedupe_key: string | null;
  prev_hash: string;
  hash: string;
}

/** The exact object that is hashed: the record minus `hash`, absent optionals omitted. */
function hashedFields(r: Omit<AuditRecord, 'hash'>): Record<string, unknown> {
  return {
    seq: r.seq,
    time: r.time,
    actor: r.actor,
    action: r.action,
    subject: r.subject,
    details: r.details,
    runId: r.runId,
    model: r.model,
    specHash: r.specHash,
    dataHashes: r.dataHashes,
    modelHash: r.modelHash,
    dedupeKey: r.dedupeKey,
    prevHash: r.prevHash,
  };
}

export function hashRecord(r: Omit<AuditRecord, 'hash'>): string {
  return sha256Hex(canonicalJson(hashedFields(r)));
}

/**
 * Rebuilds a record from its row. JSON columns that no longer parse (a tampered byte) come
 * back as the raw text so the hash check, not a parser crash, reports them.
 */
function fromRow(row: AuditRow): AuditRecord {
  const parse = (s: string): unknown => {
    try {
      return JSON.parse(s);
    } catch {
      return { unparseable: s };
    }
  };
  const r: AuditRecord = {
    seq: row.seq,
    time: row.time,
    actor: row.actor,
    action: row.action,
    subject: row.subject,
    details: parse(row.details_json) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
  if (row.run_id !== null) r.runId = row.run_id;
  if (row.model !== null) r.model = row.model;
  if (row.spec_hash !== null) r.specHash = row.spec_hash;
  if (row.data_hashes_json !== null) r.dataHashes = parse(row.data_hashes_json) as Record<string, string>;
  if (row.model_hash !== null) r.modelHash = row.model_hash;
  if (row.dedupe_key !== null) r.dedupeKey = row.dedupe_key;
  return r;
}

function safeCanonical(v: unknown): string | null {
  try {
    return canonicalJson(v);
  } catch {
    return null;
  }
}

const ACTION_RE = /^[a-z][a-z_]*(\.[a-z][a-z_]*)+$/;

/**
 * Replaces lone UTF-16 surrogates with U+FFFD. SQLite stores text as UTF-8, where a lone surrogate
 * cannot exist, so it would come back as U+FFFD and the record would no longer match the hash
 * computed from the JavaScript string: a label from the data could make an intact log fail
 * verification. Fixing the string before hashing keeps what is hashed equal to what is stored.
 */
export function wellFormed(s: string): string {
  return s.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

/** Checks an entry without writing it (the registry validates outbox records before committing them). */
export function validateAuditEntry(e: AuditEntry): void {
  const w = 'audit';
  if (typeof e.action !== 'string' || !ACTION_RE.test(e.action)) {
    throw new InputError(`action ${JSON.stringify(e.action)} is not valid`, {
      where: `${w}.action`,
      hint: `use a dotted lowercase name such as ${AUDIT_ACTIONS.slice(0, 3).join(', ')}`,
    });
  }
  if (typeof e.subject !== 'string' || e.subject.length === 0)
    throw new InputError('subject must be a non-empty string', { where: `${w}.subject` });
  for (const k of ['actor', 'runId', 'model', 'specHash', 'modelHash', 'dedupeKey'] as const) {
    const v = e[k];
    if (v !== undefined && (typeof v !== 'string' || v.length === 0))
      throw new InputError('must be a non-empty string when given', { where: `${w}.${k}` });
  }
  if (e.details !== undefined && (e.details === null || typeof e.details !== 'object' || Array.isArray(e.details))) {
    throw new InputError('details must be an object', { where: `${w}.details` });
  }
  for (const [k, v] of Object.entries(e.dataHashes ?? {})) {
    if (typeof v !== 'string') throw new InputError('data hashes must be strings', { where: `${w}.dataHashes.${k}` });
  }
}

export interface AuditOptions extends OpenOptions {
  now?: () => Date;
}

/** `location`: a SQLite file, or a postgres:// URL (see db/database.ts). */
export async function openAudit(location: string, opts: AuditOptions = {}): Promise<AuditLog> {
  return new AuditLog(await openDatabase(location, AUDIT_SCHEMA, opts), opts);
}

export interface LastRecord {
  seq: number;
  hash: string;
}

const COLUMNS =
  'seq, time, actor, action, subject, details_json, run_id, model, spec_hash, data_hashes_json, model_hash, dedupe_key, prev_hash, hash';
const INSERT_RECORD = `INSERT INTO audit_log (${COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`;
const MOVE_HEAD =
  'INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash';
/**
 * PostgreSQL: the record and the head with it, in one statement (SQLite has no writes in WITH), only
 * while the record it is built on is still the one the log holds at that seq (for the first record:
 * while the log is empty) and its seq and dedupe key are free. Records a writer saw can disappear
 * behind its back (a restore, a failover to a replica that lagged), and a record built on one of
 * them would leave a gap that `verify` reports for good. Returns the record's seq, or no row when
 * nothing was inserted. The head only ever moves forward.
 */
const appendWhen = (condition: string) => `WITH appended AS (
    INSERT INTO audit_log (${COLUMNS}) SELECT ?::bigint, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE ${condition}
    ON CONFLICT DO NOTHING RETURNING seq, hash),
  moved AS (INSERT INTO audit_head (id, seq, hash) SELECT 1, seq, hash FROM appended
    ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash WHERE audit_head.seq < excluded.seq)
  SELECT seq FROM appended`;
const APPEND_FIRST = appendWhen('NOT EXISTS (SELECT 1 FROM audit_log)');
const APPEND_AFTER = appendWhen('EXISTS (SELECT 1 FROM audit_log WHERE seq = ?::bigint AND hash = ?)');

/** PostgreSQL: appends the record built on `last` (see appendWhen); false when nothing was inserted. */
async function appendAfter(q: Queryable, values: unknown[], last: LastRecord | undefined): Promise<boolean> {
  const rows = last ? await q.all(APPEND_AFTER, [...values, last.seq, last.hash]) : await q.all(APPEND_FIRST, values);
  return rows.length > 0;
}

/**
 * The record this entry already has (its dedupe key) and the last record, in one query: each query is
 * a round trip to a PostgreSQL server, and a worker appends one record per stage.
 */
async function existingAndLast(q: Queryable, dedupeKey: string | undefined): Promise<{ existing?: AuditRow; last?: LastRecord }> {
  const rows =
    dedupeKey === undefined
      ? await q.all<AuditRow & { pick: number }>('SELECT *, 1 AS pick FROM audit_log ORDER BY seq DESC LIMIT 1')
      : await q.all<AuditRow & { pick: number }>(
          `SELECT * FROM (SELECT *, 0 AS pick FROM audit_log WHERE dedupe_key = ?) AS existing
           UNION ALL SELECT * FROM (SELECT *, 1 AS pick FROM audit_log ORDER BY seq DESC LIMIT 1) AS last
           ORDER BY pick`,
          [dedupeKey],
        );
  return { existing: rows.find((r) => r.pick === 0), last: rows.find((r) => r.pick === 1) };
}

/**
 * Checks `entry` and returns what builds its record on `last` (the log's last record; undefined for the first) at
 * `time`: the record and its column values in COLUMNS' order. Serialised once, before any write transaction, so a bad
 * value fails before the write lock is taken.
 */
export function auditRecordBuilder(
  entry: AuditEntry,
): (last: LastRecord | undefined, time: Date) => { record: AuditRecord; values: unknown[] } {
  validateAuditEntry(entry);
  // A record cannot be taken back, so no URL's credentials go in, whichever caller wrote it (a plugin's error, a
  // source named by its URL): src/util/redact.ts.
  const detailsJson = canonicalJson(redactJson(entry.details ?? {}), 'audit.details');
  const dataJson = entry.dataHashes === undefined ? null : canonicalJson(redactJson(entry.dataHashes), 'audit.dataHashes');
  const dedupeKey = entry.dedupeKey === undefined ? undefined : wellFormed(entry.dedupeKey);
  return (last, time) => {
    const base: Omit<AuditRecord, 'hash'> = {
      seq: (last?.seq ?? 0) + 1,
      time: time.toISOString(),
      actor: wellFormed(entry.actor ?? defaultActor()),
      action: entry.action,
      subject: wellFormed(entry.subject),
      details: JSON.parse(detailsJson) as Record<string, unknown>,
      prevHash: last?.hash ?? GENESIS_HASH,
    };
    if (entry.runId !== undefined) base.runId = wellFormed(entry.runId);
    if (entry.model !== undefined) base.model = wellFormed(entry.model);
    if (entry.specHash !== undefined) base.specHash = wellFormed(entry.specHash);
    if (dataJson !== null) base.dataHashes = JSON.parse(dataJson) as Record<string, string>;
    if (entry.modelHash !== undefined) base.modelHash = wellFormed(entry.modelHash);
    if (dedupeKey !== undefined) base.dedupeKey = dedupeKey;
    const record: AuditRecord = { ...base, hash: hashRecord(base) };
    const values = [
      record.seq,
      record.time,
      record.actor,
      record.action,
      record.subject,
      detailsJson,
      record.runId ?? null,
      record.model ?? null,
      record.specHash ?? null,
      dataJson,
      record.modelHash ?? null,
      record.dedupeKey ?? null,
      record.prevHash,
      record.hash,
    ];
    return { record, values };
  };
}

/** A stored row's column values in COLUMNS' order, as auditRecordBuilder gives a new record's. */
export function auditRowValues(r: AuditRow): unknown[] {
  return [
    r.seq,
    r.time,
    r.actor,
    r.action,
    r.subject,
    r.details_json,
    r.run_id,
    r.model,
    r.spec_hash,
    r.data_hashes_json,
    r.model_hash,
    r.dedupe_key,
    r.prev_hash,
    r.hash,
  ];
}

/**
 * Writes records as they are (column values from auditRowValues or auditRecordBuilder, in seq order) and moves the
 * head to the last: how `tempered import-home` carries a one-machine log into an empty shared database, inside its own
 * write transaction (holding the audit lock), the caller having checked the log is empty. Every column is copied
 * byte for byte, JSON text included, so the chain verifies and its records keep their hashes; append cannot do this,
 * as it gives each record a new time, seq and hash.
 */
export async function insertAuditRows(q: Queryable, rows: readonly (readonly unknown[])[]): Promise<void> {
  await insertRows(q, 'audit_log', COLUMNS.split(', '), rows);
  const last = rows[rows.length - 1];
  if (last) await q.run(MOVE_HEAD, [last[0], last[13]]);
}

/** Records read per query while verifying, so a long log is walked without holding it all in memory. */
const VERIFY_PAGE = 1000;

export class AuditLog {
  private readonly now: () => Date;
  /** The last record this log appended or read before appending: where the next append starts (PostgreSQL, no lock). */
  private lastSeen: LastRecord | undefined;
  constructor(
    readonly db: Database,
    opts: AuditOptions = {},
  ) {
    this.now = opts.now ?? (() => new Date());
  }

  close(): Promise<void> {
    return this.db.close();
  }

  async append(entry: AuditEntry): Promise<{ record: AuditRecord; appended: boolean }> {
    const next = auditRecordBuilder(entry);
    const build = (last: LastRecord | undefined) => next(last, this.now());
    const dedupeKey = entry.dedupeKey === undefined ? undefined : wellFormed(entry.dedupeKey);
    if (this.db.dialect === 'postgres' && dedupeKey !== undefined) {
      const done = await this.appendWithoutLock(build, dedupeKey);
      if (done) return done;
    }
    const done = await this.db.write('audit', async (q): Promise<{ record: AuditRecord; appended: boolean }> => {
      for (let turn = 0; ; turn++) {
        if (turn === 100) throw new Error(`${this.db.where}: an audit append lost 100 races for the next sequence number in a row`);
        const { existing, last } = await existingAndLast(q, dedupeKey);
        if (existing) return { record: fromRow(existing), appended: false };
        const { record, values } = build(last);
        if (q.dialect === 'postgres') {
          // A host appending without the lock (appendWithoutLock) may have taken this seq since the
          // read: then nothing is inserted, and the next turn reads the new last record (READ
          // COMMITTED: each statement sees what was committed before it began).
          if (!(await appendAfter(q, values, last))) continue;
        } else {
          await q.run(INSERT_RECORD, values);
          await q.run(MOVE_HEAD, [record.seq, record.hash]);
        }
        return { record, appended: true };
      }
    });
    // Only once committed: a next append built on a record that was rolled back would leave a gap.
    if (done.appended) this.lastSeen = { seq: done.record.seq, hash: done.record.hash };
    return done;
  }

  /**
   * PostgreSQL, an entry with a dedupe key: no lock and no transaction, one statement, so usually one
   * round trip instead of four (the audit record was most of a stage's overhead once the database is
   * on another host: bench/orchestration.bench.ts --shared --delay-ms). The record is built on the
   * last record this log saw and inserted only if its sequence number and its dedupe key are both
   * free. `seq` is the primary key and a record's prev hash comes from the record before it, which
   * never changes, so two hosts cannot both append after the same record: the one that finds its
   * seq taken reads the new last record and tries again, and after a few lost races takes the lock.
   * Entries without a dedupe key keep the lock: a retry after an answer lost on the way could not
   * tell their own record from another's.
   */
  private async appendWithoutLock(
    build: (last: LastRecord | undefined) => { record: AuditRecord; values: unknown[] },
    dedupeKey: string,
  ): Promise<{ record: AuditRecord; appended: boolean } | undefined> {
    let last = this.lastSeen ?? (await this.db.get<LastRecord>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1'));
    for (let attempt = 0; attempt < 3; attempt++) {
      const { record, values } = build(last);
      if (await appendAfter(this.db, values, last)) {
        this.lastSeen = { seq: record.seq, hash: record.hash };
        return { record, appended: true };
      }
      // Nothing inserted: this entry is there already (its dedupe key), another host appended first, or
      // the record it was built on is gone. One query tells which, and where to start again.
      this.lastSeen = undefined;
      const found = await existingAndLast(this.db, dedupeKey);
      if (found.existing) return { record: fromRow(found.existing), appended: false };
      last = found.last;
    }
    return undefined;
  }

  /** Matching records, oldest first (newest first with `newestFirst`). */
  async query(q: AuditQuery = {}): Promise<AuditRecord[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.run !== undefined) {
      // Two index lookups (audit_by_run, audit_by_subject) whose seqs the rest then reads by primary key. Written as
      // `run_id = ? OR subject = ?`, SQLite (which tempered never gives statistics) takes an action or model index
      // instead whenever one of those filters is given too, and walks every record of that action.
      where.push('seq IN (SELECT seq FROM audit_log WHERE run_id = ? UNION SELECT seq FROM audit_log WHERE subject = ?)');
      args.push(q.run, q.run);
    }
    if (q.model !== undefined) {
      if (q.model.includes('@')) {
        where.push('model = ?');
        args.push(q.model);
      } else {
        // Every `name@…` sorts between `name@` and `nameA` ('A' follows '@'), by bytes here and in PostgreSQL
        // (the column is COLLATE "C"): a range the model index answers, where substr(model, …) read the
        // whole log, and no LIKE, whose % and _ wildcards could match other model names.
        where.push('(model = ? OR (model >= ? AND model < ?))');
        args.push(q.model, `${q.model}@`, `${q.model}A`);
      }
    }
    if (q.action !== undefined) {
      where.push('action = ?');
      args.push(q.action);
    }
    if (q.afterSeq !== undefined) {
      where.push('seq > ?');
      args.push(q.afterSeq);
    }
    if (q.actor !== undefined) {
      where.push('actor = ?');
      args.push(q.actor);
    }
    if (q.detailsContain !== undefined) {
      // A plain substring test (LIKE's % and _ would be wildcards in a run id), each dialect's own.
      where.push(this.db.dialect === 'postgres' ? 'strpos(details_json, ?) > 0' : 'instr(details_json, ?) > 0');
      args.push(q.detailsContain);
    }
    const sql = `SELECT * FROM audit_log${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY seq${q.newestFirst ? ' DESC' : ''}${q.limit !== undefined ? ' LIMIT ?' : ''}`;
    if (q.limit !== undefined) args.push(q.limit);
    return (await this.db.all<AuditRow>(sql, args)).map(fromRow);
  }

  /**
   * The newest record's seq and hash. Keep it somewhere this file's writers cannot reach (a
   * workflow result, a ticket, a signed export) and pass it to `verify({ anchor })` later: that
   * detects even a chain rewritten consistently from an edited record onwards.
   */
  async head(): Promise<AuditAnchor | null> {
    return (await this.db.get<AuditAnchor>('SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1')) ?? null;
  }

  /** The seq of the record with this hash, if one is stored. */
  async seqOfHash(hash: string): Promise<number | undefined> {
    return (await this.db.get<{ seq: number }>('SELECT seq FROM audit_log WHERE hash = ? ORDER BY seq LIMIT 1', [hash]))?.seq;
  }

  /**
   * Walks the whole chain; stops at the first problem. What it proves: every stored record is
   * unchanged since it was appended, none is missing or moved between the first and the last, and
   * the head row agrees with the last record. What it cannot prove on its own: that records were
   * not cut from the end or the whole log wiped by someone who also rewrote the head row, or that
   * the chain was not rewritten wholesale; an `anchor` kept outside the database (see anchor.ts)
   * closes those gaps up to the anchored record. `expectRecords` makes an empty log a failure.
   * `onRow` sees each stored row as it is checked, from the same snapshot (a verbatim copy of the log reads it once).
   */
  verify(opts: { anchor?: AuditAnchor; expectRecords?: boolean; onRow?: (row: AuditRow) => void } = {}): Promise<VerifyResult> {
    // A read transaction gives one consistent snapshot even while other processes append.
    return this.db.snapshot(async (q): Promise<VerifyResult> => {
      let expectedSeq = 1;
      let prev = GENESIS_HASH;
      let checked = 0;
      const bad = (seq: number, problem: AuditProblem, message: string): VerifyResult => ({
        ok: false,
        checked,
        firstBadSeq: seq,
        problem,
        message,
      });
      for await (const row of storedAuditRows(q)) {
        if (row.seq !== expectedSeq) {
          return bad(
            expectedSeq,
            'removed',
            `record ${expectedSeq}${row.seq - expectedSeq > 1 ? `..${row.seq - 1}` : ''} is missing (next stored record is ${row.seq})`,
          );
        }
        if (row.prev_hash !== prev) {
          const owner = await q.get<{ seq: number }>('SELECT seq FROM audit_log WHERE hash = ? LIMIT 1', [row.prev_hash]);
          if (owner && owner.seq !== row.seq - 1) {
            return bad(row.seq, 'reordered', `record ${row.seq} follows the record now stored at ${owner.seq}, not ${row.seq - 1}`);
          }
          return bad(row.seq, 'edited', `record ${row.seq} does not link to record ${row.seq - 1} (prevHash changed)`);
        }
        const rec = fromRow(row);
        // Stored JSON must be exactly its canonical form, else a byte could change (say, added
        // whitespace) without changing the parsed value that is hashed.
        const canonical =
          row.details_json === safeCanonical(rec.details) &&
          (row.data_hashes_json === null || row.data_hashes_json === safeCanonical(rec.dataHashes));
        if (!canonical || hashRecord(rec) !== row.hash) {
          return bad(row.seq, 'edited', `record ${row.seq} does not match its hash: its content or hash was changed`);
        }
        opts.onRow?.(row);
        prev = row.hash;
        expectedSeq++;
        checked++;
      }
      const head = await q.get<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_head WHERE id = 1');
      const lastSeq = expectedSeq - 1;
      if (lastSeq === 0 && !head && (opts.expectRecords || opts.anchor)) {
        return bad(
          opts.anchor?.seq ?? 1,
          'empty',
          opts.anchor
            ? `the log is empty, but record ${opts.anchor.seq} was anchored: it was wiped`
            : 'the log is empty where records are expected: it was wiped or is the wrong file',
        );
      }
      if (!head) {
        if (lastSeq > 0) return bad(lastSeq, 'edited', 'the head record is missing');
      } else if (head.seq > lastSeq) {
        return bad(lastSeq + 1, 'truncated', `records ${lastSeq + 1}..${head.seq} were removed from the end`);
      } else if (head.seq < lastSeq || head.hash !== prev) {
        return bad(head.seq, 'edited', `the head says record ${head.seq} is last with a different hash`);
      }
      if (opts.anchor) {
        const at = await q.get<{ hash: string }>('SELECT hash FROM audit_log WHERE seq = ?', [opts.anchor.seq]);
        if (!at) return bad(opts.anchor.seq, 'truncated', `anchored record ${opts.anchor.seq} no longer exists`);
        if (at.hash !== opts.anchor.hash)
          return bad(
            opts.anchor.seq,
            'rewritten',
            `record ${opts.anchor.seq} no longer has the anchored hash: the chain up to it was rewritten`,
          );
      }
      return { ok: true, checked };
    });
  }
}

/** Every record in seq order as stored, read a page at a time. */
async function* storedAuditRows(q: Queryable): AsyncGenerator<AuditRow> {
  let after = 0;
  for (;;) {
    const rows = await q.all<AuditRow>('SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?', [after, VERIFY_PAGE]);
    yield* rows;
    if (rows.length < VERIFY_PAGE) return;
    after = rows[rows.length - 1]!.seq;
  }
}
