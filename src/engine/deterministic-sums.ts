/**
 * Sums over a batch that the training graphs build, and their matrix-product forms for graphs that must
 * give the same bits on every run on CUDA. onnxruntime's CUDA kernels for ReduceSum over leading axes and
 * for ScatterElements with reduction 'add' sum in an order that changes from run to run: measured on an
 * H200, every bias, LayerNorm and embedding gradient changed bits between two identical runs while every
 * MatMul weight's gradient repeated (scripts/gpu-check.ts). A GEMM repeats bit for bit. On the CPU both
 * forms are reproducible and the reductions are the cheaper ones, so only graphs compiled for CUDA use
 * the matrix forms (CompileOptions.deterministicSums).
 */
import type { GraphBuilder } from '../onnx/builder.ts';
import { onnxCode, type DType } from '../onnx/dtype.ts';

/**
 * Sums `values` [N, ...rowDims] per distinct entry of `indices` [N]: `sums` [U, ...rowDims] holds the
 * total for row `at`[u] ([U, 1], as ScatterND takes it). `at` has no repeats, so a ScatterND of `sums`
 * (onnxruntime runs it in parallel) has no races. The repeats themselves are summed by ScatterElements,
 * sequential on the CPU, or with `matmul` by onehot[U, N] × values[N, K] (U × N floats: 16 MB for a
 * batch of 2,048 tokens).
 */
export function sumRowsPerIndex(
  b: GraphBuilder,
  indices: string,
  values: string,
  rowDims: number[],
  dtype: DType,
  opts: { matmul: boolean; name?: string },
): { sums: string; at: string } {
  const [unique, , inverse] = b.opMulti('Unique', [indices], { sorted: 1 }, { outputs: 4, name: opts.name ?? 'rows_unique' }) as [
    string,
    string,
    string,
  ];
  const at = b.op('Unsqueeze', [unique, b.ints([1])]);
  if (opts.matmul) {
    const k = rowDims.reduce((a, d) => a * d, 1);
    const flat = b.op('Reshape', [values, b.ints([-1, k])]);
    const count = b.op('Squeeze', [b.op('Shape', [unique]), b.ints([0])]);
    const groups = b.op('Range', [b.scalar(0, 'int64'), count, b.scalar(1, 'int64')]);
    const onehot = b.op('Cast', [b.op('Equal', [b.op('Unsqueeze', [groups, b.ints([1])]), b.op('Unsqueeze', [inverse, b.ints([0])])])], {
      to: onnxCode(dtype),
    });
    return { sums: b.op('Reshape', [b.op('MatMul', [onehot, flat]), b.ints([-1, ...rowDims])]), at };
  }
  const zeros = b.op('Expand', [b.scalar(0, dtype), b.op('Concat', [b.op('Shape', [unique]), b.ints(rowDims)], { axis: 0 })]);
  // inverse [N] → [N, 1, …, 1] → broadcast across each row, as ScatterElements wants.
  const spread = b.op('Expand', [b.op('Reshape', [inverse, b.ints([-1, ...rowDims.map(() => 1)])]), b.op('Shape', [values])]);
  return { sums: b.op('ScatterElements', [zeros, spread, values], { axis: 0, reduction: 'add' }, { name: 'rows_sum' }), at };
}

/** Σ over the leading axes of `g` down to the static shape `to`, as ones[1, M] × G[M, K]. */
export function sumLeadingByMatMul(b: GraphBuilder, g: string, to: number[], dtype: DType): string {
  const k = to.reduce((a, d) => a * d, 1);
  const rows = b.op('Reshape', [g, b.ints([-1, k])]);
  const ones = b.op('Expand', [
    b.scalar(1, dtype),
    b.op('Concat', [b.ints([1]), b.op('Shape', [rows], { start: 0, end: 1 })], { axis: 0 }),
  ]);
  return b.op('Reshape', [b.op('MatMul', [ones, rows]), b.ints(to)]);
}

/** Σ x² over every element of `x` as the product x[1, n] × x[n, 1]: a scalar. */
export function sumSquaresByMatMul(b: GraphBuilder, x: string): string {
  const row = b.op('Reshape', [x, b.ints([1, -1])]);
  const col = b.op('Reshape', [x, b.ints([-1, 1])]);
  return b.op('Reshape', [b.op('MatMul', [row, col]), b.ints([])]);
}
