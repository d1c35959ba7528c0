/**
 * Stage kind `deploy`: promote a registered version to an alias (staging, production) when its
 * gate passes. A failed gate is an outcome ("not promoted"), not an error.
 */
import { checkGate, evaluateGate, GateError } from '../eval/gates.ts';
import { isEvaluateOnlyName } from '../registry/production.ts';
import { deliverAudit } from './register.ts';
import { statePaths } from '../state-paths.ts';
import type { ArtifactRef } from '../types.ts';
import { heldMessage } from '../registry/held-model.ts';
import { artifactRefSchema } from './schema-helpers.ts';
import { hasRefs } from '../spec/runtime-refs.ts';
import type { KindCheckContext, KindIssue, ValueShape } from '../spec/types.ts';
import type { StageContext, StageKind } from './types.ts';

// The registry and audit log (SQLite) load when the stage runs, not when `validate` reads the kind's contract.
const lib = async () => ({ ...(await import('../audit/log.ts')), ...(await import('../registry/registry.ts')) });

interface Config {
  name: string;
  version: number;
  alias?: string;
  gate?: string;
  metrics?: ArtifactRef;
}

export const deployStage: StageKind<Config> = {
  kind: 'deploy',
  description: 'promote a registered model version to an alias when its gate passes',
  codeVersion: 'deploy-1',
  // Promotion acts on the registry as it is now (the alias may have moved since the last run).
  cacheable: false,
  withSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'version'],
    properties: {
      name: { type: 'string' },
      version: { type: 'integer', minimum: 1 },
      alias: { type: 'string', pattern: '^[a-z][a-z0-9_-]*$', default: 'production' },
      gate: {
        type: 'string',
        description:
          "e.g. 'f1_macro >= 0.95 && f1_macro > baseline.f1_macro && (!has(production) || f1_macro >= production.f1_macro - 0.005)'",
      },
      // `takes`: the gate reads a JSON document; a table or model folder would fit an artifact reference and fail there.
      metrics: { ...artifactRefSchema, takes: ['json'], description: 'evaluation metrics the gate reads (evaluate outputs.metrics)' },
    },
  },
  outputs: {
    promoted: { type: 'boolean' },
    alias: { type: 'string' },
    ref: { type: 'string' },
    explanation: { type: 'string' },
  },
  check(raw, ctx) {
    const cfg = raw as Partial<Config>;
    const issues: KindIssue[] = [];
    // A version number from a register stage belongs to that stage's model name: under another
    // name it would promote whatever version N of that model is, or fail.
    const registered = ctx.upstream(cfg.version);
    const registeredName = registered?.kind.kind === 'register' && registered.output === 'version' ? registered.config.name : undefined;
    if (
      typeof registeredName === 'string' &&
      !hasRefs(registeredName) &&
      typeof cfg.name === 'string' &&
      !hasRefs(cfg.name) &&
      registeredName !== cfg.name
    ) {
      issues.push({
        path: ['name'],
        message: `version comes from stage '${registered!.stage}', which registers '${registeredName}', not '${cfg.name}'`,
        hint: `set name: ${registeredName}, or take the version from the stage that registers '${cfg.name}'`,
      });
    }
    // A name already refused above would only be reported twice, the second time with the wrong fix.
    if (typeof cfg.gate === 'string' && !issues.length) issues.push(...productionMismatch(cfg, ctx));
    if (typeof cfg.gate === 'string' && !hasRefs(cfg.gate)) {
      for (const i of checkGate(cfg.gate, gateContextShape(cfg, ctx)))
        issues.push({ path: ['gate'], message: `gate: ${i.reason}`, hint: i.hint, offset: i.column - 1 });
    }
    return issues;
  },
  async run(cfg, ctx) {
    const { openRegistry, unflattenMetrics } = await lib();
    const alias = cfg.alias ?? 'production';
    const ref = `${cfg.name}@${cfg.version}`;
    // Keyed on the execution, not the reusable workflow id, so a rerun under the same id records its own promotion.
    const attemptKey = `${ctx.runId}/${ctx.executionId ?? ctx.runId}/${ctx.stageId}`;
    const candidate = cfg.gate && cfg.metrics ? await ctx.store.readJson<Record<string, unknown>>(cfg.metrics) : {};
    const reg = await openRegistry(statePaths(ctx.stateDir).registryDb);
    try {
      // Records an earlier attempt committed but did not deliver go first, so the log stays in order.
      await deliverAudit(reg, ctx.stateDir);
      // The gate judges against the alias as it is now, and the move below only happens if it is
      // still there (compare-and-swap): a promotion in between makes this attempt fail and retry.
      // The alias already serves this model (a rerun whose training came from the cache registers the version it
      // holds, or a version with its bytes holds it): nothing to move, and a gate would only judge the model against
      // itself (production.rows on the rows a rerun evaluated, say) and record a refusal of the model that stays on the
      // alias. Decided as `models promote` decides it (held-model.ts); setAlias below decides again in its transaction.
      const { holder, held } = await reg.heldModel(cfg.name, alias, cfg.version);
      if (held) return { promoted: true, alias, ref, explanation: heldMessage(held, cfg.gate !== undefined) };
      // A person took this model off the alias: a rerun (a schedule's next run, a resume) that makes the same model
      // bytes registers the same version (or one with them), and its gate, which judged it fit before, would put it
      // straight back.
      const backedOut = await reg.rolledBackFrom(cfg.name, alias, cfg.version);
      if (backedOut) {
        const which =
          backedOut.fromVersion === cfg.version
            ? `v${cfg.version} was`
            : `v${cfg.version} has the model bytes of v${backedOut.fromVersion}, which was`;
        const explanation = `${which} rolled back from ${alias} by ${backedOut.actor} at ${backedOut.at}${backedOut.reason ? ` (${backedOut.reason})` : ''}: a run does not promote it again; \`tempered models promote ${ref}${alias === 'production' ? '' : ` --alias ${alias}`}\` does, by hand`;
        return notPromoted(ctx, ref, alias, cfg.gate, explanation, attemptKey, { alias, ref, explanation });
      }
      let explanation = 'no gate';
      if (cfg.gate) {
        const context: Record<string, unknown> = { ...candidate };
        const evaluated = productionEvaluated(context.production);
        if (evaluated !== undefined && evaluated !== (holder === null ? null : `${cfg.name}@${holder}`)) {
          explanation = `${alias} is ${holder === null ? 'unset' : `v${holder}`} now, but evaluate compared against ${evaluated ?? 'no production model'}; rerun the pipeline to compare with the current ${alias}`;
          return notPromoted(ctx, ref, alias, cfg.gate, explanation, attemptKey, { alias, ref, explanation });
        }
        const fallback = context.production === undefined && holder !== null;
        // Fall back to the metrics the current holder of the alias was registered with.
        if (fallback) context.production = unflattenMetrics((await reg.getVersion(cfg.name, holder)).metrics);
        let res: ReturnType<typeof evaluateGate>;
        try {
          res = evaluateGate(cfg.gate, context, `stages.${ctx.stageId}.with.gate`);
        } catch (e) {
          // The holder was promoted after evaluate ran and found none: the gate reads what only
          // evaluate measures (production.rows, production.candidate.*), which registered metrics lack.
          // Not the pipeline's mistake, so no error: the comparison has to be run again.
          const missing = e instanceof GateError ? e.missingName : undefined;
          if (!fallback || missing === undefined || !isEvaluateOnlyName(missing)) throw e;
          explanation = `${alias} is v${holder} now, but evaluate found no ${alias} version to compare against, and the gate reads ${missing}, which only evaluate measures; rerun the pipeline to compare with v${holder}`;
          return notPromoted(ctx, ref, alias, cfg.gate, explanation, attemptKey, { alias, ref, explanation });
        }
        explanation = res.explanation;
        if (!res.passed) return notPromoted(ctx, ref, alias, cfg.gate, explanation, attemptKey, { alias, ref, explanation });
      }
      const v = await reg.getVersion(cfg.name, cfg.version);
      const { change, held: heldNow } = await reg.setAlias(cfg.name, alias, cfg.version, {
        actor: ctx.actor,
        reason: `run ${ctx.runId}: ${explanation}`,
        expect: holder,
        audit: (c) => ({
          action: 'model.promoted',
          subject: ref,
          model: ref,
          runId: ctx.runId,
          actor: ctx.actor,
          specHash: ctx.specHash,
          modelHash: v.artifacts.find((a) => a.role === 'onnx')?.sha256,
          details: { alias, from: c.fromVersion, to: c.toVersion, gate: cfg.gate ?? null, explanation, execution: ctx.executionId ?? null },
          // One record per alias move: a retry whose first attempt's move committed moves nothing
          // (and adds none), but one that moves the alias again after another run moved it is a
          // second move and gets its own record.
          dedupeKey: `${attemptKey}/promoted/${c.id}`,
        }),
      });
      await deliverAudit(reg, ctx.stateDir);
      // A retry whose first attempt moved the alias, or a promotion of this model in between.
      if (!change) return { promoted: true, alias, ref, explanation: `${explanation}; ${heldMessage(heldNow!, false)}` };
      return { promoted: true, alias, ref, explanation };
    } finally {
      await reg.close();
    }
  },
};

