/**
 * Export of a trained classifier as a self-contained folder: model.onnx (inference graph with LoRA
 * merged into the base weights), tokenizer files, config.json (with id2label), labels.json,
 * tempered-model.json, and for LoRA a PEFT adapter/ folder. The folder is assembled under a temp
 * name and renamed into place, so `outDir` is either absent, the old export, or complete.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { TypedArray } from '../onnx/dtype.ts';
import { saveModel } from '../onnx/proto.ts';
import { writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import type { TrainProgram } from '../engine/compile.ts';
import type { LoraSpec } from '../engine/lora.ts';
import type { Pooling } from './bert.ts';
import { exportInference } from '../engine/export.ts';
import type { ExportedValidation } from './loop.ts';

export const MODEL_MANIFEST = 'tempered-model.json';

export interface ModelManifest {
  format: 'tempered-model/1';
  task: 'classification';
  labels: string[];
  maxLength: number;
  pooling: Pooling;
  baseModel: { name: string; sha256: string };
  method: 'full' | 'lora' | 'head';
  hyperparameters: Record<string, unknown>;
  inputs: string[];
  outputs: { logits: string; embeddings: string };
  /** validation: the exported weights' scores on the validation rows (register records them as val_*). */
  training: { steps: number; epochs: number; finalLoss: number; bestStep?: number; validation?: ExportedValidation };
}

function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/**
 * PEFT LoRA adapter for BertForSequenceClassification: unlike the engine's generic exportPeftAdapter,
 * module paths carry the `bert.` prefix that class nests the encoder under, and the trained head is saved.
 */
export function writePeftAdapter(
  dir: string,
  prog: TrainProgram,
  weights: Map<string, TypedArray>,
  base: { name: string; revision?: string },
  headNames: string[],
): void {
  const lora = prog.lora!;
  const spec: LoraSpec = lora.spec;
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, SafeTensor>();
  // BertForSequenceClassification nests the encoder under `bert.`.
  for (const mod of lora.modules) {
    const a = weights.get(mod.a) as Float32Array,
      b = weights.get(mod.b) as Float32Array;
    tensors.set(`base_model.model.bert.${mod.module}.lora_A.weight`, {
      dtype: 'F32',
      shape: [spec.r, mod.inFeatures],
      data: transpose(a, mod.inFeatures, spec.r),
    });
    tensors.set(`base_model.model.bert.${mod.module}.lora_B.weight`, {
      dtype: 'F32',
      shape: [mod.outFeatures, spec.r],
      data: transpose(b, spec.r, mod.outFeatures),
    });
  }
  for (const name of headNames) {
    const w = weights.get(name) as Float32Array | undefined;
    if (!w) continue;
    const t = prog.params.find((p) => p.name === name)!;
    const data = t.dims.length === 2 ? transpose(w, t.dims[0]!, t.dims[1]!) : w.slice();
    const shape = t.dims.length === 2 ? [t.dims[1]!, t.dims[0]!] : [...t.dims];
    tensors.set(`base_model.model.${name}`, { dtype: 'F32', shape, data });
  }
  writeSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  const targets = [...new Set(lora.modules.map((m) => m.module.split('.').pop()!))].sort();
  const layers = [
    ...new Set(
      lora.modules
        .map((m) => /layer\.(\d+)\./.exec(m.module)?.[1])
        .filter((x): x is string => !!x)
        .map(Number),
    ),
  ].sort((x, y) => x - y);
  const config = {
    peft_type: 'LORA',
    task_type: 'SEQ_CLS',
    base_model_name_or_path: base.name,
    ...(base.revision ? { revision: base.revision } : {}),
    r: spec.r,
    lora_alpha: spec.alpha,
    lora_dropout: spec.dropout ?? 0,
    target_modules: targets,
    layers_to_transform: layers,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    modules_to_save: headNames.length ? ['classifier'] : null,
  };
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt'];

export interface ExportOptions {
  outDir: string;
  modelDir: string;
  program: TrainProgram;
  weights: Map<string, TypedArray>;
  manifest: ModelManifest;
  /** The adapter's base as adapter_config.json names it (RunSettings.peftBase); absent: the manifest's base name. */
  peftBase?: { name: string; revision?: string };
}

export function exportClassifier(o: ExportOptions): void {
  const tmp = join(dirname(o.outDir), `.${basename(o.outDir)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const model = exportInference(o.program, o.weights);
    model.metadata = { ...model.metadata, 'tempered.labels': JSON.stringify(o.manifest.labels), 'tempered.pooling': o.manifest.pooling };
    saveModel(model, join(tmp, 'model.onnx'));
    for (const f of TOKENIZER_FILES) if (existsSync(join(o.modelDir, f))) copyFileSync(join(o.modelDir, f), join(tmp, f));
    const cfg = JSON.parse(readFileSync(join(o.modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const labels = o.manifest.labels;
    Object.assign(cfg, {
      architectures: ['BertForSequenceClassification'],
      num_labels: labels.length,
      id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
      label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
    });
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
    writeFileSync(join(tmp, 'labels.json'), JSON.stringify(labels, null, 2) + '\n');
    writeFileSync(join(tmp, MODEL_MANIFEST), JSON.stringify(o.manifest, null, 2) + '\n');
    if (o.program.lora) {
      const head = o.program.params.map((p) => p.name).filter((n) => n.startsWith('classifier.'));
      writePeftAdapter(join(tmp, 'adapter'), o.program, o.weights, o.peftBase ?? { name: o.manifest.baseModel.name }, head);
    }
    mkdirSync(dirname(o.outDir), { recursive: true });
    if (existsSync(o.outDir)) {
      const old = `${tmp}.old`;
      renameSync(o.outDir, old);
      renameSync(tmp, o.outDir);
      rmSync(old, { recursive: true, force: true });
    } else renameSync(tmp, o.outDir);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
