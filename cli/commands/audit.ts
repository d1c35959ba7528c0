/** `tempered audit`: read and verify the hash-chained audit trail. */
import { readFileSync } from 'node:fs';
import { AUDIT_KEY_ENV, auditKey, parseAnchorText, signAnchor } from '../../src/audit/anchor.ts';
import { databaseExists } from '../../src/db/database.ts';
import { AUDIT_ACTIONS, openAudit, type AuditLog, type AuditRecord, type VerifyResult } from '../../src/audit/log.ts';
import { closest } from '../../src/spec/suggest.ts';
import { InputError } from '../../src/errors.ts';
import { isFixedVersion, ModelFilterError, modelRecords, resolveModelFilter } from '../../src/registry/model-filter.ts';
import { parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { printable } from '../format.ts';
import { sharingHint } from './sharing.ts';
import { trainedOn } from '../../src/audit/run-spec.ts';
import { mergedBySeq, resumesOf, sourceRecordsOf } from '../../src/audit/related-records.ts';

/** Data hashes a record's line shows. */
const DATA_HASHES_SHOWN = 8;

/**
 * Why a run's deploy left a version where it was: the gate's failed clauses (its whole verdict when none is marked, as
 * for a version held after a rollback). The line said only `model.not_promoted clf@1`, the reason in --json alone.
 */
function notPromotedWhy(r: AuditRecord): string | undefined {
  const explanation = (r.details as { explanation?: unknown }).explanation;
  if (r.action !== 'model.not_promoted' || typeof explanation !== 'string' || !explanation) return undefined;
  const failed = explanation.split('; ').filter((c) => c.endsWith('✗'));
  const why = failed.length ? failed.join('; ') : explanation;
  return `gate: ${why.length > 160 ? `${why.slice(0, 159)}…` : why}`;
}

/** Text kept to one line of at most `max` characters, quoted. */
function quoted(text: string, max: number): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return JSON.stringify(one.length > max ? `${one.slice(0, max - 1)}…` : one);
}

/**
 * What a record says that a reader of the trail asks first and the line showed only in --json: why a run failed or was
 * cancelled, which failed run a resume reruns, which run a schedule's trigger started (or that its overlap policy
 * skipped it: the two read alike, `schedule.triggered nightly`), and the note a schedule was paused with.
 */
function saidBeyondSubject(r: AuditRecord): string[] {
  const d = r.details as { error?: unknown; resumeOf?: unknown; runId?: unknown; skipped?: unknown; overlap?: unknown; note?: unknown };
  const out: string[] = [];
  if (r.action === 'run.submitted' && typeof d.resumeOf === 'string' && d.resumeOf) out.push(`resumes ${d.resumeOf}`);
  if ((r.action === 'run.failed' || r.action === 'run.cancelled') && typeof d.error === 'string' && d.error)
    out.push(`error ${quoted(d.error, 160)}`);
  if (r.action === 'schedule.triggered' || r.action === 'schedule.backfilled') {
    if (typeof d.runId === 'string' && d.runId) out.push(`run ${d.runId}`);
    if (d.skipped === true)
      out.push(`skipped by the overlap policy${typeof d.overlap === 'string' ? ` (${d.overlap})` : ''}: no run started`);
  }
  if (r.action.startsWith('schedule.') && typeof d.note === 'string' && d.note) out.push(`note ${quoted(d.note, 80)}`);
  return out;
}

