/**
 * A tempered causal-LM export (model.onnx with the LoRA merged, config.json) as the weights file transformers reads:
 * `model.safetensors`, float32, Hugging Face names and nn.Linear's [out, in] layout, so that
 * `AutoModelForCausalLM.from_pretrained(dir)` loads the fine-tune itself, full fine-tuning included (which has no
 * adapter to put on the base). The tensors are exactly those the decoder graph reads, found by building it over a
 * recording view of model.onnx: a name the graph does not use (rotary tables, masks) is not a weight of the model.
 */
import { join } from 'node:path';
import { writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import { buildLlamaDecoderGraph, readLlamaConfig, type LlamaWeights } from '../models/llama.ts';
import { transpose2d } from '../models/weights.ts';
import { loadModel } from '../onnx/proto.ts';
import { OnnxInitializerWeights } from './decoder.ts';

export function writeHfSafetensors(exportDir: string, outPath: string): void {
  const onnxPath = join(exportDir, 'model.onnx');
  const src = new OnnxInitializerWeights(loadModel(onnxPath), onnxPath);
  const tensors = new Map<string, SafeTensor>();
  const recording: LlamaWeights = {
    has: (name) => src.has(name),
    get: (name, shape) => {
      const data = src.get(name, shape);
      tensors.set(name, { dtype: 'F32', shape, data });
      return data;
    },
    linear: (name, inF, outF) => {
      const data = src.linear(name, inF, outF);
      tensors.set(name, { dtype: 'F32', shape: [outF, inF], data: transpose2d(data, inF, outF) });
      return data;
    },
  };
  buildLlamaDecoderGraph(readLlamaConfig(exportDir), recording);
  // encodeSafetensors writes the tensors in name order.
  writeSafetensors(outPath, tensors, { format: 'pt' });
}
