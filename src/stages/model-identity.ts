/** A model source's identity as a stage-cache key part (StageKind.externalInputs), shared by the kinds that read one. */
import { absoluteModelSource } from '../models/source-spec.ts';
import { statePaths } from '../state-paths.ts';
import { hashJson } from '../util/canonical-json.ts';

/**
 * Hash of what a model source resolves to now: file hashes for a folder or .onnx file, the commit
 * (asked of the Hub for a branch or tag) and file hashes for hf:, the pinned wheel for pypi:.
 */
export async function modelIdentityKey(model: string, baseDir: string, stateDir: string): Promise<string> {
  // Loaded when a key is computed, not when `validate` reads the kinds' contracts (adm-zip, the GGUF reader).
  const { resolveModelSource } = await import('../models/sources.ts');
  const resolved = await resolveModelSource(absoluteModelSource(model, baseDir), { cacheDir: statePaths(stateDir).models });
  return hashJson(resolved.identity);
}