function line(r: AuditRecord): string {
  const extra: string[] = [];
  // An alias move says which alias went where, and why: two promotes of one version to two aliases read alike otherwise.
  const d = r.details as { alias?: unknown; from?: unknown; to?: unknown; reason?: unknown; registered?: unknown };
  // A version number reads v3; a served id (serve.swapped) name@3 of the record's model reads v3 too.
  const name = r.model?.split('@')[0];
  const v = (x: unknown) =>
    typeof x === 'number'
      ? `v${x}`
      : typeof x === 'string' && name && /^\d+$/.test(x.slice(name.length + 1)) && x.startsWith(`${name}@`)
        ? `v${x.slice(name.length + 1)}`
        : String(x ?? 'v-');
  // A rollback's subject is the version the alias went back to: `model.rolled_back clf@2` read as "v2 was rolled back"
  // when production went from v1 back to v2, so its line names the alias and both versions instead.
  const rollback = r.action === 'model.rolled_back' && typeof d.alias === 'string' && d.to !== undefined && name !== undefined;
  const subject = rollback ? `${name}@${d.alias as string}: ${v(d.from)} rolled back to ${v(d.to)}` : r.subject;
  if (!rollback && typeof d.alias === 'string' && d.to !== undefined) extra.push(`${d.alias}: ${v(d.from)} → ${v(d.to)}`);
  // Back to a twin of the version left (alias-change.ts): the line read as any rollback, as if the model left were gone.
  if (rollback && (d as { sameModel?: unknown }).sameModel === true)
    extra.push(`${v(d.to)} has the same model bytes as ${v(d.from)}: what ${d.alias as string} serves did not change`);
  if (typeof d.reason === 'string' && d.reason)
    extra.push(`reason ${JSON.stringify(d.reason.length > 80 ? `${d.reason.slice(0, 79)}…` : d.reason)}`);
  const why = notPromotedWhy(r);
  if (why) extra.push(why);
  extra.push(...saidBeyondSubject(r));
  // A record about a run's stage that is about a model too (register: which version its model is).
  if (r.model && r.model !== r.subject) extra.push(`${r.model}${typeof d.registered === 'string' ? ` (${d.registered})` : ''}`);
  const from = (r.details as { reusedFrom?: { runId?: unknown; stageId?: unknown } }).reusedFrom;
  if (from && typeof from.runId === 'string') extra.push(`reused from ${from.runId}/${String(from.stageId)}`);
  const trained = trainedOn(r.details);
  if (trained) extra.push(trained);
  if (r.specHash) extra.push(`spec ${r.specHash.slice(0, 12)}`);
  if (r.modelHash) extra.push(`model ${r.modelHash.slice(0, 12)}`);
  if (r.dataHashes && Object.keys(r.dataHashes).length > 0) {
    // An ingest of a folder names every file; the line shows the first few (--json has them all).
    const hashes = Object.entries(r.dataHashes);
    const shown = hashes.slice(0, DATA_HASHES_SHOWN).map(([k, v]) => `${k}=${v.slice(0, 12)}`);
    if (hashes.length > DATA_HASHES_SHOWN) shown.push(`… ${hashes.length - DATA_HASHES_SHOWN} more`);
    extra.push(`data ${shown.join(',')}`);
  }
  return printable(
    `#${String(r.seq).padStart(4)} ${r.time} ${r.actor.padEnd(10)} ${r.action.padEnd(22)} ${subject}${extra.length ? `  (${extra.join('; ')})` : ''}`,
  );
}

/**
 * `--model` as the log stores it (resolveModelFilter: `name` and `name@3` as given, a version checked against
 * the registry; an alias or `name@latest` the version the registry says it is now, `name@v3` version 3), with a
 * line that says which version an alias is.
 */
async function modelFilter(ctx: CliContext, ref: string): Promise<{ model: string; header?: string }> {
  try {
    const f = await resolveModelFilter(ref, { location: ctx.paths.registryDb });
    if (!f.resolved) return { model: f.model };
    return {
      model: f.model,
      header: isFixedVersion(f.resolved.at)
        ? `${ref} is ${f.model}`
        : `${ref} is ${f.model} (the version it points at now; records of the versions it pointed at before are not shown: use --model ${f.resolved.name})`,
    };
  } catch (e) {
    if (e instanceof ModelFilterError)
      throw new CliError(
        `${e.message}${e.reason === 'no-registry' ? sharingHint(ctx) : ''}${e.hint ? `\n  ${e.hint}` : ''}`,
        e.reason === 'syntax' ? 2 : 1,
      );
    throw e;
  }
}

/** Records read per query while printing the trail. */
const PRINT_PAGE = 1000;

/** The matching records oldest first, a page at a time (by seq, so records appended meanwhile follow). */
export async function* pagesOf(audit: AuditLog, q: { run?: string; action?: string }): AsyncGenerator<AuditRecord[]> {
  let afterSeq: number | undefined;
  for (;;) {
    const page = await audit.query({ ...q, afterSeq, limit: PRINT_PAGE });
    if (page.length) yield page;
    if (page.length < PRINT_PAGE) return;
    afterSeq = page[page.length - 1]!.seq;
  }
}

/** `pages` (oldest first) with `extra` (oldest first) in their places by seq: records of the trail that the query by run cannot find. */
async function* withRecords(pages: AsyncGenerator<AuditRecord[]>, extra: AuditRecord[]): AsyncGenerator<AuditRecord[]> {
  let rest = extra;
  for await (const page of pages) {
    const last = page[page.length - 1]!.seq;
    yield mergedBySeq(
      page,
      rest.filter((r) => r.seq <= last),
    );
    rest = rest.filter((r) => r.seq > last);
  }
  if (rest.length) yield rest;
}

