/**
 * CORS for a browser app that calls the server itself (`--cors-origin`): off unless origins are named, through
 * @fastify/cors. A preflight is answered before the bearer-token check (a browser sends it without the
 * Authorization header it asks about), and names what the `openai` SDK sends.
 */
import type { FastifyCorsOptions } from '@fastify/cors';
import type { FastifyRequest } from 'fastify';
import { InputError } from '../errors.ts';

/**
 * Request headers a page may send beyond the CORS-safelisted ones: the bearer token, the JSON body's type, the
 * openai SDK's project headers, and its `X-Stainless-*` headers (which it sends on every request: lang, OS, arch,
 * runtime, package version, retry count, timeout, helper method), taken by their prefix, so a newer SDK's still pass.
 */
const ALLOWED_HEADERS = new Set(['authorization', 'content-type', 'openai-organization', 'openai-project', 'idempotency-key']);
const allowedHeader = (h: string) => ALLOWED_HEADERS.has(h) || /^x-stainless-[a-z0-9-]+$/.test(h);

/**
 * What a page's script may read of an answer beyond the safelisted headers: the request id (the SDK's `_request_id`),
 * and what the SDK's retries read (`Retry-After` of a 429, `x-should-retry` of a 500).
 */
const EXPOSED_HEADERS = ['x-request-id', 'retry-after', 'x-should-retry'];

/**
 * The origins as given, each checked: `scheme://host[:port]` exactly as a browser sends it in `Origin` (no path, no
 * trailing slash), http or https. `*` is refused: this server always takes a bearer token, and `*` would let any web
 * page its visitors open use it, so a page that holds the token (or a user who pastes it) drives the server from any
 * site, a server on a private network or localhost included, where naming the app's origins keeps other sites out.
 */
export function checkCorsOrigins(origins: readonly string[], where = 'serve.corsOrigins'): string[] {
  for (const o of origins) {
    if (o === '*')
      throw new InputError('"*" is not allowed: this server always takes a bearer token, and "*" would let every web page use it', {
        where,
        hint: 'name the origin of each app that calls it, e.g. --cors-origin https://app.example.com --cors-origin http://localhost:5173',
      });
    let url: URL | undefined;
    try {
      url = new URL(o);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== o)
      throw new InputError(
        `${JSON.stringify(o)} is not an origin as a browser sends it${url && url.origin !== 'null' ? ` (that would be ${JSON.stringify(url.origin)})` : ''}`,
        {
          where,
          hint: 'give scheme, host and port only, lower case, no path or trailing slash: https://app.example.com, http://localhost:5173',
        },
      );
  }
  return [...new Set(origins)];
}

/**
 * The CORS headers of an answer no hook sees (fastify's frameworkErrors: a path that is not percent-encoding), as
 * @fastify/cors writes them on the others, so an allowed page can read why it was refused; none without `origins`.
 */
export function corsAnswerHeaders(origins: readonly string[], origin: string | undefined): Record<string, string> {
  if (origins.length === 0) return {};
  if (origin === undefined || !origins.includes(origin)) return { vary: 'Origin' };
  return { 'access-control-allow-origin': origin, 'access-control-expose-headers': EXPOSED_HEADERS.join(', '), vary: 'Origin' };
}

/** @fastify/cors's options for `origins` (checked by checkCorsOrigins). */
export function corsOptions(origins: readonly string[]): FastifyCorsOptions {
  const base = {
    origin: [...origins],
    methods: ['GET', 'POST'],
    exposedHeaders: EXPOSED_HEADERS,
    // A page asks again after 10 minutes at most (Chrome's own cap is 2 hours, Firefox's 24).
    maxAge: 600,
    // An OPTIONS request without Origin is answered 204 with no CORS headers, not with the plugin's plain-text 400,
    // which is in no shape this server's clients read.
    strictPreflight: false,
  };
  return {
    hook: 'onRequest',
    delegator: (req: FastifyRequest, done: (err: Error | null, options: FastifyCorsOptions) => void) => {
      const asked = String(req.headers['access-control-request-headers'] ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter((h) => h !== '');
      // The headers asked for that are allowed; a browser refuses the request when one it needs is left out.
      done(null, { ...base, allowedHeaders: asked.filter(allowedHeader) });
    },
  };
}
