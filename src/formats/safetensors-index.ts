/**
 * Sharded safetensors checkpoints: `model.safetensors.index.json` maps each tensor to a shard file
 * (`{ metadata: { total_size }, weight_map: { name: "model-00001-of-00002.safetensors" } }`), the
 * layout Hugging Face uses for models too large for one file.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic } from '../data/atomic.ts';
import { InputError } from '../errors.ts';
import { sha256File } from '../util/hash-file.ts';
import { numel, bytesPerElement, readSafetensors, writeSafetensors, type SafeTensor, type SafetensorsFile } from './safetensors.ts';

export const INDEX_FILE = 'model.safetensors.index.json';
export const SINGLE_FILE = 'model.safetensors';

export interface SafetensorsIndex {
  metadata: Record<string, unknown>;
  weightMap: Map<string, string>;
}

export function readSafetensorsIndex(indexPath: string): SafetensorsIndex {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? 'index file not found' : `index is not valid JSON (${(e as Error).message})`, {
      where: indexPath,
      cause: e,
    });
  }
  const obj = raw as { metadata?: unknown; weight_map?: unknown };
  if (
    typeof obj !== 'object' ||
    obj === null ||
    typeof obj.weight_map !== 'object' ||
    obj.weight_map === null ||
    Array.isArray(obj.weight_map)
  ) {
    throw new InputError('index must be an object with a "weight_map" object', { where: indexPath });
  }
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(obj.weight_map as Record<string, unknown>)) {
    // A shard name with a path separator could read files outside the model directory.
    if (typeof file !== 'string' || file === '' || file !== basename(file) || file === '.' || file === '..') {
      throw new InputError(
        `weight_map[${JSON.stringify(name)}] must be a plain file name in the same directory, got ${JSON.stringify(file)}`,
        { where: indexPath },
      );
    }
    weightMap.set(name, file);
  }
  const metadata = typeof obj.metadata === 'object' && obj.metadata !== null ? (obj.metadata as Record<string, unknown>) : {};
  return { metadata, weightMap };
}

/** Reads every shard an index names and merges them; checks each tensor is in the shard the index says. */
export function readShardedSafetensors(indexPath: string): SafetensorsFile {
  const { weightMap } = readSafetensorsIndex(indexPath);
  const dir = dirname(indexPath);
  const byShard = new Map<string, string[]>();
  for (const [name, file] of weightMap) {
    if (!byShard.has(file)) byShard.set(file, []);
    byShard.get(file)!.push(name);
  }
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const file of [...byShard.keys()].sort()) {
    const path = join(dir, file);
    if (!existsSync(path))
      throw new InputError(`shard ${file} listed in the index is missing`, {
        where: indexPath,
        hint: 'download the missing shard or fix weight_map',
      });
    const shard = readSafetensors(path, { names: byShard.get(file)! });
    if (Object.keys(metadata).length === 0) metadata = shard.metadata;
    for (const [name, t] of shard.tensors) tensors.set(name, t);
  }
  return { tensors: new Map([...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))), metadata };
}

/** Weights of a model directory: `model.safetensors`, else the sharded index. */
export function readModelWeights(dir: string): SafetensorsFile {
  const single = join(dir, SINGLE_FILE);
  if (existsSync(single)) return readSafetensors(single);
  const index = join(dir, INDEX_FILE);
  if (existsSync(index)) return readShardedSafetensors(index);
  throw new InputError(`no ${SINGLE_FILE} or ${INDEX_FILE} found`, {
    where: dir,
    hint: 'point the model source at a directory in Hugging Face layout with safetensors weights',
  });
}

/**
 * The weight files of a model folder: `[model.safetensors]`, else the index and each shard it names (in name order),
 * every one checked to be there. The one place a model folder's shards are found (sources.ts's identity, the sha256 below).
 */
export function modelWeightFiles(dir: string): string[] {
  if (existsSync(join(dir, SINGLE_FILE))) return [SINGLE_FILE];
  const index = join(dir, INDEX_FILE);
  if (!existsSync(index))
    throw new InputError(`no ${SINGLE_FILE} or ${INDEX_FILE} found`, {
      where: dir,
      hint: 'point the model source at a directory in Hugging Face layout with safetensors weights',
    });
  const shards = [...new Set(readSafetensorsIndex(index).weightMap.values())].sort();
  for (const name of shards)
    if (!existsSync(join(dir, name)))
      throw new InputError(`shard ${name} listed in the index is missing`, {
        where: index,
        hint: 'download the missing shard or fix weight_map',
      });
  return [INDEX_FILE, ...shards];
}

/**
 * One sha256 for a model folder's safetensors weights, for a trained model's manifest (`baseModel.sha256`): the file's
 * own for `model.safetensors`, as before; for a sharded folder (what transformers' save_pretrained writes past its
 * max_shard_size) the sha256 of `name sha256` lines of the index and each shard in name order, so a changed shard
 * changes it. Training read `model.safetensors` alone and failed on a sharded folder after all its steps.
 */
export async function modelWeightsSha256(dir: string): Promise<string> {
  const files = modelWeightFiles(dir);
  if (files[0] === SINGLE_FILE) return (await sha256File(join(dir, SINGLE_FILE))).sha256;
  const h = createHash('sha256');
  for (const name of files) h.update(`${name} ${(await sha256File(join(dir, name))).sha256}\n`);
  return h.digest('hex');
}

/**
 * Writes tensors as shards of at most `maxShardBytes` (a tensor larger than that gets a shard of its
 * own) plus the index. Shards are written first and the index last, so a crash never leaves an index
 * that points at missing shards. Tensors go into shards in sorted-name order: deterministic.
 */
export function writeShardedSafetensors(
  dir: string,
  tensors: Map<string, SafeTensor>,
  opts: { maxShardBytes: number; metadata?: Record<string, string>; prefix?: string },
): { index: string; shards: string[] } {
  const names = [...tensors.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const groups: string[][] = [];
  let cur: string[] = [];
  let curBytes = 0;
  let total = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const b = numel(t.shape) * bytesPerElement(t.dtype);
    total += b;
    if (cur.length > 0 && curBytes + b > opts.maxShardBytes) {
      groups.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(name);
    curBytes += b;
  }
  if (cur.length > 0 || groups.length === 0) groups.push(cur);
  const prefix = opts.prefix ?? 'model';
  const n = groups.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const weightMap: Record<string, string> = {};
  const shards: string[] = [];
  groups.forEach((g, i) => {
    const file = `${prefix}-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    writeSafetensors(join(dir, file), new Map(g.map((k) => [k, tensors.get(k)!])), opts.metadata);
    for (const k of g) weightMap[k] = file;
    shards.push(file);
  });
  const index = join(dir, prefix === 'model' ? INDEX_FILE : `${prefix}.safetensors.index.json`);
  writeFileAtomic(index, JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n');
  return { index, shards };
}
