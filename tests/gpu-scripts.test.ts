/**
 * The GPU check scripts keep working on a CPU machine, where CI runs: they answer "no GPU" and exit 0,
 * and their CPU-against-CPU dry runs go through every comparison they make on a GPU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const home = mkdtempSync(join(tmpdir(), 'gpu-scripts-'));
process.on('exit', () => rmSync(home, { recursive: true, force: true }));

function script(name: string, args: string[]) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join('scripts', name), ...args], {
    encoding: 'utf8',
    env: { ...process.env, TEMPERED_HOME: home },
  });
  return { status: r.status, out: r.stdout + r.stderr };
}

const gpuHere = existsSync('/dev/nvidia0');

for (const name of ['gpu-check.ts', 'gpu-train-check.ts', 'gpu-pipeline-check.ts']) {
  test(`${name} on a machine without a GPU says so and exits 0`, { skip: gpuHere && 'this machine has a GPU' }, () => {
    const r = script(name, []);
    assert.equal(r.status, 0, r.out);
    assert.match(r.out, /^no GPU: .*setup --gpu.*no NVIDIA GPU on this machine/m);
    // As a GPU host's acceptance check (--require-gpu), the same answer is a failure.
    const required = script(name, ['--require-gpu']);
    assert.equal(required.status, 1, required.out);
    assert.match(required.out, /^no GPU: /m);
  });
}

test('gpu-check --against cpu: loss, gradients, one AdamW step and placement compared, OK', () => {
  const r = script('gpu-check.ts', ['--against', 'cpu', '--repeat', '1']);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /loss +cpu [\d.]+ +cpu [\d.]+ +rel diff 0\.00e\+0/);
  assert.match(r.out, /0 of \d+ weights .* moved differently/);
  assert.match(r.out, /repeatability +cpu: two runs give the same gradients bit for bit/);
  assert.match(r.out, /placement +(\d+)\/\1 nodes of the step graph ran on CPUExecutionProvider/);
  assert.match(r.out, /gpu-check: OK/);
});

test('gpu-train-check --against cpu: curves, accuracy, determinism and resume judged, OK', () => {
  const r = script('gpu-train-check.ts', ['--against', 'cpu']);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /deterministic +two cpu runs export the same bytes/);
  assert.match(r.out, /resume +stopped after step-00000021, resumed from step 21: .* the same bytes as uninterrupted/);
  assert.match(r.out, /gpu-train-check: OK/);
});

test('gpu-pipeline-check --against cpu: cpu, cpu and auto runs through a real dev server and worker, device, steps and loss judged, OK', () => {
  const r = script('gpu-pipeline-check.ts', ['--against', 'cpu', '--steps', '12']);
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /every run succeeds +succeeded, succeeded, succeeded/);
  // auto lands on the CPU here, or on WebGPU where a WebGPU session opens: what the script expects.
  assert.match(
    r.out,
    /train ran where expected +cpu → cpu \(expected cpu\), cpu → cpu \(expected cpu\), auto → (cpu|webgpu) \(expected \1\)/,
  );
  assert.match(r.out, /same number of steps +12, 12, 12 \(asked 12\)/);
  assert.match(r.out, /final loss +worst rel diff from the CPU run 0\.00e\+0/);
  assert.match(r.out, /gpu-pipeline-check: OK/);
});
