/** Stage kind `register`: a trained model folder becomes a new version in the model registry, with lineage and a model card. */
import { join } from 'node:path';
import { openAudit } from '../audit/log.ts';
import { modelCard } from '../registry/card.ts';
import { openRegistry } from '../registry/registry.ts';
import type { DataRef, RegisteredArtifact } from '../registry/types.ts';
import { TREE_MEDIA, type TreeEntry } from '../store/artifact-store.ts';
import { uriFor } from '../store/artifact-store.ts';
import { MEDIA, type ArtifactRef } from '../types.ts';
import { codeVersion } from '../util/code-version.ts';
import { artifactRefSchema } from './schema-helpers.ts';
import type { StageKind } from './types.ts';

interface Config {
  name: string;
  model: ArtifactRef;
  metrics?: ArtifactRef;
  data?: Record<string, ArtifactRef>;
  params?: Record<string, unknown>;
  description?: string;
  intendedUse?: string;
  limitations?: string;
  tags?: Record<string, string>;
}

const ROLE_OF: Record<string, string> = { 'model.onnx': 'onnx', 'tokenizer.json': 'tokenizer', 'labels.json': 'config', 'tempered-model.json': 'config', 'config.json': 'config', 'base-model.json': 'config' };

export const registerStage: StageKind<Config> = {
  kind: 'register',
  description: 'register the trained model as a new version with metrics, lineage and a model card',
  codeVersion: 'register-1',
  // Registration is a side effect; a rerun asks the registry again (and gets the same version back
  // when the model's bytes are already registered).
  cacheable: false,
  withSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'model'],
    properties: {
      name: { type: 'string', pattern: '^[a-z][a-z0-9._-]*$', description: 'registered model name' },
      model: { ...artifactRefSchema, description: 'the exported model folder (train outputs.model)' },
      metrics: { ...artifactRefSchema, description: 'evaluation metrics (evaluate outputs.metrics)' },
      data: { type: 'object', additionalProperties: artifactRefSchema, description: 'data sets for lineage, e.g. {train: ..., test: ...}' },
      params: { type: 'object', description: 'hyperparameters to record' },
      description: { type: 'string' },
      intendedUse: { type: 'string' },
      limitations: { type: 'string' },
      tags: { type: 'object', additionalProperties: { type: 'string' } },
    },
  },
  outputs: {
    name: { type: 'string' },
    version: { type: 'number' },
    ref: { type: 'string', description: 'name@version' },
    card: { type: 'artifact', description: 'model card (Markdown)' },
  },
  async run(cfg, ctx) {
    const manifest = cfg.model.mediaType === TREE_MEDIA ? await ctx.store.readJson<{ files: TreeEntry[] }>(cfg.model) : { files: [] };
    const artifacts: RegisteredArtifact[] = [{ role: 'model', uri: cfg.model.uri, sha256: cfg.model.sha256, bytes: cfg.model.bytes, mediaType: cfg.model.mediaType }];
    for (const f of manifest.files) {
      const role = ROLE_OF[f.name] ?? (f.name.startsWith('adapter/') ? 'adapter' : undefined);
      if (role) artifacts.push({ role: role === 'adapter' ? `adapter:${f.name.slice('adapter/'.length)}` : role === 'config' ? `config:${f.name}` : role, uri: uriFor(f.sha256), sha256: f.sha256, bytes: f.bytes });
    }
    const info = manifest.files.find((f) => f.name === 'tempered-model.json');
    const modelInfo = info ? await ctx.store.readJson<Record<string, unknown>>({ uri: uriFor(info.sha256), sha256: info.sha256, bytes: info.bytes, mediaType: MEDIA.json }) : {};
    const baseFile = manifest.files.find((f) => f.name === 'base-model.json');
    const baseModel = baseFile
      ? await ctx.store.readJson<Record<string, unknown>>({ uri: uriFor(baseFile.sha256), sha256: baseFile.sha256, bytes: baseFile.bytes, mediaType: MEDIA.json })
      : (modelInfo.baseModel as Record<string, unknown> | undefined);
    const metrics = cfg.metrics ? await ctx.store.readJson<Record<string, unknown>>(cfg.metrics) : {};
    const data: DataRef[] = Object.entries(cfg.data ?? {}).map(([name, r]) => ({ name, sha256: r.sha256, uri: r.uri, rows: r.rows }));
    const reg = openRegistry(join(ctx.stateDir, 'registry.db'));
    let out;
    try {
      // The same model bytes are the same version: a rerun whose training came from the cache does not mint a copy.
      const existing = reg.listModels().some((m) => m.name === cfg.name)
        ? reg.listVersions(cfg.name).find((v) => v.artifacts.some((a) => a.role === 'model' && a.sha256 === cfg.model.sha256))
        : undefined;
      if (existing) {
        const card = await ctx.store.putBytes(modelCard(existing), { mediaType: MEDIA.markdown });
        return { name: cfg.name, version: existing.version, ref: `${cfg.name}@${existing.version}`, card };
      }
      const { version } = reg.registerVersion({
        name: cfg.name,
        runId: ctx.runId,
        stageId: ctx.stageId,
        specHash: ctx.specHash,
        data,
        artifacts,
        metrics: numericOnly(metrics),
        params: cfg.params ?? (modelInfo.hyperparameters as Record<string, unknown> | undefined) ?? {},
        baseModel,
        codeVersion: codeVersion(),
        description: cfg.description,
        intendedUse: cfg.intendedUse,
        limitations: cfg.limitations,
        tags: cfg.tags,
        actor: ctx.actor,
      });
      const card = await ctx.store.putBytes(modelCard(version), { mediaType: MEDIA.markdown });
      const onnx = artifacts.find((a) => a.role === 'onnx');
      const audit = openAudit(join(ctx.stateDir, 'audit.db'));
      try {
        audit.append({
          action: 'model.registered',
          subject: `${cfg.name}@${version.version}`,
          model: `${cfg.name}@${version.version}`,
          runId: ctx.runId,
          actor: ctx.actor,
          specHash: ctx.specHash,
          dataHashes: Object.fromEntries(data.map((d) => [d.name, d.sha256])),
          modelHash: onnx?.sha256 ?? cfg.model.sha256,
          details: { stage: ctx.stageId, metrics: numericOnly(metrics), baseModel: baseModel ? { source: baseModel.source ?? baseModel.name, revision: baseModel.revision ?? baseModel.sha256 } : null },
          dedupeKey: `${ctx.runId}/${ctx.stageId}/registered`,
        });
      } finally {
        audit.close();
      }
      out = { name: cfg.name, version: version.version, ref: `${cfg.name}@${version.version}`, card };
    } finally {
      reg.close();
    }
    return out;
  },
};

/** Metrics JSON may hold arrays (confusion matrices) and strings; the registry keeps numbers. */
function numericOnly(v: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    if (typeof x === 'number' && Number.isFinite(x)) out[k] = x;
    else if (x && typeof x === 'object' && !Array.isArray(x)) {
      const inner = numericOnly(x as Record<string, unknown>);
      if (Object.keys(inner).length) out[k] = inner;
    }
  }
  return out;
}

export function stageKinds(): StageKind<any>[] {
  return [registerStage];
}
