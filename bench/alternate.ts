/**
 * Side-by-side timing of training variants of the MiniLM-size encoder (6 layers, hidden 384, vocab 30522,
 * seq 128, batch 16, AdamW) in one process: the variants alternate for `rounds` rounds, so a slow stretch
 * of a shared machine hits all of them. Each fit's first max(4, stepsPerRun) steps are the warm-up; the
 * median step after it is reported, and the median over rounds as a ratio against the first variant.
 * Beside wall time it reports the process's CPU time (user + system) a step after the warm-up: on a
 * loaded machine wall time mostly measures the neighbours, CPU time far less so (with 1 thread there
 * is no spinning pool to inflate it), and the per-run copies that several steps per run save are CPU work.
 * Callers re-execute with glibc malloc tuned first (reexecWithMallocTuning in common.ts).
 */
import type { TrainProgram } from '../src/engine/compile.ts';
import { Trainer } from '../src/engine/trainer.ts';
import { tokenTask } from '../src/engine/synthetic.testing.ts';
import { mallocSetting, median, MINILM_SIZE } from './common.ts';
import type { Device } from '../src/engine/runtime.ts';

export interface Variant {
  label: string;
  prog: TrainProgram;
  stepsPerRun?: number;
  runBudgetMs?: number;
  device?: Device;
}

export async function alternate(
  variants: Variant[],
  opts: { steps: number; rounds: number; threads: number; batch?: number },
): Promise<void> {
  const batch = opts.batch ?? 16;
  const results = new Map<string, number[]>();
  const cpuResults = new Map<string, number[]>();
  for (let round = 1; round <= opts.rounds; round++) {
    for (const v of variants) {
      const warmup = Math.max(4, v.stepsPerRun ?? 1);
      const data = tokenTask({
        n: batch * (opts.steps + warmup),
        seq: MINILM_SIZE.seq,
        vocab: MINILM_SIZE.vocab,
        seed: 2,
        task: 'contains',
      });
      const ms: number[] = [];
      let cpuAtWarm: NodeJS.CpuUsage | undefined;
      let cpuEnd: NodeJS.CpuUsage | undefined;
      await new Trainer(v.prog, {
        seed: 1,
        batchSize: batch,
        maxSteps: opts.steps + warmup,
        threads: opts.threads,
        schedule: { kind: 'constant', lr: 1e-4 },
        ...(v.stepsPerRun !== undefined ? { stepsPerRun: v.stepsPerRun } : {}),
        ...(v.runBudgetMs !== undefined ? { runBudgetMs: v.runBudgetMs } : {}),
        ...(v.device !== undefined ? { device: v.device } : {}),
        onStep: (m) => {
          ms.push((batch * 1000) / m.samplesPerSec);
          // warmup is a multiple of stepsPerRun, so these marks fall on run boundaries.
          if (ms.length === warmup) cpuAtWarm = process.cpuUsage();
          cpuEnd = process.cpuUsage();
        },
      }).fit(data);
      const step = median(ms.slice(warmup));
      const used = process.cpuUsage(cpuAtWarm);
      const late = cpuEnd ? process.cpuUsage(cpuEnd) : { user: 0, system: 0 };
      const cpu = (used.user + used.system - late.user - late.system) / 1000 / (ms.length - warmup);
      results.set(v.label, [...(results.get(v.label) ?? []), step]);
      cpuResults.set(v.label, [...(cpuResults.get(v.label) ?? []), cpu]);
      console.log(`round ${round}: ${v.label}, median step ${step.toFixed(0)} ms, CPU ${cpu.toFixed(0)} ms a step`);
    }
  }
  const first = variants[0]!.label;
  const ref = median(results.get(first)!);
  const cpuRef = median(cpuResults.get(first)!);
  console.log(`\nmedians over ${opts.rounds} rounds (${opts.threads} threads, ${mallocSetting()}):`);
  for (const [label, xs] of results) {
    const m = median(xs);
    console.log(
      `${label}: ${m.toFixed(0)} ms a step (rounds ${xs.map((x) => x.toFixed(0)).join(', ')}), ${(ref / m).toFixed(2)}x the speed of ${first}`,
    );
    const cs = cpuResults.get(label)!;
    const c = median(cs);
    console.log(
      `${' '.repeat(label.length)}  CPU ${c.toFixed(0)} ms a step (rounds ${cs.map((x) => x.toFixed(0)).join(', ')}), ${(cpuRef / c).toFixed(2)}x less CPU than ${first}`,
    );
  }
}
