/**
 * "Which version does production point at": the question evaluate (to compare against it), the run
 * gate (to read its metric) and serving ask of the registry, answered in one place.
 */
import { databaseExists } from '../db/database.ts';
import { InputError } from '../errors.ts';
import type { ArtifactRef } from '../types.ts';
import { openRegistry } from './registry.ts';
import type { ModelVersion } from './types.ts';

/**
 * The version `ref` names now (an alias such as 'production', a version, or 'latest'); undefined
 * when there is no registry file yet, no such model or nothing under that ref. Other failures (a
 * corrupt or locked file, an unreachable database) are thrown, not taken for "no production model".
 */
export async function currentVersion(registryDb: string, name: string, ref: string = 'production'): Promise<ModelVersion | undefined> {
  if (!databaseExists(registryDb)) return undefined;
  const reg = await openRegistry(registryDb);
  try {
    return await reg.getVersion(name, ref);
  } catch (e) {
    if (e instanceof InputError && e.where === 'model') return undefined;
    throw e;
  } finally {
    await reg.close();
  }
}

/** The version's artifact with `role` ('model': the exported folder) as an artifact reference. */
export function versionArtifact(v: ModelVersion, role: string): ArtifactRef | undefined {
  const a = v.artifacts.find((x) => x.role === role);
  return a && { uri: a.uri, sha256: a.sha256, bytes: a.bytes, mediaType: a.mediaType ?? '' };
}
