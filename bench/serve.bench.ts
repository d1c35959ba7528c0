/**
 * Opt-in benchmark (not part of npm test): `/predict` throughput and latency at several client
 * concurrencies, inference on the server's own thread (how `tempered serve` ran before) against the
 * worker-thread pool with dynamic batching (src/serve/worker-pool.ts), and /health latency measured
 * meanwhile by a prober. Same exported classifier, same server code otherwise.
 *
 *   node --import tsx bench/serve.bench.ts [requests=200] [concurrency=1,8,32] [hidden=128] [layers=4] [threads=2] [rounds=2]
 *
 * Both servers are up at once and the variants alternate at each level for `rounds` rounds, so a slow
 * stretch of a shared machine hits both; the summary gives the median over rounds and the ratio.
 *
 * Each request classifies one text. The model is a randomly initialised BERT of the given size with a
 * classifier head, exported after two training steps (the weights do not matter for speed).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPredictor } from '../src/finetune/predictor.ts';
import { syntheticRows } from '../src/finetune/synthetic-text.testing.ts';
import { createModelServer } from '../src/serve/server.ts';
import type { Predictor } from '../src/serve/types.ts';
import { loadPooledPredictor } from '../src/serve/worker-pool.ts';
import { probeHealth } from './common.ts';
import { exportTinyClassifier } from '../src/serve/tiny-classifier.testing.ts';

const requests = Number(process.argv[2] ?? 200);
const levels = (process.argv[3] ?? '1,8,32').split(',').map(Number);
const hidden = Number(process.argv[4] ?? 128);
const layers = Number(process.argv[5] ?? 4);
const threads = Number(process.argv[6] ?? 2);
const rounds = Number(process.argv[7] ?? 2);
const TOKEN = 'bench-token-123456';
const root = mkdtempSync(join(tmpdir(), 'bench-serve-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const outDir = await exportTinyClassifier(root, { hidden, layers, threads });
const texts = syntheticRows(256, 7).map((r) => r.text);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

interface Level {
  rps: number;
  p50: number;
  p99: number;
  health99: number;
}

async function startServer(label: string, load: () => Promise<Predictor>) {
  const server = await createModelServer({ token: TOKEN, pollMs: 3_600_000, resolveCurrent: async () => ({ key: label, load }) });
  const url = await server.listen();
  const post = (text: string) =>
    fetch(`${url}/predict`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [text] }),
    });
  await Promise.all(texts.slice(0, 8).map(post)); // warm-up
  return { label, server, url, post };
}

async function level(s: Awaited<ReturnType<typeof startServer>>, c: number): Promise<Level> {
  const lat: number[] = [];
  let next = 0,
    failed = 0;
  const prober = probeHealth(s.url);
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async () => {
      while (next < requests) {
        const i = next++;
        const t = performance.now();
        const r = await s.post(texts[i % texts.length]!);
        await r.arrayBuffer();
        if (r.status !== 200) failed++;
        lat.push(performance.now() - t);
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  const health = await prober.stop();
  const batches = (s.server.model.current as { stats?: () => { batches: number } }).stats?.().batches;
  const out = { rps: requests / secs, p50: pct(lat, 50), p99: pct(lat, 99), health99: pct(health, 99) };
  console.log(
    `${s.label.padEnd(10)} c=${String(c).padEnd(3)} ${out.rps.toFixed(1).padStart(7)} req/s  p50 ${out.p50.toFixed(1)} ms  p99 ${out.p99.toFixed(1)} ms  /health p50 ${pct(health, 50).toFixed(1)} ms p99 ${out.health99.toFixed(1)} ms (${health.length} probes)${failed ? `  ${failed} failed` : ''}${batches !== undefined ? `  batches so far ${batches}` : ''}`,
  );
  return out;
}

console.log(
  `BERT hidden ${hidden}, ${layers} layers, maxLength 64, ${threads} onnxruntime threads, ${requests} one-text requests per level, ${rounds} alternating rounds`,
);
const servers = [
  await startServer('in-thread', async () => {
    const p = await loadPredictor(outDir, { threads });
    return { id: 'bench@1', labels: p.labels, predict: (t) => p.predict(t), close: () => p.close() };
  }),
  await startServer('pool', async () => {
    const p = await loadPooledPredictor(outDir, { threads, workers: 1 });
    return { id: 'bench@1', labels: p.labels, predict: (t) => p.predict(t), stats: () => p.stats(), close: () => p.close() };
  }),
];
const seen = new Map<string, Level[]>();
for (let round = 1; round <= rounds; round++)
  for (const c of levels)
    for (const s of round % 2 ? servers : [...servers].reverse()) {
      const k = `${s.label} ${c}`;
      seen.set(k, [...(seen.get(k) ?? []), await level(s, c)]);
    }
const med = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return (s[(s.length - 1) >> 1]! + s[s.length >> 1]!) / 2;
};
console.log(`\nmedian of ${rounds} rounds (pool / in-thread):`);
for (const c of levels) {
  const [a, b] = servers.map((s) => seen.get(`${s.label} ${c}`)!);
  const m = (ls: Level[], f: keyof Level) => med(ls.map((l) => l[f]));
  console.log(
    `c=${String(c).padEnd(3)} in-thread ${m(a!, 'rps').toFixed(1)} req/s (p50 ${m(a!, 'p50').toFixed(1)}, p99 ${m(a!, 'p99').toFixed(1)} ms, /health p99 ${m(a!, 'health99').toFixed(1)} ms)  ` +
      `pool ${m(b!, 'rps').toFixed(1)} req/s (p50 ${m(b!, 'p50').toFixed(1)}, p99 ${m(b!, 'p99').toFixed(1)} ms, /health p99 ${m(b!, 'health99').toFixed(1)} ms)  ` +
      `ratio ${(m(b!, 'rps') / m(a!, 'rps')).toFixed(2)}x`,
  );
}
for (const s of servers) await s.server.close();
