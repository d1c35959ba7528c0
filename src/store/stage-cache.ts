/**
 * Stage cache: maps a cache key to the outputs a stage produced for it. A key hashes everything that
 * determines the output: the stage kind and its code version, the resolved config (upstream
 * artifact references inside it carry their sha256) and the hashes of external inputs such as
 * source files. A hit is only served when every artifact it names is still in the store.
 */
import { existsSync, promises as fsp, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { hashJson } from '../util/canonical-json.ts';
import { isArtifactRef, type StageOutputs } from '../types.ts';
import type { ArtifactStore } from './artifact-store.ts';

export interface CacheKeyParts {
  kind: string;
  codeVersion: string;
  config: unknown;
  externalInputs?: string[];
}

export interface CacheRecord {
  key: string;
  kind: string;
  outputs: StageOutputs;
  /** The run and stage that produced it, for lineage. */
  producedBy: { runId: string; stageId: string };
  createdAt: string;
}

export function cacheKey(parts: CacheKeyParts): string {
  return hashJson({ v: 1, ...parts });
}

function collectRefs(value: unknown, out: { sha256: string }[] = []): { sha256: string }[] {
  if (isArtifactRef(value)) out.push(value);
  else if (Array.isArray(value)) value.forEach((v) => collectRefs(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => collectRefs(v, out));
  return out;
}

export class StageCache {
  constructor(private readonly dir: string, private readonly store: ArtifactStore) {
    mkdirSync(dir, { recursive: true });
  }

  private path(key: string): string {
    return join(this.dir, key.slice(0, 2), `${key}.json`);
  }

  async get(key: string): Promise<CacheRecord | undefined> {
    const p = this.path(key);
    if (!existsSync(p)) return undefined;
    let rec: CacheRecord;
    try {
      rec = JSON.parse(await fsp.readFile(p, 'utf8')) as CacheRecord;
    } catch {
      return undefined; // an unreadable record is a miss, and the rerun overwrites it
    }
    if (rec.key !== key) return undefined;
    if (!collectRefs(rec.outputs).every((r) => this.store.has(r.sha256))) return undefined;
    return rec;
  }

  async put(rec: CacheRecord): Promise<void> {
    const p = this.path(rec.key);
    await fsp.mkdir(join(p, '..'), { recursive: true });
    const tmp = `${p}.${randomBytes(4).toString('hex')}.tmp`;
    await fsp.writeFile(tmp, JSON.stringify(rec, null, 2));
    await fsp.rename(tmp, p);
  }
}
