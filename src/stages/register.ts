/** Stage kind `register`: a trained model folder becomes a new version in the model registry, with lineage and a model card. */
import type { Registry } from '../registry/registry.ts';
import type { DataRef, RegisteredArtifact } from '../registry/types.ts';
import { TREE_MEDIA, type ArtifactStore, type TreeEntry } from '../store/artifact-store.ts';
import { uriFor } from '../store/artifact-store.ts';
import { MEDIA, type ArtifactRef } from '../types.ts';
import { statePaths } from '../state-paths.ts';
import { codeVersion } from '../util/code-version.ts';
import { modelHashOf } from '../audit/model-hash.ts';
import { registryProductionMetrics } from '../registry/production.ts';
import { validationScores } from '../eval/trials.ts';
import { artifactRefSchema } from './schema-helpers.ts';
import type { StageKind } from './types.ts';

// The registry and audit log (SQLite) load when the stage runs, not when `validate` reads the kind's contract.
const lib = async () => ({
  ...(await import('../audit/log.ts')),
  ...(await import('../registry/card.ts')),
  ...(await import('../registry/registry.ts')),
});

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

const ROLE_OF: Record<string, string> = {
  'model.onnx': 'onnx',
  'tokenizer.json': 'tokenizer',
  'labels.json': 'config',
  'tempered-model.json': 'config',
  'config.json': 'config',
  'base-model.json': 'config',
};

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
      model: { ...artifactRefSchema, takes: ['artifact'], description: 'the exported model folder (train outputs.model)' },
      metrics: { ...artifactRefSchema, takes: ['json'], description: 'evaluation metrics (evaluate outputs.metrics)' },
      data: {
        type: 'object',
        // `train` is read back as a table (evaluate: the rows a production version was not trained on); other
        // lineage entries are only recorded, and may be any stored output (a report, folds, a plugin's artifact).
        properties: { train: { ...artifactRefSchema, takes: ['table'] } },
        additionalProperties: artifactRefSchema,
        description: 'data sets for lineage, e.g. {train: ..., test: ...}',
      },
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
    registered: {
      type: 'string',
      description: "'new' when this run registered the version, 'existing' when its model's bytes already were that version",
    },
    modelHash: { type: 'string', description: "the model's hash as its audit records give it (src/audit/model-hash.ts)" },
    card: { type: 'artifact', description: 'model card (Markdown)' },
  },
  async run(cfg, ctx) {
    const { modelCard, openRegistry } = await lib();
    const { manifest, artifacts } = await modelArtifacts(cfg.model, ctx.store);
    const readManifestJson = (name: string) => treeJson(ctx.store, manifest, name);
    const modelInfo = (await readManifestJson('tempered-model.json')) ?? {};
    const baseModel = (await readManifestJson('base-model.json')) ?? (modelInfo.baseModel as Record<string, unknown> | undefined);
    const metrics = numericOnly({
      // The exported weights' validation scores (the manifest's `training.validation`), named as the history's columns,
      // as `runs --compare` shows them (`<stage>.val_*`); folders exported before they carried them give none.
      ...validationScores((modelInfo.training as { validation?: unknown } | undefined)?.validation),
      // production.version ('name@N') and production.decontaminated (boolean) as numbers, so the registry
      // keeps which version production.* were measured against (src/registry/production.ts).
      ...registryProductionMetrics(cfg.metrics ? await ctx.store.readJson<Record<string, unknown>>(cfg.metrics) : {}, cfg.name),
    });
    const modelHash = modelHashOf(artifacts);
    const data: DataRef[] = Object.entries(cfg.data ?? {}).map(([name, r]) => ({ name, sha256: r.sha256, uri: r.uri, rows: r.rows }));
    // The workflow id can be reused (submit --run-id, schedules, backfills); the execution id cannot.
    const attemptKey = `${ctx.runId}/${ctx.executionId ?? ctx.runId}/${ctx.stageId}`;
    const reg = await openRegistry(statePaths(ctx.stateDir).registryDb);
    try {
      // The same model bytes are the same version: a rerun whose training came from the cache does
      // not mint a copy (decided inside the registry's write transaction, so concurrent runs agree).
      const { version, reusedBy } = await reg.registerVersion(
        {
          name: cfg.name,
          runId: ctx.runId,
          stageId: ctx.stageId,
          idempotencyKey: attemptKey,
          reuseVersionWithSame: 'model',
          specHash: ctx.specHash,
          data,
          artifacts,
          metrics,
          params: cfg.params ?? (modelInfo.hyperparameters as Record<string, unknown> | undefined) ?? {},
          baseModel,
          codeVersion: codeVersion(),
          description: cfg.description,
          intendedUse: cfg.intendedUse,
          limitations: cfg.limitations,
          tags: cfg.tags,
          actor: ctx.actor,
        },
        {
          // Committed with the version; delivered below, or by the retry if this attempt dies first.
          audit: (v) => ({
            action: 'model.registered',
            subject: `${v.name}@${v.version}`,
            model: `${v.name}@${v.version}`,
            runId: ctx.runId,
            actor: ctx.actor,
            specHash: ctx.specHash,
            dataHashes: Object.fromEntries(data.map((d) => [d.name, d.sha256])),
            modelHash,
            details: {
              stage: ctx.stageId,
              execution: ctx.executionId ?? null,
              metrics,
              baseModel: baseModel
                ? { source: baseModel.source ?? baseModel.name, revision: baseModel.revision ?? baseModel.sha256 }
                : null,
            },
            dedupeKey: `${attemptKey}/registered`,
          }),
        },
      );
      await deliverAudit(reg, ctx.stateDir);
      const card = await ctx.store.putBytes(modelCard(version), { mediaType: MEDIA.markdown });
      // An earlier attempt of this very stage (same idempotency key) registered it: still this run's doing.
      const registered = reusedBy === 'same-artifact' ? 'existing' : 'new';
      return {
        name: cfg.name,
        version: version.version,
        ref: `${cfg.name}@${version.version}`,
        registered,
        ...(modelHash !== undefined ? { modelHash } : {}),
        card,
      };
    } finally {
      await reg.close();
    }
  },
  // The run's tie to the version: a rerun whose model is an existing version writes no model.registered
  // record, and this record is where the trail says which version its model is.
  // The hash comes from the outputs (run read the manifest already); outputs cached before it was one are read again.
  async audit(cfg, outputs, { store }) {
    const modelHash =
      typeof outputs.modelHash === 'string' ? outputs.modelHash : modelHashOf((await modelArtifacts(cfg.model, store)).artifacts);
    return {
      model: String(outputs.ref),
      ...(modelHash !== undefined ? { modelHash } : {}),
      details: { version: outputs.version, registered: outputs.registered ?? null, tree: cfg.model.sha256 },
    };
  },
};

