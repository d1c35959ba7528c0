/**
 * Export of trained weights: an inference ONNX model (LoRA merged into the base weights, no training
 * nodes) and the LoRA adapter alone in Hugging Face PEFT layout.
 *
 * Layout convention: tempered's linear weights are ONNX MatMul weights [in, out] and its adapters are
 * A [in, r], B [r, out]. PEFT (like torch nn.Linear) stores lora_A.weight [r, in] and lora_B.weight
 * [out, r]; the export transposes. W' = W + (alpha/r)·A·B in ONNX layout (its transpose for Gemm
 * weights stored [out, in] with transB=1).
 */
import { mkdirSync, renameSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import type { TypedArray } from '../onnx/dtype.ts';
import type { Model } from '../onnx/ir.ts';
import { saveModel } from '../onnx/proto.ts';
import { dequantizeQ4Model } from './quant4.ts';
import type { TrainProgram } from './compile.ts';

/** The forward model with trained weights written in (and LoRA merged); saved atomically when `outPath` is given. */
export function exportInference(program: TrainProgram, params: Map<string, TypedArray>, outPath?: string): Model {
  // QLoRA: the 4-bit base becomes float32 initializers holding the values the training graph computed.
  const model = dequantizeQ4Model(program.source);
  const inits = model.graph.initializers;
  for (const [name, data] of params) {
    const t = inits.get(name);
    if (t) inits.set(name, { ...t, data: data.slice() });
  }
  const lora = program.lora;
  if (lora) {
    const scale = lora.spec.alpha / lora.spec.r;
    const r = lora.spec.r;
    for (const m of lora.modules) {
      const w = inits.get(m.weight)!;
      const a = params.get(m.a)! as Float32Array,
        b = params.get(m.b)! as Float32Array;
      const merged = w.data.slice() as Float32Array;
      const { inFeatures: nin, outFeatures: nout } = m;
      for (let i = 0; i < nin; i++) {
        for (let o = 0; o < nout; o++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += a[i * r + k]! * b[k * nout + o]!;
          const at = m.weightTransposed ? o * nin + i : i * nout + o;
          merged[at] = merged[at]! + scale * acc;
        }
      }
      inits.set(m.weight, { ...w, data: merged });
    }
  }
  if (outPath) saveModel(model, outPath);
  return model;
}

function transpose(src: TypedArray, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = Number(src[i * cols + j]);
  return out;
}

export interface PeftOptions {
  baseModel?: string;
  /** The base's revision (a Hub commit), written as adapter_config.json's `revision` when given. */
  revision?: string;
  taskType?: string;
  /** true when the HF base layer stores its weight [in, out] (GPT-2 Conv1D); the adapter tensors are the same. */
  fanInFanOut?: boolean;
  /** PEFT's layers_to_transform: the only layers adapted (written when given). */
  layersToTransform?: number[];
  /** Put before each module path where the Hugging Face class nests it (GPT-2 checkpoints without `transformer.`). */
  modulePrefix?: (module: string) => string;
}

/**
 * Writes `outDir`/adapter_config.json and adapter_model.safetensors (PEFT names, [r,in] / [out,r]) atomically.
 * Only LoRA tensors are written; weights trained beside them (alsoTrain, e.g. a classifier) are not part of
 * the adapter file and travel with the merged model instead.
 */
export function exportPeftAdapter(
  program: TrainProgram,
  params: Map<string, TypedArray>,
  outDir: string,
  opts: PeftOptions = {},
): { config: Record<string, unknown>; tensors: Map<string, SafeTensor> } {
  const lora = program.lora;
  if (!lora) throw new Error('exportPeftAdapter: the program was not compiled with LoRA');
  const r = lora.spec.r;
  const tensors = new Map<string, SafeTensor>();
  for (const m of lora.modules) {
    const path = `base_model.model.${opts.modulePrefix?.(m.module) ?? ''}${m.module}`;
    tensors.set(`${path}.lora_A.weight`, {
      dtype: 'F32',
      shape: [r, m.inFeatures],
      data: transpose(params.get(m.a)!, m.inFeatures, r),
    });
    tensors.set(`${path}.lora_B.weight`, {
      dtype: 'F32',
      shape: [m.outFeatures, r],
      data: transpose(params.get(m.b)!, r, m.outFeatures),
    });
  }
  const targetModules = [...new Set(lora.modules.map((m) => m.module.split('.').pop()!))].sort();
  const config = {
    peft_type: 'LORA',
    base_model_name_or_path: opts.baseModel ?? null,
    ...(opts.revision ? { revision: opts.revision } : {}),
    task_type: opts.taskType ?? null,
    r,
    lora_alpha: lora.spec.alpha,
    lora_dropout: lora.spec.dropout ?? 0,
    target_modules: targetModules,
    ...(opts.layersToTransform ? { layers_to_transform: opts.layersToTransform } : {}),
    bias: 'none',
    fan_in_fan_out: opts.fanInFanOut ?? false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
  };
  const tmp = join(dirname(outDir), `.${basename(outDir)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  writeSafetensors(join(tmp, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  writeFileSync(join(tmp, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
  if (existsSync(outDir)) rmSync(outDir, { recursive: true });
  renameSync(tmp, outDir);
  return { config, tensors };
}