/**
 * What the gate will read: the metrics document, plus `production` from the registry when the
 * metrics lack it. Undefined when the metrics come from a stage whose output shape is unknown.
 */
function gateContextShape(cfg: Partial<Config>, ctx: KindCheckContext): Extract<ValueShape, { type: 'object' }> | undefined {
  const production: ValueShape = { type: 'unknown', optional: true, description: 'absent while no version holds the alias' };
  if (cfg.metrics === undefined) return { type: 'object', fields: { production } };
  const up = ctx.upstream(cfg.metrics);
  const shape = up?.kind.outputShape?.(up.output, up.config, up.context);
  if (shape?.type !== 'object') return undefined;
  return shape.fields.production ? shape : { ...shape, fields: { ...shape.fields, production } };
}

/**
 * The gate's production.* must describe the version this stage would replace: an evaluate stage that
 * compares with another model or alias never does, so every run ends "not promoted", rerun or not.
 * Reported at evaluate's production, which names what it compares with.
 */
function productionMismatch(cfg: Partial<Config>, ctx: KindCheckContext): KindIssue[] {
  const up = ctx.upstream(cfg.metrics);
  const production = up?.kind.kind === 'evaluate' && up.output === 'metrics' ? up.config.production : undefined;
  if (!production || typeof production !== 'object' || hasRefs(production) || typeof cfg.name !== 'string' || hasRefs(cfg.name)) return [];
  if (cfg.alias !== undefined && (typeof cfg.alias !== 'string' || hasRefs(cfg.alias))) return [];
  const p = production as { name?: unknown; alias?: unknown };
  const alias = cfg.alias ?? 'production';
  const evalAlias = typeof p.alias === 'string' ? p.alias : 'production';
  const where = `stage '${ctx.stageId}', whose gate reads these metrics, promotes ${cfg.name} to alias ${alias}`;
  const never = `its gate would never read the version it replaces, and no run would promote`;
  if (p.name !== cfg.name)
    return [
      {
        stage: up!.stage,
        path: ['production', 'name'],
        message: `production compares with '${String(p.name)}', but ${where}: ${never}`,
        hint: `set name: ${cfg.name}, or the name of stage '${ctx.stageId}' to ${String(p.name)}`,
      },
    ];
  if (evalAlias !== alias)
    return [
      {
        stage: up!.stage,
        path: p.alias === undefined ? ['production'] : ['production', 'alias'],
        message: `production compares with ${p.name}'s alias ${evalAlias}${p.alias === undefined ? ' (the default)' : ''}, but ${where}: ${never}`,
        hint: `set alias: ${alias}${p.alias === undefined ? ' in production' : ''}, or the alias of stage '${ctx.stageId}' to ${evalAlias}`,
      },
    ];
  return [];
}

/** The `version` ('name@N') evaluate compared against; null when it found none; undefined when it did not compare. */
function productionEvaluated(p: unknown): string | null | undefined {
  if (p === undefined) return undefined;
  if (p && typeof p === 'object' && typeof (p as { version?: unknown }).version === 'string') return (p as { version: string }).version;
  return undefined;
}

async function notPromoted(
  ctx: StageContext,
  ref: string,
  alias: string,
  gate: string | undefined,
  explanation: string,
  attemptKey: string,
  out: { alias: string; ref: string; explanation: string },
) {
  const { openAudit } = await lib();
  const audit = await openAudit(statePaths(ctx.stateDir).auditDb);
  try {
    await audit.append({
      action: 'model.not_promoted',
      subject: ref,
      model: ref,
      runId: ctx.runId,
      actor: ctx.actor,
      specHash: ctx.specHash,
      details: { alias, gate: gate ?? null, explanation },
      dedupeKey: `${attemptKey}/not_promoted`,
    });
  } finally {
    await audit.close();
  }
  return { promoted: false, ...out };
}

export function stageKinds(): StageKind<any>[] {
  return [deployStage];
}
