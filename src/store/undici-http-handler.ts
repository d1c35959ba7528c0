/**
 * The AWS SDK's transport for the read-through cache's ranged GETs, over undici's connection pool
 * instead of Node's `http` module. Node's HTTP client copies every body chunk out of the socket's
 * buffer into a new one, and those copies keep V8's collector busy; undici hands the body on as
 * views of the socket's own buffers. Measured on 1 GiB downloads, alternating in one process: less
 * CPU per GiB on the main thread and in the GC threads (README, Benchmarks: store).
 *
 * GETs only: undici refuses `Expect: 100-continue`, which the SDK sends with large uploads, so puts
 * keep the SDK's default handler. The SDK still signs, retries and parses; this only moves bytes.
 */
import { Agent, errors } from 'undici';
import type { HttpHandlerOptions, HttpRequest, HttpResponse } from '@smithy/types';

/** undici's codes for a connection that broke or stalled: worth asking again, as the SDK does for ECONNRESET. */
const TRANSIENT = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

/** RFC 3986 escaping, as SigV4 signs query strings (encodeURIComponent leaves !'()* alone). */
const escape = (s: string) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

function queryString(query: HttpRequest['query'] = {}): string {
  const parts: string[] = [];
  for (const key of Object.keys(query).sort()) {
    const value = query[key];
    if (value === null || value === undefined) parts.push(escape(key));
    else for (const v of Array.isArray(value) ? value : [value]) parts.push(`${escape(key)}=${escape(v)}`);
  }
  return parts.join('&');
}

export class UndiciHttpHandler {
  private readonly agent = new Agent({ connections: 64 });

  async handle(request: HttpRequest, options: HttpHandlerOptions = {}): Promise<{ response: HttpResponse }> {
    if (request.method !== 'GET' && request.method !== 'HEAD')
      throw new Error(`UndiciHttpHandler carries GET and HEAD requests only, not ${request.method}`);
    const qs = queryString(request.query);
    try {
      const res = await this.agent.request({
        origin: `${request.protocol}//${request.hostname}${request.port ? `:${request.port}` : ''}`,
        path: `${request.path}${qs ? `?${qs}` : ''}`,
        method: request.method as 'GET' | 'HEAD',
        headers: request.headers,
        signal: options.abortSignal as AbortSignal | undefined,
      });
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
      return { response: { statusCode: res.statusCode, reason: undefined, headers, body: res.body } };
    } catch (e) {
      const code = (e as { code?: string }).code;
      // The SDK retries errors that carry this trait; an aborted request is not one of them.
      if (code && TRANSIENT.has(code) && !(e instanceof errors.RequestAbortedError)) Object.assign(e as object, { $retryable: {} });
      throw e;
    }
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {
    void this.agent.close();
  }
}
