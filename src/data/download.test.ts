import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { ingest } from './ingest.ts';
import { downloadVerified, DownloadStalled } from './download.ts';
import { sourceFilesAudit } from '../stages/ingest.ts';

const body = ['{"text": "hello", "label": "a"}', '{"text": "world", "label": "b"}'].join('\n') + '\n';
const sha = createHash('sha256').update(body).digest('hex');

async function serve(): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/data/train.jsonl') {
      res.writeHead(200);
      res.end(body);
    } else {
      res.writeHead(404);
      res.end('nope');
    }
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
    await assert.rejects(
      ingest({ path: `${base}/data/train.jsonl`, sha256: wrong, task: 'classification' }, o2),
      (e: unknown) => e instanceof InputError && e.where === 'sha256' && e.message.includes(sha),
    );
    await assert.rejects(
      ingest({ path: `${base}/data/train.jsonl`, task: 'classification' }, o2),
      (e: unknown) => e instanceof InputError && e.where === 'sha256',
    );
    await assert.rejects(
      ingest({ path: `${base}/missing.jsonl`, sha256: sha, task: 'classification' }, o2),
      (e: unknown) => e instanceof InputError && /404/.test(e.message),
    );
    assert.deepEqual(readdirSync(empty), []);
  } finally {
    server.close();
  }
});

/** A loopback server whose routes are small handlers; returns its base URL. */
async function serveRoutes(
  routes: Record<string, (res: import('node:http').ServerResponse) => void>,
): Promise<{ server: Server; base: string }> {
  const server = createServer((req, res) => {
    const h = routes[req.url ?? ''];
    if (h) h(res);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

test('downloads follow redirects within the origin only, cap the size and give up on a stalled body', { timeout: 60_000 }, async () => {
  const other = await serveRoutes({
    '/data.jsonl': (res) => {
      res.writeHead(200);
      res.end(body);
    },
  });
  const stalls: import('node:http').ServerResponse[] = [];
  const { server, base } = await serveRoutes({
    '/data.jsonl': (res) => {
      res.writeHead(200);
      res.end(body);
    },
    '/moved': (res) => {
      res.writeHead(302, { location: '/data.jsonl' });
      res.end();
    },
    '/away': (res) => {
      res.writeHead(302, { location: `${other.base}/data.jsonl` });
      res.end();
    },
    '/loop': (res) => {
      res.writeHead(302, { location: '/loop' });
      res.end();
    },
    '/big': (res) => {
      res.writeHead(200, { 'content-length': String(10_000) });
      res.end('x'.repeat(10_000));
    },
    '/endless': (res) => {
      res.writeHead(200);
      res.write('x'.repeat(6000));
      res.end('x'.repeat(6000));
    },
    '/stall': (res) => {
      res.writeHead(200);
      res.write('{"text"');
      stalls.push(res);
    },
  });
  try {
    const dir = mkdtempSync(join(tmpdir(), 'dl-'));
    const got = await downloadVerified(`${base}/moved`, sha, dir);
    assert.equal(got.bytes, body.length);
    rmSync(got.path);
    await assert.rejects(
      downloadVerified(`${base}/away`, sha, dir),
      (e: unknown) => e instanceof InputError && e.message.includes('another origin'),
    );
    await assert.rejects(
      downloadVerified(`${base}/loop`, sha, dir),
      (e: unknown) => e instanceof InputError && /redirects more than 5 times/.test(e.message),
    );
    await assert.rejects(
      downloadVerified(`${base}/big`, sha, dir, { maxBytes: 5000 }),
      (e: unknown) => e instanceof InputError && /larger than the 5000-byte download limit/.test(e.message),
    );
    await assert.rejects(
      downloadVerified(`${base}/endless`, sha, dir, { maxBytes: 5000 }),
      (e: unknown) => e instanceof InputError && /larger than the 5000-byte/.test(e.message),
    );
    await assert.rejects(
      downloadVerified(`${base}/stall`, sha, dir, { idleMs: 300 }),
      (e: unknown) => e instanceof DownloadStalled && !(e instanceof InputError),
    );
    assert.deepEqual(readdirSync(dir), [], 'no partial download is left behind');
  } finally {
    for (const r of stalls) r.destroy();
    server.close();
    other.server.close();
  }
});

test('a URL source with credentials (presigned query, user:password@) is fetched, and nothing it leaves names them', async () => {
  const presigned = 'X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDSECRETCRED%2F20261207&X-Amz-Signature=SIGSECRET123';
  const server = createServer((req, res) => {
    const basic = `Basic ${Buffer.from('alice:PASS@SECRET').toString('base64')}`;
    const ok = req.url === `/b/train.jsonl?${presigned}` || (req.url === '/basic/train.jsonl' && req.headers.authorization === basic);
    res.writeHead(ok ? 200 : 403);
    res.end(ok ? body : 'denied');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  const secrets = /SIGSECRET|AKIDSECRET|PASS@SECRET|PASS%40SECRET/;
  try {
    for (const [url, shown] of [
      [
        `http://${host}/b/train.jsonl?${presigned}`,
        `http://${host}/b/train.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED`,
      ],
      // fetch refuses a URL with userinfo ("cannot be constructed from a URL that includes credentials: <the URL>"):
      // it is sent as a Basic Authorization header, as curl does.
      [`http://alice:PASS%40SECRET@${host}/basic/train.jsonl`, `http://REDACTED@${host}/basic/train.jsonl`],
    ]) {
      const dir = mkdtempSync(join(tmpdir(), 'dl-cred-'));
      const outPath = join(dir, 'o.arrow');
      const quarantinePath = join(dir, 'q.arrow');
      const r = await ingest({ path: url!, sha256: sha, task: 'classification' }, { baseDir: '/nonexistent', outPath, quarantinePath });
      // The report (stored, shown by status and the dashboard) and the audit record made of it name host and path.
      assert.deepEqual(r.sourceFiles, [{ path: shown, sha256: sha, bytes: body.length }]);
      assert.doesNotMatch(JSON.stringify(sourceFilesAudit(r)), secrets);
      // Every row's _source, in the table and in those split from it.
      assert.ok(readFileSync(outPath).includes(Buffer.from(shown!)));
      assert.doesNotMatch(readFileSync(outPath).toString('latin1'), secrets);
    }
    // An error names the server and the file, never the signature.
    const dir = mkdtempSync(join(tmpdir(), 'dl-cred-'));
    for (const [url, why] of [
      [
        `http://${host}/b/train.jsonl?X-Amz-Signature=SIGSECRET999&a=1`,
        `GET http://${host}/b/train.jsonl?X-Amz-Signature=REDACTED&a=1 answered 403`,
      ],
      [
        `http://${host}/b/train.jsonl?${presigned}`,
        `http://${host}/b/train.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED has sha256`,
      ],
    ])
      await assert.rejects(downloadVerified(url!, url!.endsWith('a=1') ? sha : 'f'.repeat(64), dir), (e: unknown) => {
        assert.ok(e instanceof InputError, String(e));
        assert.ok(e.message.includes(why!), e.message);
        assert.doesNotMatch(e.message, secrets);
        return true;
      });
  } finally {
    server.close();
  }
});
