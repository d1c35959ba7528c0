import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { clientErrorHandler, errorsToStderr } from './http-limits.ts';

test("the serve log writes errors with their stack, in each of pino's call shapes, and nothing below error", () => {
  const lines: string[] = [];
  const log = errorsToStderr((l) => lines.push(l));
  log.error(new Error('boom'));
  log.child({ reqId: 'r1' }).error({ err: new Error('bang') }, 'request failed');
  log.error('plain words');
  log.info('a request came');
  log.warn('a warning');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\S+Z Error: boom\n\s+at /);
  assert.match(lines[1]!, /Z request r1: request failed: Error: bang\n\s+at /);
  assert.match(lines[2]!, /Z plain words\n$/);
});

test('a connection that timed out without sending a byte is closed unanswered and uncounted; one that sent part of a request gets its 408', async (t) => {
  // Real sockets; the error is the one Node's connection check raises for them (ERR_HTTP_REQUEST_TIMEOUT).
  const accepted: Socket[] = [];
  const server = createServer((s) => void accepted.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => void server.close());
  const port = (server.address() as { port: number }).port;
  const counted: string[] = [];
  const handle = clientErrorHandler((status, code) => counted.push(`${status} ${code}`));
  const timedOut = async (send: string) => {
    const client = connect(port, '127.0.0.1');
    let got = '';
    client.on('data', (d) => (got += d.toString()));
    const closed = new Promise<void>((r) => client.on('close', () => r()));
    await new Promise<void>((r) => client.on('connect', () => r()));
    while (accepted.length === 0) await new Promise((r) => setTimeout(r, 5));
    const socket = accepted.shift()!;
    if (send !== '') {
      client.write(send);
      await new Promise<void>((r) => socket.once('data', () => r()));
    }
    handle(Object.assign(new Error('request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket);
    await closed;
    return got;
  };
  assert.equal(await timedOut(''), '');
  assert.deepEqual(counted, []);
  assert.match(await timedOut('POST /v1/completions HTTP/1.1\r\nHost: x\r\n'), /^HTTP\/1\.1 408 /);
  assert.deepEqual(counted, ['408 request_timeout']);
});
