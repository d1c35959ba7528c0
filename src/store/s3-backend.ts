/**
 * The object backend for any S3-compatible store (AWS S3, SeaweedFS, MinIO, Ceph RGW, R2…), through the
 * AWS SDK v3. Settings come from the usual environment: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`)
 * for a self-hosted store, which then gets path-style addressing (`AWS_S3_FORCE_PATH_STYLE=false`
 * turns it off); `AWS_REGION`; credentials from the SDK's default chain (`AWS_ACCESS_KEY_ID` /
 * `AWS_SECRET_ACCESS_KEY`, a profile, instance roles).
 *
 * Every put sends a checksum the server verifies: the whole object's SHA-256 for files up to one
 * part, per-part SHA-256 for multipart uploads. Create-only puts send `If-None-Match: *`; a 412 means
 * the object is already stored. Transient faults (network, 5xx, throttling) are retried by the SDK;
 * a bad bucket, bad credentials or a refused request are InputErrors that name the setting to fix.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { InputError } from '../errors.ts';
import { downloadRanges, type RangeBody } from './ranged-download.ts';
import { reuseChecksumAsPayloadHash } from './s3-payload-hash.ts';
import { StoreRetryStrategy, storeRetryMs } from './s3-retry.ts';
import {
  ObjectSizeMismatch,
  readSmallObject,
  SMALL_OBJECT_MAX_BYTES,
  type ObjectBackend,
  type PutFileOptions,
  type StoredObject,
  type UnfinishedUpload,
} from './object-backend.ts';

import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { KEY_PREFIXES } from './key-layout.ts';

type Sdk = typeof import('@aws-sdk/client-s3') & { Upload: typeof import('@aws-sdk/lib-storage').Upload };
let sdkLoad: Promise<Sdk> | undefined;
/** The SDK takes about half a second to load: only processes that use an S3 store pay for it. */
function sdk(): Promise<Sdk> {
  // The pinned SDK supports Node 20; its notice that later releases will not is no news to a user.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return (sdkLoad ??= Promise.all([import('@aws-sdk/client-s3'), import('@aws-sdk/lib-storage')]).then(([s3, lib]) => ({
    ...s3,
    Upload: lib.Upload,
  })));
}

export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing slashes ('' for the bucket root). */
  prefix: string;
}

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses `s3://bucket/prefix`; anything else is an InputError naming `what` (the setting it came from). */
export function parseS3Url(url: string, what = 'TEMPERED_STORE'): S3Location {
  const m = /^s3:\/\/([^/]*)\/?(.*)$/.exec(url);
  if (!m) throw new InputError(`${what}=${url} is not an s3:// URL`, { where: what, hint: 'use s3://bucket/prefix' });
  const bucket = m[1]!;
  if (!BUCKET.test(bucket) || bucket.includes('..'))
    throw new InputError(`${what}=${url}: ${JSON.stringify(bucket)} is not a valid bucket name`, {
      where: what,
      hint: 'bucket names are 3-63 characters: lower-case letters, digits, dots and hyphens',
    });
  const prefix = m[2]!.replace(/^\/+|\/+$/g, '');
  if (prefix.split('/').some((s) => s === '.' || s === '..') || prefix.includes('//'))
    throw new InputError(`${what}=${url}: the prefix ${JSON.stringify(prefix)} has empty, . or .. segments`, { where: what });
  // Characters that mean something in a URL (?, #, %, +, &, spaces) would change what a request's
  // path or copy source names.
  if (!/^[A-Za-z0-9._\-/=]*$/.test(prefix))
    throw new InputError(`${what}=${url}: the prefix ${JSON.stringify(prefix)} has characters other than letters, digits and . _ - = /`, {
      where: what,
      hint: 'use a prefix of letters, digits, dots, dashes, underscores and slashes',
    });
  return { bucket, prefix };
}

