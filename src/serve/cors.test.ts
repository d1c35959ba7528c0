import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { loadTextGenerator } from '../generate/text-generator.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { FakePredictor } from './fake-predictor.testing.ts';
import { createModelServer, type ServeOptions } from './server.ts';
import type { ServedModel } from './types.ts';

const TOKEN = 'cors-test-token-0123';
const APP = 'https://app.example.com';
const root = mkdtempSync(join(tmpdir(), 'tempered-cors-'));
after(() => rmSync(root, { recursive: true, force: true }));

async function start(t: { after(fn: () => Promise<void>): void }, model: ServedModel, o: Partial<ServeOptions> = {}) {
  const server = await createModelServer({
    token: TOKEN,
    pollMs: 60_000,
    resolveCurrent: async () => ({ key: model.id, load: async () => model }),
    ...o,
  });
  const url = await server.listen();
  t.after(() => server.close());
  return url;
}

/** A browser's preflight for a POST from `origin` sending `headers`. */
const preflight = (url: string, path: string, origin: string, headers: string) =>
  fetch(`${url}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': headers },
  });

// What openai 6.30.1 sends from a browser (dangerouslyAllowBrowser), as Chrome lists them in a preflight.
const SDK_HEADERS =
  'authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout';

test('without --cors-origin the server sends no CORS header, to a preflight or a request', async (t) => {
  const url = await start(t, new FakePredictor('spam@1'));
  const pre = await preflight(url, '/predict', APP, SDK_HEADERS);
  assert.equal(pre.status, 401, 'a preflight without a token is any request without one');
  assert.deepEqual(
    [...pre.headers.keys()].filter((k) => k.startsWith('access-control-')),
    [],
  );
  const res = await fetch(`${url}/predict`, {
    method: 'POST',
    headers: { origin: APP, authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: ['hi'] }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('access-control-allow-origin'), null);
});

test("--cors-origin: a named origin's preflight is answered without a token, naming the SDK's headers; others get no allowance", async (t) => {
  const url = await start(t, new FakePredictor('spam@1'), { corsOrigins: [APP, 'http://localhost:5173'] });
  const pre = await preflight(url, '/predict', APP, `${SDK_HEADERS},x-evil`);
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), APP);
  assert.equal(pre.headers.get('access-control-allow-methods'), 'GET, POST');
  const allowed = pre.headers.get('access-control-allow-headers')!.split(', ');
  assert.deepEqual(allowed, SDK_HEADERS.split(','), 'every header the SDK sends, and not x-evil');
  assert.equal(pre.headers.get('access-control-max-age'), '600');
  assert.match(pre.headers.get('vary') ?? '', /Origin/);
  assert.match(pre.headers.get('x-request-id') ?? '', /^req_[0-9a-f]{32}$/, 'a preflight is an answer: it carries its id too');

  // Another site: no Access-Control-Allow-Origin, so its browser refuses to send the request.
  const evil = await preflight(url, '/predict', 'https://evil.example', SDK_HEADERS);
  assert.equal(evil.headers.get('access-control-allow-origin'), null);

  // The request itself, and a refused one: the page can read both answers, with their request id.
  for (const [token, status] of [
    [TOKEN, 200],
    ['wrong-token-000', 401],
  ] as const) {
    const res = await fetch(`${url}/predict`, {
      method: 'POST',
      headers: { origin: 'http://localhost:5173', authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: ['hi'] }),
    });
    assert.equal(res.status, status);
    assert.equal(res.headers.get('access-control-allow-origin'), 'http://localhost:5173');
    assert.equal(res.headers.get('access-control-expose-headers'), 'x-request-id, retry-after, x-should-retry');
  }
});

test('a path that is not percent-encoding, answered before any hook, carries the CORS headers too', async (t) => {
  const url = await start(t, new FakePredictor('spam@1'), { corsOrigins: [APP] });
  for (const [headers, status] of [
    [{ origin: APP, authorization: `Bearer ${TOKEN}` }, 400],
    [{ origin: APP }, 401],
  ] as const) {
    const res = await fetch(`${url}/v1/models/%E0%A4%A`, { headers });
    assert.equal(res.status, status);
    assert.equal(res.headers.get('access-control-allow-origin'), APP, 'the page can read why it was refused');
    assert.equal(res.headers.get('access-control-expose-headers'), 'x-request-id, retry-after, x-should-retry');
    assert.match(res.headers.get('vary') ?? '', /Origin/);
  }
  const evil = await fetch(`${url}/v1/models/%E0%A4%A`, { headers: { origin: 'https://evil.example' } });
  assert.equal(evil.headers.get('access-control-allow-origin'), null);
  assert.match(evil.headers.get('vary') ?? '', /Origin/, "a cache keeps the answer apart from an allowed origin's");
});

test("what Node's parser refuses in a request's body carries the CORS headers of that request's Origin; a refusal of its headers, where no Origin was read, none", async (t) => {
  const url = await start(t, new FakePredictor('spam@1'), { corsOrigins: [APP] });
  const { port } = new URL(url);
  const raw = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const sock = connect(Number(port), '127.0.0.1', () => sock.write(bytes));
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      sock.on('close', () => resolve(got));
      sock.on('error', reject);
    });
  // Chunked framing that is not HTTP, after whole headers: the request, and its Origin, are known.
  const badBody = (origin: string) =>
    `POST /predict HTTP/1.1\r\nHost: x\r\nOrigin: ${origin}\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n`;
  const mine = await raw(badBody(APP));
  assert.match(mine, /^HTTP\/1\.1 400 /);
  assert.match(mine, new RegExp(`\r\naccess-control-allow-origin: ${APP}\r\n`, 'i'));
  assert.match(mine, /\r\naccess-control-expose-headers: x-request-id, retry-after, x-should-retry\r\n/i);
  assert.match(mine, /"code":"malformed_request"/);
  const evil = await raw(badBody('https://evil.example'));
  assert.match(evil, /^HTTP\/1\.1 400 /);
  assert.doesNotMatch(evil, /access-control-allow-origin/i);
  assert.match(evil, /\r\nvary: Origin\r\n/i);
  // Headers too large: refused before they were read, so no Origin is known, not even that of the answered request
  // before it on the same connection.
  const overflow = await new Promise<string>((resolve, reject) => {
    const sock = connect(Number(port), '127.0.0.1', () => sock.write(`GET /health HTTP/1.1\r\nHost: x\r\nOrigin: ${APP}\r\n\r\n`));
    let got = '';
    sock.on('data', (d) => {
      const first = got === '';
      got += d.toString();
      if (first) sock.write(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    });
    sock.on('close', () => resolve(got));
    sock.on('error', reject);
  });
  assert.match(overflow, new RegExp(`^HTTP/1\\.1 200 [^]*access-control-allow-origin: ${APP}\r\n`, 'i'));
  const second = overflow.slice(overflow.indexOf('HTTP/1.1 431'));
  assert.match(second, /^HTTP\/1\.1 431 [^]*"code":"headers_too_large"/);
  assert.doesNotMatch(second, /access-control-allow-origin/i);
});

test('a refusal of a request pipelined behind one still waiting for its answer goes out after that answer, not as it', async (t) => {
  // The first request's answer comes after 300 ms; the second's chunked framing is not HTTP, in the same packet.
  const url = await start(t, new FakePredictor('spam@1', 300), { corsOrigins: [APP] });
  const body = JSON.stringify({ inputs: ['a'] });
  const good = `POST /predict HTTP/1.1\r\nHost: x\r\nOrigin: ${APP}\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const bad = `POST /predict HTTP/1.1\r\nHost: x\r\nOrigin: ${APP}\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n`;
  const got = await new Promise<string>((resolve, reject) => {
    const sock = connect(Number(new URL(url).port), '127.0.0.1', () => sock.write(good + bad));
    let text = '';
    sock.on('data', (d) => (text += d.toString()));
    sock.on('close', () => resolve(text));
    sock.on('error', reject);
  });
  // It was: 'HTTP/1.1 400 Bad Request', the second request's malformed_request, as the first request's answer; then
  // nothing at all, the connection closed before the first request's answer.
  assert.match(got, /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n\{"model":"spam@1","predictions":\[[^]*\]\}HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(got, /"code":"malformed_request"/);
});

