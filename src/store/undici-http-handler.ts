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
import { buildQueryString, HttpResponse } from '@smithy/core/protocols';
import type { HttpHandlerOptions, HttpRequest } from '@smithy/types';
import { Agent } from 'undici';

/** undici's codes for a connection that broke or stalled: worth asking again, as the SDK does for ECONNRESET. */
const TRANSIENT = new Set([
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);

export class UndiciHttpHandler {
  private readonly agent = new Agent({ connections: 64 });

  async handle(request: HttpRequest, options: HttpHandlerOptions = {}): Promise<{ response: HttpResponse }> {
    if (request.method !== 'GET' && request.method !== 'HEAD')
      throw new Error(`UndiciHttpHandler carries GET and HEAD requests only, not ${request.method}`);
    // The SDK's own query builder, so the query is escaped exactly as its signer signed it.
    const qs = buildQueryString(request.query ?? {});
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
      return { response: new HttpResponse({ statusCode: res.statusCode, headers, body: res.body }) };
    } catch (e) {
      // The SDK retries errors that carry this trait (an aborted request has a code of its own).
      if (TRANSIENT.has((e as { code?: string }).code ?? '')) Object.assign(e as object, { $retryable: {} });
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
