/**
 * Opt-in benchmark (not part of npm test): what a replica's stop costs the clients of a load-balanced service, with
 * and without `--drain`. Two replicas of one exported classifier (createModelServer, as `tempered serve` builds it)
 * stand behind a small HTTP load balancer of the usual kind: it sends each request to a replica it holds healthy
 * (round robin, keep-alive connections to each), checks `GET /health` every `health-ms` and takes a replica out at its
 * first answer other than 200, and does not retry a POST that failed (nginx does not, by default). Clients keep
 * `/predict` requests going through it on keep-alive connections; one replica is told to stop mid-stream.
 *
 *   node --import tsx bench/serve-drain.bench.ts [--clients 40] [--health-ms 500] [--drains 0,1500] [--rounds 3] [--seconds 3]
 *
 * The variants alternate round by round. A failed request is a non-200 answer or a connection error at the client.
 * In one process: the numbers are counts, not timings, so sharing one event loop does not bend them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { syntheticRows } from '../src/finetune/synthetic-text.testing.ts';
import { createModelServer, type ModelServer } from '../src/serve/server.ts';
import { loadPooledPredictor } from '../src/serve/worker-pool.ts';
import { flag } from './common.ts';
import { exportTinyClassifier } from '../src/serve/tiny-classifier.testing.ts';

const clients = Number(flag('clients', '40'));
const healthMs = Number(flag('health-ms', '500'));
const drains = flag('drains', '0,1500').split(',').map(Number);
const rounds = Number(flag('rounds', '3'));
const seconds = Number(flag('seconds', '3'));
const TOKEN = 'bench-token-123456';
const root = mkdtempSync(join(tmpdir(), 'bench-drain-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const outDir = await exportTinyClassifier(root, { hidden: 64, layers: 2, threads: 1 });
const texts = syntheticRows(64, 7).map((r) => r.text);

async function replica(drainMs: number): Promise<{ server: ModelServer; port: number }> {
  const server = await createModelServer({
    token: TOKEN,
    pollMs: 3_600_000,
    drainMs,
    resolveCurrent: async () => ({
      key: 'bench@1',
      load: async () => {
        const p = await loadPooledPredictor(outDir, { threads: 1, workers: 1 });
        return { id: 'bench@1', labels: p.labels, predict: (t) => p.predict(t), close: () => p.close() };
      },
    }),
  });
  const url = new URL(await server.listen());
  return { server, port: Number(url.port) };
}

/** The load balancer: round robin over the replicas its health checks hold healthy; a failed forward is a 502. */
async function balancer(ports: number[]): Promise<{ port: number; close(): Promise<void> }> {
  const healthy = new Set(ports);
  const agents = new Map(ports.map((p) => [p, new Agent({ keepAlive: true, maxSockets: 256 })]));
  let turn = 0;
  const checking = setInterval(() => {
    for (const port of ports) {
      const req = request({ host: '127.0.0.1', port, path: '/health', agent: false }, (res) => {
        res.resume();
        if (res.statusCode === 200) healthy.add(port);
        else healthy.delete(port);
      });
      req.on('error', () => healthy.delete(port));
      req.end();
    }
  }, healthMs);
  const server: Server = createServer((inReq, outRes) => {
    const up = [...healthy];
    if (up.length === 0) return void outRes.writeHead(503).end('no healthy replica');
    const port = up[turn++ % up.length]!;
    const fwd = request(
      { host: '127.0.0.1', port, path: inReq.url, method: inReq.method, headers: inReq.headers, agent: agents.get(port) },
      (res: IncomingMessage) => {
        // The replica's Connection: close is about its own connection to the balancer, not the client's.
        const { connection: _c, 'keep-alive': _k, ...headers } = res.headers;
        outRes.writeHead(res.statusCode ?? 502, headers);
        res.pipe(outRes);
      },
    );
    fwd.on('error', () => {
      if (!outRes.headersSent) outRes.writeHead(502).end('upstream failed');
      else outRes.destroy();
    });
    inReq.pipe(fwd);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('the balancer has no TCP port');
  return {
    port: address.port,
    close: async () => {
      clearInterval(checking);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      for (const a of agents.values()) a.destroy();
    },
  };
}

interface Outcome {
  requests: number;
  failed: number;
  kinds: Map<string, number>;
  stopMs: number;
}

async function round(drainMs: number): Promise<Outcome> {
  const a = await replica(drainMs);
  const b = await replica(drainMs);
  const lb = await balancer([a.port, b.port]);
  const url = `http://127.0.0.1:${lb.port}/predict`;
  let requests = 0;
  let failed = 0;
  const kinds = new Map<string, number>();
  const fail = (kind: string) => {
    failed++;
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
  };
  let going = true;
  const load = Array.from({ length: clients }, async (_, c) => {
    for (let i = c; going; i += clients) {
      requests++;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ inputs: [texts[i % texts.length]] }),
        });
        const body = await res.text();
        if (res.status !== 200) fail(`${res.status} ${body.slice(0, 60)}`);
      } catch (e) {
        fail(`client: ${((e as Error).cause as Error | undefined)?.message ?? (e as Error).message}`);
      }
    }
  });
  await sleep(1000);
  const t = performance.now();
  await a.server.close();
  const stopMs = performance.now() - t;
  await sleep(Math.max(0, seconds * 1000 - 1000 - stopMs));
  going = false;
  await Promise.all(load);
  await lb.close();
  await b.server.close();
  return { requests, failed, kinds, stopMs };
}

console.log(
  `${clients} keep-alive clients through a balancer checking /health every ${healthMs} ms; two replicas, one stopped 1 s in; ${rounds} rounds, variants alternating`,
);
const seen = new Map<number, Outcome[]>();
for (let r = 0; r < rounds; r++)
  for (const d of r % 2 ? [...drains].reverse() : drains) {
    const o = await round(d);
    seen.set(d, [...(seen.get(d) ?? []), o]);
    console.log(
      `drain ${String(d).padStart(5)} ms: ${o.failed} of ${o.requests} requests failed (stop took ${(o.stopMs / 1000).toFixed(2)} s)${
        o.failed ? `: ${[...o.kinds].map(([k, n]) => `${n}× ${k}`).join('; ')}` : ''
      }`,
    );
  }
console.log('\nfailed requests per stop, each round:');
for (const d of drains)
  console.log(
    `drain ${String(d).padStart(5)} ms: ${seen
      .get(d)!
      .map((o) => o.failed)
      .join(', ')}`,
  );
