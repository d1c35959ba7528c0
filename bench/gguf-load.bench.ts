/**
 * Loading SmolLM2-135M-Instruct (Q4_1 GGUF, 134.5 M parameters) into float32 weights in Hugging Face layout:
 * tempered's loader (readGguf + dequantize + Q/K un-permute, via Weights.read) against transformers'
 * AutoModelForCausalLM.from_pretrained(gguf_file=, dtype=float32), each in a fresh process: wall and CPU time, peak RSS.
 * On a shared machine the CPU time is the steadier figure.
 *
 *   nice node --import tsx bench/gguf-load.bench.ts [rounds=3]
 *
 * The model comes from the model cache (resolved first, so downloading is not timed); the reference needs bench/.venv.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, referenceEnv } from './common.ts';
import { DEFAULT_LLM, resolveModelSource } from '../src/models/sources.ts';
import { Weights } from '../src/models/weights.ts';

if (process.argv[2] === '--child') {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const w = Weights.read(process.argv[3]!);
  const ms = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const cpuMs = (c.user + c.system) / 1000;
  let n = 0;
  for (const v of w.map.values()) n += v.data.length;
  console.log(JSON.stringify({ ms, cpuMs, params: n, maxRssMiB: process.resourceUsage().maxRSS / 1024 }));
  process.exit(0);
}

const rounds = Number(process.argv[2] ?? 3);
const m = await resolveModelSource(DEFAULT_LLM);
const python = join(import.meta.dirname, '.venv', 'bin', 'python');
const REF = `
import json, resource, sys, time, torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM
t0 = time.perf_counter()
c0 = time.process_time()
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], gguf_file=sys.argv[2], dtype=torch.float32)
ms = (time.perf_counter() - t0) * 1000
cpu_ms = (time.process_time() - c0) * 1000
print(json.dumps({'ms': ms, 'cpuMs': cpu_ms, 'params': sum(p.numel() for p in model.parameters()), 'maxRssMiB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
`;
// transformers would read tempered's sidecar tokenizer/config files from the cache folder: give it the GGUF alone.
const clean = mkdtempSync(join(tmpdir(), 'gguf-ref-'));
symlinkSync(m.ggufPath!, join(clean, 'model.gguf'));

type Row = { ms: number; cpuMs: number; params: number; maxRssMiB: number };
const ours: Row[] = [];
const ref: Row[] = [];
for (let r = 0; r < rounds; r++) {
  const a = spawnSync(process.execPath, [...process.execArgv, import.meta.filename, '--child', m.dir], { encoding: 'utf8' });
  if (a.status !== 0) throw new Error(a.stderr);
  ours.push(JSON.parse(a.stdout.trim().split('\n').pop()!) as Row);
  if (existsSync(python)) {
    const b = spawnSync(python, ['-c', REF, clean, 'model.gguf'], { encoding: 'utf8', env: referenceEnv() });
    if (b.status !== 0) throw new Error(b.stderr);
    ref.push(JSON.parse(b.stdout.trim().split('\n').pop()!) as Row);
  }
}
const fmt = (rows: Row[]) =>
  `load ${median(rows.map((x) => x.ms)).toFixed(0)} ms (runs ${rows.map((x) => x.ms.toFixed(0)).join(', ')}), CPU ${median(rows.map((x) => x.cpuMs)).toFixed(0)} ms, peak RSS ${median(rows.map((x) => x.maxRssMiB)).toFixed(0)} MiB, ${rows[0]!.params} parameters`;
console.log(`tempered Weights.read (GGUF → float32): ${fmt(ours)}`);
if (ref.length) {
  console.log(`transformers from_pretrained(gguf_file=): ${fmt(ref)}`);
  console.log(
    `ratio (reference / tempered): CPU time ${(median(ref.map((x) => x.cpuMs)) / median(ours.map((x) => x.cpuMs))).toFixed(2)}x, wall time ${(median(ref.map((x) => x.ms)) / median(ours.map((x) => x.ms))).toFixed(2)}x, peak RSS ${(median(ref.map((x) => x.maxRssMiB)) / median(ours.map((x) => x.maxRssMiB))).toFixed(2)}x`,
  );
} else console.log('(no bench/.venv: reference skipped)');
