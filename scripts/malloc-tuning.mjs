// glibc malloc settings for processes that train. onnxruntime-node copies every output of a run into a
// freshly allocated buffer, so a training step allocates (and frees) its updated weights and optimizer
// state each time: 270 MB per step for full fine-tuning of a MiniLM-size model. With glibc's defaults
// those frees go back to the OS and the next step pays a page fault for every 4 KiB again. Serving
// allocations up to 32 MiB from the heap and never trimming it keeps that memory mapped between steps:
// `node --import tsx bench/train.bench.ts full 6 2` went from 1230 to 990 ms a step.
// Other platforms ignore the variable.
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295';

/** `env` with the tuning added, unless GLIBC_TUNABLES is already set (the user's choice wins). */
export function withMallocTuning(env = process.env) {
  return env.GLIBC_TUNABLES ? { ...env } : { ...env, GLIBC_TUNABLES: MALLOC_TUNABLES };
}
