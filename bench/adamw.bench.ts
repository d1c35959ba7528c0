/**
 * Opt-in benchmark (not part of npm test): one AdamW update with global-norm clipping over the trainable
 * weights of a MiniLM-size encoder (22.6 M parameters: vocab 30522, hidden 384, 6 layers), as the
 * compiled apply graph runs it in onnxruntime, beside torch.optim.AdamW (+ clip_grad_norm_) on the same
 * tensor shapes in bench/.venv (skipped with a message when PyTorch is not installed there).
 *
 *   node --import tsx bench/adamw.bench.ts [runs=10] [threads=2]
 *
 * tempered's figure is onnxruntime's own `model_run` time (its profiler), leaving out onnxruntime-node's
 * copy of the outputs into JavaScript, which a multi-step run pays once per run rather than per step;
 * PyTorch's is the wall time of clip + step. Both: median after two warm-up runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { compileTrainStep } from '../src/engine/compile.ts';
import { buildTinyEncoder } from '../src/engine/tiny-encoder.testing.ts';
import { createSession, toOrt } from '../src/engine/runtime.ts';
import { median, MINILM_SIZE, modelRunMs } from './common.ts';

const runs = Number(process.argv[2] ?? 10);
const threads = Number(process.argv[3] ?? 2);
const prog = compileTrainStep(buildTinyEncoder(MINILM_SIZE), {
  loss: { kind: 'cross_entropy' },
  trainable: { kind: 'full' },
  optimizer: { kind: 'adamw' },
  clipNorm: 1,
});

const dir = mkdtempSync(join(tmpdir(), 'tempered-adamw-'));
process.env.TEMPERED_ORT_PROFILE = join(dir, 'p');
const session = await createSession(prog.apply, { threads });
const feeds: Record<string, ort.Tensor> = {
  lr: toOrt('float32', Float32Array.of(1e-4), []),
  step: toOrt('float32', Float32Array.of(3), []),
};
for (const p of prog.params) {
  feeds[p.name] = toOrt('float32', p.init, p.dims);
  feeds[`${p.name}::grad`] = toOrt(
    'float32',
    (p.init as Float32Array).map((x) => x * 0.1),
    p.dims,
  );
}
for (const s of prog.state) feeds[s.input] = toOrt('float32', new Float32Array(s.dims.reduce((a, b) => a * b, 1)).fill(0.01), s.dims);
for (let i = 0; i < runs + 2; i++) await session.run(feeds);
session.endProfiling();
const ours = median(modelRunMs(dir).slice(2));
rmSync(dir, { recursive: true, force: true });
const params = prog.params.reduce((s, p) => s + p.init.length, 0);
console.log(
  `tempered: AdamW + clipping over ${params} parameters in ${ours.toFixed(1)} ms (onnxruntime model_run, median of ${runs}, ${threads} threads)`,
);

const py = 'bench/.venv/bin/python';
if (!existsSync(py)) {
  console.log('pytorch reference unavailable: no bench/.venv (see bench/fixtures/torch_train_bench.py)');
} else {
  const shapes = JSON.stringify(prog.params.map((p) => p.dims));
  const script = `
import json, statistics, sys, time, torch
torch.set_num_threads(${threads})
ps = [torch.nn.Parameter(torch.randn(*s) * 0.02) for s in json.loads(sys.argv[1])]
for p in ps: p.grad = p.detach() * 0.1
opt = torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.01)
times = []
for i in range(${runs} + 2):
    t = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(ps, 1.0)
    opt.step()
    times.append(time.perf_counter() - t)
print(json.dumps({'ms': 1000 * statistics.median(times[2:])}))
`;
  const r = spawnSync(py, ['-c', script, shapes], { encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) console.log('pytorch reference failed:', (r.stderr || '').trim().split('\n').pop());
  else {
    const ref = (JSON.parse(line) as { ms: number }).ms;
    console.log(`pytorch : torch.optim.AdamW + clip_grad_norm_ in ${ref.toFixed(1)} ms (median of ${runs})`);
    console.log(`ratio tempered/pytorch: speed ${(ref / ours).toFixed(2)}x`);
  }
}
