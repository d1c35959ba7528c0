/**
 * A folder's files as a Hugging Face Hub repository on loopback, for a test's length: the Hub's layout
 * (/org/name/resolve/<revision>/<file>), the commit and each file's sha256 in the headers, as downloads read them.
 * For tests of what a first download says; src/models/sources.test.ts keeps its own, fuller Hub (LFS redirects, ranges).
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** Serves `dir`'s files as `hf:<repo>` until the test ends; returns the URL to give as HF_ENDPOINT, and the files served. */
export async function loopbackHub(t: TestContext, dir: string, repo: string): Promise<{ url: string; files: Map<string, Buffer> }> {
  const files = new Map(
    readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => [e.name, readFileSync(join(dir, e.name))] as const),
  );
  const prefix = `/${repo}/resolve/`;
  const hub = createServer((req, res) => {
    const rest = req.url?.startsWith(prefix) ? req.url.slice(prefix.length) : undefined;
    const m = rest === undefined ? null : /^[^/]+\/(.+)$/.exec(rest);
    const body = m ? files.get(decodeURIComponent(m[1]!)) : undefined;
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, {
      'content-length': body.length,
      etag: `"${createHash('sha256').update(body).digest('hex')}"`,
      'x-repo-commit': 'c'.repeat(40),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => hub.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => hub.close(() => r())));
  return { url: `http://127.0.0.1:${(hub.address() as AddressInfo).port}`, files };
}
