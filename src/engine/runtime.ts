/** onnxruntime sessions for the engine: device → execution providers, threads, clear errors. */
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import type { Model } from '../onnx/ir.ts';
import { encodeModel } from '../onnx/proto.ts';
import type { DType, TypedArray } from '../onnx/dtype.ts';

export type Device = 'cpu' | 'webgpu' | 'cuda' | 'auto';

export interface SessionOptions {
  device?: Device;
  /** Intra-op threads (onnxruntime's default: one per physical core). */
  threads?: number;
}

const PROVIDERS: Record<Exclude<Device, 'auto'>, string[]> = { cpu: ['cpu'], cuda: ['cuda', 'cpu'], webgpu: ['webgpu', 'cpu'] };

export async function createSession(model: Model | Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  const device = opts.device ?? 'cpu';
  const tries: Exclude<Device, 'auto'>[] = device === 'auto' ? ['cuda', 'webgpu', 'cpu'] : [device];
  let last: unknown;
  for (const d of tries) {
    try {
      return await ort.InferenceSession.create(bytes, {
        executionProviders: PROVIDERS[d],
        ...(opts.threads !== undefined ? { intraOpNumThreads: opts.threads } : {}),
        interOpNumThreads: 1,
        executionMode: 'sequential',
        // 'all' may fuse into contrib ops; 'extended' keeps results stable and is fast enough.
        graphOptimizationLevel: 'extended',
      });
    } catch (e) {
      // On CPU a failure is a bad graph, not a missing device: report it as it is.
      if (d === 'cpu') throw e;
      last = e;
    }
  }
  throw new InputError(`device '${device}' is not available: ${(last as Error)?.message ?? last}`, {
    where: 'train.device',
    hint: device === 'cuda' ? 'install the CUDA 12 libraries onnxruntime needs, or use device: cpu' : 'use device: cpu (available everywhere) or auto',
  });
}

export function toOrt(dtype: DType, data: TypedArray, dims: readonly number[]): ort.Tensor {
  const t = dtype === 'float32' ? 'float32' : dtype === 'float64' ? 'float64' : dtype === 'int64' ? 'int64' : dtype === 'int32' ? 'int32' : dtype === 'bool' ? 'bool' : dtype === 'uint8' ? 'uint8' : dtype === 'int8' ? 'int8' : 'float16';
  return new ort.Tensor(t, data as never, dims as number[]);
}
