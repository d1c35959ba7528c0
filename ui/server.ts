/**
 * `tempered ui`: the dashboard's HTTP server. A JSON API over the same state the CLI reads, server-sent
 * events for a run's live stage states and new training points, and the page itself (ui/static/)
 * with its libraries served from node_modules (no CDN, nothing fetched at run time).
 *
 * Auth is `tempered serve`'s scheme (a bearer token compared in constant time): every action
 * (cancel, resume, promote, rollback, schedule changes) needs it, and on a non-loopback bind so does
 * every API read. Actions are audited with the server's actor and `via: 'ui'`.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  auditRunSubmitted,
  describedRunStatus,
  endedRunStatus,
  getRunStatus,
  runInput,
  runningRunRefusal,
  submitRun,
  type ClientRunStatus,
  cancelRequestedKey,
} from '../client/runs.ts';
import { resumeInput } from '../client/resume-input.ts';
import { withFailureNotes } from '../client/failure-notes.ts';
import { listingClient, orMarked } from '../client/payloads.ts';
import { runGoneAccount } from '../client/run-gone.ts';
import { withServerAnswer } from '../client/server-answer.ts';
import {
  auditScheduleChange,
  ClosedRuns,
  listScheduleViews,
  pauseSchedule,
  recentRuns,
  scheduleView,
  cronInUtc,
  triggerOutcome,
  triggerSchedule,
  unpauseSchedule,
  viewedChangeAudit,
} from '../client/schedules.ts';
import type { AuditEntry } from '../src/audit/log.ts';
import { databaseExists } from '../src/db/database.ts';
import { InputError } from '../src/errors.ts';
import { changeAlias, GateRefused } from '../src/registry/alias-change.ts';
import { ModelFilterError } from '../src/registry/model-filter.ts';
import { AliasMovedError } from '../src/registry/registry.ts';
import { bearerMatches } from '../src/serve/auth.ts';
import { redactSecrets, redactText } from '../src/util/redact.ts';
import { REQUEST_TIMEOUT_MS } from '../src/serve/http-limits.ts';
import type { StatePaths } from '../src/state-paths.ts';
import type { ArtifactStore } from '../src/store/artifact-store.ts';
import { openProgressPoints, type ProgressPoints } from '../src/store/progress-points.ts';
import type { RunBackends, RunInput } from '../workflows/types.ts';
import {
  auditView,
  compareRuns,
  diffVersions,
  LISTED_METRICS,
  listModelViews,
  MAX_VERSION_PAGE,
  runCurves,
  runView,
  scheduleSpecView,
  type ScheduleSpecView,
  specView,
  type SpecView,
  trainingCurves,
  type TrainingCurves,
  UiDatabases,
  verifyAudit,
  versionCard,
  versionLineage,
  VERSION_PAGE,
  versionPage,
  versionSpec,
} from './data.ts';
import { listRunPage, type RunPageQuery } from './run-list.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const STATIC = join(HERE, 'static');
/** Runs one compare page overlays; more curves than this are unreadable anyway. */
const MAX_COMPARED = 8;
/** Runs the Runs page asks for at first, and the most one page may ask for. */
const RUN_PAGE = 50;
const MAX_RUN_PAGE = 1000;
const require = createRequire(import.meta.url);

/** The browser libraries, by the name the page imports them under, and the file each package ships. */
const VENDOR: Record<string, { pkg: string; file: string; type: string }> = {
  'preact.js': { pkg: 'preact', file: 'dist/preact.module.js', type: 'text/javascript' },
  'hooks.js': { pkg: 'preact', file: 'hooks/dist/hooks.module.js', type: 'text/javascript' },
  'htm.js': { pkg: 'htm', file: 'dist/htm.module.js', type: 'text/javascript' },
  'uplot.js': { pkg: 'uplot', file: 'dist/uPlot.esm.js', type: 'text/javascript' },
  'uplot.css': { pkg: 'uplot', file: 'dist/uPlot.min.css', type: 'text/css' },
  'marked.js': { pkg: 'marked', file: 'lib/marked.esm.js', type: 'text/javascript' },
  'purify.js': { pkg: 'dompurify', file: 'dist/purify.es.mjs', type: 'text/javascript' },
};
// A Map, not an object literal: `/app/toString` must not find a prototype's function.
const OWN = new Map([
  ['app.js', 'text/javascript'],
  ['style.css', 'text/css'],
  ['dag.js', 'text/javascript'],
  ['format.js', 'text/javascript'],
]);
/** Routes anyone may fetch: the page and its code, which hold no data. Every other route, matched or not, is guarded. */
const PUBLIC_ROUTES = new Set(['/', '/app/:name', '/vendor/:name']);

