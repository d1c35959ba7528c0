/**
 * The S3 backend against a server that misbehaves on purpose (a node:http server speaking just
 * enough S3): a listing outside the prefix asked for, a body that stops half-way, a first range
 * that is not the one asked for, a ranged GET answered with an endless body. Each must end in a
 * clear error or be ignored; none may delete other objects, hang, or grow memory without bound.
 * (Real SeaweedFS behaviour is covered by tests/s3-store.test.ts.)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { readText } from '../src/store/object-backend.ts';
import { S3Backend } from '../src/store/s3-backend.ts';
import { InputError, IntegrityError } from '../src/errors.ts';
import { finishSharedCheckpoint } from '../src/store/shared-checkpoints.ts';

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, key: string) => void;
let handler: Handler = (_req, res) => res.writeHead(500).end();
const deleted: string[] = [];
let refuseConditionalDelete = false;
let server: http.Server;
let endpoint: string;

before(async () => {
  server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const key = decodeURIComponent(url.pathname.split('/').slice(2).join('/'));
    // HeadBucket: the bucket exists.
    if (req.method === 'HEAD' && key === '') return void res.writeHead(200).end();
    if (req.method === 'DELETE') {
      // A store without conditional deletes that says so (LocalStack answered 501 until 2026).
      if (refuseConditionalDelete && req.headers['if-match'] !== undefined)
        return void res
          .writeHead(501, { 'content-type': 'application/xml' })
          .end(
            '<Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented</Message><Header>If-Match</Header></Error>',
          );
      deleted.push(key);
      return void res.writeHead(204).end();
    }
    req.resume();
    req.on('end', () => handler(req, res, key));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(() => {
  server.closeAllConnections();
  server.close();
});

const backend = (opts: { idleTimeoutMs?: number } = {}) =>
  new S3Backend('s3://bucket/pre', {
    env: { AWS_ENDPOINT_URL: endpoint, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b' },
    ...opts,
  });

test('a listing that ignores the prefix: keys outside it are not returned, and checkpoint clean-up deletes only checkpoint files', async () => {
  const keys = [
    'pre/sha256/ab/' + 'a'.repeat(64),
    'pre/cache/de/' + 'd'.repeat(64) + '.json',
    `pre/checkpoint-files/${'e'.repeat(64)}/step-00000001/w.bin`,
  ];
  const put: string[] = [];
  handler = (req, res, key) => {
    // Finishing rewrites the pointer with the finished record before it deletes the files.
    if (req.method === 'PUT') {
      put.push(key);
      return void res.writeHead(200, { etag: '"e"' }).end();
    }
    // The pointer, read for its version before the compare-and-swap write: none yet.
    if (req.method === 'GET' && key.endsWith('.json'))
      return void res.writeHead(404, { 'content-type': 'application/xml' }).end('<Error><Code>NoSuchKey</Code></Error>');
    res.writeHead(200, { 'content-type': 'application/xml' });
    res.end(
      `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name><KeyCount>${keys.length}</KeyCount><IsTruncated>false</IsTruncated>` +
        keys.map((k) => `<Contents><Key>${k}</Key><Size>1</Size></Contents>`).join('') +
        '</ListBucketResult>',
    );
  };
  const listed: string[] = [];
  for await (const k of backend().list('checkpoint-files/')) listed.push(k);
  assert.deepEqual(listed, [`checkpoint-files/${'e'.repeat(64)}/step-00000001/w.bin`]);
  const dir = mkdtempSync(join(tmpdir(), 'tempered-hostile-'));
  try {
    deleted.length = 0;
    const logs: string[] = [];
    await finishSharedCheckpoint(new ArtifactStore(join(dir, 'store'), { remote: backend() }), 'e'.repeat(64), { steps: 1 }, (m) =>
      logs.push(m),
    );
    assert.deepEqual(put, [`pre/checkpoints/${'e'.repeat(64)}.json`], 'the pointer is rewritten with the finished record');
    assert.deepEqual(deleted, [`pre/checkpoint-files/${'e'.repeat(64)}/step-00000001/w.bin`]);
    assert.deepEqual(logs, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a body that stops half-way fails after the idle time instead of holding the stage for ever', async () => {
  handler = (_req, res) => {
    res.writeHead(200, { 'content-length': '100', etag: '"e"' });
    res.write(Buffer.alloc(10));
    // ...and nothing more.
  };
  await assert.rejects(readText(backend({ idleTimeoutMs: 300 }), 'cache/ab/record.json'), /timed out|socket hang up|aborted|terminated/i);
});

test('a first range other than the one asked for is an error before anything is trusted, and leaves no file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-hostile-'));
  try {
    handler = (_req, res) => {
      res.writeHead(206, { 'content-range': 'bytes 1-10/100', 'content-length': '10', etag: '"e"' });
      res.end(Buffer.alloc(10));
    };
    const store = new ArtifactStore(join(dir, 'store'), { remote: backend() });
    deleted.length = 0;
    await assert.rejects(
      store.localPath(`artifact://sha256/${'c'.repeat(64)}`),
      /asked for bytes 0-99\/100, the server sent bytes 1-10\/100/,
    );
    assert.deepEqual(readdirSync(join(dir, 'store', 'tmp')), []);
    assert.deepEqual(deleted, [], 'the bucket copy is not quarantined for an answer that was not it');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a ranged GET answered with an endless body is dropped, not read into memory', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-hostile-'));
  let sent = 0;
  try {
    handler = (_req, res) => {
      res.writeHead(200, { 'transfer-encoding': 'chunked', etag: '"e"' });
      const chunk = Buffer.alloc(1 << 20);
      const pump = () => {
        while (res.write(chunk)) {
          sent += chunk.length;
          if (sent > 2 << 30) return void res.end();
        }
        res.once('drain', pump);
      };
      res.on('close', () => res.removeAllListeners('drain'));
      pump();
    };
    const store = new ArtifactStore(join(dir, 'store'), { remote: backend() });
    await assert.rejects(store.localPath(`artifact://sha256/${'c'.repeat(64)}`), /gave no usable size|asked for/);
    assert.ok(sent < 256 << 20, `the server got to send ${sent >> 20} MiB before the answer was dropped`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a create-only put answered 409 (another put of the key under way) is tried again and settles; a store without conditional writes is an input error naming TEMPERED_STORE', async () => {
  let puts = 0;
  handler = (req, res) => {
    if (req.method !== 'PUT') return void res.writeHead(404).end();
    puts++;
    const conflict = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>ConditionalRequestConflict</Code><Message>busy</Message></Error>';
    const taken = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>taken</Message></Error>';
    if (puts <= 2) res.writeHead(409, { 'content-type': 'application/xml' }).end(conflict);
    else res.writeHead(412, { 'content-type': 'application/xml' }).end(taken);
  };
  assert.equal(await backend().putBytes('sha256/ab/x', Buffer.from('bytes'), { ifAbsent: true }), 'exists');
  assert.equal(puts, 3);
  handler = (_req, res) =>
    res
      .writeHead(501, { 'content-type': 'application/xml' })
      .end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>If-None-Match</Message></Error>');
  await assert.rejects(
    backend().putBytes('sha256/ab/y', Buffer.from('bytes'), { ifAbsent: true }),
    (e: unknown) => e instanceof InputError && e.where === 'TEMPERED_STORE' && /conditional writes/.test(e.hint ?? ''),
  );
});

test('an object the server claims is far larger than its reference is refused before a byte is written', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-hostile-'));
  let gets = 0;
  try {
    handler = (_req, res) => {
      gets++;
      res.writeHead(206, { 'content-range': `bytes 0-1023/${2 ** 40}`, 'content-length': '1024', etag: '"e"' });
      res.end(Buffer.alloc(1024));
    };
    const store = new ArtifactStore(join(dir, 'store'), { remote: backend() });
    const ref = {
      uri: `artifact://sha256/${'c'.repeat(64)}`,
      sha256: 'c'.repeat(64),
      bytes: 3 << 20,
      mediaType: 'application/octet-stream',
    };
    deleted.length = 0;
    await assert.rejects(
      store.verify(ref),
      (e: unknown) => e instanceof IntegrityError && /1099511627776 bytes, more than the 3145728 expected/.test((e as Error).message),
    );
    assert.equal(gets, 1, 'one request, no ranges fetched');
    assert.deepEqual(readdirSync(join(dir, 'store', 'tmp')), []);
    assert.deepEqual(deleted, [], 'not quarantined: the reference may be the wrong one');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a store that refuses a conditional delete (501 NotImplemented) is sent a plain one: store gc still deletes an abandoned pointer', async (t) => {
  refuseConditionalDelete = true;
  t.after(() => (refuseConditionalDelete = false));
  deleted.length = 0;
  assert.equal(await backend().deleteTagged('checkpoints/p.json', '"e"'), 'deleted');
  assert.deepEqual(deleted, ['pre/checkpoints/p.json']);
});
