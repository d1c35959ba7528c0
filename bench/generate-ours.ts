/**
 * tempered side of bench/generate.bench.ts, in its own process so its peak RSS is its own. Prints one JSON line.
 *   node --import tsx bench/generate-ours.ts <model dir> <threads> <inputs.json>
 */
import { readFileSync } from 'node:fs';
import { Decoder } from '../src/generate/decoder.ts';
import { generate } from '../src/generate/generate.ts';

const [dir, threadsArg, inputsPath] = process.argv.slice(2) as [string, string, string];
const inp = JSON.parse(readFileSync(inputsPath, 'utf8')) as {
  prefill: number[];
  repeats: number;
  batches: number[];
  prompts: number[][];
  new_tokens: number;
  /** A long prompt: the rate of generation after it, once its first token is out (0 tokens: not measured). */
  context: number[];
};
const t0 = performance.now();
const dec = await Decoder.load(dir, { threads: Number(threadsArg) });
const out: Record<string, unknown> = { load_s: (performance.now() - t0) / 1000 };
// The prompt pass a user's generation makes: generate() with one new token, so a long prompt goes in the chunks
// generate reads it in (PREFILL_SCORE_BYTES), not in one pass no user runs.
const prefill = async (ids: number[]) => generate(dec, [ids], { maxNewTokens: 1, eosTokenIds: [], temperature: 0 });
await prefill(inp.prefill.slice(0, 16)); // warm-up
const times: number[] = [];
for (let r = 0; r < inp.repeats; r++) {
  const t = performance.now();
  await prefill(inp.prefill);
  times.push((performance.now() - t) / 1000);
}
times.sort((a, b) => a - b);
out.prefill_tok_s = inp.prefill.length / times[times.length >> 1]!;
for (const batch of inp.batches) {
  const t = performance.now();
  const res = await generate(dec, inp.prompts.slice(0, batch), { maxNewTokens: inp.new_tokens, eosTokenIds: [] });
  const dt = (performance.now() - t) / 1000;
  if (res.some((r) => r.tokens.length !== inp.new_tokens)) throw new Error('a row ended early');
  out[`gen${batch}_tok_s`] = (batch * inp.new_tokens) / dt;
  out[`gen${batch}_first`] = res[0]!.tokens.slice(0, 8);
}
if (inp.context.length > 0) {
  let first = 0;
  let n = 0;
  const res = await generate(dec, [inp.context], {
    maxNewTokens: inp.new_tokens,
    eosTokenIds: [],
    onToken: () => void (n++ === 0 && (first = performance.now())),
  });
  out.ctx_decode_tok_s = (inp.new_tokens - 1) / ((performance.now() - first) / 1000);
  out.ctx_first = res[0]!.tokens.slice(0, 8);
}
await dec.close();
const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
out.peak_rss_mib = hwm ? Number(hwm[1]) / 1024 : null;
console.log(JSON.stringify(out));
