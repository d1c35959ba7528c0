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
import { openRegistry, unflattenMetrics, type AliasAudit, type Registry } from './registry.ts';
import { evaluatedProduction, isEvaluateOnlyName, productionMeasuredAgainst } from './production.ts';
import type { AliasChange } from './types.ts';

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
  /** Undefined when the alias already pointed at the version. */
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
  /** promote with a gate: the version already held the alias, so no gate judged it against itself (deploy says the same). */
  already?: string;
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
    const audit: AliasAudit = (c, target) => ({
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
        ...(gate ? { gate: req.gate, explanation: gate.explanation, ...(gate.compared ? { compared: gate.compared } : {}) } : {}),
        ...req.details,
      },
      dedupeKey: `alias-change/${name}/${c.id}`,
    });
    let change: AliasChange | undefined;
    let already: string | undefined;
    if (op === 'promote') {
      const candidate = await reg.getVersion(name, req.at ?? 'latest');
      let holder: number | null | undefined;
      if (req.gate) holder = await reg.aliasVersion(name, alias);
      // The alias holds the candidate already: a gate would judge it against itself (its own production.* or
      // registered metrics) and refuse the version the alias keeps serving, on `f1_macro > production.f1_macro` say.
      if (req.gate && holder === candidate.version)
        already = `v${holder} is already ${alias}: nothing to promote, and no gate judged it against itself`;
      else if (req.gate && holder !== undefined) {
        const context: Record<string, unknown> = unflattenMetrics(candidate.metrics);
        // The candidate's own production.* (evaluate's like-for-like comparison: production.rows,
        // production.candidate.*, …) when they were measured against the version that holds the alias
        // now; otherwise the holder's registered metrics stand in, which lack evaluate's names.
        const measured = productionMeasuredAgainst(candidate);
        const own = holder !== null && measured === holder;
        const production = own ? evaluatedProduction(candidate, context) : undefined;
        delete context.production;
        if (production) context.production = production;
        else if (holder !== null) context.production = unflattenMetrics((await reg.getVersion(name, holder)).metrics);
        let res: ReturnType<typeof evaluateGate>;
        try {
          res = evaluateGate(req.gate, context, 'gate');
        } catch (e) {
          const missing = e instanceof GateError ? e.missingName : undefined;
          if (own || missing === undefined || !isEvaluateOnlyName(missing)) throw e;
          throw staleComparison(candidate.version, measured, alias, holder, missing);
        }
        const compared =
          holder === null
            ? undefined
            : own
              ? `production.* as evaluated against v${holder}`
              : `production.* = v${holder}'s registered metrics`;
        gate = { passed: res.passed, explanation: res.explanation, ...(compared ? { compared } : {}) };
        if (!res.passed) throw new GateRefused(res.explanation);
      }
      change = (
        await reg.setAlias(name, alias, candidate.version, {
          actor: req.actor,
          reason: req.reason ?? (gate ? `promoted by hand: ${gate.explanation}` : 'promoted by hand'),
          // A gate judged the candidate against the version that holds the alias now: if another
          // promotion moves it meanwhile, this one must not overwrite that with a stale verdict.
          expect: req.expect !== undefined ? req.expect : holder,
          audit,
        })
      ).change;
    } else {
      change = await reg.rollback(name, alias, {
        actor: req.actor,
        reason: req.reason,
        expect: req.expect === null ? undefined : req.expect,
        audit,
      });
    }
    // The move is committed, its audit record with it in the outbox: an audit log that cannot take
    // the record now gets it at the next delivery. Reporting the move as failed would invite a retry
    // that moves the alias again.
    let auditPending: string | undefined;
    await useOpen(auditDb, openAudit, (log) => reg.drainAuditOutbox(log)).catch((e: Error) => (auditPending = e.message));
    // Set by the move above (or held already): a rollback or promote never unsets an alias.
    return {
      change,
      version: (await reg.aliasVersion(name, alias))!,
      gate,
      ...(already && !change ? { already } : {}),
      ...(auditPending ? { auditPending } : {}),
    };
  });
}
