/** `tempered audit`: read and verify the hash-chained audit trail. */
import { existsSync } from 'node:fs';
import { openAudit, type AuditRecord } from '../../src/audit/log.ts';
import { parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';

function line(r: AuditRecord): string {
  const extra: string[] = [];
  if (r.specHash) extra.push(`spec ${r.specHash.slice(0, 12)}`);
  if (r.modelHash) extra.push(`model ${r.modelHash.slice(0, 12)}`);
  if (r.dataHashes) extra.push(`data ${Object.entries(r.dataHashes).map(([k, v]) => `${k}=${v.slice(0, 12)}`).join(',')}`);
  return `#${String(r.seq).padStart(4)} ${r.time} ${r.actor.padEnd(10)} ${r.action.padEnd(22)} ${r.subject}${extra.length ? `  (${extra.join('; ')})` : ''}`;
}

export async function auditCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered audit [--run R | --model M] [--action A] [--verify] [--json]';
  const { values } = parse(argv, { run: { type: 'string' }, model: { type: 'string' }, action: { type: 'string' }, verify: { type: 'boolean' }, json: { type: 'boolean' } }, usage);
  if (!existsSync(ctx.paths.auditDb)) throw new CliError(`no audit log at ${ctx.paths.auditDb} yet; it is written as runs, models and schedules change`);
  const audit = openAudit(ctx.paths.auditDb);
  try {
    if (values.verify) {
      const v = audit.verify();
      if (values.json) console.log(JSON.stringify(v, null, 2));
      else if (v.ok) console.log(`audit log intact: ${v.checked} records, hash chain verified`);
      else console.log(`AUDIT LOG TAMPERED: ${v.problem} at record #${v.firstBadSeq} (${v.message ?? ''}); ${v.checked} records checked before it`);
      return v.ok ? 0 : 1;
    }
    const records = audit.query({ run: values.run, model: values.model, action: values.action });
    if (values.json) console.log(JSON.stringify(records, null, 2));
    else if (records.length === 0) console.log('no matching audit records');
    else for (const r of records) console.log(line(r));
    return 0;
  } finally {
    audit.close();
  }
}
