/**
 * A promotion or rollback by a person (`tempered models promote|rollback`, the dashboard's buttons):
 * the alias moves and its audit record commits with it in the registry's outbox, then is delivered
 * to the audit log. With a gate, the candidate's metrics are judged against the version the alias
 * holds now (as the deploy stage does) and a failing gate moves nothing: `production.*` are the
 * candidate's own (evaluate's, production.rows and production.candidate.* included) when they were
 * measured against that version, else that version's registered metrics (src/registry/production.ts).
 */
import { openAudit, type AuditLog } from '../audit/log.ts';
import { useOpen, type KeptOpen } from '../db/kept-open.ts';
import { evaluateGate, GateError } from '../eval/gates.ts';
import { NamedRefusal } from './named-refusal.ts';
import { AliasMovedError, openRegistry, unflattenMetrics, type AliasAudit, type Registry } from './registry.ts';
import { aliasStack, heldMessage, twinRollbackMessage, type HeldModel } from './held-model.ts';
import { evaluatedProduction, isEvaluateOnlyName, productionMeasuredAgainst } from './production.ts';
import type { AliasChange, ModelVersion } from './types.ts';

export interface AliasChangeRequest {
  op: 'promote' | 'rollback';
  name: string;
  /** Version or alias to promote (promote only); 'latest' is the newest version. */
  at?: number | string;
  alias: string;
  actor: string;
  reason?: string;
  /**
   * promote: a gate expression over the candidate's metrics and `production.*`: the candidate's own when
   * evaluate measured them against the holder, else the holder's registered metrics.
   */
  gate?: string;
  /**
   * The version the caller saw on the alias (null: unset). promote: a move in between fails
   * (AliasMovedError). rollback: the version to roll back from, so the rollback happens once: a
   * retry, or a second operator's rollback from the same version, returns the first one's change.
   */
  expect?: number | null;
  /** Extra audit details, e.g. `{ via: 'ui' }`. */
  details?: Record<string, unknown>;
}

export interface AliasChangeResult {
  /** Undefined when the alias served the version's model already (`already` says how). */
  change?: AliasChange;
  /** Version the alias holds afterwards. */
  version: number;
  /** Why the audit record is not in the audit log yet (it is in the registry's outbox, delivered by the next register, deploy, promote or rollback). */
  auditPending?: string;
  /**
   * What the gate decided, when there was one; `compared` says what production.* were: the candidate's
   * own (evaluated against the version that holds the alias) or the holder's registered metrics.
   */
  gate?: { passed: boolean; explanation: string; compared?: string };
  /**
   * promote that moved nothing: the alias holds the version, or another with its model bytes (held-model.ts), said as a
   * run's deploy says it (with a gate: no gate judged it against itself).
   */
  already?: string;
  /**
   * rollback to a version with the model bytes of the one it left (an alias history written before such a twin was
   * refused as already held): the alias moved, what it serves did not; says so, and where another rollback goes.
   */
  sameModel?: string;
}

export class GateRefused extends NamedRefusal {
  constructor(
    readonly explanation: string,
    hint = 'promote another version, or change the gate',
  ) {
    super(`gate refused the promotion: ${explanation}`, { where: 'gate', hint });
  }
}

/**
 * The gate reads a name only evaluate measures (production.rows, production.candidate.*, …), and the
 * candidate's own production.* were not measured against the version that holds the alias now: the
 * holder's registered metrics cannot answer it, and the candidate's would judge it against another version.
 */
function staleComparison(
  version: number,
  measured: number | null | undefined,
  alias: string,
  holder: number | null,
  missing: string,
): GateRefused {
  const then =
    measured === undefined
      ? `v${version} was evaluated with no ${alias} version to compare against`
      : measured === null
        ? `the registry does not say which version v${version}'s production.* were measured against (registered before that was recorded, or compared with another model)`
        : `${alias} was v${measured} when v${version} was evaluated`;
  const now = holder === null ? `${alias} is unset now` : `${alias} is v${holder} now`;
  return new GateRefused(
    `the gate reads ${missing}, which only evaluate measures, but ${then} and ${now}`,
    holder === null
      ? `promote without reading ${missing} (guard it with has(production))`
      : `rerun the pipeline so evaluate compares with v${holder}, or use a gate on registered metrics (production.* then reads v${holder}'s registered metrics, e.g. f1_macro >= production.f1_macro)`,
  );
}

/** The gate's verdict on `candidate` against `holder`; a refusal throws GateRefused. */
async function judge(
  reg: Registry,
  expr: string,
  candidate: ModelVersion,
  holder: number | null,
  alias: string,
): Promise<NonNullable<AliasChangeResult['gate']>> {
  const context: Record<string, unknown> = unflattenMetrics(candidate.metrics);
  // The candidate's own production.* (evaluate's like-for-like comparison: production.rows,
  // production.candidate.*, …) when they were measured against the version that holds the alias
  // now; otherwise the holder's registered metrics stand in, which lack evaluate's names.
  const measured = productionMeasuredAgainst(candidate);
  const own = holder !== null && measured === holder;
  const production = own ? evaluatedProduction(candidate, context) : undefined;
  delete context.production;
  if (production) context.production = production;
  else if (holder !== null) context.production = unflattenMetrics((await reg.getVersion(candidate.name, holder)).metrics);
  let res: ReturnType<typeof evaluateGate>;
  try {
    res = evaluateGate(expr, context, 'gate');
  } catch (e) {
    const missing = e instanceof GateError ? e.missingName : undefined;
    if (own || missing === undefined || !isEvaluateOnlyName(missing)) throw e;
    throw staleComparison(candidate.version, measured, alias, holder, missing);
  }
  const compared =
    holder === null ? undefined : own ? `production.* as evaluated against v${holder}` : `production.* = v${holder}'s registered metrics`;
  if (!res.passed) throw new GateRefused(res.explanation);
  return { passed: res.passed, explanation: res.explanation, ...(compared ? { compared } : {}) };
}

