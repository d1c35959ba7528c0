/**
 * What `device: cuda` and `device: auto` do on a machine that cannot run CUDA (this one, in CI), and
 * how the probe reads a machine that can. Machines are described as folder trees (/dev, /proc, the
 * driver's folder) so both cases run anywhere; the live checks at the end use this machine as it is.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CUDA_MANIFEST,
  cudaBuildLoaded,
  cudaCpuFallback,
  cudaLibDir,
  cudaProcessEnv,
  cudaTf32,
  loadedOrtCore,
  probeCuda,
  processForDevice,
} from './cuda.ts';
import { createSession } from './runtime.ts';
import { buildTinyEncoder } from './tiny-encoder.testing.ts';
import { InputError } from '../errors.ts';

function machine(o: { gpu: boolean; driver?: string; libcuda: boolean }): { root: string; driverDirs: string[] } {
  const root = mkdtempSync(join(tmpdir(), 'tempered-machine-'));
  mkdirSync(join(root, 'dev'));
  if (o.gpu) writeFileSync(join(root, 'dev', 'nvidia0'), '');
  writeFileSync(join(root, 'dev', 'null'), '');
  if (o.driver) {
    mkdirSync(join(root, 'proc/driver/nvidia'), { recursive: true });
    writeFileSync(
      join(root, 'proc/driver/nvidia/version'),
      `NVRM version: NVIDIA UNIX x86_64 Kernel Module  ${o.driver}  Tue Jul  8 18:46:43 UTC 2025\nGCC version:  gcc version 12.2.0\n`,
    );
  }
  const lib = join(root, 'usr/lib/x86_64-linux-gnu');
  mkdirSync(lib, { recursive: true });
  if (o.libcuda) writeFileSync(join(lib, 'libcuda.so.1'), '');
  return { root, driverDirs: [lib] };
}

function install(files: Record<string, number> = { 'libonnxruntime.so.1': 5, 'libonnxruntime_providers_cuda.so': 7 }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-cuda-'));
  mkdirSync(cudaLibDir(dir));
  const manifest: Record<string, { bytes: number; sha256: string; from: string }> = {};
  for (const [name, bytes] of Object.entries(files)) {
    writeFileSync(join(cudaLibDir(dir), name), Buffer.alloc(bytes));
    manifest[name] = { bytes, sha256: '0'.repeat(64), from: 'test' };
  }
  writeFileSync(join(dir, CUDA_MANIFEST), JSON.stringify({ what: 'test', files: manifest }));
  return dir;
}

const empty = () => mkdtempSync(join(tmpdir(), 'tempered-nocuda-'));

test('a machine without GPU, driver or install: every reason is named, each with what to do', () => {
  const m = machine({ gpu: false, libcuda: false });
  const p = probeCuda(empty(), { ...m, env: {} });
  assert.equal(p.ok, false);
  assert.equal(p.problems.length, 3, p.problems.join('\n'));
  assert.match(p.problems[0]!, /not installed.*npx tempered setup --gpu/);
  assert.match(p.problems[1]!, /NVIDIA driver is missing.*libcuda\.so\.1/);
  assert.match(p.problems[2]!, /no NVIDIA GPU on this machine/);
});

test('a GPU machine with a driver of branch 580 and a complete install passes; each missing piece fails alone', () => {
  const good = machine({ gpu: true, driver: '580.65.06', libcuda: true });
  const dir = install();
  const ok = probeCuda(dir, { ...good, env: {} });
  assert.deepEqual(ok.problems, []);
  assert.equal(ok.ok, true);
  assert.deepEqual(ok.devices, ['/dev/nvidia0']);
  assert.equal(ok.driver, '580.65.06');

  const old = probeCuda(dir, { ...machine({ gpu: true, driver: '535.183.01', libcuda: true }), env: {} });
  assert.deepEqual(old.problems.length, 1);
  assert.match(old.problems[0]!, /535\.183\.01 is too old for CUDA 13/);

  const noUserLib = probeCuda(dir, { ...machine({ gpu: true, driver: '580.65.06', libcuda: false }), env: {} });
  assert.match(noUserLib.problems.join(), /libcuda\.so\.1 is not on the loader's paths \(kernel module 580\.65\.06/);

  const hidden = probeCuda(dir, { ...good, env: { CUDA_VISIBLE_DEVICES: '-1' } });
  assert.match(hidden.problems.join(), /CUDA_VISIBLE_DEVICES="-1" hides every GPU/);

  const damaged = install();
  writeFileSync(join(cudaLibDir(damaged), 'libonnxruntime_providers_cuda.so'), 'short');
  assert.match(probeCuda(damaged, { ...good, env: {} }).problems.join(), /damaged: libonnxruntime_providers_cuda\.so is not 7 bytes/);
});

test('processForDevice: cuda fails at once where the probe fails, auto falls back to the CPU build, both load the CUDA build where it passes', () => {
  const none = machine({ gpu: false, libcuda: false });
  const state = empty();
  assert.throws(
    () => processForDevice('cuda', state, { ...none, env: {}, where: 'stages.train.with.device' }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'stages.train.with.device' &&
      /device 'cuda' is not available on this machine: .*setup --gpu.*no NVIDIA GPU/.test(e.message) &&
      /device: cpu/.test(e.hint ?? ''),
  );
  const auto = processForDevice('auto', state, { ...none, env: { PATH: '/bin' } });
  assert.equal(auto.cuda, false);
  assert.equal(auto.env.LD_LIBRARY_PATH, undefined);
  assert.match(auto.note ?? '', /no CUDA here .*using the npm build \(WebGPU where a session opens, else the CPU\)/);
  assert.deepEqual(processForDevice('cpu', state, { ...none, env: { PATH: '/bin' } }), { env: { PATH: '/bin' }, cuda: false });

  const gpu = machine({ gpu: true, driver: '580.65.06', libcuda: true });
  const dir = install();
  for (const device of ['cuda', 'auto'] as const) {
    const p = processForDevice(device, state, { ...gpu, env: { TEMPERED_CUDA_DIR: dir, LD_LIBRARY_PATH: '/opt/x' } });
    assert.equal(p.cuda, true);
    assert.equal(p.env.LD_LIBRARY_PATH, `${cudaLibDir(dir)}:/opt/x`);
  }
});

test('processForDevice on a worker that runs CUDA stages only from its GPU queue: a CPU-queue stage gets the CPU (auto) or a routing error (cuda)', () => {
  const gpu = machine({ gpu: true, driver: '580.65.06', libcuda: true });
  const dir = install();
  const env = { TEMPERED_CUDA_DIR: dir };
  const state = empty();
  const fromCpuQueue = { allowed: false, queues: ['gpu'] };
  const auto = processForDevice('auto', state, { ...gpu, env, cudaHere: fromCpuQueue });
  assert.equal(auto.cuda, false);
  assert.equal(auto.env.LD_LIBRARY_PATH, undefined);
  assert.match(auto.note ?? '', /runs CUDA stages only from queue gpu; using the npm build/);
  assert.throws(
    () => processForDevice('cuda', state, { ...gpu, env, cudaHere: fromCpuQueue, where: 'stages.train.with.device' }),
    (e: unknown) => e instanceof InputError && e.where === 'stages.train.with.device' && /queue: gpu/.test(e.hint ?? ''),
  );
  for (const device of ['cuda', 'auto'] as const)
    assert.equal(processForDevice(device, state, { ...gpu, env, cudaHere: { allowed: true, queues: ['gpu'] } }).cuda, true);
});

test('CUDA processes run float32 MatMuls without TF32 unless TEMPERED_CUDA_TF32=1; an explicit NVIDIA_TF32_OVERRIDE wins', () => {
  const dir = install();
  assert.equal(cudaProcessEnv(dir, {}).NVIDIA_TF32_OVERRIDE, '0');
  assert.equal(cudaProcessEnv(dir, { TEMPERED_CUDA_TF32: '1' }).NVIDIA_TF32_OVERRIDE, '1');
  assert.equal(cudaProcessEnv(dir, { TEMPERED_CUDA_TF32: '0', NVIDIA_TF32_OVERRIDE: '1' }).NVIDIA_TF32_OVERRIDE, '1');
  assert.equal(cudaTf32({}), false);
  assert.throws(() => cudaTf32({ TEMPERED_CUDA_TF32: 'fast' }), /TEMPERED_CUDA_TF32="fast" must be 1 or 0/);
});

test('TEMPERED_CUDA_CPU_FALLBACK takes 1 or 0 and nothing else', () => {
  assert.equal(cudaCpuFallback({}), true);
  assert.equal(cudaCpuFallback({ TEMPERED_CUDA_CPU_FALLBACK: '0' }), false);
  assert.throws(() => cudaCpuFallback({ TEMPERED_CUDA_CPU_FALLBACK: 'no' }), /must be 1 or 0/);
});

test('this process runs the npm build: device cuda is refused with the reason, auto runs on the CPU with the same outputs', async () => {
  assert.ok(loadedOrtCore() === undefined || !cudaBuildLoaded(), 'the test process must not load the CUDA build');
  const model = buildTinyEncoder({ vocab: 12, hidden: 8, heads: 2, intermediate: 16, layers: 1, seq: 4, classes: 2, seed: 1 });
  await assert.rejects(
    createSession(model, { device: 'cuda', threads: 1 }),
    (e: unknown) =>
      e instanceof InputError &&
      /device 'cuda' is not available: /.test(e.message) &&
      // Which reason depends on the machine: no GPU here; on a GPU machine, the npm build of this process.
      (existsSync('/dev/nvidia0') ? /npm build/.test(e.message) : /no NVIDIA GPU on this machine/.test(e.message)),
  );
  assert.ok(loadedOrtCore()?.includes('onnxruntime-node'), `loaded ${loadedOrtCore()}`);
  const { Tensor } = await import('onnxruntime-node');
  const ids = new Tensor('int64', BigInt64Array.from([1n, 2n, 3n, 4n]), [1, 4]);
  const mask = new Tensor('int64', BigInt64Array.from([1n, 1n, 1n, 1n]), [1, 4]);
  const cpu = await (await createSession(model, { device: 'cpu', threads: 1 })).run({ input_ids: ids, attention_mask: mask });
  const auto = await (await createSession(model, { device: 'auto', threads: 1 })).run({ input_ids: ids, attention_mask: mask });
  assert.deepEqual(auto['logits']!.data, cpu['logits']!.data);
});
