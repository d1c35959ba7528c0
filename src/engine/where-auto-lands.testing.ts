/**
 * Where `device: auto` lands in a process running onnxruntime's npm build (no CUDA there): WebGPU
 * where a WebGPU session opens on this machine, else the CPU. Tests and checks that expect a device
 * for `auto` ask this instead of assuming the CPU, so they hold on machines with a working WebGPU.
 */
import { createSession, sessionDevice } from './runtime.ts';
import { buildTinyEncoder } from './tiny-encoder.testing.ts';

export async function whereAutoLands(): Promise<'webgpu' | 'cpu'> {
  const model = buildTinyEncoder({ vocab: 12, hidden: 8, heads: 2, intermediate: 16, layers: 1, seq: 4, classes: 2, seed: 1 });
  try {
    const session = await createSession(model, { device: 'webgpu', threads: 1 });
    const d = sessionDevice(session);
    await session.release();
    return d === 'webgpu' ? 'webgpu' : 'cpu';
  } catch {
    return 'cpu';
  }
}
