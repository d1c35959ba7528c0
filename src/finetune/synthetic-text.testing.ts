/**
 * Test fixtures: a tiny random BERT in Hugging Face layout (src/models has no tiny-model maker yet)
 * and a synthetic, learnable text-classification table. Everything is seeded.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { Rng } from '../engine/prng.ts';

const FIXTURES = fileURLToPath(new URL('../models/fixtures/', import.meta.url));

export interface TinyBertOptions {
  hidden?: number;
  layers?: number;
  heads?: number;
  intermediate?: number;
  seed?: number;
}

/** Writes config.json, model.safetensors and the MiniLM WordPiece tokenizer into `dir`. */
export function makeTinyBert(dir: string, o: TinyBertOptions = {}): string {
  const H = o.hidden ?? 32, L = o.layers ?? 2, heads = o.heads ?? 4, I = o.intermediate ?? 64;
  const V = 30522, P = 128;
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(o.seed ?? 7);
  const tensors = new Map<string, SafeTensor>();
  const rand = (name: string, shape: number[], std = 0.05) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
    tensors.set(name, { dtype: 'F32', shape, data });
  };
  const fill = (name: string, n: number, v: number) => tensors.set(name, { dtype: 'F32', shape: [n], data: new Float32Array(n).fill(v) });
  const ln = (p: string) => { fill(`${p}.weight`, H, 1); fill(`${p}.bias`, H, 0); };
  rand('embeddings.word_embeddings.weight', [V, H], 0.5);
  rand('embeddings.position_embeddings.weight', [P, H], 0.1);
  rand('embeddings.token_type_embeddings.weight', [2, H], 0.1);
  ln('embeddings.LayerNorm');
  for (let l = 0; l < L; l++) {
    const p = `encoder.layer.${l}`;
    for (const m of ['query', 'key', 'value']) { rand(`${p}.attention.self.${m}.weight`, [H, H], 0.2); rand(`${p}.attention.self.${m}.bias`, [H], 0.02); }
    rand(`${p}.attention.output.dense.weight`, [H, H], 0.2); rand(`${p}.attention.output.dense.bias`, [H], 0.02);
    ln(`${p}.attention.output.LayerNorm`);
    rand(`${p}.intermediate.dense.weight`, [I, H], 0.2); rand(`${p}.intermediate.dense.bias`, [I], 0.02);
    rand(`${p}.output.dense.weight`, [H, I], 0.2); rand(`${p}.output.dense.bias`, [H], 0.02);
    ln(`${p}.output.LayerNorm`);
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'bert', architectures: ['BertModel'], vocab_size: V, hidden_size: H, num_hidden_layers: L, num_attention_heads: heads,
    intermediate_size: I, max_position_embeddings: P, type_vocab_size: 2, layer_norm_eps: 1e-12, hidden_act: 'gelu', initializer_range: 0.02,
    _name_or_path: 'tempered/tiny-random-bert',
  }, null, 2));
  copyFileSync(join(FIXTURES, 'minilm-tokenizer.json'), join(dir, 'tokenizer.json'));
  copyFileSync(join(FIXTURES, 'minilm-tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  return dir;
}

const POS = ['great', 'wonderful', 'excellent', 'happy', 'love', 'superb', 'nice', 'brilliant'];
const NEG = ['awful', 'terrible', 'horrible', 'sad', 'hate', 'poor', 'bad', 'boring'];
const FILLER = ['the', 'movie', 'was', 'a', 'story', 'of', 'and', 'it', 'show', 'film', 'plot', 'actors', 'really', 'quite', 'very', 'day'];

/** Rows whose label is decided by which sentiment words appear; lengths vary so bucketing is exercised. */
export function syntheticRows(n: number, seed: number): { text: string; label: string }[] {
  const rng = new Rng(seed);
  const rows: { text: string; label: string }[] = [];
  for (let i = 0; i < n; i++) {
    const positive = rng.next() < 0.5;
    const words: string[] = [];
    const len = 3 + rng.int(12);
    for (let k = 0; k < len; k++) words.push(FILLER[rng.int(FILLER.length)]!);
    const cue = positive ? POS : NEG;
    const cues = 1 + rng.int(2);
    for (let k = 0; k < cues; k++) words.splice(rng.int(words.length + 1), 0, cue[rng.int(cue.length)]!);
    rows.push({ text: words.join(' '), label: positive ? 'positive' : 'negative' });
  }
  return rows;
}

export function writeTextTable(path: string, rows: { text: string; label: string }[]): string {
  const w = new ArrowTableWriter(path, { text: 'utf8', label: 'utf8' });
  w.writeBatch({ text: rows.map((r) => r.text), label: rows.map((r) => r.label) });
  w.close();
  return path;
}
