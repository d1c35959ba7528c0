/**
 * Gradient accumulation over micro-batches with the grad-only graph: gradients are summed in
 * float64 in a fixed order (so the result is deterministic) and averaged, ready to feed the apply
 * graph. Shared by the engine's Trainer and the fine-tuning loop.
 */
import type * as ort from 'onnxruntime-node';
import { allocate } from '../onnx/dtype.ts';
import { LOSS_OUTPUT, gradName, type TrainProgram } from './compile.ts';
import { toOrt } from './runtime.ts';

export async function accumulateGradients(
  gradSession: ort.InferenceSession,
  prog: TrainProgram,
  microBatches: number,
  feedsFor: (k: number) => Record<string, ort.Tensor>,
): Promise<{ loss: number; gradFeeds: Record<string, ort.Tensor> }> {
  let loss = 0;
  const acc = new Map<string, Float64Array>();
  for (let k = 0; k < microBatches; k++) {
    const r = await gradSession.run(feedsFor(k));
    loss += Number(r[LOSS_OUTPUT]!.data[0]) / microBatches;
    for (const p of prog.params) {
      const g = r[gradName(p.name)]!.data as Float32Array;
      let a = acc.get(p.name);
      if (!a) acc.set(p.name, (a = new Float64Array(g.length)));
      for (let i = 0; i < g.length; i++) a[i]! += g[i]!;
    }
  }
  const gradFeeds: Record<string, ort.Tensor> = {};
  for (const p of prog.params) {
    const a = acc.get(p.name)!;
    const mean = allocate(p.dtype, a.length) as Float32Array;
    for (let i = 0; i < a.length; i++) mean[i] = a[i]! / microBatches;
    gradFeeds[gradName(p.name)] = toOrt(p.dtype, mean, p.dims);
  }
  return { loss, gradFeeds };
}
