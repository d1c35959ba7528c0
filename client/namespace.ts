/**
 * The namespace tempered is told to use (TEMPORAL_NAMESPACE), checked once per process before any command
 * uses it. A cluster's namespaces are made by whoever runs it, and a name it lacks reached the user as
 * "no run 'X'" from status, logs and resume (the lookup's NotFound read as the run's), or as the server's raw
 * status dump from a worker, none of which named the variable.
 */
import type { Connection } from '@temporalio/client';
import type { TemporalSettings } from '../infra/connection.ts';

const NOT_FOUND = 5; // gRPC status code

function grpcCode(e: unknown): number | undefined {
  const err = e as { code?: unknown; cause?: { code?: unknown } };
  const code = typeof err?.code === 'number' ? err.code : err?.cause?.code;
  return typeof code === 'number' ? code : undefined;
}

function durationMs(d: { seconds?: unknown; nanos?: unknown } | null | undefined): number | undefined {
  if (!d) return undefined;
  const seconds = Number((d.seconds as { toString(): string } | undefined)?.toString() ?? 0);
  const ms = seconds * 1000 + Number(d.nanos ?? 0) / 1e6;
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/**
 * Throws, with what to do, when the server does not have `s.namespace`. Any other answer (an API key that
 * may not describe namespaces, a server without the call) is left to the command's own calls to report.
 */
export async function checkNamespace(service: Connection['workflowService'], s: TemporalSettings): Promise<void> {
  try {
    await service.describeNamespace({ namespace: s.namespace });
    return;
  } catch (e) {
    if (grpcCode(e) !== NOT_FOUND) return;
  }
  // Which names there are helps with a typo; a key that may not list them just leaves them out.
  const names = await service
    .listNamespaces({ pageSize: 50 })
    .then((r) => (r.namespaces ?? []).map((n) => n.namespaceInfo?.name).filter((n): n is string => !!n && n !== 'temporal-system'))
    .catch(() => [] as string[]);
  const where = s.embedded ? `the embedded dev server at ${s.address}` : `the Temporal server at ${s.address} (TEMPORAL_ADDRESS)`;
  const from = process.env.TEMPORAL_NAMESPACE ? 'TEMPORAL_NAMESPACE' : 'the default, as TEMPORAL_NAMESPACE is unset';
  throw new Error(
    `namespace '${s.namespace}' (${from}) does not exist on ${where}${names.length ? `, which has ${names.map((n) => `'${n}'`).join(', ')}` : ''}: ` +
      `set TEMPORAL_NAMESPACE to one of its namespaces, or have it created (\`temporal operator namespace create --namespace ${s.namespace}\`, by whoever runs the cluster)`,
  );
}

/** How long `namespace` keeps a closed run's history, where the server says (undefined where it will not). */
export async function namespaceRetentionMs(service: Connection['workflowService'], namespace: string): Promise<number | undefined> {
  const res = await service.describeNamespace({ namespace }).catch(() => undefined);
  return durationMs(res?.config?.workflowExecutionRetentionTtl);
}

/** "1 day", "7 days", "36 hours": a retention as people set it. */
export function retentionWords(ms: number): string {
  const hours = ms / 3_600_000;
  if (hours >= 24 && Number.isInteger(hours / 24)) return hours === 24 ? '1 day' : `${hours / 24} days`;
  if (hours >= 1 && Number.isInteger(hours)) return hours === 1 ? '1 hour' : `${hours} hours`;
  return `${Math.round(ms / 60_000)} minutes`;
}