/** A package's folder: up from its entry point to its package.json (some packages do not export package.json). */
function packageDir(pkg: string): string {
  let dir = dirname(require.resolve(pkg));
  while (
    !existsSync(join(dir, 'package.json')) ||
    (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name !== pkg
  ) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find the folder of package ${pkg}`);
    dir = up;
  }
  return dir;
}

export interface UiOptions {
  paths: StatePaths;
  store: ArtifactStore;
  client(): Promise<Client>;
  /** Bearer token for actions (and for everything on a non-loopback bind). */
  token: string;
  /** Who acts, for the audit trail. */
  actor: string;
  taskQueue: string;
  /** This process's store and database, recorded in the runs it resumes (RunOptions.backends). */
  backends?: RunBackends;
  /** Temporal Web UI link of a run, when a Web UI is known. */
  webUiRunUrl?(runId: string): string | undefined;
  /** Where the workers' training points are read from; default from `paths` (openProgressPoints). */
  points?: ProgressPoints;
  /** How often a live view polls Temporal and the progress log (default 1000 ms). */
  pollMs?: number;
  logger?: boolean;
}

export interface UiServer {
  app: FastifyInstance;
  listen(port: number, host?: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * A loopback address or name, exactly: `127.0.0.1.nip.io` and `127.evil.example` are names a DNS
 * rebinding attacker can point at 127.0.0.1, so a prefix is not enough.
 */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return mapped ? mapped[1]!.startsWith('127.') : /^(0{0,4}:){7}0{0,3}1$|^::1$/.test(h);
  }
  return false;
}

/**
 * The name in a Host header, without its port (`[::1]:8270` → `::1`). A page on another site whose
 * name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its own name here, so a dashboard
 * bound to loopback, whose reads need no token, answers only to loopback names.
 */
export function hostName(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^\[([^\]]*)\](?::\d*)?$/.exec(header) ?? /^([^:]*)(?::\d*)?$/.exec(header);
  return m ? m[1]!.toLowerCase() : header.toLowerCase();
}

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

type FieldKind = 'text' | 'version or alias' | 'version or null';

/**
 * An action's JSON body with its fields' types checked, so a wrong one is a 400 that names it
 * instead of a database error. No body is no fields.
 */
function actionBody<T extends Record<string, unknown>>(body: unknown, fields: Record<keyof T & string, FieldKind>): Partial<T> {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw new HttpError(400, 'send the fields as a JSON object', 'Content-Type: application/json, e.g. {"alias": "production"}');
  const kinds: Record<string, FieldKind | undefined> = fields;
  for (const [name, value] of Object.entries(body)) {
    const kind = kinds[name];
    if (kind === undefined) throw new HttpError(400, `unknown field '${name}'; this action takes ${Object.keys(fields).join(', ')}`);
    const isVersion = Number.isSafeInteger(value) && (value as number) >= 1;
    const ok =
      kind === 'text'
        ? typeof value === 'string'
        : kind === 'version or alias'
          ? isVersion || (typeof value === 'string' && value !== '')
          : isVersion || value === null;
    if (!ok)
      throw new HttpError(400, `field '${name}' must be ${kind === 'text' ? 'a string' : `a ${kind}`}, got ${JSON.stringify(value)}`);
  }
  return body as Partial<T>;
}

/** A run id as a workflow id can be: not empty, no control characters (fastify refuses one over 100 characters itself, 414). */
function runIdParam(raw: string): string {
  if (raw === '' || /[\u0000-\u001f\u007f]/.test(raw))
    throw new HttpError(400, `a run id is not empty and has no control characters, got ${JSON.stringify(raw)}`);
  return raw;
}

/** `?download=1`: the spec's text as a file; absent: the view as JSON. */
function wantsDownload(raw: string | undefined): boolean {
  if (raw === undefined) return false;
  if (raw === '1') return true;
  throw new HttpError(400, `download must be 1 (the spec's text as a file) or left out, got ${JSON.stringify(raw)}`);
}

/** The spec's text exactly as it was submitted, as a file named after the one submitted; 404 where the trail kept none. */
function sendSpecText(reply: FastifyReply, view: SpecView) {
  return sendText(reply, view.spec?.text, view.missing ?? 'not recorded', view.spec?.specFile, `${view.runId}.yaml`);
}

/** A spec's text as a file named after `path`'s last part (`fallback` without one); 404 with `missing` where there is none. */
function sendText(reply: FastifyReply, text: string | undefined, missing: string, path: string | undefined, fallback: string) {
  if (text === undefined) throw new HttpError(404, `no spec text: ${missing}`);
  const file = (path?.split('/').pop() || fallback).replace(/[^\w.-]/g, '_');
  // A record from before the trail hid credentials still holds them: the download hides them too.
  // Someone's text served from the dashboard's origin: never taken for a page, whatever a browser would guess from it.
  return reply
    .type('text/plain; charset=utf-8')
    .header('content-disposition', `attachment; filename="${file}"`)
    .header('x-content-type-options', 'nosniff')
    .send(redactText(text));
}

export async function createUiServer(o: UiOptions): Promise<UiServer> {
  const app = Fastify({ logger: o.logger ?? false, bodyLimit: 64 << 10, requestTimeout: REQUEST_TIMEOUT_MS });
  let readsNeedToken = true; // until listen() knows the address
  const pollMs = o.pollMs ?? 1000;
  const openStreams = new Set<() => void>();
  const dbs = new UiDatabases(o.paths);
  // Training points: the workers' files on one machine, the shared database's table across hosts.
  const points = o.points ?? openProgressPoints(o.paths.progress, o.paths.registryDb);

  const vendorFiles = new Map(Object.entries(VENDOR).map(([name, v]) => [name, { path: join(packageDir(v.pkg), v.file), type: v.type }]));
  const indexHtml = readFileSync(join(STATIC, 'index.html'), 'utf8');
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(indexHtml)![1]!;
  const csp = [
    "default-src 'self'",
    `script-src 'self' 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`,
    // uPlot sizes and positions its elements with inline styles.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
  ].join('; ');

  const authorized = (req: FastifyRequest) => bearerMatches(req.headers.authorization, o.token);
  // Every reader of the dashboard sees what it sends, so no answer carries a credential inside a URL: a run's plan and
  // stage errors from Temporal (the workflow's input keeps the URL the worker fetches), and audit records written before
  // the trail hid them (src/util/redact.ts).
  app.addHook('preSerialization', async (_req, _reply, payload) => redactSecrets(payload));
  app.addHook('onRequest', async (req, reply) => {
    const host = hostName(req.headers.host);
    if (!readsNeedToken && host !== undefined && !isLoopback(host)) {
      return reply.code(421).send({
        error: `this dashboard is bound to a loopback address and answers only to loopback names, not Host: ${req.headers.host}`,
        hint: 'open the link `tempered ui` printed (http://127.0.0.1:…), or start it with --host and a token to reach it by another name',
      });
    }
    // The route fastify matched, not the raw URL: `/%61pi/…` and absolute-form targets reach /api routes too.
    if (PUBLIC_ROUTES.has(req.routeOptions.url ?? '')) return;
    const action = req.method !== 'GET' && req.method !== 'HEAD';
    if ((action || readsNeedToken) && !authorized(req)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .header('connection', 'close') // and stop reading whatever body it was sending
        .send({
          error: action ? 'actions need the dashboard token' : 'this dashboard needs its token',
          hint: 'open the link `tempered ui` printed (it carries the token), or send Authorization: Bearer <token>',
        });
    }
  });

  app.setErrorHandler((err: Error & { statusCode?: number }, _req, reply) => {
    if (err instanceof HttpError) return reply.code(err.statusCode).send({ error: err.message, hint: err.hint });
    // The explanation goes once, on its own lines (the message repeats it after the field name).
    if (err instanceof GateRefused)
      return reply.code(409).send({ error: 'the gate refused the promotion', explanation: err.explanation, hint: err.hint });
    if (err instanceof AliasMovedError) return reply.code(409).send({ error: err.message, hint: 'reload and try again' });
    if (err instanceof InputError) return reply.code(400).send({ error: err.message, hint: (err as InputError).hint });
    if (/not found/i.test(err.message)) return reply.code(404).send({ error: err.message });
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ error: err.message });
    return reply.code(500).send({ error: withServerAnswer(err) });
  });

  // The Schedules page's ended runs, read from Temporal once each (it polls every 3 s).
  const closedRuns = new ClosedRuns();
  const audit = async (entry: AuditEntry) => {
    const log = await dbs.audit.get();
    await log.append({ ...entry, actor: o.actor, details: { ...entry.details, via: 'ui' } });
  };

  // ---- the page and its assets --------------------------------------------------------------
  const page = (reply: FastifyReply) => reply.type('text/html; charset=utf-8').header('content-security-policy', csp).send(indexHtml);
  app.get('/', (_req, reply) => page(reply));
  app.get<{ Params: { name: string } }>('/app/:name', (req, reply) => {
    const type = OWN.get(req.params.name);
    if (!type) throw new HttpError(404, `no asset ${req.params.name}`);
    return reply
      .type(type)
      .header('cache-control', 'no-cache')
      .send(createReadStream(join(STATIC, req.params.name)));
  });
  app.get<{ Params: { name: string } }>('/vendor/:name', (req, reply) => {
    const v = vendorFiles.get(req.params.name);
    if (!v) throw new HttpError(404, `no library ${req.params.name}`);
    return reply.type(v.type).header('cache-control', 'max-age=3600').send(createReadStream(v.path));
  });

  // ---- runs ---------------------------------------------------------------------------------
  app.get('/api/info', async () => ({ actor: o.actor, readsNeedToken, webUi: o.webUiRunUrl?.('RUN') ?? null }));

  // A page of runs, the newest started first: ?status, ?pipeline (the name or its beginning), ?schedule, ?since (7d, or
  // a date), ?id (the beginning of a run id), ?limit; `more` says a longer page shows older ones.
  app.get<{ Querystring: RunPageQuery & { limit?: string } }>('/api/runs', async (req) => {
    const { limit: raw, ...query } = req.query;
    // Whole runs: `limit=1.5` asked Temporal for a page of 2.5 and showed two.
    const limit = Math.min(MAX_RUN_PAGE, Math.max(1, Math.floor(Number(raw ?? RUN_PAGE)) || RUN_PAGE));
    return listRunPage(await o.client(), limit, query);
  });

  app.get<{ Params: { id: string } }>('/api/runs/:id', async (req, reply) => {
    const client = await o.client();
    let view: Awaited<ReturnType<typeof runView>>;
    try {
      view = await runView(client, o.store, req.params.id);
    } catch (e) {
      if (!/not found/i.test((e as Error).message)) throw e;
      // Past the namespace's retention the trail still has the run: say what `tempered status` says of it.
      const trail = () => (databaseExists(o.paths.auditDb) ? dbs.audit.get() : Promise.reject(new Error('no audit trail yet')));
      const gone = await runGoneAccount(trail, client, req.params.id);
      if (!gone) throw e;
      return reply.code(404).send({ error: gone.message, hint: gone.next, gone: true });
    }
    return { ...view, webUrl: o.webUiRunUrl?.(req.params.id) ?? null };
  });

  // From the audit trail alone, so it is there after Temporal's retention deleted the run's history.
  app.get<{ Params: { id: string }; Querystring: { download?: string } }>('/api/runs/:id/spec', async (req, reply) => {
    const id = runIdParam(req.params.id);
    const download = wantsDownload(req.query.download);
    let view = await specView(dbs, o.store, id);
    if (!view) {
      // Not unknown where Temporal has it: a run whose submitter did not audit it and whose first stage has not ended.
      let why: string | undefined;
      try {
        // Whether Temporal has it is in clear: asked again through listingClient where a memo cannot be decrypted here.
        await orMarked(await o.client(), (c) => c.workflow.getHandle(id).describe());
      } catch (e) {
        why = (e as Error).message;
      }
      if (why !== undefined) throw new HttpError(404, `the audit log has no record of run ${id}`, `Temporal: ${why}`);
      const missing = `not recorded: the audit trail has no record of run ${id} yet`;
      view = { runId: id, missing, trainedWith: [], trainedWithMissing: missing };
    }
    return download ? sendSpecText(reply, view) : view;
  });

  // Every training stage's curves at once, so the page can ask in parallel with the run's status.
  app.get<{ Params: { id: string } }>('/api/runs/:id/curves', async (req) => {
    const client = await o.client();
    // Without TEMPERED_PAYLOAD_KEY, as the run's own page (runView): the stages Temporal keeps in clear.
    const { status, desc } = await describedRunStatus(client, req.params.id);
    const stages: Record<string, TrainingCurves> = {};
    const states: Record<string, string> = {};
    for (const stage of status.stages) {
      if (stage.uses !== 'train' || stage.state === 'pending' || stage.state === 'skipped') continue;
      stages[stage.id] = await trainingCurves(points, o.store, req.params.id, desc.runId, stage);
      states[stage.id] = stage.state;
    }
    return { stages, states };
  });

  // Live view: stage states when they change and training points as they are written, each sent once.
  app.get<{ Params: { id: string }; Querystring: Record<string, string> }>('/api/runs/:id/events', async (req, reply) => {
    const client = await o.client();
    const runId = req.params.id;
    // The first tick's status comes with the description that names the execution: the run is described once for both.
    const first = await describedRunStatus(client, runId);
    const execution = first.desc.runId;
    let described: ClientRunStatus | undefined = first.status;
    const offsets = new Map<string, number>();
    for (const [k, v] of Object.entries(req.query)) if (k.startsWith('offset.')) offsets.set(k.slice(7), Number(v) || 0);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(redactSecrets(data))}\n\n`);
    let closed = false;
    let lastStages = '';
    const stop = () => {
      closed = true;
      openStreams.delete(stop);
      res.end();
    };
    openStreams.add(stop);
    req.raw.on('close', () => {
      closed = true;
      openStreams.delete(stop);
    });
    const tick = async () => {
      const st = described ?? (await getRunStatus(client, runId, { showClear: true }));
      described = undefined;
      const stages = withFailureNotes(st.stages).map((s) => ({
        id: s.id,
        // Without the key a stage scheduled after the page was read is new to it: shown with its kind.
        uses: s.uses,
        state: s.state,
        attempt: s.attempt,
        startedAt: s.startedAt,
        endedAt: s.endedAt,
        progress: s.progress?.message,
        fraction: s.progress?.fraction,
        error: s.error,
        waitingForWorker: s.waitingForWorker,
        waitingBehind: s.waitingBehind,
        waitingBehindRuns: s.waitingBehindRuns,
        silentSec: s.silentSec,
      }));
      // Where it waits, and whether a cancellation waits with it, change without any stage changing.
      const waiting = { waitingForWorker: st.waitingForWorker, cancelRequested: st.cancelRequested, recordingEnd: st.recordingEnd };
      const key = JSON.stringify([st.state, waiting, stages]);
      if (key !== lastStages) {
        lastStages = key;
        send('stages', { state: st.state, endedAt: st.endedAt, ...waiting, stages });
      }
      for (const stage of await points.stages(runId, execution)) {
        const read = await points.read(runId, execution, stage, offsets.get(stage) ?? 0);
        if (read.points.length > 0) send('points', { stage, points: read.points, offset: read.offset });
        offsets.set(stage, read.offset);
      }
      return st.state !== 'running';
    };
    (async () => {
      try {
        while (!closed) {
          const done = await tick();
          if (done) {
            send('end', {});
            break;
          }
          await new Promise((r) => setTimeout(r, pollMs));
        }
      } catch (e) {
        if (!closed) send('failure', { error: (e as Error).message });
      } finally {
        if (!closed) stop();
      }
    })();
  });

  app.post<{ Params: { id: string } }>('/api/runs/:id/cancel', async (req) => {
    const client = await o.client();
    const handle = client.workflow.getHandle(req.params.id);
    // Stopping a run needs none of its payloads: described through listingClient, which marks a memo this dashboard
    // cannot decrypt, it is cancelled without TEMPERED_PAYLOAD_KEY too, as `tempered cancel` does.
    const desc = await listingClient(client).workflow.getHandle(req.params.id).describe();
    if (desc.status.name !== 'RUNNING') throw new HttpError(409, `run ${req.params.id} is already ${desc.status.name.toLowerCase()}`);
    // A second click (or a second person) asks for nothing new: the trail keeps the one request.
    // (The description just read says so: no need to read the run's history.)
    if (desc.raw.workflowExtendedInfo?.cancelRequested) return { cancelled: true, alreadyRequested: true };
    await handle.cancel();
    // The key `tempered cancel` uses: two cancels that both read "not requested yet" keep one record.
    await audit({
      action: 'run.cancel_requested',
      subject: req.params.id,
      runId: req.params.id,
      details: { execution: desc.runId },
      dedupeKey: cancelRequestedKey(req.params.id, desc.runId),
    });
    return { cancelled: true };
  });

  app.post<{ Params: { id: string } }>('/api/runs/:id/resume', async (req) => {
    const client = await o.client();
    const old = req.params.id;
    // Described through listingClient: that the run still runs is said without TEMPERED_PAYLOAD_KEY too.
    const desc = await listingClient(client).workflow.getHandle(old).describe();
    if (desc.status.name === 'RUNNING') {
      const { message, hint } = await runningRunRefusal(client, old, desc);
      throw new HttpError(409, message, hint);
    }
    // Resuming submits the run's input again, which only the key reads: refused saying so (it was a 500).
    const input = await orMarked(
      client,
      () => runInput(client, old),
      (why) => {
        throw new HttpError(
          409,
          `resuming run ${old} needs the key its input was encrypted with: ${why}`,
          'start the dashboard with TEMPERED_PAYLOAD_KEY set, or run `tempered resume` where it is set',
        );
      },
    );
    // As `tempered resume`: same spec and params; finished stages come back from the cache.
    const next = await resumeInput(old, input, { actor: o.actor, ...(o.backends ? { backends: o.backends } : {}) }, () =>
      endedRunStatus(client, old, desc).catch(() => undefined),
    );
    // On the run's own queue, as `tempered resume`: only that queue's workers would pick it up.
    const handle = await submitRun(client, next, { taskQueue: desc.taskQueue });
    await auditRunSubmitted(
      dbs.audit,
      handle.workflowId,
      { ...next, options: { ...next.options, ...handle.checkpointNames } },
      handle.firstExecutionRunId,
    );
    return { runId: handle.workflowId };
  });

  app.get<{ Params: { sha: string } }>('/api/artifacts/:sha', async (req, reply) => {
    const sha = req.params.sha;
    if (!/^[0-9a-f]{64}$/.test(sha)) throw new HttpError(400, 'an artifact is named by its sha256 (64 hex digits)');
    let path: string;
    try {
      path = await o.store.localPath(`artifact://sha256/${sha}`);
    } catch (e) {
      throw new HttpError(404, `artifact ${sha}: ${(e as Error).message}`);
    }
    return reply
      .type('application/octet-stream')
      .header('content-length', statSync(path).size)
      .header('content-disposition', `attachment; filename="${sha.slice(0, 16)}"`)
      .header('x-content-type-options', 'nosniff')
      .send(createReadStream(path));
  });

  // Two or more runs: ?run=<id>&run=<id>[&run=…] (or ?a=<id>&b=<id>); the first is the reference for deltas.
  app.get<{ Querystring: { a?: string; b?: string; run?: string | string[] } }>('/api/compare', async (req) => {
    const q = req.query;
    const ids = [...(q.run === undefined ? [] : Array.isArray(q.run) ? q.run : [q.run]), ...[q.a, q.b].filter((x): x is string => !!x)];
    if (ids.length < 2) throw new HttpError(400, 'compare takes two or more runs: ?run=<id>&run=<id>[&run=<id>…]');
    if (ids.length > MAX_COMPARED) throw new HttpError(400, `compare takes at most ${MAX_COMPARED} runs (got ${ids.length})`);
    const cmp = await compareRuns(await o.client(), o.store, ids);
    const curves = await Promise.all(cmp.runs.map((v) => runCurves(points, o.store, v)));
    return { ...cmp, curves };
  });

  // ---- models -------------------------------------------------------------------------------
  // The newest versions of each model, without cards: older ones and cards are asked for (the routes below).
  app.get('/api/models', async () => ({ models: await listModelViews(dbs), metricColumns: LISTED_METRICS, versionPage: VERSION_PAGE }));

  const versionNumber = (raw: string | undefined, what: string) => {
    const n = Number(String(raw ?? '').replace(/^v/, ''));
    if (!Number.isSafeInteger(n) || n < 1)
      throw new HttpError(400, `${what} must be a version number (1, 2, … or v1, v2, …), got ${JSON.stringify(raw ?? '')}`);
    return n;
  };
  const needRegistry = () => {
    if (!databaseExists(o.paths.registryDb)) throw new HttpError(404, 'no registered models yet');
  };

  /** A model or version the registry does not have is not found (404), with its hint: which there are. */
  const registryLookup = async <T>(read: () => Promise<T>): Promise<T> => {
    needRegistry();
    try {
      return await read();
    } catch (e) {
      if (e instanceof InputError && e.where === 'model') throw new HttpError(404, e.message, e.hint);
      throw e;
    }
  };

  // Older versions of a model, a page at a time: ?before=<version>&limit=<n> (the newest page when no before).
  app.get<{ Params: { name: string }; Querystring: { before?: string; limit?: string } }>('/api/models/:name/versions', async (req) => {
    const q = req.query;
    const before = q.before === undefined ? undefined : versionNumber(q.before, 'before');
    const limit = q.limit === undefined ? VERSION_PAGE : Number(q.limit);
    if (q.limit !== undefined && (!/^\d+$/.test(q.limit) || limit < 1 || limit > MAX_VERSION_PAGE))
      throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_VERSION_PAGE}, got ${JSON.stringify(q.limit)}`);
    return registryLookup(() => versionPage(dbs, req.params.name, { before, limit }));
  });

  app.get<{ Params: { name: string; version: string } }>('/api/models/:name/versions/:version/card', async (req) => {
    const version = versionNumber(req.params.version, 'version');
    return registryLookup(() => versionCard(dbs, req.params.name, version));
  });

  app.get<{ Params: { name: string; version: string } }>('/api/models/:name/versions/:version/lineage', async (req) => {
    const version = versionNumber(req.params.version, 'version');
    return registryLookup(() => versionLineage(dbs, () => o.client(), o.store, req.params.name, version));
  });

  // The spec the version's run was submitted with and what it trained with, from the audit trail.
  app.get<{ Params: { name: string; version: string }; Querystring: { download?: string } }>(
    '/api/models/:name/versions/:version/spec',
    async (req, reply) => {
      const version = versionNumber(req.params.version, 'version');
      const download = wantsDownload(req.query.download);
      const view = await registryLookup(() => versionSpec(dbs, o.store, req.params.name, version));
      return download ? sendSpecText(reply, view) : view;
    },
  );

  app.get<{ Params: { name: string }; Querystring: { a?: string; b?: string } }>('/api/models/:name/diff', async (req) => {
    const [a, b] = [versionNumber(req.query.a, 'a'), versionNumber(req.query.b, 'b')];
    return registryLookup(() => diffVersions(dbs, req.params.name, a, b));
  });

  app.post<{ Params: { name: string } }>('/api/models/:name/promote', async (req) => {
    const b = actionBody<{ version: number | string; alias: string; gate: string; reason: string; expect: number | null }>(req.body, {
      version: 'version or alias',
      alias: 'text',
      gate: 'text',
      reason: 'text',
      expect: 'version or null',
    });
    if (b.version === undefined) throw new HttpError(400, 'promote needs a version');
    return changeAlias(dbs.registry, dbs.audit, {
      op: 'promote',
      name: req.params.name,
      at: b.version,
      alias: b.alias ?? 'production',
      actor: o.actor,
      reason: b.reason || undefined,
      gate: b.gate || undefined,
      expect: b.expect,
      details: { via: 'ui' },
    });
  });

  app.post<{ Params: { name: string } }>('/api/models/:name/rollback', async (req) => {
    const b = actionBody<{ alias: string; reason: string; expect: number | null }>(req.body, {
      alias: 'text',
      reason: 'text',
      expect: 'version or null',
    });
    // The version the page showed: a double click, or two people at once, roll back once.
    const expect = b.expect ?? undefined;
    return changeAlias(dbs.registry, dbs.audit, {
      op: 'rollback',
      name: req.params.name,
      alias: b.alias ?? 'production',
      actor: o.actor,
      reason: b.reason || undefined,
      ...(expect !== undefined ? { expect } : {}),
      details: { via: 'ui' },
    });
  });

  // ---- audit --------------------------------------------------------------------------------
  app.get<{ Querystring: { run?: string; model?: string; action?: string; actor?: string; limit?: string } }>('/api/audit', async (req) => {
    const q = req.query;
    const limit = Math.min(5000, Math.max(1, Number(q.limit ?? 500) || 500));
    try {
      // The model filter reads as `tempered audit --model` reads it: name@alias is the version the alias points at now.
      return await auditView(
        dbs,
        { run: q.run || undefined, model: q.model?.trim() || undefined, action: q.action || undefined, actor: q.actor || undefined },
        limit,
      );
    } catch (e) {
      // An alias or model that is not there is nothing to show, not an empty trail.
      if (e instanceof ModelFilterError) throw new HttpError(e.reason === 'syntax' ? 400 : 404, e.message, e.hint);
      throw e;
    }
  });
  app.get('/api/audit/verify', async () => verifyAudit(dbs));

  // ---- schedules ----------------------------------------------------------------------------
  app.get('/api/schedules', async () => {
    const client = await o.client();
    const list = await listScheduleViews(client);
    const withRuns = await Promise.all(
      list.map(async ({ item, view }) => ({
        ...item,
        // As `schedule describe` says them: a cron that names no zone of its own is read by Temporal as UTC (the page
        // shows fire times in the reader's zone), and what a trigger or a fire does while a run is still in progress.
        timing: cronInUtc(view.timing.cron) ? `${item.timing} (UTC)` : item.timing,
        overlap: view.timing.overlap,
        // Temporal still computes a paused schedule's fire times; none of them happens while it stays paused.
        nextRuns: view.paused ? [] : view.nextRuns.slice(0, 3),
        recent: await recentRuns(client, view, 5, closedRuns),
      })),
    );
    return { schedules: withRuns };
  });
  // The spec file a schedule runs, from the store (as a run's spec: folded on the page, `?download=1` the file).
  app.get<{ Params: { name: string }; Querystring: { download?: string } }>('/api/schedules/:name/spec', async (req, reply) => {
    const download = wantsDownload(req.query.download);
    let view: ScheduleSpecView;
    try {
      view = await scheduleSpecView(await o.client(), o.store, req.params.name);
    } catch (e) {
      if (e instanceof InputError && e.message.startsWith('no schedule named')) throw new HttpError(404, e.message, e.hint);
      throw e;
    }
    return download ? sendText(reply, view.text, view.missing ?? 'not in the store', view.file, `${view.name}.yaml`) : view;
  });
  app.post<{ Params: { name: string; op: string } }>('/api/schedules/:name/:op', async (req) => {
    const { name, op } = req.params;
    // As `schedule pause --note`: without a note none shows (tempered's own placeholder note is hidden).
    const note = actionBody<{ note: string }>(req.body, { note: 'text' }).note?.trim() || undefined;
    if (op !== 'pause' && op !== 'unpause' && op !== 'trigger')
      throw new HttpError(404, `unknown schedule action '${op}'; one of pause, unpause, trigger`);
    const client = await o.client();
    // As `schedule pause`/`unpause`/`trigger`: none writes a payload, so they work without TEMPERED_PAYLOAD_KEY, the
    // schedule read as its view (what Temporal keeps in clear) and the record's spec hash left out then.
    const view = await scheduleView(client, name);
    if (op === 'pause') await pauseSchedule(client, name, note);
    else if (op === 'unpause') await unpauseSchedule(client, name, note);
    else await triggerSchedule(client, name);
    // As `schedule trigger` records it: the run it started (or that the overlap policy skipped it), with the key or without.
    const outcome = op === 'trigger' ? { overlap: view.timing.overlap, ...(await triggerOutcome(client, name, view)) } : {};
    const change = op === 'pause' ? 'paused' : op === 'unpause' ? 'unpaused' : 'triggered';
    const rec = viewedChangeAudit(view, { via: 'ui', ...(note && op !== 'trigger' ? { note } : {}), ...outcome });
    await auditScheduleChange(dbs.audit, change, { name, actor: o.actor, specHash: rec.specHash, details: rec.details });
    return { ok: true, ...outcome };
  });

  return {
    app,
    async listen(port, host = '127.0.0.1') {
      readsNeedToken = !isLoopback(host);
      const address = await app.listen({ port, host });
      return address;
    },
    async close() {
      for (const stop of [...openStreams]) stop();
      await app.close();
      await dbs.close();
      if (!o.points) await points.close();
    },
  };
}
