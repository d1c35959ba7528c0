/**
 * Opt-in benchmark (not part of npm test): `/health` latency while `/v1/completions` generations keep
 * the model busy, generation on the server's own thread (how `tempered serve` ran before) against the
 * generation worker thread (src/serve/generation-pool.ts). Same tiny LLaMA, same server code otherwise.
 *
 *   nice node --import tsx bench/serve-generate.bench.ts [requests=12] [clients=2] [hidden=256] [layers=6] [newTokens=64] [rounds=2] [threads=2]
 *
 * `clients` clients send `requests` greedy completions in all (the gate runs one at a time and queues
 * the rest); a prober asks `/health` every 20 ms meanwhile. The variants alternate for `rounds` rounds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTextGenerator } from '../src/generate/text-generator.ts';
import { tinyLlamaDir } from '../src/models/tiny.testing.ts';
import { loadPooledTextGenerator } from '../src/serve/generation-pool.ts';
import { createModelServer } from '../src/serve/server.ts';
import type { TextGenerator } from '../src/serve/types.ts';
import { probeHealth } from './common.ts';

const [requests, clients, hidden, layers, newTokens, rounds, threads] = [12, 2, 256, 6, 64, 2, 2].map((d, i) =>
  Number(process.argv[2 + i] ?? d),
) as [number, number, number, number, number, number, number];
const TOKEN = 'bench-token-123456';
const root = mkdtempSync(join(tmpdir(), 'bench-serve-gen-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const dir = tinyLlamaDir(join(root, 'm'), 1, { hidden, layers, heads: Math.max(1, hidden / 64), maxPositions: 512 });
const prompts = ['The cat sat on', 'A film about', 'Call now to win', 'Once upon a time', 'The plot was', 'Reply stop to'];

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const med = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
};

async function start(label: string, load: () => Promise<TextGenerator>) {
  const server = await createModelServer({
    token: TOKEN,
    pollMs: 3_600_000,
    resolveCurrent: async () => ({ key: label, load }),
    generation: { maxConcurrent: 1, maxQueue: 64 },
  });
  const url = await server.listen();
  const post = (prompt: string) =>
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, max_tokens: newTokens, temperature: 0 }),
    });
  await (await post(prompts[0]!)).arrayBuffer(); // warm-up
  return { label, server, url, post };
}

interface Round {
  rps: number;
  p50: number;
  p99: number;
  h50: number;
  h99: number;
  probes: number;
}

async function round(s: Awaited<ReturnType<typeof start>>): Promise<Round> {
  const lat: number[] = [];
  let next = 0;
  const prober = probeHealth(s.url);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < requests) {
        const i = next++;
        const t = performance.now();
        const r = await s.post(prompts[i % prompts.length]!);
        await r.arrayBuffer();
        if (r.status !== 200) throw new Error(`status ${r.status}`);
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const health = await prober.stop();
  const r = {
    rps: requests / secs,
    p50: pct(lat, 50),
    p99: pct(lat, 99),
    h50: pct(health, 50),
    h99: pct(health, 99),
    probes: health.length,
  };
  console.log(
    `${s.label.padEnd(10)} ${r.rps.toFixed(2)} generations/s  p50 ${r.p50.toFixed(0)} ms  p99 ${r.p99.toFixed(0)} ms  /health p50 ${r.h50.toFixed(1)} ms p99 ${r.h99.toFixed(1)} ms (${r.probes} probes)`,
  );
  return r;
}

console.log(
  `tiny LLaMA hidden ${hidden}, ${layers} layers, ${newTokens} new tokens per request, ${clients} clients, ${requests} requests per round, ${threads} onnxruntime threads, ${rounds} rounds`,
);
const servers = [
  await start('in-thread', () => loadTextGenerator(dir, { id: 'bench@1', threads })),
  await start('thread', () => loadPooledTextGenerator(dir, { id: 'bench@1', threads })),
];
const seen = new Map<string, Round[]>();
for (let r = 1; r <= rounds; r++)
  for (const s of r % 2 ? servers : [...servers].reverse()) seen.set(s.label, [...(seen.get(s.label) ?? []), await round(s)]);
console.log(`\nmedian of ${rounds} rounds:`);
for (const s of servers) {
  const rs = seen.get(s.label)!;
  const m = (f: keyof Round) => med(rs.map((x) => x[f]));
  console.log(
    `${s.label.padEnd(10)} ${m('rps').toFixed(2)} generations/s (p50 ${m('p50').toFixed(0)}, p99 ${m('p99').toFixed(0)} ms)  /health p50 ${m('h50').toFixed(1)} ms, p99 ${m('h99').toFixed(1)} ms`,
  );
}
for (const s of servers) await s.server.close();
