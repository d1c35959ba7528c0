/**
 * The page's formatting and small decisions (ui/static/format.js, plain browser JS with no imports, so node loads it
 * as it is): significant digits on chart values, which way a metric is better, labels cut in the middle, the compare
 * tick limit, and the live stream that starts again from its offsets when it ends before the run does.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

interface Format {
  fmtSig(x: unknown, digits?: number): string;
  betterWay(name: string): 'higher' | 'lower' | undefined;
  deltaClass(name: string, delta: unknown): string;
  clipMiddle(s: string, n: number): string;
  clipLabel(s: string, n: number): string;
  tick(picked: string[], id: string, max?: number): { picked: string[]; refused?: string };
  runStateWord(s: string): string;
  downloadName(stage: string, output: string, mediaType?: string): string;
  shortPaths(message: string): string;
  aliasChangeText(c: { fromVersion?: number | null; toVersion: number }): string;
  backoffMs(tries: number): number;
  tokenFromFragment(hash: string): string | null;
  streamEvents(o: {
    path(): string;
    headers(): Record<string, string>;
    onEvent(ev: string, data: unknown): void;
    onLost?(why: string): void;
    onLive?(): void;
    onGiveUp?(why: string): void;
    signal?: AbortSignal;
    fetch?: (path: string, init: unknown) => Promise<{ ok: boolean; status: number; body: ReadableStream<Uint8Array> | null }>;
    wait?: (ms: number) => Promise<void>;
  }): Promise<void>;
}
// A file URL in a variable: the module is the page's own JavaScript, which the type checker does not read.
const f = (await import(new URL('./static/format.js', import.meta.url).href)) as Format;

describe('page formatting', () => {
  it('reads the token of the printed link, and one typed as it is, + included, where URLSearchParams reads a space', () => {
    for (const token of ['abc+def/ghi=jkl0123456', 'plain-token-0123456789', 'a.b_c~d-0123456789'])
      assert.equal(f.tokenFromFragment(`#token=${encodeURIComponent(token)}`), token);
    assert.equal(f.tokenFromFragment('#token=abc+def/0123456789'), 'abc+def/0123456789');
    assert.equal(f.tokenFromFragment('#/runs&token=xyz0123456789abcdef'), 'xyz0123456789abcdef');
    for (const hash of ['', '#', '#/runs', '#token=', '#notoken=abc', '#token=%E0%A4%A'])
      assert.equal(f.tokenFromFragment(hash), null, hash);
  });

  it('shows chart values to significant digits, tiny ones in exponent form', () => {
    assert.equal(f.fmtSig(0.0003), '3e-4');
    assert.equal(f.fmtSig(7.8e-5), '7.8e-5');
    assert.equal(f.fmtSig(0.123456), '0.1235');
    assert.equal(f.fmtSig(2.5), '2.5');
    assert.equal(f.fmtSig(1234.5678), '1235');
    assert.equal(f.fmtSig(12), '12');
    assert.equal(f.fmtSig(0), '0');
    assert.equal(f.fmtSig(null), '–');
  });

  it('colours a delta by which way the metric is better, and counts not at all', () => {
    assert.equal(f.deltaClass('train.finalLoss', 0.1), 'neg', 'more loss is worse');
    assert.equal(f.deltaClass('train.finalLoss', -0.1), 'pos');
    assert.equal(f.deltaClass('evaluate.perplexity', 2), 'neg');
    assert.equal(f.deltaClass('val_loss', -1), 'pos');
    assert.equal(f.deltaClass('f1_macro', 0.02), 'pos');
    assert.equal(f.deltaClass('production.accuracy', -0.02), 'neg');
    assert.equal(f.deltaClass('baseline.exact_match', 0.1), 'pos');
    assert.equal(f.deltaClass('rouge_l', 0.1), 'pos');
    assert.equal(f.deltaClass('chrf', 0.1), 'pos');
    assert.equal(f.deltaClass('evaluate.answer_f1_macro', 0.1), 'pos');
    for (const count of ['register.version', 'train.steps', 'ingest.rows', 'production.version', 'evaluate.testRows', 'seed'])
      assert.equal(f.deltaClass(count, 3), '', count);
    assert.equal(f.deltaClass('train.somethingElse', 3), '');
    assert.equal(f.deltaClass('f1_macro', 0), '');
    assert.equal(f.deltaClass('f1_macro', undefined), '');
  });

  it('cuts long labels in the middle, and a path to its file name, keeping the distinguishing end', () => {
    assert.equal(f.clipMiddle('short', 22), 'short');
    const run = 'sms-spam-20261205-172233-4f9a';
    const cut = f.clipMiddle(run, 22);
    assert.equal(cut.length, 22);
    assert.ok(cut.startsWith('sms-spam') && cut.endsWith('4f9a') && cut.includes('…'), cut);
    assert.equal(f.clipLabel('/work/shared/datasets/sms/spam-collection.tsv', 22), '…/spam-collection.tsv');
    const long = f.clipLabel('/work/shared/datasets/a-very-long-file-name-of-data.jsonl', 22);
    assert.equal(long.length, 22);
    assert.ok(long.endsWith('.jsonl'), long);
  });

  it('refuses a ninth run for compare instead of dropping the first', () => {
    let picked: string[] = [];
    for (let i = 1; i <= 8; i++) picked = f.tick(picked, `r${i}`).picked;
    const ninth = f.tick(picked, 'r9');
    assert.deepEqual(ninth.picked, picked);
    assert.match(ninth.refused!, /at most 8/);
    assert.deepEqual(f.tick(picked, 'r1').picked, picked.slice(1), 'unticking still works');
  });

  it('says runs, downloads, progress and alias changes in the words the rest of tempered uses', () => {
    assert.equal(f.runStateWord('Completed'), 'succeeded');
    assert.equal(f.runStateWord('Canceled'), 'cancelled');
    assert.equal(f.runStateWord('Running'), 'running');
    assert.equal(f.downloadName('ingest', 'table', 'application/vnd.apache.arrow.file'), 'ingest-table.arrow');
    assert.equal(f.downloadName('evaluate', 'report', 'application/json'), 'evaluate-report.json');
    assert.equal(f.downloadName('x', 'y', undefined), 'x-y');
    assert.equal(f.shortPaths('epoch 2: saved /home/u/.tempered/progress/run/ckpt/step-40.json'), 'epoch 2: saved step-40.json');
    assert.equal(f.shortPaths('step 3/10'), 'step 3/10');
    assert.equal(f.aliasChangeText({ fromVersion: null, toVersion: 1 }), 'set to v1');
    assert.equal(f.aliasChangeText({ toVersion: 1 }), 'set to v1');
    assert.equal(f.aliasChangeText({ fromVersion: 1, toVersion: 2 }), 'v1 → v2');
  });
});

/** A response whose body is these server-sent event blocks, then its end. */
function sse(...events: [string, unknown][]) {
  const text = events.map(([e, d]) => `event: ${e}\ndata: ${JSON.stringify(d)}\n\n`).join('');
  return {
    ok: true,
    status: 200,
    body: new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode(text));
        c.close();
      },
    }),
  };
}

