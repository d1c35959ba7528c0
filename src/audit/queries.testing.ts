/** For tests that count what a command or a page asks the audit log: every query answered in this process. */
import { AuditLog, type AuditQuery } from './log.ts';

/** Runs `fn` with every AuditLog's queries recorded (through the log's own API, whoever opened it); returns them in order. */
export async function auditQueriesOf(fn: () => Promise<void>): Promise<AuditQuery[]> {
  const query = AuditLog.prototype.query;
  const asked: AuditQuery[] = [];
  AuditLog.prototype.query = function (q: AuditQuery = {}) {
    asked.push(q);
    return query.call(this, q);
  };
  try {
    await fn();
  } finally {
    AuditLog.prototype.query = query;
  }
  return asked;
}
