/**
 * A long prompt read in chunks (generate's default: PREFILL_CHUNK_TOKENS, or fewer to keep a pass's attention
 * scores near 64 MiB) against the same prompt in one pass (`prefillChunkTokens` past its length), and against
 * chunks of each size `--chunks` lists, SmolLM2-135M-Instruct, one new token. Each variant runs in a process of its
 * own, alternating round by round, so each peak RSS (VmHWM) is that variant's alone; every variant must pick the
 * same token.
 *
 *   nice node --import tsx bench/prefill-chunks.bench.ts [--prompt 2000] [--batch 1] [--rounds 3] [--threads 2] [--chunks 128,512]
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Decoder } from '../src/generate/decoder.ts';
import { generate } from '../src/generate/generate.ts';
import { Rng } from '../src/engine/prng.ts';
import { DEFAULT_LLM, resolveModelSource } from '../src/models/sources.ts';
import { flag, median } from './common.ts';

const promptLen = Number(flag('prompt', '2000'));
const batch = Number(flag('batch', '1'));
const rounds = Number(flag('rounds', '3'));
const threads = Number(flag('threads', '2'));
const variant = process.argv.includes('--variant') ? flag('variant', '') : undefined;
const sizes = process.argv.includes('--chunks') ? flag('chunks', '').split(',').filter(Boolean) : [];

if (variant !== undefined) {
  // One variant, in this process: the prompt pass's time and the process's peak RSS, as JSON.
  const model = await resolveModelSource(DEFAULT_LLM);
  const rng = new Rng(7);
  const prompt = Array.from({ length: promptLen }, () => 100 + rng.int(48_900));
  const dec = await Decoder.load(model.dir, { threads });
  const t = performance.now();
  const results = await generate(
    dec,
    Array.from({ length: batch }, () => prompt),
    {
      maxNewTokens: 1,
      eosTokenIds: [],
      ...(variant === 'whole' ? { prefillChunkTokens: promptLen } : variant === 'chunks' ? {} : { prefillChunkTokens: Number(variant) }),
    },
  );
  const ms = performance.now() - t;
  await dec.close();
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  console.log(JSON.stringify({ ms, peak_rss_mib: hwm ? Number(hwm[1]) / 1024 : null, token: results[0]!.tokens[0] }));
} else {
  const run = (v: string) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', import.meta.filename, '--variant', v, ...process.argv.slice(2)], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
    });
    const last = r.stdout.trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !last.startsWith('{')) throw new Error(`${v}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    return JSON.parse(last) as { ms: number; peak_rss_mib: number; token: number };
  };
  const variants = ['chunks', 'whole', ...sizes];
  const got: Record<string, { ms: number; peak_rss_mib: number; token: number }[]> = Object.fromEntries(variants.map((v) => [v, []]));
  for (let r = 0; r < rounds; r++) for (const v of variants) got[v]!.push(run(v));
  if (new Set(Object.values(got).flatMap((xs) => xs.map((x) => x.token))).size !== 1)
    throw new Error('the variants picked different tokens');
  const fmt = (xs: number[], d = 0) => xs.map((x) => x.toFixed(d)).join(' / ');
  console.log(`SmolLM2-135M, a ${promptLen}-token prompt × ${batch}, ${threads} threads, ${rounds} alternating rounds`);
  for (const v of variants)
    console.log(
      `${(/^\d+$/.test(v) ? `by ${v}` : v).padEnd(8)}  prompt pass ${fmt(got[v]!.map((x) => x.ms))} ms   peak RSS ${fmt(got[v]!.map((x) => x.peak_rss_mib))} MiB`,
    );
  const ratio = median(got.whole!.map((x) => x.ms)) / median(got.chunks!.map((x) => x.ms));
  console.log(`chunks (the default) are ${ratio.toFixed(2)}× one pass (medians); the same first token in every variant`);
}
