/**
 * A promotion or rollback by a person (`tempered models promote|rollback`, the dashboard's buttons):
 * the alias moves and its audit record commits with it in the registry's outbox, then is delivered
 * to the audit log. With a gate, the candidate's metrics are judged against the version the alias
 * holds now (as the deploy stage does) and a failing gate moves nothing.
 */
import { openAudit, type AuditEntry, type AuditLog } from '../audit/log.ts';
import { useOpen, type KeptOpen } from '../db/kept-open.ts';
import { evaluateGate } from '../eval/gates.ts';
import { InputError } from '../errors.ts';
import { openRegistry, unflattenMetrics, type Registry } from './registry.ts';
import type { AliasChange } from './types.ts';

export interface AliasChangeRequest {
  op: 'promote' | 'rollback';
  name: string;
  /** Version or alias to promote (promote only); 'latest' is the newest version. */
  at?: number | string;
  alias: string;
  actor: string;
  reason?: string;
  /** promote: a gate expression over the candidate's metrics and `production.*` (the holder's). */
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
  /** What the gate decided, when there was one. */
  gate?: { passed: boolean; explanation: string };
}

export class GateRefused extends InputError {
  constructor(readonly explanation: string) {
    super(`gate refused the promotion: ${explanation}`, { where: 'gate', hint: 'promote another version, or change the gate' });
  }
}

export async function changeAlias(
  registryDb: string | KeptOpen<Registry>,
  auditDb: string | KeptOpen<AuditLog>,
  req: AliasChangeRequest,
): Promise<AliasChangeResult> {
  return useOpen(registryDb, openRegistry, async (reg) => {
    const { name, alias, op } = req;
    let gate: AliasChangeResult['gate'];
    // The record is built inside the write transaction, so the model hashes it names are read first.
    const onnx = new Map((await reg.listVersions(name)).map((v) => [v.version, v.artifacts.find((a) => a.role === 'onnx')?.sha256]));
    const audit = (c: AliasChange): AuditEntry => ({
      action: op === 'promote' ? 'model.promoted' : 'model.rolled_back',
      subject: `${name}@${c.toVersion}`,
      model: `${name}@${c.toVersion}`,
      actor: req.actor,
      modelHash: onnx.get(c.toVersion),
      details: {
        alias,
        from: c.fromVersion,
        to: c.toVersion,
        reason: c.reason,
        ...(gate ? { gate: req.gate, explanation: gate.explanation } : {}),
        ...req.details,
      },
      dedupeKey: `alias-change/${name}/${c.id}`,
    });
    let change: AliasChange | undefined;
    if (op === 'promote') {
      const at = req.at === undefined || req.at === 'latest' ? await latestVersion(reg, name) : req.at;
      const candidate = await reg.getVersion(name, at);
      // 'latest' may name a version registered after the hashes above were read.
      onnx.set(candidate.version, candidate.artifacts.find((a) => a.role === 'onnx')?.sha256);
      let holder: number | null | undefined;
      if (req.gate) {
        holder = await reg.aliasVersion(name, alias);
        const context: Record<string, unknown> = unflattenMetrics(candidate.metrics);
        delete context.production;
        if (holder !== null) context.production = unflattenMetrics((await reg.getVersion(name, holder)).metrics);
        const res = evaluateGate(req.gate, context, 'gate');
        gate = { passed: res.passed, explanation: res.explanation };
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
    return { change, version: (await reg.getVersion(name, alias)).version, gate, ...(auditPending ? { auditPending } : {}) };
  });
}

async function latestVersion(reg: Registry, name: string): Promise<number> {
  const m = (await reg.listModels()).find((x) => x.name === name);
  if (!m) throw new InputError(`no registered model '${name}'`, { where: 'name', hint: 'list them with `tempered models list`' });
  return m.latestVersion;
}