describe('the live stream', () => {
  it('starts again, from the offsets the page has then, when a stream ends before `end`; stops at `end`', async () => {
    const asked: string[] = [];
    const seen: string[] = [];
    const lost: string[] = [];
    const waits: number[] = [];
    let offset = 0;
    const answers = [
      () => sse(['stages', { state: 'running' }], ['points', { offset: 10 }]),
      () => {
        throw new TypeError('Failed to fetch');
      },
      () => ({ ok: false, status: 502, body: null }),
      () => sse(['failure', { error: 'Temporal is unreachable' }]),
      () => sse(['points', { offset: 20 }], ['end', {}]),
    ];
    await f.streamEvents({
      path: () => `/events?offset.train=${offset}`,
      headers: () => ({}),
      onEvent: (ev, d) => {
        seen.push(ev);
        if (ev === 'points') offset = (d as { offset: number }).offset;
      },
      onLost: (why) => lost.push(why),
      fetch: async (path) => {
        asked.push(path);
        return answers[asked.length - 1]!();
      },
      wait: async (ms) => void waits.push(ms),
    });
    assert.deepEqual(asked, ['/events?offset.train=0', ...Array(4).fill('/events?offset.train=10')]);
    assert.deepEqual(seen, ['stages', 'points', 'failure', 'points', 'end']);
    assert.deepEqual(lost, ['the stream ended', 'Failed to fetch', 'the server answered 502', 'the stream ended']);
    assert.deepEqual(waits, [1000, 2000, 4000, 1000], 'backs off while it cannot connect; a stream that opened starts over');
  });

  it('gives up on a refusal (401, 404) instead of retrying it for ever; retries 408 and 429', async () => {
    for (const [status, tries] of [
      [401, 1],
      [404, 1],
      [429, 2],
    ] as const) {
      let asked = 0;
      const gaveUp: string[] = [];
      await f.streamEvents({
        path: () => '/events',
        headers: () => ({}),
        onEvent: () => {},
        onGiveUp: (why) => gaveUp.push(why),
        fetch: async () => (++asked === 1 ? { ok: false, status, body: null } : sse(['end', {}])),
        wait: async () => {},
      });
      assert.equal(asked, tries, `${status}`);
      assert.deepEqual(gaveUp, tries === 1 ? [`the server refused the live updates (${status}); reload the page`] : []);
    }
  });

  it('stops when the page leaves (abort)', async () => {
    const ctl = new AbortController();
    let tries = 0;
    await f.streamEvents({
      path: () => '/events',
      headers: () => ({}),
      onEvent: () => {},
      signal: ctl.signal,
      fetch: async () => {
        tries++;
        return sse(['stages', {}]);
      },
      wait: async () => ctl.abort(),
    });
    assert.equal(tries, 1);
  });
});
