/**
 * `resolveCurrent` backed by the model registry: serves whatever version an alias points at, so
 * `tempered promote` / `rollback` in another process moves the server on its next poll.
 */
import { openRegistry } from '../registry/registry.ts';
import type { ModelVersion } from '../registry/types.ts';
import type { ResolveCurrent, ServedModel } from './types.ts';

export interface RegistryAliasSourceOptions<P extends ServedModel = ServedModel> {
  registryPath: string;
  name: string;
  /** Default 'production'. */
  alias?: string;
  /** Builds the predictor for a version (the ONNX one in production; the lead wires it). */
  load: (version: ModelVersion) => Promise<P>;
}

export function registryAliasSource<P extends ServedModel = ServedModel>(opts: RegistryAliasSourceOptions<P>): ResolveCurrent<P> {
  const alias = opts.alias ?? 'production';
  return async () => {
    // A short-lived connection per poll: nothing stays open between polls, and a registry file
    // that was moved or restored is picked up as it is now.
    const reg = await openRegistry(opts.registryPath);
    let version: ModelVersion;
    try {
      version = await reg.getVersion(opts.name, alias);
    } finally {
      await reg.close();
    }
    const created = Math.floor(Date.parse(version.createdAt) / 1000);
    return {
      key: `${version.name}@${version.version}`,
      load: () => opts.load(version),
      ...(Number.isFinite(created) ? { created } : {}),
    };
  };
}
