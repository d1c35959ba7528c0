/**
 * Data sources through real runs on a real dev server: a pipeline over an http source served on
 * loopback (keyed by its pinned sha256, so a rerun is a cache hit that fetches nothing), a source
 * that changes between the cache lookup and the read (its outputs must never be cached under the
 * old content's key), and a path that leaves the data roots (a non-retryable input error).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { submitRun, waitForRun } from '../client/runs.ts';
import { loadSpec } from '../src/spec/index.ts';
import { kindRegistry } from '../src/stages/stage-kinds.ts';
import { ingestStage } from '../src/stages/ingest.ts';
import { stageKinds as dedupeKinds } from '../src/stages/dedupe.ts';
import { stageKinds as splitKinds } from '../src/stages/split.ts';
import type { AnyStageKind } from '../src/stages/types.ts';
import type { RunStatus } from '../workflows/types.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let server: Server;
let base: string;
let requests = 0;
/** Runs inside the ingest activity after the cache lookup, before the stage reads its sources. */
let beforeRead: (() => void) | undefined;
const ingestKind: AnyStageKind = {
  ...ingestStage,
  run: async (cfg, ctx) => {
    beforeRead?.();
    return ingestStage.run(cfg, ctx);
  },
};

const rows = (n: number, tag: string) =>
  Array.from({ length: n }, (_, i) =>
    JSON.stringify({ text: `${tag} message number ${i} about ${i % 7} things`, label: i % 3 ? 'ham' : 'spam' }),
  ).join('\n') + '\n';
const body = rows(40, 'served');
const sha = createHash('sha256').update(body).digest('hex');

async function runFile(file: string): Promise<RunStatus> {
  const reg = kindRegistry(env.kinds);
  const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable });
  if (!res.ok) throw new Error(JSON.stringify(res.errors));
  const h = await submitRun(
    env.client,
    { plan: res.plan, options: { baseDir: dirname(file), actor: 'data-tester' } },
    { taskQueue: TEST_QUEUE },
  );
  return waitForRun(env.client, h.workflowId);
}

function pipeline(dir: string, ingestWith: string, more = true): string {
  const file = join(dir, 'pipeline.yaml');
  writeFileSync(
    file,
    `name: data-sources
stages:
  ingest:
    uses: ingest
    with:
${ingestWith
  .trim()
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}
      task: classification
${
  more
    ? `  dedupe:
    uses: dedupe
    needs: ingest
    with:
      table: \${{ stages.ingest.outputs.table }}
  split:
    uses: split
    needs: dedupe
    with:
      table: \${{ stages.dedupe.outputs.table }}
      seed: 3
`
    : ''
}`,
  );
  return file;
}

const states = (s: RunStatus) => Object.fromEntries(s.stages.map((x) => [x.id, x.state]));
const ingestOut = (s: RunStatus) => s.stages.find((x) => x.id === 'ingest')!;

before(async () => {
  server = createServer((req, res) => {
    requests++;
    if (req.url === '/train.jsonl') {
      res.writeHead(200);
      res.end(body);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  env = await startTestEnv(
    new Map<string, AnyStageKind>([
      ['ingest', ingestKind],
      ...[...dedupeKinds(), ...splitKinds()].map((k) => [k.kind, k] as [string, AnyStageKind]),
    ]),
  );
  await env.startWorker();
});
after(async () => {
  await env?.close();
  server?.close();
});

describe('data sources in real runs', () => {
  it('runs a whole pipeline over an http source pinned by sha256, and a rerun is a cache hit that fetches nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'url-'));
    const file = pipeline(dir, `path: ${base}/train.jsonl\nsha256: ${sha}`);
    const first = await runFile(file);
    assert.deepEqual(
      states(first),
      { ingest: 'succeeded', dedupe: 'succeeded', split: 'succeeded' },
      JSON.stringify(first.stages.map((s) => s.error)),
    );
    assert.equal(ingestOut(first).outputs!.rows, 40);
    assert.equal(requests, 1);
    const again = await runFile(file);
    assert.deepEqual(states(again), { ingest: 'cached', dedupe: 'cached', split: 'cached' });
    assert.equal(requests, 1, 'the cache key comes from the pin, not from fetching the file');
  });

  it('a wrong pin fails the ingest stage as an input error, without retries', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'url-'));
    const r = await runFile(pipeline(dir, `path: ${base}/train.jsonl\nsha256: ${'f'.repeat(64)}`, false));
    const st = ingestOut(r);
    assert.equal(st.state, 'failed');
    assert.equal(st.error?.type, 'InputError');
    assert.match(st.error!.message, new RegExp(`has sha256 ${sha}`));
  });

  it('a source that changes between the cache lookup and the read is never cached under the old key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'race-'));
    const data = join(dir, 'data.jsonl');
    const original = rows(10, 'original'),
      changed = rows(25, 'changed');
    writeFileSync(data, original);
    const file = pipeline(dir, 'path: data.jsonl', false);
    // The file is rewritten after the lookup hashed it, before the stage reads it.
    beforeRead = () => writeFileSync(data, changed);
    try {
      const raced = await runFile(file);
      assert.equal(ingestOut(raced).state, 'succeeded');
      assert.equal(ingestOut(raced).outputs!.rows, 25, 'the run used what it read');
    } finally {
      beforeRead = undefined;
    }
    writeFileSync(data, original);
    const back = await runFile(file);
    assert.equal(ingestOut(back).state, 'succeeded', 'the original content was not served from the cache');
    assert.equal(ingestOut(back).outputs!.rows, 10);
    writeFileSync(data, changed);
    const hit = await runFile(file);
    assert.equal(ingestOut(hit).state, 'cached', 'the raced outputs are cached under the key of what was read');
    assert.equal(ingestOut(hit).outputs!.rows, 25);
  });

  it('a path out of the data roots fails at once as an input error naming the setting', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'escape-'));
    const r = await runFile(pipeline(dir, `path: ${relative(dir, '/etc/passwd')}\nformat: csv\nheader: false\ncolumns: [text]`, false));
    const st = ingestOut(r);
    assert.equal(st.state, 'failed');
    assert.equal(st.error?.type, 'InputError');
    assert.match(st.error!.message, /outside the allowed data roots/);
    assert.match(st.error!.hint ?? '', /TEMPERED_DATA_ROOTS/);
  });
});
