/**
 * Reading config.json and checkpoint weights for the graph builders, with errors that name the file
 * and field. Weights come back as float32 in Hugging Face layout; `linearWeight` transposes an
 * nn.Linear weight [out, in] into the [in, out] layout tempered's MatMul convention uses.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { InputError } from '../errors.ts';
import { readModelWeights } from '../formats/safetensors-index.ts';
import { toFloat32 } from '../formats/safetensors.ts';
import { readGguf } from '../formats/gguf.ts';
import { GGUF_FILE_KEY, ggufMetadataKey, llamaWeightsFromGguf } from './gguf-llama.ts';

export class ModelConfig {
  constructor(
    readonly raw: Record<string, unknown>,
    readonly path: string,
  ) {}

  static read(dir: string): ModelConfig {
    const path = join(dir, 'config.json');
    if (!existsSync(path))
      throw new InputError('config.json not found', {
        where: dir,
        hint: 'the model directory must be in Hugging Face layout (config.json, model.safetensors, tokenizer.json)',
      });
    return ModelConfig.parse(path);
  }

  /** Another JSON object file of a model folder (`generation_config.json`), read as config.json is; undefined when absent. */
  static readIfPresent(dir: string, name: string): ModelConfig | undefined {
    const path = join(dir, name);
    return existsSync(path) ? ModelConfig.parse(path) : undefined;
  }

  private static parse(path: string): ModelConfig {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new InputError(`not valid JSON (${(e as Error).message})`, { where: path, cause: e });
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      throw new InputError(`${basename(path)} must be a JSON object`, { where: path });
    return new ModelConfig(raw as Record<string, unknown>, path);
  }

  /**
   * Where a field is, for errors: `config.json: key`, or, for a config.json derived from a GGUF file's metadata (which
   * the user never wrote), the GGUF file and the metadata key it came from.
   */
  where(key: string): string {
    const gguf = this.raw[GGUF_FILE_KEY];
    const from = typeof gguf === 'string' ? ggufMetadataKey(this.raw, key) : undefined;
    return from === undefined ? `${this.path}: ${key}` : `${join(dirname(this.path), gguf as string)}: ${from} (config.json's ${key})`;
  }

  private fail(key: string, msg: string, hint?: string): never {
    throw new InputError(msg, { where: this.where(key), hint });
  }

  /**
   * A positive integer field (first key present wins: configs name the same thing differently). `max`:
   * beyond any real model, refused before a size from the file allocates anything.
   */
  int(keys: string | string[], dflt?: number, max?: number): number {
    const list = Array.isArray(keys) ? keys : [keys];
    const key = list.find((k) => this.raw[k] !== undefined && this.raw[k] !== null);
    const v = key === undefined ? dflt : this.raw[key];
    if (v === undefined) this.fail(list[0]!, `${list.join(' / ')} is required`);
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0)
      this.fail(key ?? list[0]!, `must be a positive integer, got ${JSON.stringify(v)}`);
    if (max !== undefined && v > max) this.fail(key ?? list[0]!, `is ${v}, more than any model this size field allows (${max})`);
    return v;
  }

  num(key: string, dflt: number): number {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, `must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A number strictly between `above` and `below` (an epsilon). */
  numBetween(key: string, dflt: number, above: number, below: number): number {
    const v = this.num(key, dflt);
    if (!(v > above && v < below)) this.fail(key, `must be a number above ${above} and below ${below}, got ${v}`);
    return v;
  }

  /** A probability in [0, 1) (dropout rates). */
  rate(key: string, dflt: number): number {
    const v = this.num(key, dflt);
    if (!(v >= 0 && v < 1)) this.fail(key, `must be in [0, 1), got ${v}`);
    return v;
  }

  str(key: string, dflt: string): string {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== 'string') this.fail(key, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(key: string, dflt: boolean): boolean {
    const v = this.raw[key] ?? dflt;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  /** Fails unless the field has one of the supported values. */
  oneOf<T extends string | number | boolean | null>(key: string, supported: readonly T[], dflt: T): T {
    const v = (this.raw[key] === undefined ? dflt : this.raw[key]) as T;
    if (!supported.includes(v))
      this.fail(key, `${JSON.stringify(v)} is not supported; supported: ${supported.map((s) => JSON.stringify(s)).join(', ')}`);
    return v;
  }

  /** Fails when an optional feature is switched on that the graph builder does not implement. */
  unsupportedUnless(key: string, ok: (v: unknown) => boolean, what: string): void {
    const v = this.raw[key];
    if (v !== undefined && v !== null && !ok(v)) this.fail(key, `${JSON.stringify(v)} is not supported (${what})`);
  }
}

export interface Weight {
  shape: number[];
  data: Float32Array;
}

/** Float weights of a model directory by name, with an optional architecture prefix (`bert.`, `transformer.`, `model.`) removed. */
export class Weights {
  readonly map: Map<string, Weight>;
  readonly used = new Set<string>();

  constructor(
    map: Map<string, Weight>,
    readonly where: string,
    /** What the expected shapes come from, for errors. */
    private readonly sizes = 'config.json',
  ) {
    this.map = map;
  }

  static read(dir: string, stripPrefixes: string[] = []): Weights {
    // A GGUF model directory (see gguf-llama.ts): config.json names the GGUF file holding the weights.
    const config = existsSync(join(dir, 'config.json')) ? ModelConfig.read(dir) : undefined;
    const gguf = config?.raw[GGUF_FILE_KEY];
    if (typeof gguf === 'string') {
      if (gguf.includes('/') || gguf.includes('\\'))
        throw new InputError(`${GGUF_FILE_KEY} must be a file name in the model directory`, { where: `${config!.path}: ${GGUF_FILE_KEY}` });
      // Errors name the GGUF file: the config.json its sizes are checked against was derived from its metadata.
      return new Weights(llamaWeightsFromGguf(readGguf(join(dir, gguf)), config!.raw), join(dir, gguf), 'its metadata');
    }
    const file = readModelWeights(dir);
    const map = new Map<string, Weight>();
    for (const [name, t] of file.tensors) {
      // Integer buffers (position_ids) and bool masks are not parameters.
      if (!['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) continue;
      const prefix = stripPrefixes.find((p) => name.startsWith(p));
      map.set(prefix ? name.slice(prefix.length) : name, { shape: t.shape, data: toFloat32(t, name) });
    }
    return new Weights(map, dir);
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  get(name: string, shape: number[]): Float32Array {
    const w = this.map.get(name);
    if (!w)
      throw new InputError(`weight ${JSON.stringify(name)} is missing`, {
        where: this.where,
        hint: `expected a checkpoint with Hugging Face parameter names matching ${this.sizes}`,
      });
    if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) {
      throw new InputError(`weight ${JSON.stringify(name)} has shape [${w.shape}], ${this.sizes} implies [${shape}]`, {
        where: this.where,
      });
    }
    this.used.add(name);
    return w.data;
  }

  /** nn.Linear weight [out, in] → [in, out]. */
  linear(name: string, inF: number, outF: number): Float32Array {
    return transpose2d(this.get(name, [outF, inF]), outF, inF);
  }
}

export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}
