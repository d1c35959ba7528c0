/**
 * UndiciHttpHandler against a real HTTP server on a free port: the request the SDK built arrives as
 * signed (path, query escaped as SigV4 escapes it, headers), the body streams back, a connection
 * closed before the answer fails with the SDK's retry trait, a body cut off fails the body, and
 * anything but GET/HEAD is refused.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isTransientError } from '@smithy/core/retry';
import type { HttpRequest } from '@smithy/types';
import { UndiciHttpHandler } from './undici-http-handler.ts';

describe('UndiciHttpHandler', () => {
  let server: Server;
  let port: number;
  let last: IncomingMessage | undefined;
  const handler = new UndiciHttpHandler();

  before(async () => {
    server = createServer((req, res) => {
      last = req;
      if (req.url?.startsWith('/break')) {
        res.writeHead(200, { 'content-length': '1000000' });
        res.write(Buffer.alloc(1000));
        setTimeout(() => req.socket.destroy(), 20);
        return;
      }
      const body = Buffer.from(`you asked for ${req.url}`);
      res.writeHead(206, { 'content-length': String(body.length), etag: '"abc"', 'x-multi': ['a', 'b'] });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    handler.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  const request = (over: Partial<HttpRequest>): HttpRequest =>
    ({
      protocol: 'http:',
      hostname: '127.0.0.1',
      port,
      method: 'GET',
      path: '/bucket/key%20with%20space',
      query: {},
      headers: { range: 'bytes=0-9', 'x-amz-date': '20261204T000000Z' },
      ...over,
    }) as HttpRequest;

  it('sends the path, the query escaped as SigV4 signs it, and the headers; streams the body back', async () => {
    const { response } = await handler.handle(request({ query: { 'x-id': 'GetObject', odd: "a b!'()*", flag: null, many: ['2', '1'] } }));
    assert.equal(response.statusCode, 206);
    assert.equal(response.headers.etag, '"abc"');
    assert.equal(response.headers['x-multi'], 'a, b');
    const chunks: Buffer[] = [];
    for await (const c of response.body as AsyncIterable<Buffer>) chunks.push(c);
    const want = '/bucket/key%20with%20space?flag&many=2&many=1&odd=a%20b%21%27%28%29%2A&x-id=GetObject';
    assert.equal(Buffer.concat(chunks).toString(), `you asked for ${want}`);
    assert.equal(last?.headers.range, 'bytes=0-9');
    assert.equal(last?.headers['x-amz-date'], '20261204T000000Z');
  });

  it("a body cut off mid-answer fails with undici's socket error (the ranged download then asks for the rest); a refused connection is ECONNREFUSED, which the SDK retries by itself", async () => {
    const { response } = await handler.handle(request({ path: '/break' }));
    await assert.rejects(
      (async () => {
        for await (const _ of response.body as AsyncIterable<Buffer>) void _;
      })(),
      (e: unknown) => (e as { code?: string }).code === 'UND_ERR_SOCKET',
    );
    // A request whose connection is refused outright is the SDK's own transient case (ECONNREFUSED).
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const gone = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await assert.rejects(
      handler.handle(request({ port: gone })),
      (e: unknown) => (e as { code?: string }).code === 'ECONNREFUSED' && isTransientError(e as Parameters<typeof isTransientError>[0]),
    );
  });

  it('marks a socket that closes before the answer as retryable', async () => {
    const rude = createServer((req) => req.socket.destroy());
    await new Promise<void>((r) => rude.listen(0, '127.0.0.1', r));
    try {
      await assert.rejects(
        handler.handle(request({ port: (rude.address() as AddressInfo).port })),
        // The SDK's own retry decision, not just the trait: it must call this error transient.
        (e: unknown) => (e as { code?: string }).code === 'UND_ERR_SOCKET' && isTransientError(e as Parameters<typeof isTransientError>[0]),
      );
    } finally {
      await new Promise((r) => rude.close(r));
    }
  });

  it('refuses requests other than GET and HEAD (puts keep the SDK default handler)', async () => {
    await assert.rejects(handler.handle(request({ method: 'PUT', body: Buffer.from('x') })), /GET and HEAD requests only, not PUT/);
  });

  it(
    'a process that fetched through it exits by itself while the server still keeps the connection alive',
    { timeout: 60_000 },
    async () => {
      // The server would hold an idle keep-alive connection for 10 minutes: a CLI command that
      // downloaded something must not wait for that (undici unrefs idle sockets; this checks it).
      server.keepAliveTimeout = 600_000;
      const script = `
      import { UndiciHttpHandler } from ${JSON.stringify(new URL('./undici-http-handler.ts', import.meta.url).pathname)};
      const { response } = await new UndiciHttpHandler().handle({ protocol: 'http:', hostname: '127.0.0.1', port: ${port},
        method: 'GET', path: '/from-child', query: {}, headers: {} });
      for await (const _ of response.body) void _;
      console.log('fetched', response.statusCode);
    `;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d));
      const code = await new Promise((r) => child.on('exit', r));
      assert.equal(code, 0);
      assert.equal(out.trim(), 'fetched 206');
    },
  );
});
