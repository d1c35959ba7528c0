// glibc malloc settings for processes that train. onnxruntime-node copies every output of a run into a
// freshly allocated buffer, so a training step allocates (and frees) its updated weights and optimizer
// state each time: 270 MB per step for full fine-tuning of a MiniLM-size model. With glibc's defaults
// those frees go back to the OS and the next step pays a page fault for every 4 KiB again.
// - trim_threshold: never give the heap back, so freed buffers stay mapped for the next step. With
//   mmap_threshold but without mmap_max=0 it measured no gain (bench below).
// - mmap_max=0: serve every allocation from the heap. glibc caps mmap_threshold at 32 MiB, so without
//   this the word-embedding tensors (47 MB each for weights, m and v) were mmap'd and unmapped every
//   step, and a full fine-tuning step spent far more time outside onnxruntime (bench/step-overhead.bench.ts;
//   figures in the README's bench table). When the heap cannot grow, glibc still falls back to mmap.
// Other platforms ignore the variable.
export const MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295:glibc.malloc.mmap_max=0';

/**
 * Commands that never train and hold models for long: a heap that is never trimmed keeps every model a hot swap
 * replaced (`serve` of a 135M LLM grew from 1.45 to 5.35 GB resident over 7 promotions, and stayed at 1.46-1.51 GB
 * with trim_threshold=131072: the serve journey, 6 Dec 2026; glibc's defaults, which these commands now get, unmeasured).
 */
const UNTUNED_COMMANDS = new Set(['serve', 'ui']);

/**
 * `env` with the tuning added for the command `args` runs, unless GLIBC_TUNABLES is already set (the user's choice
 * wins) or the command is one that does not train.
 */
export function withMallocTuning(env = process.env, args = []) {
  if (env.GLIBC_TUNABLES || UNTUNED_COMMANDS.has(args[0])) return { ...env };
  return { ...env, GLIBC_TUNABLES: MALLOC_TUNABLES };
}
