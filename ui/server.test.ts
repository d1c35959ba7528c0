/**
 * The dashboard server's guards against hostile requests, on a real listening server with real
 * SQLite files and no Temporal (every route here answers, or is refused, before it needs one):
 * percent-encoded and absolute-form paths to the API, names a page on another site would send
 * (DNS rebinding), prototype names as asset names, wrong types in an action's body, bodies that
 * never end, and out-of-range limits. tests/ui.test.ts covers the pages and the API with a worker.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { createUiServer, hostName, isLoopback, type UiServer } from './server.ts';

const TOKEN = 'ui-guard-token-0123456789';
let dir: string;
let ui: UiServer;
let port: number;

/** One raw HTTP/1.1 exchange, so paths reach the server exactly as written; resolves with what came back when the server closes, or `open` after `waitMs`. */
function raw(request: string, waitMs = 20_000): Promise<{ response: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let response = '';
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ response, closed: false });
    }, waitMs);
    socket.on('data', (d) => (response += String(d)));
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ response, closed: true });
    });
  });
}
const statusOf = (response: string) => Number(/^HTTP\/1\.1 (\d+)/.exec(response)?.[1]);

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ui-guards-'));
  const paths = statePaths(dir);
  const log = await openAudit(paths.auditDb);
  for (const subject of ['a', 'b', 'c']) await log.append({ action: 'run.submitted', subject, actor: 'tester' });
  await log.close();
  ui = await createUiServer({
    paths,
    store: new ArtifactStore(paths.store),
    client: () => Promise.reject(new Error('no Temporal in this test')),
    token: TOKEN,
    actor: 'tester',
    taskQueue: 'q',
  });
  port = Number(new URL(await ui.listen(0, '127.0.0.1')).port);
});
after(async () => {
  await ui?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('dashboard guards', () => {
  it('reads a Host header as a name without its port', () => {
    assert.equal(hostName('127.0.0.1:8270'), '127.0.0.1');
    assert.equal(hostName('[::1]:8270'), '::1');
    assert.equal(hostName('LocalHost'), 'localhost');
    assert.equal(hostName('attacker.example:8270'), 'attacker.example');
    assert.equal(hostName(undefined), undefined);
  });

  it('guards the API however its path is spelled: percent-encoded, absolute-form, upper-case escapes', async () => {
    const body = '{"version":1,"alias":"staging"}';
    for (const target of [
      '/api/models/m/promote',
      '/%61pi/models/m/promote',
      '/ap%69/models/m/rollback',
      '/%61%70%69/runs/r/cancel',
      `http://127.0.0.1:${port}/api/models/m/rollback`,
      '/api/schedules/s/pause',
    ]) {
      const { response } = await raw(
        `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      assert.equal(statusOf(response), 401, `${target}: ${response.slice(0, 200)}`);
    }
  });

  it('knows loopback addresses and names exactly, not by their first characters', () => {
    for (const h of ['127.0.0.1', '127.8.9.10', 'localhost', 'LOCALHOST', 'localhost.', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])
      assert.equal(isLoopback(h), true, h);
    for (const h of [
      '127.0.0.1.nip.io',
      '127.evil.example',
      '127.0.0.1.attacker.example',
      'localhost.attacker.example',
      '10.0.0.5',
      '::2',
      '::ffff:10.0.0.1',
      '127.0.0.1:80@evil',
    ])
      assert.equal(isLoopback(h), false, h);
  });

  it('answers only to loopback names while reads need no token (DNS rebinding)', async () => {
    const read = (host: string) => raw(`GET /api/audit HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    for (const host of [
      'attacker.example',
      `attacker.example:${port}`,
      '10.0.0.5',
      'localhost.attacker.example',
      `127.0.0.1.nip.io:${port}`,
      '127.evil.example',
    ]) {
      const { response } = await read(host);
      assert.equal(statusOf(response), 421, host);
      assert.match(response, /answers only to loopback names/);
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `localhost.:${port}`])
      assert.equal(statusOf((await read(host)).response), 200, host);
  });

  it('serves only its own assets: a prototype name is a 404, and the server lives on', async () => {
    for (const name of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      const res = await fetch(`http://127.0.0.1:${port}/app/${name}`);
      assert.equal(res.status, 404, name);
    }
    assert.equal((await fetch(`http://127.0.0.1:${port}/app/app.js`)).status, 200);
  });

  it("names a field of an action's body with the wrong type (400), before anything is moved", async () => {
    const post = async (path: string, body: string, type = 'application/json') => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        method: 'POST',
        headers: { 'content-type': type, authorization: `Bearer ${TOKEN}` },
        body,
      });
      return { status: res.status, error: ((await res.json()) as { error: string }).error };
    };
    const cases: [string, string, RegExp][] = [
      ['/api/models/m/promote', '{"version":{"a":1},"alias":"qa"}', /field 'version' must be a version or alias, got \{"a":1\}/],
      ['/api/models/m/promote', '{"version":1,"reason":{"nested":[1]}}', /field 'reason' must be a string/],
      ['/api/models/m/promote', '{"version":1,"expect":"abc"}', /field 'expect' must be a version or null, got "abc"/],
      ['/api/models/m/promote', '{"version":0}', /field 'version' must be a version or alias, got 0/],
      [
        '/api/models/m/promote',
        '{"version":1,"alais":"qa"}',
        /unknown field 'alais'; this action takes version, alias, gate, reason, expect/,
      ],
      ['/api/models/m/promote', '[1]', /send the fields as a JSON object/],
      ['/api/models/m/rollback', '{"expect":1.5}', /field 'expect' must be a version or null, got 1.5/],
      ['/api/models/m/rollback', '{"alias":7}', /field 'alias' must be a string, got 7/],
    ];
    for (const [path, body, error] of cases) {
      const r = await post(path, body);
      assert.deepEqual([r.status, error.test(r.error)], [400, true], `${path} ${body}: ${r.status} ${r.error}`);
    }
    assert.equal((await post('/api/models/m/rollback', 'x', 'text/plain')).status, 400, 'a text body is not an action');
  });

  it('closes the connection of a refused request whose body never ends', async () => {
    const { response, closed } = await raw(
      `POST /api/models/m/promote HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n`,
    );
    assert.equal(statusOf(response), 401);
    assert.equal(closed, true, 'the server hung up instead of waiting for the rest of the body');
  });

  it('returns between 1 and 5000 audit records, whatever the limit asked', async () => {
    const count = async (q: string) =>
      ((await (await fetch(`http://127.0.0.1:${port}/api/audit${q}`)).json()) as { records: unknown[] }).records.length;
    assert.equal(await count('?limit=-1'), 1);
    assert.equal(await count('?limit=2'), 2);
    assert.equal(await count('?limit=zzz'), 3);
    assert.equal(await count(''), 3);
  });
});
