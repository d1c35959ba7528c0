/**
 * One SHA-256 pass per uploaded byte instead of two. A put carries the body's SHA-256 twice: as the
 * checksum the server verifies (`x-amz-checksum-sha256`, base64) and, for SigV4, as the signed
 * payload hash (`x-amz-content-sha256`, hex). The SDK computes the checksum (or takes ours), then
 * its signer hashes the same bytes again unless the payload hash header is already set. This
 * middleware sets it from the checksum just before signing, so the second pass is skipped.
 *
 * Only for PutObject and UploadPart, whose checksum header is the body's own (a multipart
 * completion's would describe the whole object, not its XML body), and never for a streamed body
 * sent with a trailing checksum (aws-chunked), whose payload hash is a fixed marker instead.
 */
import type { S3Client } from '@aws-sdk/client-s3';

export const REUSE_CHECKSUM_MIDDLEWARE = 'temperedReuseChecksumAsPayloadHash';
const COMMANDS = new Set(['PutObjectCommand', 'UploadPartCommand']);

type Middleware = Parameters<S3Client['middlewareStack']['addRelativeTo']>[0];

export function reuseChecksumAsPayloadHash(client: S3Client): void {
  const middleware = (next: (args: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
    const headers = (args as { request?: { headers?: Record<string, string> } }).request?.headers;
    if (headers && COMMANDS.has(context.commandName ?? '')) {
      const names = Object.keys(headers).map((k) => k.toLowerCase());
      const checksum = Object.entries(headers).find(([k]) => k.toLowerCase() === 'x-amz-checksum-sha256')?.[1];
      if (checksum && !names.includes('x-amz-content-sha256') && !names.includes('x-amz-trailer')) {
        const digest = Buffer.from(checksum, 'base64');
        if (digest.length === 32) headers['x-amz-content-sha256'] = digest.toString('hex');
      }
    }
    return next(args);
  };
  // A finalize-step middleware; the stack's type is a union of every step's, which the SDK's types package names.
  client.middlewareStack.addRelativeTo(middleware as unknown as Middleware, {
    relation: 'before',
    toMiddleware: 'httpSigningMiddleware',
    name: REUSE_CHECKSUM_MIDDLEWARE,
    override: true,
  });
}
