/** Human-readable rendering of run status for the terminal. */
import type { StageStatus } from '../workflows/types.ts';
import { isArtifactRef } from '../src/types.ts';
import type { ClientRunStatus, RunSummary } from '../client/runs.ts';
import { failureHints, retryNote } from '../client/failure-notes.ts';
import type { InputErrorCode } from '../src/errors.ts';
import { redactJson, redactSecrets } from '../src/util/redact.ts';
import { humanBytes } from '../src/util/human-bytes.ts';

const ICON: Record<string, string> = {
  pending: '·',
  running: '▶',
  succeeded: '✓',
  cached: '≡',
  failed: '✗',
  skipped: '-',
  cancelled: '⊘',
};

function secs(a?: string, b?: string): string {
  if (!a) return '';
  const ms = (b ? Date.parse(b) : Date.now()) - Date.parse(a);
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`;
}

export function describeOutput(v: unknown): string {
  if (isArtifactRef(v)) {
    const rows = v.rows !== undefined ? `, ${v.rows} rows` : '';
    return `${v.sha256.slice(0, 12)} (${humanBytes(v.bytes)}${rows})`;
  }
  if (typeof v === 'object' && v !== null) return JSON.stringify(v).slice(0, 80);
  return String(v);
}

export { humanBytes };

export function progressText(s: StageStatus): string {
  const p = s.progress as { fraction?: number; message?: string; metrics?: Record<string, number> } | undefined;
  if (!p) return '';
  const parts: string[] = [];
  if (typeof p.fraction === 'number') parts.push(`${(p.fraction * 100).toFixed(0)}%`);
  if (p.message) parts.push(p.message);
  if (p.metrics)
    parts.push(
      Object.entries(p.metrics)
        .filter(([k]) => !(p.message && SAID_BY_MESSAGE.has(k)))
        .map(([k, v]) => (METRIC_TEXT[k] ?? plainMetric(k))(v))
        .join(' '),
    );
  return parts.join(' ');
}

/** Training reports its step and epoch in the message too ("step 12/60 epoch 1"). */
const SAID_BY_MESSAGE = new Set(['step', 'epoch']);

const plainMetric = (k: string) => (v: number) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(4)}`;

/** Training metrics a person reads at a glance: rates with units, the learning rate in exponent form, the ETA as a duration. */
const METRIC_TEXT: Record<string, (v: number) => string> = {
  loss: (v) => `loss=${v.toPrecision(4)}`,
  lr: (v) => `lr=${v.toExponential(2)}`,
  samplesPerSec: (v) => `${v.toPrecision(3)} samples/s`,
  tokensPerSec: (v) => `${v >= 100 ? v.toFixed(0) : v.toPrecision(3)} tokens/s`,
  etaSec: (v) => `eta ${duration(v)}`,
};

/** 75 → "1m15s", 3725 → "1h02m". */
export function duration(sec: number): string {
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function stageLine(s: StageStatus): string {
  const note = s.state === 'failed' ? retryNote(s) : undefined;
  const attempt = note ? ` (${note})` : s.attempt && s.attempt > 1 ? ` (attempt ${s.attempt})` : '';
  let tail = '';
  // A running stage with an error is being retried: why it failed last time is what the person needs.
  if (s.state === 'running')
    tail = s.paused
      ? pausedText(s.paused)
      : s.waitingBehind?.length
        ? `waiting: task queue '${s.waitingForWorker}' is busy with stage${s.waitingBehind.length > 1 ? 's' : ''} ${s.waitingBehind.join(', ')} of this run; the stage starts when a worker slot there is free`
        : s.waitingBehindRuns?.length
          ? `waiting: task queue '${s.waitingForWorker}' is busy with ${busyWithText(s.waitingBehindRuns)}; the stage starts when a worker slot there is free`
          : s.waitingForWorker
            ? `waiting: no worker of task queue '${s.waitingForWorker}' has asked for work lately (none runs, or all are busy); the stage starts when one takes it (\`tempered worker --queue ${s.waitingForWorker}\`)`
            : [
                progressText(s),
                s.error?.message,
                s.silentSec === undefined ? '' : s.queueUnpolled ? unpolledText(s.silentSec, s.queueUnpolled) : silentText(s.silentSec),
              ]
                .filter(Boolean)
                .join('  ');
  else if (s.state === 'failed') {
    const hint = [s.error?.hint, ...failureHints(s)].filter(Boolean).join('; ');
    tail = `${s.error?.message ?? ''}${hint ? `\n      hint: ${hint}` : ''}`;
  } else if (s.state === 'skipped') tail = s.skippedBecause ?? '';
  else if (s.state === 'cached') tail = `reused from ${s.cachedFrom?.runId ?? 'cache'}`;
  else if (s.state === 'succeeded') tail = resumedText(s.outputs);
  return `  ${ICON[s.state] ?? '?'} ${s.id.padEnd(14)} ${s.uses.padEnd(10)} ${s.state.padEnd(9)} ${secs(s.startedAt, s.endedAt).padStart(7)}${attempt}  ${tail}`.trimEnd();
}

/** A training that went on from a checkpoint (its attempt before was stopped: a worker killed, a host lost) says from where. */
function resumedText(outputs: Record<string, unknown> | undefined): string {
  const step = (outputs?.baseModel as { resumedFromStep?: unknown } | undefined)?.resumedFromStep;
  return typeof step === 'number' ? `resumed from its checkpoint at step ${step}` : '';
}

/** What a running stage whose worker went silent says (the dashboard says the same). */
export function silentText(sec: number): string {
  return `no heartbeat from its worker for ${duration(sec)}: the worker may have died or lost the server; once its heartbeat timeout passes the stage is retried on another worker, if it has attempts left`;
}

/** A paused stage (`temporal activity pause`): Temporal runs no attempt of it until it is unpaused; the command that does. */
export function pausedText(p: NonNullable<StageStatus['paused']>): string {
  const who = `${p.since ? ` since ${p.since}` : ''}${p.by ? ` by ${printable(p.by)}` : ''}${p.reason ? ` (reason: ${printable(p.reason)})` : ''}`;
  const now = p.pending ? 'its running attempt stops at its next heartbeat, and no other starts' : 'no attempt of it runs';
  return `paused${who}: ${now} until it is unpaused (\`${p.unpause}\`); its last progress is kept for the next attempt`;
}

/**
 * A silent stage (no heartbeat) whose task queue no worker has polled lately: the worker running it may be gone. Not
 * said to be dead: a live worker busy in every slot polls no more either.
 */
export function unpolledText(silentSec: number, u: NonNullable<StageStatus['queueUnpolled']>, now = Date.now()): string {
  const ago = (iso: string) => duration((now - Date.parse(iso)) / 1000);
  const polled = u.since
    ? `no worker has polled task queue '${u.queue}' since ${u.since} (${ago(u.since)} ago; a live worker polls at least every minute unless all its slots are busy)`
    : `no worker polls task queue '${u.queue}'`;
  const retry = u.retryAt
    ? Date.parse(u.retryAt) > now
      ? `its heartbeat timeout passes at ${u.retryAt} (in ${duration((Date.parse(u.retryAt) - now) / 1000)}), and the server then retries it on another worker, if it has attempts left`
      : `its heartbeat timeout passed at ${u.retryAt}: the server retries it on another worker, if it has attempts left`
    : 'once its heartbeat timeout passes the server retries it on another worker, if it has attempts left';
  return `no heartbeat from its worker for ${duration(silentSec)}, and ${polled}: its worker may be gone; ${retry}`;
}

/** "stage train of run A, stage train of run B and 2 more": the first few, so that a busy queue's note stays one line. */
export function busyWithText(busy: { runId: string; stage: string; silentSec?: number }[], shown = 3): string {
  const named = busy
    .slice(0, shown)
    .map(
      (b) =>
        `stage ${b.stage} of run ${b.runId}${b.silentSec !== undefined ? ` (its worker silent for ${duration(b.silentSec)}, likely dead: the slot frees once that stage's heartbeat timeout passes)` : ''}`,
    );
  return busy.length > shown ? `${named.join(', ')} and ${busy.length - shown} more` : named.join(', ');
}

/** Renders a stage's report artifact (data reports, evaluation) when the local store has it. */
export type ReportReader = (ref: unknown) => string | undefined;

/** A run's parameters as the terminal shows them (status, runs --compare): a secret-named one (hf_token) hidden. */
export function shownParams(params: Record<string, unknown>): Record<string, unknown> {
  return redactJson(params, [], { secretKeys: true });
}

/**
 * A run's status or list as `--json` prints it: what the text form hides stays hidden (secret-named params, and their
 * values where the plan took them in; URL credentials), since JSON output lands in CI logs as often as in scripts.
 */
export function runJson(value: unknown): string {
  return JSON.stringify(redactSecrets(value), null, 2);
}

/** Parameters as one line, `lr=0.01 r=8 model=pypi:…` (status, models show), secret-named ones hidden, control characters escaped. */
export function paramsText(params: Record<string, unknown>): string {
  return Object.entries(shownParams(params))
    .map(([k, v]) => `${k}=${printable(typeof v === 'string' ? v : JSON.stringify(v))}`)
    .join(' ');
}

/** One run of `tempered runs`; the actor is whoever submitted it (TEMPERED_ACTOR as they set it): escaped, as status's. */
export function runLine(r: RunSummary): string {
  const links = [r.scheduleId && `schedule ${r.scheduleId}`, r.resumeOf && `resumes ${r.resumeOf}`].filter(Boolean).join('  ');
  return printable(
    `${r.runId.padEnd(44)} ${r.pipeline.padEnd(20)} ${(r.skipped ? 'SKIPPED' : r.status).padEnd(11)} ${r.startTime.toISOString()}  ${r.actor ?? ''}${links ? `  ${links}` : ''}${r.params && Object.keys(r.params).length ? `  ${paramsText(r.params)}` : ''}${r.skipped ? `  skipped: ${r.skipped.outcome} (${r.skipped.reason})` : ''}`,
  );
}

/**
 * An evaluate stage's `metrics` (the numbers its gate reads) as a table: the model's, and beside them each model it was
 * compared with (`baseline`, `production`, and the candidate on production's rows), each column headed by the prefix a
 * gate writes (`baseline.exact_match`). Without it a run's status showed the evaluation's loss and perplexity only, and
 * whoever followed `submit --wait` learnt the scores the gate was about from `models show`, after registration.
 * Undefined when the value holds no numbers.
 */
export function formatMetrics(metrics: unknown): string | undefined {
  if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) return undefined;
  const numbers = (v: unknown): Record<string, number> =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1])))
      : {};
  const m = metrics as Record<string, unknown>;
  const production = typeof m.production === 'object' && m.production !== null ? (m.production as Record<string, unknown>) : {};
  const columns = (
    [
      ['model', numbers(m)],
      ['baseline', numbers(m.baseline)],
      ['production', numbers(production)],
      ['production.candidate', numbers(production.candidate)],
    ] as const
  ).filter(([, v]) => Object.keys(v).length > 0);
  if (columns.length === 0 || columns[0]![0] !== 'model') return undefined;
  const names = [...new Set(columns.flatMap(([, v]) => Object.keys(v)))];
  const cell = (x: number | undefined) => (x === undefined ? '-' : Number.isInteger(x) ? String(x) : x.toFixed(4));
  const rows = [['metric', ...columns.map(([c]) => c)], ...names.map((n) => [printable(n), ...columns.map(([, v]) => cell(v[n]))])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

/**
 * An evaluate report's line naming the model of the metrics table's `baseline` column, as evaluate resolved it (its
 * source and revision): the table, and the metrics document, said 'baseline' only. Undefined for a report without
 * one (no baseline, or evaluated before 7 Dec 2026).
 */
export function formatEvaluateReport(report: unknown): string | undefined {
  const r = typeof report === 'object' && report !== null ? (report as Record<string, unknown>) : {};
  const b = typeof r.baseline_model === 'object' && r.baseline_model !== null ? (r.baseline_model as Record<string, unknown>) : undefined;
  if (typeof b?.source !== 'string') return undefined;
  const rev = typeof b.revision === 'string' ? (/^[0-9a-f]{40,64}$/.test(b.revision) ? b.revision.slice(0, 12) : b.revision) : undefined;
  const model = `${b.source}${rev ? ` (revision ${rev})` : ''}`;
  // A classifier's baseline is a logistic regression on the base model's frozen features, a causal LM's the base model.
  return printable(
    r.task === 'causal-lm' ? `baseline: the base model ${model}` : `baseline: a logistic regression on the frozen features of ${model}`,
  );
}

export function formatRunStatus(
  st: ClientRunStatus,
  opts: { uiUrl?: string; readReport?: ReportReader; readMetrics?: ReportReader } = {},
): string {
  const lines = [
    // The actor is whoever submitted the run, as they set TEMPERED_ACTOR: shown, not sent to the reader's terminal.
    printable(
      `run ${st.runId}  pipeline ${st.name}  ${st.state}  by ${st.actor}  started ${st.startedAt}${st.endedAt ? `  ended ${st.endedAt}` : ''}`,
    ),
  ];
  if (Object.keys(st.params ?? {}).length > 0) lines.push(`params  ${paramsText(st.params)}`);
  if (st.resumeOf) lines.push(`resumes ${st.resumeOf}`);
  if (opts.uiUrl) lines.push(`web ui  ${opts.uiUrl}`);
  if (st.gate) lines.push(`gate    ${st.gate.outcome}: ${st.gate.reason}`);
  if (st.waitingForWorker)
    lines.push(
      st.cancelRequested
        ? `waiting: cancellation requested; no worker has picked this run up yet, and it ends (cancelled, nothing run) when a worker serving task queue '${st.waitingForWorker}' takes it`
        : `waiting: no worker has picked this run up yet; it starts when a worker serving task queue '${st.waitingForWorker}' runs (\`tempered worker --queue ${st.waitingForWorker}\`)`,
    );
  if (st.recordingEnd)
    lines.push(
      `closing: every stage has ended (${st.state}); the run closes once its end is recorded (the audit log's end record, then the outcome later runs' gates read), which waits for a database that does not answer, up to half an hour (the worker's log says why)`,
    );
  if (st.cancelRequested && !st.waitingForWorker && st.state === 'running')
    lines.push('cancelling: a cancellation was requested; the run ends once its running stages stop');
  if (st.noWorkerAnswered) {
    const q = st.noWorkerAnswered.taskQueue;
    const why = st.noWorkerAnswered.pollersListed
      ? ' (none answered; the server keeps listing a worker for a few minutes after it stops)'
      : '';
    lines.push(
      `waiting: no worker is polling task queue '${q}' now${why}: the run continues when one starts (\`tempered worker --queue ${q}\`); stages below are from the run's history`,
    );
  }
  for (const stage of st.stages) {
    const s = st.resumeOf ? withResumeHint(stage) : stage;
    lines.push(stageLine(s));
    if ((s.state === 'succeeded' || s.state === 'cached') && s.outputs) {
      for (const [k, v] of Object.entries(s.outputs))
        if (k === 'warnings' && typeof v === 'string') lines.push(...v.split('\n').map((w) => `      warning: ${printable(w)}`));
        else lines.push(`      ${k}: ${describeOutput(v)}`);
      const report = opts.readReport?.(s.outputs.report);
      if (report) lines.push(...report.split('\n').map((l) => `      | ${l}`));
      const metrics = s.outputs.metrics === undefined ? undefined : opts.readMetrics?.(s.outputs.metrics);
      if (metrics) lines.push(...metrics.split('\n').map((l) => `      | ${l}`));
    }
  }
  return lines.join('\n');
}

/**
 * A resumed run's ingest reads its source files again: their bytes are part of the stage's cache key,
 * so a resume cannot know a file is unchanged without reading it, and one deleted since the first
 * run fails the stage although its table is in the store. The error's hint says so.
 */
export const RESUME_SOURCE_HINT =
  'a resumed run reads its ingest sources again (their bytes are part of the cache key, so the table the first run ingested is reused only if they are unchanged): put the file back, or submit the pipeline again with a path that exists';

function withResumeHint(s: StageStatus): StageStatus {
  if (s.state !== 'failed' || !s.error) return s;
  const missing =
    s.error.code === ('source-missing' satisfies InputErrorCode) ||
    // A run from before errors carried their code has only the ingest error's words.
    (s.error.code === undefined && s.uses === 'ingest' && / does not exist\b/.test(s.error.message));
  if (!missing) return s;
  const hint = s.error!.hint ? `${s.error!.hint}; ${RESUME_SOURCE_HINT}` : RESUME_SOURCE_HINT;
  return { ...s, error: { ...s.error!, hint } };
}

/**
 * Text from the records as one printable line: control characters (a newline, an ANSI escape) written as
 * their JSON escapes, so an actor or a reason cannot fake a line of the listing or recolour the terminal.
 */
export function printable(text: string): string {
  const named: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };
  return text.replace(
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => named[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Text of others as it may go to a terminal (a model's answer, a recorded spec file): C0 controls other than newline
 * and tab, DEL and the C1 controls (U+0080-U+009F) become visible escapes (`\u001b`), so the text cannot move the
 * cursor, retitle the window or send any other escape or OSC sequence to the terminal. Unlike printable, it keeps
 * the text's lines.
 */
export function terminalSafe(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** How such text is written to `stream`: terminal-safe when the stream is a terminal, exact when it is a pipe or a file. */
export function terminalTextFor(stream: { isTTY?: boolean }): (text: string) => string {
  return stream.isTTY === true ? terminalSafe : (text) => text;
}