/** As setAlias says it: the alias is not where the caller read it. */
function movedSinceRead(name: string, alias: string, now: number | null, expected: number | null, target: number): AliasMovedError {
  const at = (v: number | null) => (v === null ? 'nothing' : `v${v}`);
  return new AliasMovedError(`${name}@${alias} moved to ${at(now)} since it was read (expected ${at(expected)}); not moved to v${target}`);
}

export async function changeAlias(
  registryDb: string | KeptOpen<Registry>,
  auditDb: string | KeptOpen<AuditLog>,
  req: AliasChangeRequest,
): Promise<AliasChangeResult> {
  return useOpen(registryDb, openRegistry, async (reg) => {
    const { name, alias, op } = req;
    let gate: AliasChangeResult['gate'];
    // Built inside the write transaction from the version the alias moves to, which the registry reads
    // there (a rollback's is known only then): the model's other versions are not read.
    const audit: AliasAudit = (c, target, facts) => ({
      action: op === 'promote' ? 'model.promoted' : 'model.rolled_back',
      subject: `${name}@${c.toVersion}`,
      model: `${name}@${c.toVersion}`,
      actor: req.actor,
      modelHash: target.find((a) => a.role === 'onnx')?.sha256,
      details: {
        alias,
        from: c.fromVersion,
        to: c.toVersion,
        reason: c.reason,
        // A rollback to a twin of the version it left: the alias moved, what it serves did not (as `sameModel` says below).
        ...(facts.sameModel ? { sameModel: true } : {}),
        ...(gate ? { gate: req.gate, explanation: gate.explanation, ...(gate.compared ? { compared: gate.compared } : {}) } : {}),
        ...req.details,
      },
      dedupeKey: `alias-change/${name}/${c.id}`,
    });
    let change: AliasChange | undefined;
    let held: HeldModel | undefined;
    let sameModel: string | undefined;
    if (op === 'promote') {
      const candidate = await reg.getVersion(name, req.at ?? 'latest');
      let holder: number | null | undefined;
      if (req.gate) {
        const seen = await reg.heldModel(name, alias, candidate.version);
        holder = seen.holder;
        // The alias serves the candidate's model already (that version, or a twin with its bytes): a gate would judge
        // it against itself (its own production.* or registered metrics) and refuse the model the alias keeps serving,
        // on `f1_macro > production.f1_macro` say. setAlias below says so again, in its transaction.
        if (!seen.held) {
          // Judged against a holder other than the one the caller saw, a verdict would move an alias the caller did
          // not mean to (and a move back in between would let the swap below pass on the caller's stale read).
          if (req.expect !== undefined && req.expect !== holder) throw movedSinceRead(name, alias, holder, req.expect, candidate.version);
          gate = await judge(reg, req.gate, candidate, holder, alias);
        }
      }
      const moved = await reg.setAlias(name, alias, candidate.version, {
        actor: req.actor,
        reason: req.reason ?? (gate ? `promoted by hand: ${gate.explanation}` : 'promoted by hand'),
        // A gate judged the candidate against the version that holds the alias now: if another
        // promotion moves it meanwhile, this one must not overwrite that with a stale verdict.
        expect: holder !== undefined ? holder : req.expect,
        audit,
      });
      change = moved.change;
      held = moved.held;
    } else {
      change = await reg.rollback(name, alias, {
        actor: req.actor,
        reason: req.reason,
        expect: req.expect === null ? undefined : req.expect,
        audit,
      });
      // An on-call rolls back to change what is served: going back to a twin of the version left changes nothing
      // served, and must say so (and where the next rollback goes), or the bad model looks gone while it still serves.
      // Versions' artifacts never change, so this is read after the move; the stack as this rollback left it.
      const { fromVersion: from, toVersion: to } = change;
      if (from !== null && (await reg.sameModel(name, from, to))) {
        const stack = aliasStack((await reg.aliasHistory(name, alias)).filter((h) => h.id <= change!.id));
        sameModel = twinRollbackMessage({ model: name, alias, fromVersion: from, toVersion: to }, stack.at(-2));
      }
    }
    // The move is committed, its audit record with it in the outbox: an audit log that cannot take
    // the record now gets it at the next delivery. Reporting the move as failed would invite a retry
    // that moves the alias again.
    let auditPending: string | undefined;
    await useOpen(auditDb, openAudit, (log) => reg.drainAuditOutbox(log)).catch((e: Error) => (auditPending = e.message));
    return {
      change,
      // What the transaction left there, not a read after it: another promotion committed meanwhile would make this
      // answer say one version and `change` (or `already`) another.
      version: change ? change.toVersion : held!.holder,
      gate,
      ...(held && !change ? { already: heldMessage(held, req.gate !== undefined) } : {}),
      ...(sameModel ? { sameModel } : {}),
      ...(auditPending ? { auditPending } : {}),
    };
  });
}
