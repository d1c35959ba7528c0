/**
 * Where `device: auto` lands in a process running onnxruntime's npm build (no CUDA there): WebGPU
 * where a WebGPU session opens on this machine, else the CPU. Tests and checks that expect a device
 * for `auto` ask this instead of assuming the CPU, so they hold on machines with a working WebGPU.
 * It opens a session with `device: webgpu` alone (no fallback), so it does not lean on sessionDevice,
 * which the runtime test checks against it.
 */
import { createSession } from './runtime.ts';
import { buildTinyEncoder } from './tiny-encoder.testing.ts';

export async function whereAutoLands(): Promise<'webgpu' | 'cpu'> {
  const model = buildTinyEncoder({ vocab: 12, hidden: 8, heads: 2, intermediate: 16, layers: 1, seq: 4, classes: 2, seed: 1 });
  try {
    await (await createSession(model, { device: 'webgpu', threads: 1 })).release();
    return 'webgpu';
  } catch {
    return 'cpu';
  }
}