/**
 * The registry artifacts of a model folder (the tree itself, and its ONNX, tokenizer, config and adapter files):
 * `tempered models reproduce` takes a rerun's modelHash from them as this stage would have.
 */
export async function modelArtifacts(
  model: ArtifactRef,
  store: Pick<ArtifactStore, 'readJson'>,
): Promise<{ manifest: { files: TreeEntry[] }; artifacts: RegisteredArtifact[] }> {
  const manifest = model.mediaType === TREE_MEDIA ? await store.readJson<{ files: TreeEntry[] }>(model) : { files: [] };
  const artifacts: RegisteredArtifact[] = [
    { role: 'model', uri: model.uri, sha256: model.sha256, bytes: model.bytes, mediaType: model.mediaType },
  ];
  for (const f of manifest.files) {
    const role = ROLE_OF[f.name] ?? (f.name.startsWith('adapter/') ? 'adapter' : undefined);
    if (role)
      artifacts.push({
        role: role === 'adapter' ? `adapter:${f.name.slice('adapter/'.length)}` : role === 'config' ? `config:${f.name}` : role,
        uri: uriFor(f.sha256),
        sha256: f.sha256,
        bytes: f.bytes,
      });
  }
  return { manifest, artifacts };
}

/** Moves the registry's pending audit records into the audit log. */
export async function deliverAudit(reg: Registry, stateDir: string): Promise<void> {
  const { openAudit } = await lib();
  const audit = await openAudit(statePaths(stateDir).auditDb);
  try {
    await reg.drainAuditOutbox(audit);
  } finally {
    await audit.close();
  }
}

/** A JSON file of a model folder by its name in the folder's tree manifest; undefined where the folder has none. */
export async function treeJson(
  store: Pick<ArtifactStore, 'readJson'>,
  manifest: { files: TreeEntry[] },
  name: string,
): Promise<Record<string, unknown> | undefined> {
  const f = manifest.files.find((x) => x.name === name);
  return f && store.readJson<Record<string, unknown>>({ uri: uriFor(f.sha256), sha256: f.sha256, bytes: f.bytes, mediaType: MEDIA.json });
}

/** Metrics JSON may hold arrays (confusion matrices) and strings; the registry keeps numbers. */
function numericOnly(v: Record<string, unknown>): Record<string, unknown> {
  // No prototype: a class label named `__proto__` stays a key instead of replacing the prototype.
  const out: Record<string, unknown> = Object.create(null);
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
