/**
 * Sums written as matrix products, for graphs that must give the same bits on every run on CUDA.
 * onnxruntime's CUDA kernels for ReduceSum over leading axes and for ScatterElements with reduction
 * 'add' accumulate with atomics, so their float sums change order (and bits) from run to run; measured
 * on an H200, every bias, LayerNorm and embedding gradient did (scripts/gpu-check.ts). A GEMM repeats
 * bit for bit. On the CPU both forms are reproducible and the reductions are the cheaper ones, so only
 * graphs compiled for CUDA use these (CompileOptions.deterministicSums).
 */
import type { GraphBuilder } from '../onnx/builder.ts';
import { onnxCode, type DType } from '../onnx/dtype.ts';

/**
 * sums[u] = Σ values[i] over the rows i with inverse[i] = u, for u < |unique|: onehot[U, N] × values[N, K].
 * `values` is [N, ...rowDims]; the result is [U, ...rowDims]. The one-hot matrix holds U × N floats
 * (U ≤ N), 16 MB for a batch of 2,048 tokens.
 */
export function segmentSumByMatMul(
  b: GraphBuilder,
  values: string,
  inverse: string,
  unique: string,
  rowDims: number[],
  dtype: DType,
): string {
  const k = rowDims.reduce((a, d) => a * d, 1);
  const flat = b.op('Reshape', [values, b.ints([-1, k])]);
  const count = b.op('Squeeze', [b.op('Shape', [unique]), b.ints([0])]);
  const groups = b.op('Range', [b.scalar(0, 'int64'), count, b.scalar(1, 'int64')]);
  const onehot = b.op('Cast', [b.op('Equal', [b.op('Unsqueeze', [groups, b.ints([1])]), b.op('Unsqueeze', [inverse, b.ints([0])])])], {
    to: onnxCode(dtype),
  });
  return b.op('Reshape', [b.op('MatMul', [onehot, flat]), b.ints([-1, ...rowDims])]);
}

/** Σ x² over every element of `x` as the product x[1, n] × x[n, 1]: a scalar. */
export function sumSquaresByMatMul(b: GraphBuilder, x: string): string {
  const row = b.op('Reshape', [x, b.ints([1, -1])]);
  const col = b.op('Reshape', [x, b.ints([-1, 1])]);
  return b.op('Reshape', [b.op('MatMul', [row, col]), b.ints([])]);
}
