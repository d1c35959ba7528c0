/**
 * Opt-in benchmark (not part of npm test): the CPU time and peak RSS of the predictor's `predict` over many texts, with
 * the up-front check's encodings kept for the batches (KeptEncodings, the default since 8 Dec) against every text
 * tokenized again in its batch (how it ran before: `keepBytes: 0` is that path exactly), on the tiny classifier that
 * the serving tests answer with (exportTinyClassifier; `--hidden` / `--layers` make it larger).
 *
 *   nice node --import tsx bench/predict-check.bench.ts [--texts 40000] [--repeat 1] [--rounds 3] [--hidden 32] [--layers 2]
 *
 * Each side runs in a process of its own (peak RSS is the process's), the sides alternating for `rounds` rounds; CPU
 * time (user + system, one onnxruntime thread) is `predict`'s alone, steadier than wall time on a shared machine. The
 * texts are syntheticRows' (3-17 words), each `repeat` times over; both sides' logits are checked equal.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPredictor } from '../src/finetune/predictor.ts';
import { syntheticRows } from '../src/finetune/synthetic-text.testing.ts';
import { exportTinyClassifier } from '../src/serve/tiny-classifier.testing.ts';
import { flag, median } from './common.ts';

const n = Number(flag('texts', '40000'));
const repeat = Number(flag('repeat', '1'));
const texts = () => syntheticRows(n, 5).map((r) => Array.from({ length: repeat }, () => r.text).join(' '));

interface Side {
  cpuMs: number;
  wallMs: number;
  rssMiB: number;
  tokenized: number;
  logits: string;
}

if (process.argv[2] === '--child') {
  const [folder, keepBytes] = [process.argv[3]!, process.argv[4]];
  const all = texts();
  const p = await loadPredictor(folder, { threads: 1, keepBytes: keepBytes === 'default' ? undefined : Number(keepBytes) });
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const logits = await p.logits(all);
  const wallMs = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const side: Side = {
    cpuMs: (c.user + c.system) / 1000,
    wallMs,
    rssMiB: process.resourceUsage().maxRSS / 1024,
    tokenized: p.tokenized,
    logits: createHash('sha256')
      .update(new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength))
      .digest('hex'),
  };
  await p.close();
  process.stdout.write(JSON.stringify(side) + '\n');
  process.exit(0);
}

const rounds = Number(flag('rounds', '3'));
const root = mkdtempSync(join(tmpdir(), 'bench-predict-check-'));
try {
  const hidden = flag('hidden', '');
  const layers = flag('layers', '');
  const folder = await exportTinyClassifier(root, {
    hidden: hidden ? Number(hidden) : undefined,
    layers: layers ? Number(layers) : undefined,
  });
  const sides = [
    { label: 'tokenized again (before)', keep: '0' },
    { label: 'kept (after)', keep: 'default' },
  ];
  const got = new Map<string, Side[]>(sides.map((s) => [s.label, []]));
  for (let r = 0; r < rounds; r++)
    for (const s of sides) {
      const out = spawnSync(
        process.execPath,
        [...process.execArgv, process.argv[1]!, '--child', folder, s.keep, ...process.argv.slice(2)],
        {
          encoding: 'utf8',
        },
      );
      if (out.status !== 0) throw new Error(`${s.label}: ${out.stderr}`);
      got.get(s.label)!.push(JSON.parse(out.stdout.trim().split('\n').at(-1)!) as Side);
    }
  const hashes = new Set([...got.values()].flat().map((x) => x.logits));
  console.log(`${n} texts (×${repeat}), ${rounds} rounds, logits ${hashes.size === 1 ? 'identical' : 'DIFFER'} across sides`);
  const base = got.get(sides[0]!.label)!;
  for (const s of sides) {
    const xs = got.get(s.label)!;
    const m = (f: (x: Side) => number) => median(xs.map(f));
    console.log(
      `${s.label.padEnd(26)} texts tokenized ${xs[0]!.tokenized}  cpu ${m((x) => x.cpuMs).toFixed(0)} ms (${(m((x) => x.cpuMs) / median(base.map((x) => x.cpuMs))).toFixed(3)}×, each ${xs.map((x) => x.cpuMs.toFixed(0)).join('/')})  wall ${m((x) => x.wallMs).toFixed(0)} ms  peak RSS ${m((x) => x.rssMiB).toFixed(0)} MiB (each ${xs.map((x) => x.rssMiB.toFixed(0)).join('/')})`,
    );
  }
  if (hashes.size !== 1) process.exitCode = 1;
} finally {
  rmSync(root, { recursive: true, force: true });
}