export interface S3BackendOptions {
  /** Parts of a multipart upload, and the size above which an upload is multipart (min 5 MiB). */
  partSize?: number;
  /** Parts in flight at once per upload. */
  queueSize?: number;
  /** Ranges a download into the cache (`readInto`) fetches, and how many at once (see the defaults below). */
  getPartSize?: number;
  getConcurrency?: number;
  /**
   * How long a connection may stay silent, mid-answer too, before the request fails and is retried
   * (default 60 s): without it a server that stops sending holds a stage for ever. Connecting may
   * take 10 s.
   */
  idleTimeoutMs?: number;
  /** How long a request keeps retrying a store that is away or overloaded (default TEMPERED_S3_RETRY_S, 20 s). */
  retryMs?: number;
  env?: NodeJS.ProcessEnv;
}

const MiB = 1024 * 1024;
/**
 * Download ranges for `readInto`: 16 MiB, 8 in flight. Measured with 1 GiB on 2 cores with SeaweedFS
 * on the same machine: 16x8 and 32x8 did best, ahead of 16x4, 32x4 and 64x4, within noise of each other;
 * the smaller ranges keep the hash (which follows the first incomplete range) closer behind the
 * download. Ranges are written in place, so their size costs no memory.
 */
const GET_PART = 16 * MiB;
const GET_CONCURRENCY = 8;

export class S3Backend implements ObjectBackend {
  readonly url: string;
  private readonly config: S3ClientConfig;
  private s3: { client: S3Client; sdk: Sdk } | undefined;
  readonly location: S3Location;
  readonly endpoint: string | undefined;
  private readonly partSize: number;
  private readonly queueSize: number;
  private readonly getPartSize: number;
  private readonly getConcurrency: number;
  private readonly retryMs: number;
  private checked: Promise<void> | undefined;
  /** The AWS settings it was given, when not the process's own: for reopen(). */
  private readonly givenEnv: Record<string, string | undefined> | undefined;

  constructor(url: string, opts: S3BackendOptions = {}) {
    const env = opts.env ?? process.env;
    this.givenEnv = opts.env && Object.fromEntries(Object.entries(opts.env).filter(([k]) => k.startsWith('AWS_')));
    this.location = parseS3Url(url);
    this.url = `s3://${this.location.bucket}${this.location.prefix ? `/${this.location.prefix}` : ''}`;
    this.endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
    if (this.endpoint) {
      try {
        new URL(this.endpoint);
      } catch {
        throw new InputError(`AWS_ENDPOINT_URL=${this.endpoint} is not a URL`, {
          where: 'AWS_ENDPOINT_URL',
          hint: 'e.g. http://127.0.0.1:8333',
        });
      }
    }
    const region = env.AWS_REGION || env.AWS_DEFAULT_REGION || (this.endpoint ? 'us-east-1' : undefined);
    if (!region)
      throw new InputError(`${this.url} needs a region`, {
        where: 'AWS_REGION',
        hint: 'set AWS_REGION (or AWS_ENDPOINT_URL for a self-hosted store)',
      });
    this.retryMs = opts.retryMs ?? storeRetryMs(env);
    const pathStyle = env.AWS_S3_FORCE_PATH_STYLE !== undefined ? env.AWS_S3_FORCE_PATH_STYLE !== 'false' : !!this.endpoint;
    this.partSize = Math.max(5 * MiB, opts.partSize ?? Number(env.TEMPERED_S3_PART_MB ?? 16) * MiB);
    this.queueSize = opts.queueSize ?? 4;
    this.getPartSize = Math.max(1, opts.getPartSize ?? Number(env.TEMPERED_S3_GET_PART_MB ?? GET_PART / MiB) * MiB);
    this.getConcurrency = Math.max(1, opts.getConcurrency ?? GET_CONCURRENCY);
    this.config = {
      region,
      endpoint: this.endpoint,
      forcePathStyle: pathStyle,
      // Network errors, 5xx and throttling are retried with backoff for opts.retryMs (a store that
      // restarts is waited out); 4xx input errors are not (s3-retry.ts).
      retryStrategy: new StoreRetryStrategy(this.retryMs),
      requestHandler: { connectionTimeout: 10_000, socketTimeout: opts.idleTimeoutMs ?? 60_000 },
      // Not `cacheMiddleware`: the CPU it saved on each request did not show in the orchestration
      // bench, and the cached handler keeps the first command of each
      // kind (a PutObject's body, an UploadPart's part: up to 16 MiB each) for the client's life,
      // shares one context object between concurrent requests, and is dropped by every request that
      // carries options (each ranged download's abort signal).
      ...(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
        ? {
            credentials: {
              accessKeyId: env.AWS_ACCESS_KEY_ID,
              secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
              ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
            },
          }
        : {}),
    };
  }