test("a stream's answer carries the CORS headers too (it is written outside fastify's reply)", async (t) => {
  const dir = tinyLlamaDir(join(root, 'lm'), 1, { hidden: 32, layers: 2, maxPositions: 64 });
  const gen = await loadTextGenerator(dir, { id: 'tiny@1', threads: 1 });
  const url = await start(t, gen, { corsOrigins: [APP] });
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { origin: APP, authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Hi', max_tokens: 2, stream: true }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  assert.equal(res.headers.get('access-control-allow-origin'), APP);
  assert.match(res.headers.get('x-request-id') ?? '', /^req_/);
  assert.ok((await res.text()).endsWith('data: [DONE]\n\n'));
});

test('an origin that is not one, or "*", is refused when the server starts, saying what to give', async () => {
  const model = new FakePredictor('spam@1');
  const refused = async (origin: string, message: RegExp) =>
    assert.rejects(
      createModelServer({ token: TOKEN, resolveCurrent: async () => ({ key: 'a', load: async () => model }), corsOrigins: [origin] }),
      (e: unknown) =>
        e instanceof InputError && e.where === 'serve.corsOrigins' && message.test(e.message) && /https:\/\//.test(e.hint ?? ''),
    );
  await refused('*', /"\*" is not allowed: this server always takes a bearer token/);
  await refused('https://app.example.com/', /not an origin as a browser sends it \(that would be "https:\/\/app\.example\.com"\)/);
  await refused('https://App.example.com', /that would be "https:\/\/app\.example\.com"/);
  await refused('app.example.com', /not an origin as a browser sends it$/);
  await refused('file:///x', /not an origin/);
});
