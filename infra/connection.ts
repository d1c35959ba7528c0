/**
 * Temporal connection settings from the environment. Without TEMPORAL_ADDRESS tempered uses its
 * embedded dev server; with it, tempered talks to that cluster and starts nothing.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import { ChannelCredentials, type CallCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { Connection, type ConnectionOptions } from '@temporalio/client';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import { devServerPort, embeddedServerInfo } from './dev-server.ts';
import { installRuntime } from './runtime.ts';
import { temporalDataConverter } from './payload-codec.ts';

export interface TemporalSettings {
  address: string;
  namespace: string;
  /** True when no TEMPORAL_ADDRESS was given and the embedded dev server is meant. */
  embedded: boolean;
  tls?: { serverNameOverride?: string; serverRootCACertificate?: Buffer; clientCertPair?: { crt: Buffer; key: Buffer } } | true;
  apiKey?: string;
  uiUrl?: string;
}

export const TASK_QUEUE = process.env.TEMPERED_TASK_QUEUE ?? 'tempered';

export function temporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const embedded = !env.TEMPORAL_ADDRESS;
  const running = embedded ? embeddedServerInfo() : undefined;
  const address = env.TEMPORAL_ADDRESS || (running?.address ?? `127.0.0.1:${devServerPort(env)}`);
  // Set but empty (a template's unset value) is unset, as for TEMPORAL_ADDRESS and Temporal's own CLI: '' reached the
  // server as a namespace name and came back as "Failed to list workflows".
  const namespace = env.TEMPORAL_NAMESPACE || 'default';
  let tls: TemporalSettings['tls'];
  if (env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_KEY || env.TEMPORAL_TLS_CA || tlsFlag(env.TEMPORAL_TLS)) {
    if (!!env.TEMPORAL_TLS_CERT !== !!env.TEMPORAL_TLS_KEY) {
      throw new Error('set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (paths to the client certificate and key), or neither');
    }
    tls = {
      serverNameOverride: env.TEMPORAL_TLS_SERVER_NAME,
      serverRootCACertificate: env.TEMPORAL_TLS_CA ? pemFile(env, 'TEMPORAL_TLS_CA') : undefined,
      clientCertPair: env.TEMPORAL_TLS_CERT ? { crt: pemFile(env, 'TEMPORAL_TLS_CERT'), key: pemFile(env, 'TEMPORAL_TLS_KEY') } : undefined,
    };
  }
  const apiKey = env.TEMPORAL_API_KEY;
  if (apiKey && !tls) tls = true;
  const uiUrl = env.TEMPORAL_UI_URL ?? (embedded ? (running?.uiUrl ?? 'http://127.0.0.1:8233') : undefined);
  return { address, namespace, embedded, tls, apiKey, uiUrl };
}

const PEM_HOLDS = {
  TEMPORAL_TLS_CERT: 'the client certificate',
  TEMPORAL_TLS_KEY: "the client certificate's private key",
  TEMPORAL_TLS_CA: "the CA certificate that signed the server's",
} as const;

/**
 * A TLS file a variable names, read here so that its error names the variable: a missing file was a bare ENOENT,
 * and a file that is not PEM reached the user as OpenSSL's "PEM routines::no start line" after the connection try.
 */
function pemFile(env: NodeJS.ProcessEnv, name: keyof typeof PEM_HOLDS): Buffer {
  const path = env[name]!;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'a folder, not a file' : err.message;
    throw new Error(`${name}=${path}: cannot read it (${why}); set it to the path of ${PEM_HOLDS[name]} (PEM)`);
  }
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(bytes.toString('latin1'))) {
    throw new Error(`${name}=${path} is not PEM (no "-----BEGIN …-----" line); set it to ${PEM_HOLDS[name]} in PEM form`);
  }
  return bytes;
}

/** TEMPORAL_TLS as Temporal's own tools read it (Go's ParseBool); anything else is refused rather than read as off. */
function tlsFlag(raw: string | undefined): boolean {
  if (raw === undefined || raw === '') return false;
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(raw)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(raw)) return false;
  throw new Error(`TEMPORAL_TLS=${raw}: say true or false (1 or 0)`);
}

export async function connectClient(s: TemporalSettings = temporalSettings()): Promise<Connection> {
  // A malformed payload key is refused before anything connects (the Client that takes the converter comes later).
  temporalDataConverter();
  const opts: ConnectionOptions = { address: s.address, tls: s.tls as ConnectionOptions['tls'], apiKey: s.apiKey };
  return Connection.connect(ipServerTls(s) ?? opts);
}

/**
 * Without TEMPORAL_TLS_SERVER_NAME grpc-js sends the address's host as the TLS server name (SNI), and where that is an
 * IP address Node printed DEP0123 ("Setting the TLS ServerName to an IP address is not permitted") on every command:
 * SNI carries no IP addresses (RFC 6066). For such an address the connection gets grpc-js's own TLS credentials, as
 * the SDK makes them (createSsl), with the server name left out; Node then checks the server's certificate against
 * the IP address, as it did. With an API key, its header is set as the SDK's apiKey sets it (which refuses credentials).
 */
function ipServerTls(s: TemporalSettings): ConnectionOptions | undefined {
  if (!s.tls) return undefined;
  const tls = s.tls === true ? {} : s.tls;
  const host = s.address.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  if (tls.serverNameOverride || !isIP(host)) return undefined;
  const ssl = ChannelCredentials.createSsl(tls.serverRootCACertificate, tls.clientCertPair?.key, tls.clientCertPair?.crt);
  return {
    address: s.address,
    credentials: new NoIpServerName(ssl),
    ...(s.apiKey ? { metadata: { Authorization: `Bearer ${s.apiKey}` } } : {}),
  };
}

/** `inner`, whose connections send no server name: only used for an IP address (ipServerTls). */
class NoIpServerName extends ChannelCredentials {
  constructor(private readonly inner: ChannelCredentials) {
    super();
  }
  _isSecure(): boolean {
    return this.inner._isSecure();
  }
  _equals(other: ChannelCredentials): boolean {
    return other instanceof NoIpServerName && this.inner._equals(other.inner);
  }
  _createSecureConnector(
    target: Parameters<ChannelCredentials['_createSecureConnector']>[0],
    options: ChannelOptions,
    call?: CallCredentials,
  ): ReturnType<ChannelCredentials['_createSecureConnector']> {
    const connector = this.inner._createSecureConnector(target, options, call);
    // grpc-js (1.14) keeps what it gives tls.connect here; tests/cluster-settings.test.ts's IP case fails where it does not.
    const tlsOptions = (connector as { connectionOptions?: TlsConnectionOptions }).connectionOptions;
    if (tlsOptions?.servername && isIP(tlsOptions.servername)) delete tlsOptions.servername;
    return connector;
  }
}

export async function connectWorker(s: TemporalSettings = temporalSettings()): Promise<NativeConnection> {
  temporalDataConverter();
  installRuntime();
  const opts: NativeConnectionOptions = { address: s.address, tls: s.tls as NativeConnectionOptions['tls'], apiKey: s.apiKey };
  return NativeConnection.connect(opts);
}

export function runUrl(s: TemporalSettings, workflowId: string): string | undefined {
  return s.uiUrl ? `${s.uiUrl}/namespaces/${encodeURIComponent(s.namespace)}/workflows/${encodeURIComponent(workflowId)}` : undefined;
}
