/**
 * Model downloads against hostile servers on loopback: a stalled body is a broken connection that
 * resumes, a body larger than its pinned size (or the cap) is cut off and removed, and a redirect
 * to another origin over plain http is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IntegrityError, InputError } from '../errors.ts';
import { downloadFile } from './download.ts';

async function serve(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<{ server: Server; base: string; open: ServerResponse[] }> {
  const open: ServerResponse[] = [];
  const server = createServer((req, res) => {
    open.push(res);
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${(server.address() as { port: number }).port}`, open };
}

const body = Buffer.from('weights '.repeat(512));
const sha = createHash('sha256').update(body).digest('hex');

test('a stalled body counts as a broken connection: the next attempt resumes with a Range request', { timeout: 60_000 }, async () => {
  let calls = 0;
  const s = await serve((req, res) => {
    calls++;
    if (calls === 1) {
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, 1000));
      return;
    } // then silence
    const from = Number(/bytes=(\d+)-/.exec(req.headers.range ?? '')?.[1] ?? 0);
    res.writeHead(206, { 'content-length': String(body.length - from) });
    res.end(body.subarray(from));
  });
  try {
    const dest = join(mkdtempSync(join(tmpdir(), 'mdl-')), 'w.bin');
    const d = await downloadFile(`${s.base}/w.bin`, dest, { expected: { sha256: sha }, idleMs: 300, retries: 2 });
    assert.equal(d.resumed, 1);
    assert.deepEqual(readFileSync(dest), body);
  } finally {
    for (const r of s.open) r.destroy();
    s.server.close();
  }
});

test('a body larger than the pinned size or the cap is cut off and removed', { timeout: 60_000 }, async () => {
  const s = await serve((req, res) => {
    if (req.url === '/declared') {
      res.writeHead(200, { 'content-length': String(body.length) });
      res.end(body);
      return;
    }
    res.writeHead(200); // no length: an endless stream, as far as the client can tell
    res.write(body);
    res.end(body);
  });
  try {
    const dir = mkdtempSync(join(tmpdir(), 'mdl-'));
    await assert.rejects(
      downloadFile(`${s.base}/endless`, join(dir, 'a'), { expected: { sha256: sha, bytes: body.length } }),
      (e: unknown) => e instanceof IntegrityError && /more than \d+ bytes/.test(e.message),
    );
    assert.equal(existsSync(join(dir, 'a.part')), false);
    await assert.rejects(
      downloadFile(`${s.base}/declared`, join(dir, 'b'), { expected: { sha256: sha }, maxBytes: 100 }),
      (e: unknown) => e instanceof IntegrityError && /the download limit/.test(e.message),
    );
    await assert.rejects(
      downloadFile(`${s.base}/endless`, join(dir, 'c'), { expected: { sha256: sha }, maxBytes: body.length + 10 }),
      IntegrityError,
    );
    assert.equal(existsSync(join(dir, 'c.part')), false);
  } finally {
    s.server.close();
  }
});

test('redirects: followed within the origin, refused to another origin over plain http', { timeout: 60_000 }, async () => {
  const other = await serve((_req, res) => {
    res.writeHead(200);
    res.end(body);
  });
  const s = await serve((req, res) => {
    if (req.url === '/moved') {
      res.writeHead(302, { location: '/real' });
      res.end();
    } else if (req.url === '/away') {
      res.writeHead(302, { location: `${other.base}/x` });
      res.end();
    } else {
      res.writeHead(200);
      res.end(body);
    }
  });
  try {
    const dir = mkdtempSync(join(tmpdir(), 'mdl-'));
    const d = await downloadFile(`${s.base}/moved`, join(dir, 'a'), { expected: { sha256: sha } });
    assert.equal(d.sha256, sha);
    await assert.rejects(
      downloadFile(`${s.base}/away`, join(dir, 'b'), { expected: { sha256: sha } }),
      (e: unknown) => e instanceof InputError && /another origin over plain http/.test(e.message),
    );
  } finally {
    s.server.close();
    other.server.close();
  }
});

test('errors name a presigned or userinfo URL without its credentials', { timeout: 60_000 }, async () => {
  const s = await serve((_req, res) => {
    res.writeHead(403);
    res.end();
  });
  try {
    const dir = mkdtempSync(join(tmpdir(), 'mdl-'));
    const host = s.base.replace('http://', '');
    for (const [url, shown] of [
      [
        `${s.base}/m.gguf?X-Amz-Credential=AKIDSECRET&X-Amz-Signature=SIGSECRET`,
        `${s.base}/m.gguf?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED answered 403`,
      ],
      // fetch refuses a URL with userinfo, and its own message quotes it.
      [`http://u:PWSECRET@${host}/m.gguf`, `cannot reach http://REDACTED@${host}/m.gguf: `],
    ])
      await assert.rejects(downloadFile(url!, join(dir, 'm'), { expected: { sha256: sha }, retries: 0 }), (e: unknown) => {
        assert.ok((e as Error).message.includes(shown!), (e as Error).message);
        assert.doesNotMatch((e as Error).message, /SECRET/);
        return true;
      });
  } finally {
    s.server.close();
  }
});
