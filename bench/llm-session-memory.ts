/**
 * Session memory of the LoRA vs QLoRA training step graph of SmolLM2-135M, one mode per process (a guard that
 * onnxruntime keeps the 4-bit weights 4-bit: had its constant folding turned the dequantization chains into
 * float32 initializers, the QLoRA session would hold as much as the fp32 one). Prints VmRSS (MiB) after building
 * the compiled graphs in JavaScript and after onnxruntime created the step session (no run yet).
 *
 *   node --import tsx bench/llm-session-memory.ts <lora|qlora> [threads=2]
 */
import { readFileSync } from 'node:fs';
import { compileTrainStep } from '../src/engine/compile.ts';
import { createSession } from '../src/engine/runtime.ts';
import { buildCausalLmGraph } from '../src/models/causal-lm.ts';
import { DEFAULT_LLM, resolveModelSource } from '../src/models/sources.ts';

const mode = process.argv[2] ?? 'qlora';
const threads = Number(process.argv[3] ?? 2);
const rss = () => Math.round(Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024);
const model = await resolveModelSource(DEFAULT_LLM);
const start = rss();
const { model: fwd } = buildCausalLmGraph(model.dir, { quantize: mode === 'qlora' ? 'q4' : undefined });
const prog = compileTrainStep(fwd, {
  loss: { kind: 'cross_entropy', logits: 'logits', labels: 'labels', shift: true, ignoreIndex: -100 },
  trainable: { kind: 'lora', r: 8, alpha: 16, dropout: 0, targets: ['*_proj.weight'], seed: 1 },
  clipNorm: 1,
  optimizer: { kind: 'adamw', weightDecay: 0.01 },
});
const built = rss();
const weightMiB = Math.round([...prog.step.graph.initializers.values()].reduce((s, t) => s + t.data.byteLength, 0) / 2 ** 20);
const session = await createSession(prog.step, { threads });
const withSession = rss();
await session.release();
console.log(
  JSON.stringify({
    mode,
    stepGraphInitializersMiB: weightMiB,
    rssStartMiB: start,
    rssAfterBuildMiB: built,
    rssAfterSessionMiB: withSession,
    sessionMiB: withSession - built,
  }),
);
