/**
 * Feeds for one run of a compiled program's graphs outside the Trainer (checks and tests): its data
 * inputs, its weights, and for the step graph the optimizer state at zero (step 1) and the lr.
 */
import type * as ort from 'onnxruntime-node';
import { LR_INPUT, STEP_INPUT, type TrainProgram } from './compile.ts';
import { toOrt } from './runtime.ts';
import type { Dataset } from './trainer.ts';
import { allocate, type TypedArray } from '../onnx/dtype.ts';

export function programFeeds(
  prog: TrainProgram,
  data: Dataset,
  params: (name: string) => TypedArray,
  step?: { lr: number },
): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const d of prog.dataInputs) feeds[d.name] = toOrt(data[d.name]!.dtype, data[d.name]!.data, data[d.name]!.dims);
  for (const p of prog.params) feeds[p.name] = toOrt(p.dtype, params(p.name), p.dims);
  if (step) {
    for (const s of prog.state)
      feeds[s.input] = toOrt(
        s.dtype,
        allocate(
          s.dtype,
          s.dims.reduce((a, b) => a * b, 1),
        ),
        s.dims,
      );
    feeds[LR_INPUT] = toOrt('float32', Float32Array.of(step.lr), []);
    feeds[STEP_INPUT] = toOrt('float32', Float32Array.of(1), []);
  }
  return feeds;
}
