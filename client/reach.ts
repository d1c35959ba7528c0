/**
 * Why a Temporal address cannot be reached, said at once where it can be. The SDK's connection retries for its whole
 * connect timeout whatever the fault, so a mistyped host or port took 12 to 15 s to fail, as "Failed to connect before
 * the deadline", where the Temporal CLI says "could not resolve host" or "connection refused" in 60 ms.
 */
import { connect } from 'node:net';
import type { TemporalSettings } from '../infra/connection.ts';

const DEFAULT_PORT = 7233;

/** The host and port an address names (host[:port], IPv6 in brackets), or undefined where the SDK should judge it. */
function hostPort(address: string): { host: string; port: number } | undefined {
  try {
    const u = new URL(`tcp://${address}`);
    if (u.pathname || u.search || u.username) return undefined;
    return { host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port: u.port ? Number(u.port) : DEFAULT_PORT };
  } catch {
    return undefined;
  }
}

/** grpc-js goes through these proxies when set, so what this host reaches directly says nothing then. */
function proxied(env: NodeJS.ProcessEnv): boolean {
  return ['grpc_proxy', 'https_proxy', 'http_proxy'].some((k) => env[k] || env[k.toUpperCase()]);
}

/**
 * A fault certain before any gRPC: the host does not resolve, or nothing listens on the port. Undefined when a TCP
 * connection opens, or no answer comes within `timeoutMs` (a firewall that drops: the SDK's own timeout decides).
 */
export function certainFault(address: string, env: NodeJS.ProcessEnv = process.env, timeoutMs = 3000): Promise<string | undefined> {
  const hp = hostPort(address);
  if (!hp || proxied(env)) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const sock = connect({ host: hp.host, port: hp.port });
    const done = (why: string | undefined) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.once('connect', () => done(undefined));
    sock.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOTFOUND' || e.code === 'EAI_NONAME') done(`could not resolve host '${hp.host}'`);
      else if (e.code === 'ECONNREFUSED') done(`connection refused: nothing listens on ${hp.host}:${hp.port}`);
      else done(undefined);
    });
  });
}

/**
 * What to look at when something listens at the address but the SDK got no Temporal answer from it: most often TLS
 * on one side only, which fails as a silent timeout either way.
 */
export function tlsMismatchHint(s: TemporalSettings, env: NodeJS.ProcessEnv = process.env): string {
  if (!s.tls) {
    return 'TLS is off (no TEMPORAL_TLS_*, TEMPORAL_API_KEY): a server that takes TLS only, as Temporal Cloud and most clusters do, does not answer plain text; set TEMPORAL_TLS=true (with TEMPORAL_TLS_CA for a private CA)';
  }
  const why =
    s.apiKey && !env.TEMPORAL_TLS_CERT && !env.TEMPORAL_TLS_CA && !env.TEMPORAL_TLS
      ? 'TEMPORAL_API_KEY implies it'
      : 'TEMPORAL_TLS_* set it';
  return `TLS is on (${why}): a server without TLS, as a dev server, never completes the handshake`;
}
