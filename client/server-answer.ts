/**
 * The Temporal client's ServiceError says only what it tried ("Failed to list schedules"); what the server answered is in
 * its cause. On a team's cluster that answer is the whole story: a feature the namespace has off ("Schedules are disabled
 * on this namespace."), a role that may not do this, a limit. Kept apart from the client so light commands load none of it.
 */
const GRPC_CODES: Record<number, string> = {
  3: 'INVALID_ARGUMENT',
  5: 'NOT_FOUND',
  6: 'ALREADY_EXISTS',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'FAILED_PRECONDITION',
  12: 'UNIMPLEMENTED',
  14: 'UNAVAILABLE',
  16: 'UNAUTHENTICATED',
};

/** The error's message, with the server's answer and what to do about it when it is a Temporal ServiceError that hides them. */
export function withServerAnswer(err: Error): string {
  const cause = err.cause as { code?: unknown; details?: unknown } | undefined;
  if (err.name !== 'ServiceError' || typeof cause?.details !== 'string' || !cause.details || err.message.includes(cause.details))
    return err.message;
  const code = typeof cause.code === 'number' ? (GRPC_CODES[cause.code] ?? `gRPC status ${cause.code}`) : undefined;
  const refused = cause.code === 7 || cause.code === 16;
  return (
    `${err.message}: the Temporal server said ${JSON.stringify(cause.details)}${code ? ` (${code})` : ''}` +
    (refused
      ? '; the namespace has this turned off, or the identity tempered connects as (TEMPORAL_API_KEY, TEMPORAL_TLS_CERT) may not do it: ask whoever runs the cluster'
      : '')
  );
}
