/**
 * Opt-in benchmark (not part of npm test): how much of a full fine-tuning step of a MiniLM-size encoder
 * (6 layers, hidden 384, vocab 30522, seq 128, batch 16, AdamW) is spent outside onnxruntime, under
 * glibc's default malloc and under the settings `npm run demo` starts tempered with
 * (scripts/malloc-tuning.mjs).
 *
 *   node --import tsx bench/step-overhead.bench.ts [steps=12] [rounds=2] [threads=2]
 *
 * Each setting runs in its own process (glibc reads its tunables at start), alternating for `rounds`
 * so a slow stretch of a shared machine hits all of them. Per process it prints the median over the
 * steps after two warm-up steps of: the wall time of `session.run` as JavaScript sees it, onnxruntime's
 * own `model_run` time from its profiler, and the difference: copying the 270 MB of updated weights
 * and optimizer state into JavaScript buffers, and the allocator and garbage-collector work that comes
 * with it.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { MALLOC_TUNABLES } from '../scripts/malloc-tuning.mjs';
import { median, MINILM_SIZE, modelRunMs } from './common.ts';

const steps = Number(process.argv[2] ?? 12);
const rounds = Number(process.argv[3] ?? 2);
const threads = Number(process.argv[4] ?? 2);

if (process.env.STEP_OVERHEAD_CHILD) await child();
else parent();

function parent(): void {
  const settings: [string, string | undefined][] = [
    ['glibc default', undefined],
    ['mmap_threshold + trim only', 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295'],
    ['tempered (malloc-tuning.mjs)', MALLOC_TUNABLES],
  ];
  const results = new Map<string, { wall: number; run: number; outside: number }[]>();
  for (let r = 1; r <= rounds; r++) {
    for (const [name, tunables] of settings) {
      const env: NodeJS.ProcessEnv = { ...process.env, STEP_OVERHEAD_CHILD: '1' };
      delete env.GLIBC_TUNABLES;
      if (tunables) env.GLIBC_TUNABLES = tunables;
      const p = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], { env, encoding: 'utf8' });
      const line = p.stdout.trim().split('\n').pop() ?? '';
      if (p.status !== 0 || !line.startsWith('{')) throw new Error(`${name}: ${p.stderr.trim().split('\n').pop()}`);
      const x = JSON.parse(line) as { wall: number; run: number; outside: number };
      console.log(
        `round ${r} ${name.padEnd(30)} step ${x.wall.toFixed(0)} ms = onnxruntime ${x.run.toFixed(0)} + outside ${x.outside.toFixed(0)}`,
      );
      results.set(name, [...(results.get(name) ?? []), x]);
    }
  }
  const ref = median(results.get('glibc default')!.map((x) => x.wall));
  console.log(`\nmedians over ${rounds} rounds (${threads} threads):`);
  for (const [name, xs] of results) {
    const wall = median(xs.map((x) => x.wall));
    console.log(
      `${name.padEnd(30)} step ${wall.toFixed(0)} ms, outside onnxruntime ${median(xs.map((x) => x.outside)).toFixed(0)} ms, speed ${(ref / wall).toFixed(2)}x glibc default`,
    );
  }
}

async function child(): Promise<void> {
  const { compileTrainStep } = await import('../src/engine/compile.ts');
  const { buildTinyEncoder } = await import('../src/engine/tiny-encoder.testing.ts');
  const { createSession, toOrt } = await import('../src/engine/runtime.ts');
  const { tokenTask } = await import('../src/engine/synthetic.testing.ts');
  const cfg = MINILM_SIZE;
  const prog = compileTrainStep(buildTinyEncoder(cfg), {
    loss: { kind: 'cross_entropy' },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw' },
    clipNorm: 1,
  });
  const dir = mkdtempSync(join(tmpdir(), 'tempered-overhead-'));
  process.env.TEMPERED_ORT_PROFILE = join(dir, 'p');
  const session = await createSession(prog.step, { threads });
  const data = tokenTask({ n: 16, seq: cfg.seq, vocab: cfg.vocab, seed: 2, task: 'contains' });
  const values = new Map<string, ort.Tensor>();
  for (const p of prog.params) values.set(p.name, toOrt(p.dtype, p.init, p.dims));
  for (const s of prog.state) values.set(s.input, toOrt(s.dtype, new Float32Array(s.dims.reduce((a, b) => a * b, 1)), s.dims));
  const wall: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t = performance.now();
    const feeds: Record<string, ort.Tensor> = {
      lr: toOrt('float32', Float32Array.of(1e-4), []),
      step: toOrt('float32', Float32Array.of(i + 1), []),
    };
    for (const d of prog.dataInputs) feeds[d.name] = toOrt(data[d.name]!.dtype, data[d.name]!.data, data[d.name]!.dims);
    for (const [k, v] of values) feeds[k] = v;
    const out = await session.run(feeds);
    for (const p of prog.params) values.set(p.name, out[`${p.name}::new`]!);
    for (const s of prog.state) values.set(s.input, out[s.output]!);
    wall.push(performance.now() - t);
  }
  session.endProfiling();
  const run = modelRunMs(dir);
  rmSync(dir, { recursive: true, force: true });
  const w = wall.slice(2),
    r = run.slice(2);
  console.log(JSON.stringify({ wall: median(w), run: median(r), outside: median(w.map((x, i) => x - r[i]!)) }));
}
