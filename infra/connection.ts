/**
 * Temporal connection settings from the environment. Without TEMPORAL_ADDRESS tempered uses its
 * embedded dev server; with it, tempered talks to that cluster and starts nothing.
 */
import { readFileSync } from 'node:fs';
import { Connection, type ConnectionOptions } from '@temporalio/client';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import { embeddedServerInfo } from './dev-server.ts';
import { installRuntime } from './runtime.ts';

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
  const address = env.TEMPORAL_ADDRESS || (running?.address ?? `127.0.0.1:${env.TEMPERED_DEV_PORT ?? 7233}`);
  const namespace = env.TEMPORAL_NAMESPACE ?? 'default';
  let tls: TemporalSettings['tls'];
  if (env.TEMPORAL_TLS_CERT || env.TEMPORAL_TLS_KEY || env.TEMPORAL_TLS_CA || env.TEMPORAL_TLS === 'true') {
    if (!!env.TEMPORAL_TLS_CERT !== !!env.TEMPORAL_TLS_KEY) {
      throw new Error('set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY (paths to the client certificate and key), or neither');
    }
    tls = {
      serverNameOverride: env.TEMPORAL_TLS_SERVER_NAME,
      serverRootCACertificate: env.TEMPORAL_TLS_CA ? readFileSync(env.TEMPORAL_TLS_CA) : undefined,
      clientCertPair: env.TEMPORAL_TLS_CERT
        ? { crt: readFileSync(env.TEMPORAL_TLS_CERT), key: readFileSync(env.TEMPORAL_TLS_KEY!) }
        : undefined,
    };
  }
  const apiKey = env.TEMPORAL_API_KEY;
  if (apiKey && !tls) tls = true;
  const uiUrl = env.TEMPORAL_UI_URL ?? (embedded ? (running?.uiUrl ?? 'http://127.0.0.1:8233') : undefined);
  return { address, namespace, embedded, tls, apiKey, uiUrl };
}

export async function connectClient(s: TemporalSettings = temporalSettings()): Promise<Connection> {
  const opts: ConnectionOptions = { address: s.address, tls: s.tls as ConnectionOptions['tls'], apiKey: s.apiKey };
  return Connection.connect(opts);
}

export async function connectWorker(s: TemporalSettings = temporalSettings()): Promise<NativeConnection> {
  installRuntime();
  const opts: NativeConnectionOptions = { address: s.address, tls: s.tls as NativeConnectionOptions['tls'], apiKey: s.apiKey };
  return NativeConnection.connect(opts);
}

export function runUrl(s: TemporalSettings, workflowId: string): string | undefined {
  return s.uiUrl ? `${s.uiUrl}/namespaces/${encodeURIComponent(s.namespace)}/workflows/${encodeURIComponent(workflowId)}` : undefined;
}
