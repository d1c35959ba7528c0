/**
 * Dropout masks, drawn on the host and fed as float graph inputs: one per LoRA-adapted module (0/1, the
 * rescale rides on the adapter's scale) and one per Dropout of the model itself (0 or 1/(1-p), see
 * dropout.ts).
 *
 * Why not in the graph: onnxruntime's random ops keep their generator inside the session, so a resumed
 * run would draw different masks; and a hash of the element index in standard ops costs several times
 * PyTorch's whole dropout per module per step (Sin alone has no vectorized kernel). Here each step takes one draw from the run's checkpointed RNG, and every module's mask is a
 * pure function of that draw and the module's index: reproducible across resumes, and cheap in the
 * graph: one Mul forward and one backward (onnxruntime's Where is several times slower than Mul on
 * these tensors, which outweighs writing floats instead of bytes), with the 1/(1-p) rescale folded into the adapter's
 * scale. Mask buffers are reused from step to step.
 *
 * The keep decision compares 16 random bits with a threshold, so the dropout rate is p rounded to a
 * multiple of 1/65536 (0.1 becomes 0.100006); the rescale uses that same rounded rate, so the expected
 * value of a masked input is exactly the input.
 */
import type * as ort from 'onnxruntime-node';
import type { DType } from '../onnx/dtype.ts';
import type { Dim, ValueInfo } from '../onnx/ir.ts';
import { toOrt } from './runtime.ts';

/** Prefix of the per-module mask inputs: `lora_dropout_mask:<module>`. */
export const LORA_MASK_PREFIX = 'lora_dropout_mask:';

export interface DropoutMask {
  /** Graph input name. */
  input: string;
  /** Shape of the adapted input, in the model inputs' dims ('batch', 'seq') and numbers. */
  shape: Dim[];
  /** Drop when the 16-bit draw is below this. */
  threshold: number;
  /** float32 or float64, as the input it masks. */
  dtype: DType;
  /** Value of a kept element (default 1): 1/(1-p) when the mask also rescales, as inverted dropout does. */
  keep?: number;
}

/** The 16-bit threshold for rate p, and the rate it really gives. */
export function dropoutThreshold(p: number): { threshold: number; rate: number } {
  const threshold = Math.round(p * 65536);
  return { threshold, rate: threshold / 65536 };
}

/** Mixes a step seed and a module index into a non-zero xorshift state (splitmix32 finalizer). */
function moduleState(stepSeed: number, module: number): number {
  let z = (stepSeed + Math.imul(module + 1, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  z = (z ^ (z >>> 16)) >>> 0;
  return z === 0 ? 0x6d2b79f5 : z;
}

const f32 = new Float32Array(1);
const f32Bits = new Int32Array(f32.buffer);

/** Keep-mask (`keep` where kept, default 1; 0 where dropped): xorshift32, two 16-bit decisions per draw. */
export function fillMask<T extends Uint8Array | Float32Array | Float64Array>(
  out: T,
  threshold: number,
  stepSeed: number,
  module: number,
  keep = 1,
): T {
  let x = moduleState(stepSeed, module);
  const n = out.length;
  // Branch-free stores run faster than `draw >= threshold ? keep : 0`: masks are random, so the
  // branch is mispredicted as often as the dropout rate. ((draw - threshold) >> 31) is -1 exactly when
  // the draw is below the threshold (a drop); its complement selects the bits of `keep`.
  f32[0] = keep;
  const [bits, one] =
    out instanceof Float32Array
      ? [new Int32Array(out.buffer, out.byteOffset, n), f32Bits[0]!]
      : out instanceof Uint8Array
        ? [out, keep]
        : [undefined, keep];
  if (bits) {
    let i = 0;
    for (; i + 1 < n; i += 2) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bits[i] = ~(((x & 0xffff) - threshold) >> 31) & one;
      bits[i + 1] = ~(((x >>> 16) - threshold) >> 31) & one;
    }
    if (i < n) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      bits[i] = ~(((x & 0xffff) - threshold) >> 31) & one;
    }
    return out;
  }
  for (let i = 0; i < n; i += 2) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = (x & 0xffff) >= threshold ? keep : 0;
    if (i + 1 < n) out[i + 1] = x >>> 16 >= threshold ? keep : 0;
  }
  return out;
}

/**
 * Builds each step's mask feeds. Symbolic dims of the masks are read off the step's data feeds through
 * the data inputs' declared shapes. Feeds of one step must be consumed (the session run awaited) before
 * the next call, which overwrites the same buffers.
 */
export class DropoutMasker {
  private buffers = new Map<string, Float32Array | Float64Array>();

  constructor(
    private readonly masks: readonly DropoutMask[],
    private readonly dataInputs: readonly ValueInfo[],
  ) {}

  feeds(data: Record<string, ort.Tensor>, stepSeed: number): Record<string, ort.Tensor> {
    if (this.masks.length === 0) return {};
    const dims = new Map<string, number>();
    for (const v of this.dataInputs) {
      const fed = data[v.name];
      if (!fed || !v.shape) continue;
      v.shape.forEach((d, i) => {
        if (typeof d === 'string' && fed.dims[i] !== undefined) dims.set(d, fed.dims[i]!);
      });
    }
    const feeds: Record<string, ort.Tensor> = {};
    this.masks.forEach((m, k) => {
      const shape = m.shape.map((d) => {
        const v = typeof d === 'number' ? d : dims.get(d);
        if (v === undefined) throw new Error(`dropout mask '${m.input}': dim '${d}' is not a dim of any fed input`);
        return v;
      });
      const n = shape.reduce((a, b) => a * b, 1);
      let buf = this.buffers.get(m.input);
      if (!buf || buf.length !== n) {
        buf = m.dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
        this.buffers.set(m.input, buf);
      }
      feeds[m.input] = toOrt(m.dtype, fillMask(buf, m.threshold, stepSeed, k, m.keep), shape);
    });
    return feeds;
  }
}
