/**
 * The shared-store backends against real servers: the ObjectBackend contract on a folder and on
 * SeaweedFS, then what only a remote store has: create-only puts (412), objects damaged behind the
 * store's back, multipart uploads, the verified read-through cache, and settings that are wrong.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, constants, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError, IntegrityError } from '../src/errors.ts';
import { ArtifactStore, objectKey } from '../src/store/artifact-store.ts';
import { FolderBackend } from '../src/store/folder-backend.ts';
import type { ObjectBackend } from '../src/store/object-backend.ts';
import { readText } from '../src/store/object-backend.ts';
import { openBackend } from '../src/store/open-store.ts';
import { S3Backend } from '../src/store/s3-backend.ts';
import { REUSE_CHECKSUM_MIDDLEWARE } from '../src/store/s3-payload-hash.ts';
import { StageCache } from '../src/store/stage-cache.ts';
import { rawClient, useTestS3, type TestS3 } from './helpers/seaweedfs.ts';
import { runCli } from './helpers/cli.ts';
import { sha256Hex } from '../src/util/canonical-json.ts';
import { awaitStore } from '../cli/commands/worker.ts';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

let s3: TestS3;
useTestS3((h) => (s3 = h));

const tmp = (p: string) => mkdtempSync(join(tmpdir(), p));
function file(bytes: Buffer | string): { path: string; sha256: string; bytes: number } {
  const path = join(tmp('s3f-'), 'f');
  writeFileSync(path, bytes);
  return { path, sha256: sha256Hex(bytes), bytes: Buffer.byteLength(bytes) };
}

for (const [name, make] of [
  ['folder', () => new FolderBackend(tmp('folder-backend-'))],
  ['SeaweedFS S3', () => s3.backend()],
] as const) {
  describe(`ObjectBackend contract: ${name}`, () => {
    it('create-only put stores once and reports an existing key as already stored, keeping the first bytes', async () => {
      const b: ObjectBackend = make();
      const one = file('first');
      const two = file('second');
      assert.equal(await b.putFile('sha256/aa/x', one.path, { ...one, ifAbsent: true }), 'stored');
      assert.equal(await b.putFile('sha256/aa/x', two.path, { ...two, ifAbsent: true }), 'exists');
      assert.equal(await readText(b, 'sha256/aa/x'), 'first');
      assert.equal(await b.putFile('sha256/aa/x', two.path, { ...two, ifAbsent: false }), 'stored', 'an overwrite replaces');
      assert.equal(await readText(b, 'sha256/aa/x'), 'second');
    });

    it('putBytes stores a small object from memory, create-only or overwriting, like putFile', async () => {
      const b: ObjectBackend = make();
      assert.equal(await b.putBytes('cache/aa/r.json', Buffer.from('{"v":1}'), { ifAbsent: true }), 'stored');
      assert.equal(await b.putBytes('cache/aa/r.json', Buffer.from('{"v":2}'), { ifAbsent: true }), 'exists');
      assert.equal(await readText(b, 'cache/aa/r.json'), '{"v":1}');
      assert.equal(await b.putBytes('cache/aa/r.json', Buffer.from('{"v":3}'), { ifAbsent: false }), 'stored');
      assert.equal(await readText(b, 'cache/aa/r.json'), '{"v":3}');
      assert.equal((await b.head('cache/aa/r.json'))?.bytes, 7);
    });

    it('readTagged and readText take a small object up to their cap and refuse a larger one, naming it, the same way', async () => {
      const b: ObjectBackend = make();
      await b.putBytes('cache/aa/eight.json', Buffer.from('12345678'), { ifAbsent: false });
      assert.equal((await b.readTagged('cache/aa/eight.json', 8))?.bytes.toString(), '12345678');
      assert.equal(await readText(b, 'cache/aa/eight.json', 8), '12345678');
      const refused = `${b.url}/cache/aa/eight.json is larger than 7 bytes; not a record`;
      await assert.rejects(b.readTagged('cache/aa/eight.json', 7), { message: refused });
      await assert.rejects(readText(b, 'cache/aa/eight.json', 7), { message: refused });
      assert.equal(await b.readTagged('cache/aa/none.json', 7), undefined);
    });

    it('deleteTagged deletes only the version read: a stale or missing one is a conflict and deletes nothing', async () => {
      const b: ObjectBackend = make();
      const first = await b.swapBytes('checkpoints/p.json', Buffer.from('{"v":1}'), undefined);
      assert.notEqual(first, 'conflict');
      const second = await b.swapBytes('checkpoints/p.json', Buffer.from('{"v":2}'), (first as { etag: string }).etag);
      assert.notEqual(second, 'conflict');
      assert.equal(await b.deleteTagged('checkpoints/p.json', (first as { etag: string }).etag), 'conflict');
      assert.equal((await b.readTagged('checkpoints/p.json'))?.bytes.toString(), '{"v":2}');
      assert.equal(await b.deleteTagged('checkpoints/p.json', (second as { etag: string }).etag), 'deleted');
      assert.equal(await b.readTagged('checkpoints/p.json'), undefined);
      assert.equal(await b.deleteTagged('checkpoints/p.json', (second as { etag: string }).etag), 'conflict', 'gone already');
      const listed: string[] = [];
      for await (const k of b.list('checkpoints/')) listed.push(k);
      assert.deepEqual(listed, [], 'no lock or temp listed');
    });

    it('head, list, delete and quarantine', async () => {
      const b: ObjectBackend = make();
      const f = file('abc');
      for (const k of ['cache/aa/1.json', 'cache/bb/2.json', 'sha256/aa/3']) await b.putFile(k, f.path, { ...f, ifAbsent: true });
      assert.equal((await b.head('cache/aa/1.json'))?.bytes, 3);
      assert.equal(await b.head('cache/zz/none.json'), undefined);
      assert.equal(await b.read('cache/zz/none.json'), undefined);
      const listed: string[] = [];
      for await (const k of b.list('cache/')) listed.push(k);
      assert.deepEqual(listed.sort(), ['cache/aa/1.json', 'cache/bb/2.json']);
      await b.delete('cache/aa/1.json');
      await b.delete('cache/aa/1.json');
      assert.equal(await b.head('cache/aa/1.json'), undefined);
      await b.quarantine('sha256/aa/3');
      assert.equal(await b.head('sha256/aa/3'), undefined, 'moved aside');
      const aside: string[] = [];
      for await (const k of b.list('quarantine/')) aside.push(k);
      assert.equal(aside.length, 1, 'and kept for inspection');
    });
  });
}

describe('S3 artifact store', () => {
  it('a put reaches the bucket and another worker (empty cache) reads it back verified', async () => {
    const url = s3.freshUrl();
    const a = s3.store(url);
    const ref = await a.putBytes('shared bytes', { mediaType: 'text/plain' });
    assert.equal((await a.remote!.head(objectKey(ref.sha256)))?.bytes, 12);
    const b = s3.store(url);
    assert.equal(b.has(ref.sha256), false);
    assert.equal(readFileSync(await b.verify(ref), 'utf8'), 'shared bytes');
    assert.equal(b.has(ref.sha256), true, 'now in b’s cache');
    const empty = await a.putBytes('', { mediaType: 'text/plain' });
    assert.equal(readFileSync(await s3.store(url).verify(empty), 'utf8'), '');
  });

  it('a duplicate create answers 412 and counts as already stored; the first object stays', async () => {
    const url = s3.freshUrl();
    const backend = s3.backend(url);
    const f = file('same content');
    assert.equal(await backend.putFile('k', f.path, { ...f, ifAbsent: true }), 'stored');
    const { client, sdk } = await rawClient(s3.env);
    try {
      // The raw request shows the server's answer the backend turns into 'exists'.
      await assert.rejects(
        client.send(new sdk.PutObjectCommand({ Bucket: s3.bucket, Key: `${backend.location.prefix}/k`, Body: 'other', IfNoneMatch: '*' })),
        (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode === 412,
      );
    } finally {
      client.destroy();
    }
    assert.equal(await backend.putFile('k', f.path, { ...f, ifAbsent: true }), 'exists');
    // Two workers storing the same artifact at once: both get the same reference, one object.
    const [r1, r2] = await Promise.all([
      s3.store(url).putBytes('raced', { mediaType: 'x' }),
      s3.store(url).putBytes('raced', { mediaType: 'x' }),
    ]);
    assert.deepEqual(r1, r2);
  });

  it('an object overwritten through the S3 API is detected on read, quarantined, and stored afresh by the next put', async () => {
    const url = s3.freshUrl();
    const ref = await s3.store(url).putBytes('the true bytes', { mediaType: 'text/plain' });
    const { client, sdk } = await rawClient(s3.env);
    try {
      const Key = `${s3.backend(url).location.prefix}/${objectKey(ref.sha256)}`;
      await client.send(new sdk.PutObjectCommand({ Bucket: s3.bucket, Key, Body: 'the fake bytes' }));
    } finally {
      client.destroy();
    }
    const reader = s3.store(url);
    await assert.rejects(
      reader.verify(ref),
      (e: unknown) => e instanceof IntegrityError && e.sha256 === ref.sha256 && /corrupt/.test(e.message),
    );
    assert.equal(reader.has(ref.sha256), false, 'nothing damaged entered the cache');
    assert.equal(await reader.remote!.head(objectKey(ref.sha256)), undefined, 'the damaged object was moved aside');
    await s3.store(url).putBytes('the true bytes', { mediaType: 'text/plain' });
    assert.equal(readFileSync(await s3.store(url).verify(ref), 'utf8'), 'the true bytes');
  });

  it('the server checks the SHA-256 a put sends: bytes that changed on the way are refused (retryable), nothing is stored', async () => {
    const backend = s3.backend();
    const f = file('bytes as hashed');
    const other = sha256Hex('bytes as they arrived');
    await assert.rejects(backend.putFile('k', f.path, { ...f, sha256: other, ifAbsent: true }), (e: unknown) => {
      assert.ok(!(e instanceof InputError), 'not an input error: a retry sends the bytes again');
      assert.match((e as Error).name, /BadDigest|Mismatch|InvalidDigest/);
      return true;
    });
    assert.equal(await backend.head('k'), undefined);
  });

  it('a file larger than the part size goes up as a checksummed multipart upload and comes back whole', async () => {
    const url = s3.freshUrl();
    const partSize = 5 * 1024 * 1024;
    const a = new ArtifactStore(tmp('mp-'), { remote: s3.backend(url, { partSize }) });
    const big = randomBytes(2 * partSize + 12345);
    const src = join(tmp('mp-src-'), 'big.bin');
    writeFileSync(src, big);
    const ref = await a.putFile(src, { mediaType: 'application/octet-stream' });
    const { client, sdk } = await rawClient(s3.env);
    try {
      const head = await client.send(
        new sdk.HeadObjectCommand({ Bucket: s3.bucket, Key: `${s3.backend(url).location.prefix}/${objectKey(ref.sha256)}` }),
      );
      assert.match(head.ETag ?? '', /-3"?$/, 'a three-part upload (its ETag says so)');
      assert.equal(head.ContentLength, big.length);
    } finally {
      client.destroy();
    }
    // Read back as ranged GETs (eleven 1 MiB ranges, three in flight) written at their offsets.
    const b = new ArtifactStore(tmp('mp-b-'), { remote: s3.backend(url, { getPartSize: 1024 * 1024, getConcurrency: 3 }) });
    assert.ok(readFileSync(await b.verify(ref)).equals(big));
    assert.deepEqual(readdirSync(join(b.root, 'tmp')), [], 'no temp file left behind');
    // And in one GET by a reader with larger parts.
    assert.ok(readFileSync(await s3.store(url).verify(ref)).equals(big));
  });

  it('each uploaded byte is hashed once: the checksum is signed as the payload hash, and the server accepts both', async () => {
    const partSize = 5 * 1024 * 1024;
    const backend = s3.backend(s3.freshUrl(), { partSize });
    const { client } = await backend.connect();
    // Runs after the store's middleware and before the signer: what the signer will find.
    const seen: { command: string; payloadHash?: string; bodySha256?: string }[] = [];
    const spy = (next: (a: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
      const req = (args as { request: { headers: Record<string, string>; body: unknown } }).request;
      if (/^(PutObject|UploadPart)Command$/.test(context.commandName ?? ''))
        seen.push({
          command: context.commandName!,
          payloadHash: req.headers['x-amz-content-sha256'],
          bodySha256: Buffer.isBuffer(req.body) || req.body instanceof Uint8Array ? sha256Hex(req.body as Uint8Array) : undefined,
        });
      return next(args);
    };
    client.middlewareStack.addRelativeTo(spy as unknown as Parameters<typeof client.middlewareStack.addRelativeTo>[0], {
      relation: 'after',
      toMiddleware: REUSE_CHECKSUM_MIDDLEWARE,
      name: 'testSpy',
    });
    const big = file(randomBytes(2 * partSize + 777));
    const small = file(randomBytes(1000));
    assert.equal(await backend.putFile('big', big.path, { ...big, ifAbsent: true }), 'stored');
    assert.equal(await backend.putFile('small', small.path, { ...small, ifAbsent: true }), 'stored');
    // Three parts and one single put; a request the SDK retried would appear again, so count distinct ones.
    assert.deepEqual(
      [...new Set(seen.map((r) => `${r.command} ${r.bodySha256}`))].map((k) => k.split(' ')[0]),
      ['UploadPartCommand', 'UploadPartCommand', 'UploadPartCommand', 'PutObjectCommand'],
    );
    for (const r of seen) {
      assert.match(r.payloadHash ?? '', /^[0-9a-f]{64}$/, `${r.command} carries its payload hash before signing`);
      assert.equal(r.payloadHash, r.bodySha256, `${r.command}: the hash is the body's`);
    }
    assert.equal(seen.at(-1)!.payloadHash, small.sha256);
    assert.equal((await backend.head('big'))?.bytes, big.bytes);
    assert.equal((await backend.head('small'))?.bytes, small.bytes);
  });

  it('a multi-range download of an object changed in the bucket (one range altered, or cut short) never lands in the cache', async () => {
    const MiB = 1024 * 1024;
    for (const [what, damage] of [
      [
        'one byte in a middle range flipped',
        (b: Buffer) => Buffer.concat([b.subarray(0, 3 * MiB + 5), Buffer.from([b[3 * MiB + 5]! ^ 1]), b.subarray(3 * MiB + 6)]),
      ],
      ['cut short', (b: Buffer) => b.subarray(0, 4 * MiB + 100)],
    ] as const) {
      const url = s3.freshUrl();
      const big = randomBytes(6 * MiB + 4321);
      const ref = await s3.store(url).putBytes(big, { mediaType: 'application/octet-stream' });
      const { client, sdk } = await rawClient(s3.env);
      try {
        const Key = `${s3.backend(url).location.prefix}/${objectKey(ref.sha256)}`;
        await client.send(new sdk.PutObjectCommand({ Bucket: s3.bucket, Key, Body: damage(big) }));
      } finally {
        client.destroy();
      }
      const reader = new ArtifactStore(tmp('damaged-'), { remote: s3.backend(url, { getPartSize: MiB, getConcurrency: 4 }) });
      await assert.rejects(
        reader.verify(ref),
        (e: unknown) => e instanceof IntegrityError && /corrupt: its content hashes to/.test((e as Error).message),
        what,
      );
      assert.equal(reader.has(ref.sha256), false, `${what}: nothing entered the cache`);
      assert.deepEqual(readdirSync(join(reader.root, 'tmp')), [], `${what}: no temp file left behind`);
      assert.equal(await reader.remote!.head(objectKey(ref.sha256)), undefined, `${what}: moved aside in the bucket`);
    }
  });

  it('bytes changed once on the way are fetched again, not taken for a damaged object: nothing is quarantined', async () => {
    // A shared-folder backend whose first transfer flips a byte, as a bad proxy or NIC would.
    class FlipsOnce extends FolderBackend {
      reads = 0;
      override async read(key: string): Promise<Readable | undefined> {
        const whole = readFileSync(join(this.root, ...key.split('/')));
        if (++this.reads === 1) whole[7] = whole[7]! ^ 1;
        return Readable.from([whole]);
      }
    }
    const dir = tmp('flip-');
    const remote = new FlipsOnce(join(dir, 'shared'));
    const bytes = randomBytes(4096);
    const ref = await new ArtifactStore(join(dir, 'writer'), { remote }).putBytes(bytes, { mediaType: 'application/octet-stream' });
    const reader = new ArtifactStore(join(dir, 'reader'), { remote });
    assert.deepEqual(readFileSync(await reader.verify(ref)), bytes, 'the second download is the object');
    assert.equal(remote.reads, 2);
    assert.equal(await remote.head(objectKey(ref.sha256)).then((h) => h?.bytes), 4096, 'the bucket copy stays where it is');
  });

  it('a download that keeps breaking off fails with its cause after three tries and leaves no partial file', async () => {
    // A shared-folder backend whose transfer writes half the object and then loses the connection.
    class BreaksOff extends FolderBackend {
      tries = 0;
      async readInto(key: string, file: FileHandle, onPrefix: (n: number) => void): Promise<number | undefined> {
        this.tries++;
        const whole = readFileSync(join(this.root, ...key.split('/')));
        await file.write(whole, 0, whole.length >> 1, 0);
        onPrefix(whole.length >> 1);
        throw new Error('read ECONNRESET');
      }
    }
    const shared = tmp('breaks-off-');
    const ref = await new ArtifactStore(tmp('w-'), { remote: new FolderBackend(shared) }).putBytes(randomBytes(100_000), {
      mediaType: 'application/octet-stream',
    });
    const backend = new BreaksOff(shared);
    const reader = new ArtifactStore(tmp('r-'), { remote: backend });
    await assert.rejects(reader.verify(ref), /ECONNRESET/);
    assert.equal(backend.tries, 3);
    assert.equal(reader.has(ref.sha256), false);
    assert.deepEqual(readdirSync(join(reader.root, 'tmp')), []);
  });

  it('the read-through cache is verified: a tampered or truncated cached copy is fetched again, never served', async () => {
    const url = s3.freshUrl();
    const ref = await s3.store(url).putBytes('model weights', { mediaType: 'application/octet-stream' });
    const w = s3.store(url);
    const path = await w.verify(ref);
    chmodSync(path, 0o644);
    writeFileSync(path, 'model weighTS');
    assert.equal(readFileSync(await w.verify(ref), 'utf8'), 'model weights');
    chmodSync(path, 0o644);
    writeFileSync(path, 'model');
    assert.equal(readFileSync(await w.localPath(ref.uri), 'utf8'), 'model weights');
  });

  it('stage-cache records are shared: a hit on one worker is a hit on another, and eviction reaches the bucket', async () => {
    const url = s3.freshUrl();
    const a = s3.store(url);
    const out = await a.putBytes('{"rows":1}', { mediaType: 'application/json' });
    const key = 'e'.repeat(64);
    await new StageCache(tmp('cache-a-'), a).put({
      key,
      kind: 'k',
      outputs: { out },
      producedBy: { runId: 'r', stageId: 's' },
      createdAt: 'now',
    });
    const cacheB = new StageCache(tmp('cache-b-'), s3.store(url));
    assert.deepEqual((await cacheB.get(key))?.outputs, { out });
    assert.deepEqual(await cacheB.evictReferencing(out.sha256), [key]);
    assert.equal(await new StageCache(tmp('cache-c-'), s3.store(url)).get(key), undefined, 'gone for every worker');
  });

  it('wrong settings are named input errors: URL, bucket, credentials, endpoint', async () => {
    for (const bad of [
      's3://',
      's3://Upper/x',
      's3://ab',
      's3://bucket/../x',
      's3://bucket/a?x',
      's3://bucket/a#b',
      's3://bucket/a b',
      's3://bucket/100%',
    ])
      assert.throws(
        () => new S3Backend(bad, { env: s3.env }),
        (e: unknown) => e instanceof InputError && /TEMPERED_STORE/.test((e as Error).message),
        bad,
      );
    assert.throws(() => openBackend('relative/path'), InputError);
    assert.throws(() => new S3Backend('s3://bucket/x', { env: { ...s3.env, AWS_ENDPOINT_URL: 'not a url' } }), /AWS_ENDPOINT_URL/);
    const missing = new ArtifactStore(tmp('nb-'), { remote: s3.backend('s3://no-such-bucket/x') });
    await assert.rejects(
      missing.putBytes('x', { mediaType: 'x' }),
      (e: unknown) => e instanceof InputError && /no-such-bucket does not exist/.test((e as Error).message),
    );
    const badCreds = new ArtifactStore(tmp('bc-'), {
      remote: new S3Backend(s3.freshUrl(), { env: { ...s3.env, AWS_SECRET_ACCESS_KEY: 'wrong' } }),
    });
    await assert.rejects(
      badCreds.putBytes('x', { mediaType: 'x' }),
      // Both keys named (the secret was the wrong one here), and "access denied" for the SDK's "Unknown".
      (e: unknown) =>
        e instanceof InputError &&
        (e as InputError).where === 'AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY' &&
        /was refused \((access denied|SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied) 403\)/.test((e as Error).message),
    );
    // A worker with a wrong store setting stops at once, naming it (before it even looks for Temporal).
    const worker = await runCli(['worker', '--single-host'], {
      ...s3.env,
      TEMPERED_HOME: tmp('home-'),
      TEMPERED_STORE: 's3://no-such-bucket/x',
      TEMPORAL_ADDRESS: '127.0.0.1:9',
    });
    assert.notEqual(worker.code, 0);
    assert.match(worker.stderr, /no-such-bucket does not exist/);
    // A server that is down is not an input error: it is retried, then reported naming where to look (the stage's retry policy takes over).
    const down = new S3Backend(s3.freshUrl(), { env: { ...s3.env, AWS_ENDPOINT_URL: 'http://127.0.0.1:9' }, retryMs: 1000 });
    const t0 = Date.now();
    await assert.rejects(
      down.head('k'),
      (e: unknown) =>
        !(e instanceof InputError) &&
        /(open|head) on s3:\/\/\S+ at http:\/\/127\.0\.0\.1:9: the store did not answer \(.*ECONNREFUSED.*\) in 5 tries, with 3\.8 s of waits between them; check that it is running and reachable from this host \(TEMPERED_STORE, AWS_ENDPOINT_URL\)/.test(
          (e as Error).message,
        ),
    );
    // A budget of 1 s still leaves every request its 4 quick retries (250 + 500 + 1000 + 2000 ms).
    assert.ok(Date.now() - t0 >= 3750, `retried 4 times before giving up, ${Date.now() - t0} ms`);
    // A worker waits for such a store before it polls, instead of taking stages only to fail them.
    const said: string[] = [];
    const stop = new AbortController();
    let settled = false;
    const waiting = awaitStore(new ArtifactStore(tmp('down-'), { remote: down }), {
      pollMs: 50,
      signal: stop.signal,
      log: (m) => said.push(m),
    }).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 4500));
    assert.equal(settled, false, 'still waiting');
    assert.equal(said.length, 1, said.join('\n'));
    assert.match(said[0]!, /the store s3:\/\/\S+ did not answer \(.*\); waiting for it before polling/);
    stop.abort();
    await assert.rejects(waiting, { name: 'AbortError' });
    // A store that answers, but with a redirect (a wrong AWS_REGION on AWS, a proxy that wants https), is a setting:
    // the worker stops at once instead of waiting for ever for a store that "did not answer".
    const redirecting = createServer((_req, res) => {
      res.writeHead(301, { 'x-amz-bucket-region': 'eu-west-1' });
      res.end();
    });
    await new Promise<void>((r) => redirecting.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}`;
      const moved = new S3Backend('s3://tempered/team', { env: { ...s3.env, AWS_ENDPOINT_URL: at }, retryMs: 1000 });
      await assert.rejects(
        awaitStore(new ArtifactStore(tmp('moved-'), { remote: moved }), { pollMs: 50, log: () => assert.fail('waited') }),
        (e: unknown) =>
          e instanceof InputError && /was redirected \(301\)/.test((e as Error).message) && /AWS_REGION/.test((e as Error).message),
      );
    } finally {
      redirecting.close();
    }
    assert.throws(
      () => new S3Backend(s3.freshUrl(), { env: { ...s3.env, TEMPERED_S3_RETRY_S: 'soon' } }),
      /TEMPERED_S3_RETRY_S: "soon" is not a number of seconds/,
    );
  });

  it('a request made while the store restarts waits for it instead of failing (README: the store can be restarted under running work)', async () => {
    const b = s3.backend();
    const bytes = Buffer.from('kept across a restart');
    await b.putBytes('across/restart', bytes, { ifAbsent: false });
    await s3.server.stop();
    try {
      // Both made while nothing listens: a read and a create-only write.
      const read = readText(b, 'across/restart');
      const write = b.putBytes('across/written-while-down', Buffer.from('late'), { ifAbsent: true });
      await new Promise((r) => setTimeout(r, 2000));
      await s3.server.restart();
      assert.equal(await read, 'kept across a restart');
      assert.equal(await write, 'stored');
      assert.equal(await readText(b, 'across/written-while-down'), 'late');
    } finally {
      // The file's other tests need the server whatever happened here.
      await s3.server.restart().catch(() => undefined);
    }
  });
});

describe('the folder backend', () => {
  // A guard, not a timing: before, the read waited for a writer for good (an open of a FIFO blocks until one comes).
  it('readTagged takes a key that is no regular file (a FIFO, a folder) for absent, without opening it', { timeout: 60_000 }, async (t) => {
    const b = new FolderBackend(tmp('folder-backend-'));
    mkdirSync(join(b.root, 'checkpoints', 'dir.json'), { recursive: true });
    const fifo = join(b.root, 'checkpoints', 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    // (A read left waiting is let go, so that this file's process can end whatever happened.)
    t.after(() => {
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // ENXIO: no reader waits on it.
      }
    });
    assert.equal(await b.readTagged('checkpoints/dir.json'), undefined);
    assert.equal(await b.readTagged('checkpoints/fifo.json'), undefined);
  });

  it('read refuses a key that is no regular file (a FIFO, a folder), naming it, without waiting on it', { timeout: 60_000 }, async (t) => {
    const b = new FolderBackend(tmp('folder-backend-'));
    mkdirSync(join(b.root, 'cache', 'aa', 'dir.json'), { recursive: true });
    const fifo = join(b.root, 'cache', 'aa', 'fifo.json');
    execFileSync('mkfifo', [fifo]);
    t.after(() => {
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // ENXIO: no reader waits on it.
      }
    });
    await assert.rejects(readText(b, 'cache/aa/fifo.json'), /fifo\.json is not a regular file/);
    await assert.rejects(readText(b, 'cache/aa/dir.json'), /dir\.json is not a regular file/);
    assert.equal(await readText(b, 'cache/aa/none.json'), undefined);
  });
});
