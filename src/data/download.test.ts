import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { ingest } from './ingest.ts';

const body = ['{"text": "hello", "label": "a"}', '{"text": "world", "label": "b"}'].join('\n') + '\n';
const sha = createHash('sha256').update(body).digest('hex');

async function serve(): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/data/train.jsonl') { res.writeHead(200); res.end(body); } else { res.writeHead(404); res.end('nope'); }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return { server, base: `http://127.0.0.1:${addr.port}` };
}

test('URL source: downloaded, verified against sha256, provenance is the URL, temp file removed', async () => {
  const { server, base } = await serve();
  try {
    const dir = mkdtempSync(join(tmpdir(), 'dl-'));
    const opts = { baseDir: '/nonexistent', outPath: join(dir, 'o.arrow'), quarantinePath: join(dir, 'q.arrow') };
    const r = await ingest({ path: `${base}/data/train.jsonl`, sha256: sha, task: 'classification' }, opts);
    assert.equal(r.rowsOut, 2);
    assert.deepEqual(r.sourceFiles, [{ path: `${base}/data/train.jsonl`, sha256: sha, bytes: body.length }]);
    assert.deepEqual(readdirSync(dir).sort(), ['o.arrow', 'q.arrow']);

    const wrong = 'f'.repeat(64);
    const empty = mkdtempSync(join(tmpdir(), 'dl-'));
    const o2 = { ...opts, outPath: join(empty, 'o.arrow'), quarantinePath: join(empty, 'q.arrow') };
    await assert.rejects(ingest({ path: `${base}/data/train.jsonl`, sha256: wrong, task: 'classification' }, o2), (e: unknown) => e instanceof InputError && e.where === 'sha256' && e.message.includes(sha));
    await assert.rejects(ingest({ path: `${base}/data/train.jsonl`, task: 'classification' }, o2), (e: unknown) => e instanceof InputError && e.where === 'sha256');
    await assert.rejects(ingest({ path: `${base}/missing.jsonl`, sha256: sha, task: 'classification' }, o2), (e: unknown) => e instanceof InputError && /404/.test(e.message));
    assert.deepEqual(readdirSync(empty), []);
  } finally {
    server.close();
  }
});
