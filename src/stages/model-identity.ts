/** A model source's identity as a stage-cache key part (StageKind.externalInputs), shared by the kinds that read one. */
import { listedDataRoots } from '../data/roots.ts';
import { absoluteModelSource } from '../models/source-spec.ts';
import { statePaths } from '../state-paths.ts';
import { hashJson } from '../util/canonical-json.ts';

/**
 * Where this worker lets a pipeline's local model come from (sources.ts ResolveOptions.localRoots): where it lists its
 * data roots, those (with the shared datasets folder) alone, as for ingest's inputs; `field` is the config field, named
 * by kind (`train.model`), which the stage's failure places in the pipeline (`stages.<id>.with.model`). Unset: anywhere.
 */
export function localModelRoots(field: string, env: NodeJS.ProcessEnv = process.env): { localRoots?: { roots: string[]; field: string } } {
  const roots = listedDataRoots(env);
  return roots ? { localRoots: { roots, field } } : {};
}

/**
 * Hash of what a model source resolves to now: file hashes for a folder or .onnx file, the commit
 * (asked of the Hub for a branch or tag) and file hashes for hf:, the pinned wheel for pypi:.
 */
export async function modelIdentityKey(model: string, baseDir: string, stateDir: string, field: string): Promise<string> {
  // Loaded when a key is computed, not when `validate` reads the kinds' contracts (adm-zip, the GGUF reader).
  const { resolveModelSource } = await import('../models/sources.ts');
  const resolved = await resolveModelSource(absoluteModelSource(model, baseDir), {
    cacheDir: statePaths(stateDir).models,
    ...localModelRoots(field),
  });
  return hashJson(resolved.identity);
}
