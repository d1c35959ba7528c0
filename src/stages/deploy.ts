/**
 * Stage kind `deploy`: promote a registered version to an alias (staging, production) when its
 * gate passes. A failed gate is an outcome ("not promoted"), not an error.
 */
import { join } from 'node:path';
import { openAudit } from '../audit/log.ts';
import { evaluateGate } from '../eval/gates.ts';
import { openRegistry } from '../registry/registry.ts';
import type { ArtifactRef } from '../types.ts';
import { artifactRefSchema } from './schema-helpers.ts';
import type { StageKind } from './types.ts';

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
      gate: { type: 'string', description: "e.g. 'f1_macro >= 0.95 && f1_macro > baseline.f1_macro && (!has(production) || f1_macro >= production.f1_macro - 0.005)'" },
      metrics: { ...artifactRefSchema, description: 'evaluation metrics the gate reads (evaluate outputs.metrics)' },
    },
  },
  outputs: {
    promoted: { type: 'boolean' },
    alias: { type: 'string' },
    ref: { type: 'string' },
    explanation: { type: 'string' },
  },
  async run(cfg, ctx) {
    const alias = cfg.alias ?? 'production';
    const ref = `${cfg.name}@${cfg.version}`;
    const reg = openRegistry(join(ctx.stateDir, 'registry.db'));
    const audit = openAudit(join(ctx.stateDir, 'audit.db'));
    try {
      let explanation = 'no gate';
      if (cfg.gate) {
        const metrics = cfg.metrics ? await ctx.store.readJson<Record<string, unknown>>(cfg.metrics) : {};
        const context: Record<string, unknown> = { ...metrics };
        if (context.production === undefined) {
          // Fall back to the metrics the current holder of the alias was registered with.
          try {
            const current = reg.getVersion(cfg.name, alias);
            if (current.version !== cfg.version) context.production = unflatten(current.metrics);
          } catch {
            /* no production model yet: has(production) is false */
          }
        }
        const res = evaluateGate(cfg.gate, context, `stages.${ctx.stageId}.with.gate`);
        explanation = res.explanation;
        if (!res.passed) {
          audit.append({ action: 'model.not_promoted', subject: ref, model: ref, runId: ctx.runId, actor: ctx.actor, specHash: ctx.specHash, details: { alias, gate: cfg.gate, explanation }, dedupeKey: `${ctx.runId}/${ctx.stageId}/not_promoted` });
          return { promoted: false, alias, ref, explanation };
        }
      }
      const { change } = reg.setAlias(cfg.name, alias, cfg.version, { actor: ctx.actor, reason: `run ${ctx.runId}: ${explanation}` });
      if (!change) return { promoted: true, alias, ref, explanation: `${explanation}; ${alias} already pointed at v${cfg.version}` };
      const v = reg.getVersion(cfg.name, cfg.version);
      audit.append({
        action: 'model.promoted',
        subject: ref,
        model: ref,
        runId: ctx.runId,
        actor: ctx.actor,
        specHash: ctx.specHash,
        modelHash: v.artifacts.find((a) => a.role === 'onnx')?.sha256,
        details: { alias, from: change?.fromVersion ?? null, gate: cfg.gate ?? null, explanation },
        dedupeKey: `${ctx.runId}/${ctx.stageId}/promoted`,
      });
      return { promoted: true, alias, ref, explanation };
    } finally {
      audit.close();
      reg.close();
    }
  },
};

/** `per_class.spam.f1` → { per_class: { spam: { f1 } } }, so gates read registry metrics like evaluation output. */
function unflatten(flat: Record<string, number>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(flat)) {
    const parts = k.split('.');
    let cur = out;
    for (const p of parts.slice(0, -1)) cur = (cur[p] ??= {}) as Record<string, unknown>;
    cur[parts[parts.length - 1]!] = v;
  }
  return out;
}

export function stageKinds(): StageKind<any>[] {
  return [deployStage];
}