  private key(k: string): string {
    // Keys are built by tempered (hashes, checked names), but one with an empty, . or .. segment
    // would be a path some servers and proxies resolve out of the prefix.
    if (k !== '' && k.split('/').some((s, i, all) => s === '.' || s === '..' || (s === '' && i < all.length - 1)))
      throw new InputError(`bad object key ${JSON.stringify(k)}`);
    return this.location.prefix ? `${this.location.prefix}/${k}` : k;
  }

  /** The SDK client (created on first use); checks once that the bucket exists and the credentials work. */
  async connect(): Promise<{ client: S3Client; sdk: Sdk }> {
    if (!this.s3) {
      const lib = await sdk();
      if (!this.s3) {
        const client = new lib.S3Client(this.config);
        reuseChecksumAsPayloadHash(client);
        this.s3 = { client, sdk: lib };
      }
    }
    const { client, sdk: lib } = this.s3;
    this.checked ??= client.send(new lib.HeadBucketCommand({ Bucket: this.location.bucket })).then(
      () => undefined,
      (e: unknown) => {
        this.checked = undefined;
        throw this.explain(e, 'open', true);
      },
    );
    await this.checked;
    return this.s3;
  }

  /** Turns an SDK error into an InputError when the cause is a setting; anything else is returned as it is (transient). */
  private explain(e: unknown, op: string, bucketCheck = false): unknown {
    const err = e as Error & { $metadata?: { httpStatusCode?: number }; Code?: string };
    const status = err.$metadata?.httpStatusCode;
    const code = err.Code ?? err.name;
    const where = `${this.url}${this.endpoint ? ` at ${this.endpoint}` : ''}`;
    if (code === 'NoSuchBucket' || (bucketCheck && status === 404))
      return new InputError(`the bucket ${this.location.bucket} does not exist (${where})`, {
        where: 'TEMPERED_STORE',
        hint: 'create the bucket first, or fix the bucket name / AWS_ENDPOINT_URL',
      });
    if (code === 'CredentialsProviderError' || /Could not load credentials/i.test(err.message ?? ''))
      return new InputError(`no credentials for ${where}`, {
        where: 'AWS_ACCESS_KEY_ID',
        hint: 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)',
      });
    if (status === 403 || code === 'InvalidAccessKeyId' || code === 'SignatureDoesNotMatch' || code === 'AccessDenied')
      // The SDK names an unparsed 403 "Unknown": the status says it.
      return new InputError(`${op} on ${where} was refused (${code === 'Unknown' ? 'access denied' : code}${status ? ` ${status}` : ''})`, {
        where: 'AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY',
        hint: 'check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that they may read and write the bucket',
      });
    // AWS answers a request to the wrong region with a redirect; so does a proxy that wants https.
    if (status === 301 || status === 307 || code === 'PermanentRedirect')
      return new InputError(
        `${op} on ${where} was redirected (${status ?? code}): the bucket is in another region, or the endpoint wants another address`,
        {
          where: 'AWS_REGION / AWS_ENDPOINT_URL',
          hint: "set AWS_REGION to the bucket's region, and AWS_ENDPOINT_URL to the address the store answers on (https where it redirects there)",
        },
      );
    // A checksum the server computed differently means the bytes changed on the way: send them again.
    if (code === 'BadDigest' || code === 'XAmzContentSHA256Mismatch' || code === 'InvalidDigest') return e;
    // A store that lacks what tempered relies on (conditional writes, checksums) or that is not an S3 API.
    if (status === 405 || status === 411 || status === 501 || code === 'NotImplemented')
      return new InputError(`${op} on ${where} is not supported by the store (${code}${status ? ` ${status}` : ''})`, {
        where: 'TEMPERED_STORE',
        hint: 'the store must speak S3, with conditional writes (If-None-Match: *) and SHA-256 checksums; check AWS_ENDPOINT_URL',
      });
    // AWS answers an upload that went quiet for about 20 s with a 400 RequestTimeout: the network's fault, not a setting.
    if (code === 'RequestTimeout') return e;
    if (status === 400 || code === 'InvalidBucketName')
      return new InputError(`${op} on ${where} was rejected as a bad request (${code}): ${err.message}`, { where: 'TEMPERED_STORE' });
    // Still transient (a stage retries it), but said so a person knows where to look.
    const net = (err as NodeJS.ErrnoException).code;
    if (status === undefined && ((net && UNREACHABLE.has(net)) || err.name === 'TimeoutError'))
      return new Error(
        `${op} on ${where}: the store did not answer (${err.message}) in ${tried(err)}; check that it is running and reachable from this host (TEMPERED_STORE, AWS_ENDPOINT_URL)`,
        { cause: e },
      );
    return e;
  }

  private async call<T>(op: string, fn: (client: S3Client, lib: Sdk) => Promise<T>): Promise<T> {
    const { client, sdk: lib } = await this.connect();
    try {
      return await fn(client, lib);
    } catch (e) {
      throw this.explain(e, op);
    }
  }

  async putBytes(key: string, bytes: Uint8Array, opts: { ifAbsent: boolean }): Promise<'stored' | 'exists'> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    return this.putOne(key, async () => bytes, { sha256, bytes: bytes.byteLength, ifAbsent: opts.ifAbsent });
  }

  async readTagged(key: string, maxBytes = SMALL_OBJECT_MAX_BYTES): Promise<{ bytes: Buffer; etag: string } | undefined> {
    let r;
    try {
      r = await this.call('get', (c, lib) => c.send(new lib.GetObjectCommand({ Bucket: this.location.bucket, Key: this.key(key) })));
    } catch (e) {
      if (isStatus(e, 404)) return undefined;
      throw e;
    }
    const etag = r.ETag;
    const bytes = await readSmallObject(`${this.url}/${key}`, { size: r.ContentLength, body: r.Body as Readable }, maxBytes, () => {
      if (!etag)
        throw new InputError(`${this.url}/${key}: the store answered without an ETag, which compare-and-swap writes need`, {
          where: 'TEMPERED_STORE',
          hint: 'the store must speak S3 with ETags and conditional writes (If-Match); check AWS_ENDPOINT_URL',
        });
    });
    return { bytes, etag: etag! };
  }

  /** A conditional PutObject: `If-Match: <etag>`, or `If-None-Match: *` for an object that must not exist yet. */
  async swapBytes(key: string, bytes: Uint8Array, expect: string | undefined): Promise<{ etag: string } | 'conflict'> {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await this.call('put', (client, lib) =>
          client.send(
            new lib.PutObjectCommand({
              Bucket: this.location.bucket,
              Key: this.key(key),
              Body: bytes,
              ContentLength: bytes.byteLength,
              ChecksumSHA256: Buffer.from(sha256, 'hex').toString('base64'),
              ...(expect === undefined ? { IfNoneMatch: '*' } : { IfMatch: expect }),
            }),
          ),
        );
        if (!r.ETag) throw new Error(`${this.url}/${key}: the store answered a put without an ETag`);
        return { etag: r.ETag };
      } catch (e) {
        // 412: changed since (or there already); 404: gone since (AWS answers If-Match on a missing key so).
        if (isStatus(e, 412) || isStatus(e, 404) || (e as Error).name === 'PreconditionFailed') return 'conflict';
        // Another conditional put of the key under way: tried again, as AWS asks (storedOrExists).
        if (!isStatus(e, 409) || attempt >= 4) throw e;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }

  reopen(): { url: string; env?: Record<string, string | undefined> } {
    return { url: this.url, ...(this.givenEnv ? { env: this.givenEnv } : {}) };
  }

  async putFile(key: string, file: string, opts: PutFileOptions): Promise<'stored' | 'exists'> {
    if (opts.bytes <= this.partSize) return this.putOne(key, () => readFile(file), opts);
    // Streamed in parts, each with its own SHA-256; parts are retried one by one, and a failed upload
    // is aborted so no orphaned parts stay behind.
    const cond = opts.ifAbsent ? { IfNoneMatch: '*' } : {};
    return storedOrExists(() =>
      this.call('put', (client, lib) =>
        new lib.Upload({
          client,
          params: {
            Bucket: this.location.bucket,
            Key: this.key(key),
            Body: createReadStream(file),
            ContentLength: opts.bytes,
            ChecksumAlgorithm: 'SHA256',
            ...cond,
          },
          partSize: this.partSize,
          queueSize: this.queueSize,
          leavePartsOnError: false,
        }).done(),
      ),
    );
  }

  /** One PutObject: the server checks the whole object's SHA-256 against the one we computed. */
  private async putOne(key: string, body: () => Promise<Uint8Array>, opts: PutFileOptions): Promise<'stored' | 'exists'> {
    const cond = opts.ifAbsent ? { IfNoneMatch: '*' } : {};
    return storedOrExists(() =>
      this.call('put', async (client, lib) =>
        client.send(
          new lib.PutObjectCommand({
            Bucket: this.location.bucket,
            Key: this.key(key),
            Body: await body(),
            ContentLength: opts.bytes,
            ChecksumSHA256: Buffer.from(opts.sha256, 'hex').toString('base64'),
            ...cond,
          }),
        ),
      ),
    );
  }

  /**
   * The object's bytes in order. The first request asks for one part's range; an object larger than
   * that is fetched as ranged GETs, `queueSize` in flight (each pinned to the first answer's ETag, so
   * an object replaced meanwhile fails instead of mixing), and handed on in order, so the caller
   * hashes while it writes.
   */
  async read(key: string): Promise<Readable | undefined> {
    const Bucket = this.location.bucket;
    const Key = this.key(key);
    const range = (start: number, end: number, etag?: string) =>
      this.call('get', (c, lib) =>
        c.send(new lib.GetObjectCommand({ Bucket, Key, Range: `bytes=${start}-${end}`, ...(etag ? { IfMatch: etag } : {}) })),
      );
    let first: Awaited<ReturnType<typeof range>>;
    try {
      first = await range(0, this.partSize - 1);
    } catch (e) {
      if (isStatus(e, 404)) return undefined;
      // An empty object has no byte 0 to range over.
      if (isStatus(e, 416)) return Readable.from([]);
      throw e;
    }
    const total = Number(/\/(\d+)$/.exec(first.ContentRange ?? '')?.[1] ?? NaN);
    if (!Number.isFinite(total) || total <= this.partSize) return first.Body as Readable;
    const { partSize, queueSize } = this;
    const etag = first.ETag;
    const parts = Math.ceil(total / partSize);
    const fetchPart = (i: number): Promise<Uint8Array> => {
      const p = range(i * partSize, Math.min(total, (i + 1) * partSize) - 1, etag).then((r) => r.Body!.transformToByteArray());
      p.catch(() => undefined); // awaited in order below; a consumer that stops early must not leave it unhandled
      return p;
    };
    async function* inOrder(): AsyncGenerator<Buffer> {
      const firstBody = first.Body as Readable;
      const inflight: Promise<Uint8Array>[] = [];
      let next = 1;
      // The next ranges are asked for once the first has been read through: a reader that stops
      // early (garbage collection looks at an object's first bytes) must not leave gigabytes coming.
      for await (const chunk of firstBody) yield chunk as Buffer;
      while (next < parts && inflight.length < queueSize) inflight.push(fetchPart(next++));
      while (inflight.length) {
        const bytes = await inflight.shift()!;
        if (next < parts) inflight.push(fetchPart(next++));
        yield Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      }
    }
    return Readable.from(inOrder(), { objectMode: false });
  }

  /**
   * The object into a file, for the read-through cache: the first request asks for one range and
   * learns the size and ETag; the rest come as ranged GETs, `getConcurrency` in flight, each pinned
   * to that ETag (an object replaced meanwhile fails with 412 instead of mixing two versions), each
   * written at its offset as it streams in (ranged-download.ts: a broken-off range is resumed).
   */
  async readInto(key: string, file: FileHandle, onPrefix: (n: number) => void, expectBytes?: number): Promise<number | undefined> {
    const Bucket = this.location.bucket;
    const Key = this.key(key);
    const partSize = this.getPartSize;
    const range = (start: number, end: number, etag?: string, abortSignal?: AbortSignal) =>
      this.call('get', (client, lib) =>
        client.send(new lib.GetObjectCommand({ Bucket, Key, Range: `bytes=${start}-${end}`, ...(etag ? { IfMatch: etag } : {}) }), {
          abortSignal,
        }),
      );
    let first: Awaited<ReturnType<typeof range>>;
    try {
      first = await range(0, partSize - 1);
    } catch (e) {
      if (isStatus(e, 404)) return undefined;
      if (isStatus(e, 416)) return 0; // an empty object has no byte 0 to range over
      throw e;
    }
    const total = Number(/\/(\d+)$/.exec(first.ContentRange ?? '')?.[1] ?? first.ContentLength);
    if (!Number.isSafeInteger(total) || total < 0) {
      discard(first.Body);
      throw new Error(`${this.url}/${key}: the server gave no usable size (Content-Range ${first.ContentRange})`);
    }
    if (expectBytes !== undefined && total > expectBytes) {
      discard(first.Body);
      throw new ObjectSizeMismatch(`${this.url}/${key} has ${total} bytes, more than the ${expectBytes} expected`);
    }
    // The first answer must be the range asked for (or, from a server that ignores ranges, the whole
    // object): bytes written at the wrong offset would only fail the hash, and a failed hash
    // quarantines the bucket's copy.
    const firstWant = `bytes 0-${Math.min(partSize, total) - 1}/${total}`;
    if (first.ContentRange ? first.ContentRange !== firstWant : first.ContentLength !== total) {
      discard(first.Body);
      throw new Error(
        `${this.url}/${key}: asked for ${firstWant}, the server sent ${first.ContentRange ?? `${first.ContentLength} bytes without a Content-Range`}`,
      );
    }
    const etag = first.ETag;
    await downloadRanges({
      file,
      total,
      // A server that ignored the range sent the whole object in this first answer.
      partSize: first.ContentRange ? partSize : Math.max(1, total),
      concurrency: this.getConcurrency,
      first: first.Body as unknown as RangeBody,
      fetch: async (start, end, signal) => {
        const r = await range(start, end - 1, etag, signal);
        // A server that ignored the range would send other bytes at this offset.
        const want = `bytes ${start}-${end - 1}/${total}`;
        if (r.ContentRange !== want) {
          discard(r.Body);
          throw new Error(`${this.url}/${key}: asked for ${want}, the server sent ${r.ContentRange ?? 'no Content-Range'}`);
        }
        return r.Body as unknown as RangeBody;
      },
      onPrefix,
      // Refused requests, and an object replaced or deleted meanwhile (412, 404): the caller starts over.
      fatal: (e) => e instanceof InputError || isStatus(e, 412) || isStatus(e, 404) || (e as Error).name === 'AbortError',
    });
    return total;
  }

  async head(key: string): Promise<StoredObject | undefined> {
    try {
      const r = await this.call('head', (c, lib) =>
        c.send(new lib.HeadObjectCommand({ Bucket: this.location.bucket, Key: this.key(key) })),
      );
      // No length is no answer: 0 would read as a wrong-sized object, and a wrong-sized one is quarantined.
      if (r.ContentLength === undefined) throw new Error(`${this.url}/${key}: the server answered HEAD without a Content-Length`);
      return { bytes: r.ContentLength, modified: lastModified(r.LastModified) };
    } catch (e) {
      if (isStatus(e, 404)) return undefined;
      throw e;
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    for await (const o of this.listing(prefix)) yield o.key;
  }

  async *listObjects(prefix: string): AsyncIterable<StoredObject & { key: string }> {
    for await (const o of this.listing(prefix)) {
      if (o.size === undefined) throw new Error(`${this.url}/${o.key}: the server listed it without a size`);
      yield { key: o.key, bytes: o.size, modified: lastModified(o.modified) };
    }
  }

  private async *listing(prefix: string): AsyncIterable<{ key: string; size?: number; modified?: Date }> {
    const strip = this.location.prefix ? this.location.prefix.length + 1 : 0;
    const asked = this.key(prefix);
    let token: string | undefined;
    do {
      const page = await this.call('list', (c, lib) =>
        c.send(new lib.ListObjectsV2Command({ Bucket: this.location.bucket, Prefix: this.key(prefix), ContinuationToken: token })),
      );
      // Only keys under the prefix asked for: a server (or proxy) that ignores Prefix must not hand
      // callers that delete what they list (checkpoint clean-up) the bucket's other objects.
      for (const o of page.Contents ?? [])
        if (o.Key?.startsWith(asked)) yield { key: o.Key.slice(strip), size: o.Size, modified: o.LastModified };
      // A listing cut short without a way on would look complete: garbage collection must not trust it.
      if (page.IsTruncated && !page.NextContinuationToken)
        throw new Error(`${this.url}: the server cut the listing of ${prefix} short without a continuation token`);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async *unfinishedUploads(prefix: string): AsyncIterable<UnfinishedUpload> {
    const strip = this.location.prefix ? this.location.prefix.length + 1 : 0;
    const asked = this.key(prefix);
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    do {
      const page = await this.call('list uploads', (c, lib) =>
        c.send(
          new lib.ListMultipartUploadsCommand({
            Bucket: this.location.bucket,
            Prefix: asked,
            KeyMarker: keyMarker,
            UploadIdMarker: idMarker,
          }),
        ),
      );
      // Only keys under the prefix asked for, as in listing(): what is listed here gets aborted.
      for (const u of page.Uploads ?? [])
        if (u.Key?.startsWith(asked) && u.UploadId) yield { key: u.Key.slice(strip), id: u.UploadId, started: lastModified(u.Initiated) };
      if (page.IsTruncated && !page.NextKeyMarker && !page.NextUploadIdMarker)
        throw new Error(`${this.url}: the server cut the listing of unfinished uploads short without a marker`);
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      idMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker !== undefined || idMarker !== undefined);
  }

  async abortUpload(upload: UnfinishedUpload): Promise<void> {
    try {
      await this.call('abort upload', (c, lib) =>
        c.send(new lib.AbortMultipartUploadCommand({ Bucket: this.location.bucket, Key: this.key(upload.key), UploadId: upload.id })),
      );
    } catch (e) {
      if (!isStatus(e, 404)) throw e;
    }
  }

  async delete(key: string): Promise<void> {
    await this.call('delete', (c, lib) => c.send(new lib.DeleteObjectCommand({ Bucket: this.location.bucket, Key: this.key(key) })));
  }

  /**
   * A conditional DeleteObject (`If-Match: <etag>`), as swapBytes' put: AWS S3 and SeaweedFS 4.48 answer a stale tag with
   * 412 (tests/shared-checkpoint-race.test.ts checks the server). A store that ignores the header deletes whatever
   * version is there; one that refuses it (501 NotImplemented, as LocalStack did) is sent the plain delete gc sent before
   * conditional deletes, rather than fail the whole collection: README, "Garbage collection".
   */
  async deleteTagged(key: string, expect: string): Promise<'deleted' | 'conflict'> {
    const Bucket = this.location.bucket;
    const Key = this.key(key);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.call('delete', (c, lib) =>
          c.send(new lib.DeleteObjectCommand({ Bucket, Key, IfMatch: expect })).catch((e: unknown) => {
            // (Before `call` turns the 501 into the InputError a store without conditional writes gets.)
            if (isStatus(e, 501) || (e as { Code?: string }).Code === 'NotImplemented' || (e as Error).name === 'NotImplemented')
              return c.send(new lib.DeleteObjectCommand({ Bucket, Key }));
            throw e;
          }),
        );
        return 'deleted';
      } catch (e) {
        // 412: changed since; 404: gone since (AWS answers If-Match on a missing key so; SeaweedFS with 412).
        if (isStatus(e, 412) || isStatus(e, 404) || (e as Error).name === 'PreconditionFailed') return 'conflict';
        // A conditional write of the key under way: tried again, as AWS asks.
        if (!isStatus(e, 409) || attempt >= 4) throw e;
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
  }

  async quarantine(key: string): Promise<void> {
    const Bucket = this.location.bucket;
    const aside = this.key(`${KEY_PREFIXES.quarantine}${key.replaceAll('/', '_')}.${Date.now()}`);
    try {
      await this.call('quarantine', (c, lib) =>
        c.send(
          new lib.CopyObjectCommand({
            Bucket,
            Key: aside,
            CopySource: `${Bucket}/${this.key(key).split('/').map(encodeURIComponent).join('/')}`,
          }),
        ),
      );
    } catch (e) {
      if (isStatus(e, 404)) return;
      throw e;
    }
    await this.delete(key);
  }
}

/** An object's write time as the server gave it, if valid: without one garbage collection keeps the object. */
function lastModified(d: Date | undefined): Date | undefined {
  return d instanceof Date && !Number.isNaN(d.getTime()) ? d : undefined;
}

function isStatus(e: unknown, status: number): boolean {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode === status;
}

/** How many tries a failed request had and how long it waited between them, as the SDK recorded. */
function tried(err: unknown): string {
  const meta = (err as { $metadata?: { attempts?: number; totalRetryDelay?: number } }).$metadata;
  const tries = meta?.attempts ?? 1;
  return tries === 1 ? '1 try' : `${tries} tries, with ${((meta?.totalRetryDelay ?? 0) / 1000).toFixed(1)} s of waits between them`;
}

/** Errors of a connection that could not be made or was cut: the store is down, restarting or out of reach. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * 'stored', or 'exists' when a create-only put found the key taken (412 to `If-None-Match: *`). A
 * 409 (ConditionalRequestConflict: another create-only put of the key was under way, as when two
 * workers store the same artifact) is tried again, as AWS asks, and then settles as 412 or 200.
 */
async function storedOrExists(put: () => Promise<unknown>): Promise<'stored' | 'exists'> {
  for (let attempt = 1; ; attempt++) {
    try {
      await put();
      return 'stored';
    } catch (e) {
      if (isStatus(e, 412) || (e as Error).name === 'PreconditionFailed') return 'exists';
      if (!isStatus(e, 409) || attempt >= 4) throw e;
      await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    }
  }
}

/** Drops a response body that will not be read, without reading it: a hostile one may never end. */
function discard(body: unknown): void {
  const stream = body as { destroy?: () => void } | undefined;
  stream?.destroy?.();
}
