/**
 * A real SeaweedFS S3 server for a test file: `weed mini` on free ports with a throwaway data folder
 * (infra/seaweedfs.ts), one bucket, and a fresh key prefix per store so tests never see each other's
 * objects. Installed by the project's setup (scripts/ensure-setup.mjs), like the Temporal CLI.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { after, before } from 'node:test';
import { startSeaweed, type SeaweedHandle } from '../../infra/seaweedfs.ts';
import { ArtifactStore } from '../../src/store/artifact-store.ts';
import { S3Backend, type S3BackendOptions } from '../../src/store/s3-backend.ts';

export interface TestS3 {
  server: SeaweedHandle;
  bucket: string;
  /** AWS_* settings that reach this server. */
  env: Record<string, string>;
  /** A fresh `s3://bucket/<random prefix>` URL. */
  freshUrl(): string;
  backend(url?: string, opts?: S3BackendOptions): S3Backend;
  /** An artifact store with its local cache in a new temp folder, backed by `url` (default: a fresh prefix). */
  store(url?: string): ArtifactStore;
  stop(): Promise<void>;
}

/**
 * A SeaweedFS server for the test file (or suite) that calls this at its top: started before its
 * tests, stopped after them, and handed to `use` once it is up.
 */
export function useTestS3(use: (s3: TestS3) => void): void {
  let s3: TestS3 | undefined;
  before(async () => {
    s3 = await startTestS3();
    use(s3);
  });
  after(async () => {
    await s3?.stop();
  });
}

export async function startTestS3(): Promise<TestS3> {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-s3-'));
  const server = await startSeaweed({ dataDir: dir });
  const bucket = 'tempered-test';
  const env = {
    AWS_ENDPOINT_URL: server.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: server.accessKeyId,
    AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
  };
  const backend = (url = `s3://${bucket}/t-${randomBytes(4).toString('hex')}`, opts: S3BackendOptions = {}) =>
    new S3Backend(url, { env, ...opts });
  await createBucket(env, bucket);
  const tmps: string[] = [dir];
  return {
    server,
    bucket,
    env,
    freshUrl: () => `s3://${bucket}/t-${randomBytes(4).toString('hex')}`,
    backend,
    store(url) {
      const root = mkdtempSync(join(tmpdir(), 'tempered-s3cache-'));
      tmps.push(root);
      return new ArtifactStore(root, { remote: backend(url) });
    },
    async stop() {
      await server.stop();
      for (const d of tmps) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** A raw SDK client for this server: for what a test does behind the store's back (overwriting an object). */
export async function rawClient(env: Record<string, string>) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const sdk = await import('@aws-sdk/client-s3');
  const client = new sdk.S3Client({
    endpoint: env.AWS_ENDPOINT_URL,
    region: env.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
  });
  return { client, sdk };
}

/** Creates a bucket with the SDK (setup of the server under test, not part of what is tested). */
async function createBucket(env: Record<string, string>, bucket: string): Promise<void> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    endpoint: env.AWS_ENDPOINT_URL,
    region: env.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID!, secretAccessKey: env.AWS_SECRET_ACCESS_KEY! },
  });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
}
