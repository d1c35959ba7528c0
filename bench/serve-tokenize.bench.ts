/**
 * Opt-in benchmark (not part of npm test): `/health` latency while prompts that are slow to tokenize arrive, with
 * tokenizing on the server's own thread (how `tempered serve` ran before 6 Dec) against the pool's encoder thread
 * (src/serve/encoder-thread.ts). SmolLM2-135M-Instruct's tokenizer; each prompt is one word of `chars` letters, a
 * single BPE pre-token, more tokens than the model's context, so the server answers 400 context_length_exceeded once
 * it has tokenized it: the requests cost tokenizing only, no generation.
 *
 *   nice node --import tsx bench/serve-tokenize.bench.ts [requests=6] [chars=128000] [rounds=2]
 *
 * One client sends the requests one after another; a prober asks `/health` every 20 ms meanwhile. The variants
 * alternate for `rounds` rounds.
 */
import { loadTextGenerator } from '../src/generate/text-generator.ts';
import { DEFAULT_LLM, resolveModelSource } from '../src/models/sources.ts';
import { loadPooledTextGenerator } from '../src/serve/generation-pool.ts';
import { createModelServer } from '../src/serve/server.ts';
import type { TextGenerator } from '../src/serve/types.ts';
import { median, probeHealth } from './common.ts';

const [requests, chars, rounds] = [6, 128_000, 2].map((d, i) => Number(process.argv[2 + i] ?? d)) as [number, number, number];
const TOKEN = 'bench-token-123456';
const model = await resolveModelSource(DEFAULT_LLM);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function start(label: string, load: () => Promise<TextGenerator>) {
  const server = await createModelServer({ token: TOKEN, pollMs: 3_600_000, resolveCurrent: async () => ({ key: label, load }) });
  const url = await server.listen();
  const post = (prompt: string) =>
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, max_tokens: 1 }),
    });
  return { label, server, url, post };
}

async function round(s: Awaited<ReturnType<typeof start>>) {
  const took: number[] = [];
  const prober = probeHealth(s.url);
  for (let i = 0; i < requests; i++) {
    const t = performance.now();
    const r = await s.post(String.fromCharCode(97 + (i % 26)).repeat(chars));
    const body = (await r.json()) as { error?: { code: string } };
    if (r.status !== 400 || body.error?.code !== 'context_length_exceeded') throw new Error(`status ${r.status}: ${JSON.stringify(body)}`);
    took.push(performance.now() - t);
  }
  const health = await prober.stop();
  const r = { request: median(took), h50: pct(health, 50), h99: pct(health, 99), hmax: Math.max(...health), probes: health.length };
  console.log(
    `${s.label.padEnd(10)} a request ${r.request.toFixed(0)} ms (median)  /health p50 ${r.h50.toFixed(1)} ms, p99 ${r.h99.toFixed(1)} ms, max ${r.hmax.toFixed(0)} ms (${r.probes} probes)`,
  );
  return r;
}

console.log(`SmolLM2-135M-Instruct's tokenizer, ${requests} prompts of one ${chars}-letter word per round, ${rounds} rounds`);
const servers = [
  await start('in-thread', () => loadTextGenerator(model.dir, { id: 'bench@1', threads: 1 })),
  await start('encoder', () => loadPooledTextGenerator(model.dir, { id: 'bench@1', threads: 1 })),
];
for (const s of servers) await (await s.post('warm up')).arrayBuffer();
for (let r = 1; r <= rounds; r++) for (const s of r % 2 ? servers : [...servers].reverse()) await round(s);
for (const s of servers) await s.server.close();