/**
 * `--action` names an action tempered records (AUDIT_ACTIONS), or one the trail holds (an extension's): a typo
 * (`run.cancel`, `bogus`) listed nothing and exited 0, which read as "no such records".
 */
async function checkAction(audit: AuditLog, action: string, usage: string): Promise<void> {
  if ((AUDIT_ACTIONS as readonly string[]).includes(action)) return;
  if ((await audit.query({ action, limit: 1 })).length > 0) return;
  const near = closest(action, AUDIT_ACTIONS);
  throw new CliError(
    `--action '${printable(action)}' is no action the audit trail records${near ? `; did you mean '${near}'?` : ''}\n` +
      `  the actions: ${AUDIT_ACTIONS.join(', ')}\nusage: ${usage}`,
    2,
  );
}

export async function auditCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage =
    'tempered audit [--run R | --model M] [--action A] [--json] | --verify [--anchor seq:hash|hash] [--anchor-file FILE] [--allow-empty] | --head | --export-head   (--export-head and signed anchor files use TEMPERED_AUDIT_KEY)';
  const { values } = parse(
    argv,
    {
      run: { type: 'string' },
      model: { type: 'string' },
      action: { type: 'string' },
      verify: { type: 'boolean' },
      json: { type: 'boolean' },
      anchor: { type: 'string' },
      'anchor-file': { type: 'string' },
      'allow-empty': { type: 'boolean' },
      head: { type: 'boolean' },
      'export-head': { type: 'boolean' },
    },
    usage,
  );
  if (values.run !== undefined && values.model !== undefined) throw new CliError(`--run and --model go one at a time\nusage: ${usage}`, 2);
  // The anchors first: a file that is missing, empty or holds an unsigned line says nothing, whatever the log holds.
  const anchors: { text: string; where: string }[] = [];
  if (values.anchor) anchors.push({ text: values.anchor, where: '--anchor' });
  if (values['anchor-file']) {
    const file = values['anchor-file'];
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new CliError(
        `--anchor-file ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
        2,
      );
    }
    // One anchor per line; the file keeps every head exported so far, so all of them are checked.
    const lines = text.split('\n').flatMap((l, i) => (l.trim() ? [{ text: l, where: `${file}:${i + 1}` }] : []));
    if (lines.length === 0) throw new CliError(`--anchor-file ${file} holds no anchor: append \`tempered audit --export-head\` to it`, 2);
    // Signed by the key, or anyone who can write the file could anchor a rewritten log.
    const unsigned = process.env[AUDIT_KEY_ENV] ? lines.find((l) => !l.text.trim().startsWith('{')) : undefined;
    if (unsigned)
      throw new CliError(
        `${unsigned.where}: not a signed anchor; with ${AUDIT_KEY_ENV} set, an anchor file holds only lines written by \`tempered audit --export-head\` (an unsigned seq:hash proves nothing about who wrote it; pass one you keep elsewhere with --anchor)`,
        2,
      );
    anchors.push(...lines);
  }
  if (!databaseExists(ctx.paths.auditDb)) {
    // Missing where an anchor says records were: the log was deleted, which is what the anchor is for.
    if (values.verify && (values.anchor || values['anchor-file'])) {
      console.log(`AUDIT LOG TAMPERED: no audit log at ${ctx.paths.auditDb}, but an anchor says it held records`);
      return 1;
    }
    // A fresh install has no log file yet: with --allow-empty that is the empty log the flag accepts.
    if (values.verify && values['allow-empty']) {
      if (values.json) console.log(JSON.stringify({ ok: true, checked: 0 }, null, 2));
      else console.log(`audit log intact: 0 records (no audit log at ${ctx.paths.auditDb} yet)`);
      return 0;
    }
    throw new CliError(`no audit log at ${ctx.paths.auditDb} yet; it is written as runs, models and schedules change${sharingHint(ctx)}`);
  }
  const audit = await openAudit(ctx.paths.auditDb);
  try {
    if (values.head || values['export-head']) {
      // A head is what later checks trust: a log that fails its own chain gets none.
      const chain = await audit.verify({ expectRecords: false });
      if (!chain.ok) {
        console.log(
          `AUDIT LOG TAMPERED: ${chain.problem}${chain.firstBadSeq !== undefined ? ` at record #${chain.firstBadSeq}` : ''} (${chain.message ?? ''}); no head given for a log that fails verification`,
        );
        return 1;
      }
      const head = await audit.head();
      if (!head) throw new CliError('the audit log is empty: there is no head to anchor');
      if (values['export-head']) {
        const key = (() => {
          try {
            return auditKey();
          } catch (e) {
            throw new CliError((e as Error).message, 2);
          }
        })();
        console.log(JSON.stringify(signAnchor(head, key)));
      } else console.log(`${head.seq}:${head.hash}`);
      return 0;
    }
    if (values.verify) {
      // Every anchor is parsed (and its signature checked) before any is trusted.
      const parsed = anchors.map((a) => {
        try {
          return parseAnchorText(a.text, process.env[AUDIT_KEY_ENV], a.where);
        } catch (e) {
          if (e instanceof InputError) throw new CliError(e.message, 2);
          throw e;
        }
      });
      let v: VerifyResult = await audit.verify({ expectRecords: !values['allow-empty'] });
      for (const p of parsed) {
        if (!v.ok) break;
        const seq = 'seq' in p ? p.seq : await audit.seqOfHash(p.hash);
        v =
          seq === undefined
            ? {
                ok: false,
                checked: v.checked,
                problem: 'rewritten',
                message: `no record has the anchored hash ${p.hash.slice(0, 12)}…: the log was cut or rewritten after it was anchored`,
              }
            : await audit.verify({ anchor: { seq, hash: p.hash }, expectRecords: true });
      }
      if (values.json) console.log(JSON.stringify(v, null, 2));
      else if (v.ok)
        console.log(
          `audit log intact: ${v.checked} records, hash chain verified${anchors.length ? `, ${anchors.length} anchor(s) match` : ''}`,
        );
      else
        console.log(
          `AUDIT LOG TAMPERED: ${v.problem}${v.firstBadSeq !== undefined ? ` at record #${v.firstBadSeq}` : ''} (${v.message ?? ''}); ${v.checked} records checked before it`,
        );
      return v.ok ? 0 : 1;
    }
    if (values.action !== undefined) await checkAction(audit, values.action, usage);
    const filter = values.model === undefined ? undefined : await modelFilter(ctx, values.model);
    // A version's trail includes the serve.swapped records that swapped it out (their model is the version swapped in).
    // Records that belong in the trail without naming the run or version: a resume's run.submitted (`--run` of the run
    // it reruns), the ingest records naming the files a version's training data came from (`--model name@N`).
    const wanted = (rs: AuditRecord[]) => rs.filter((r) => values.action === undefined || r.action === values.action);
    // Whether --action leaves any of these actions' records: one that would drop them all is not looked up.
    const mayShow = (...actions: string[]) => values.action === undefined || actions.includes(values.action);
    const pages = filter
      ? (async function* () {
          const own = await modelRecords(audit, filter.model, { action: values.action });
          if (!/@\d+$/.test(filter.model) || !mayShow('stage.completed', 'stage.reused')) {
            yield own;
            return;
          }
          // The register records are read whatever --action is: they name the run whose ingest records are wanted.
          const registered = values.action === undefined ? own : await modelRecords(audit, filter.model, { action: 'model.registered' });
          yield mergedBySeq(own, wanted(await sourceRecordsOf(audit, registered)));
        })()
      : withRecords(
          pagesOf(audit, { run: values.run, action: values.action }),
          values.run === undefined || !mayShow('run.submitted') ? [] : wanted(await resumesOf(audit, values.run)),
        );
    // --json stays an array of records; the resolved version goes to stderr there.
    if (filter?.header) (values.json ? console.error : console.log)(printable(filter.header));
    // Printed page by page: the whole log held at once took 310 MB of memory at 100,000 records (190 MB now).
    let printed = 0;
    // --json: each page's elements wait for the next page, which says whether a comma follows them.
    let pending: string | undefined;
    for await (const records of pages) {
      if (records.length === 0) continue;
      // One write a page: a write a record made the --json listing half again as slow.
      if (values.json) {
        // JSON.stringify(records, null, 2), a page of elements at a time.
        const text = records.map((r) => JSON.stringify(r, null, 2).replace(/^/gm, '  ')).join(',\n');
        if (pending !== undefined) console.log(`${pending},`);
        pending = printed ? text : `[\n${text}`;
      } else console.log(records.map(line).join('\n'));
      printed += records.length;
    }
    if (values.json) console.log(pending === undefined ? '[]' : `${pending}\n]`);
    else if (printed === 0) console.log('no matching audit records');
    return 0;
  } finally {
    await audit.close();
  }
}
