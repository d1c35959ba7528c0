// The dashboard's formatting and small decisions, free of the DOM and of preact, so node's tests import them as they are.

/** A number to `digits` significant digits; tiny and huge ones in exponent form (a learning rate of 3e-4 is not 0). */
export function fmtSig(x, digits = 4) {
  if (typeof x !== 'number') return x == null ? '–' : String(x);
  if (!Number.isFinite(x) || x === 0 || Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e6) return x.toExponential(digits - 1).replace(/\.?0+e/, 'e');
  return String(Number(x.toPrecision(digits)));
}

const LOWER = /(^|[._])(loss|perplexity|ppl|error|err|wer|cer|mse|mae|rmse|latency|ece|brier)($|[._])/i;
const HIGHER =
  /(^|[._])(accuracy|acc|f1|f1_macro|f1_micro|answer_f1_macro|precision|precision_macro|recall|recall_macro|exact_match|balanced_exact_match|rouge\w*|bleu|chrf|auc|auroc|mcc|kappa)($|[._])/i;
/** Names that count things (steps, rows, versions): a change there is neither better nor worse. */
const COUNT = /(^|[._])(version|steps?|rows|n|epochs?|bytes|count|support|seed|testRows)$/i;

/** Which way a metric named like `train.finalLoss` or `production.f1_macro` is better: 'lower', 'higher', or undefined. */
export function betterWay(name) {
  const last = String(name).split('.').at(-1) ?? '';
  if (COUNT.test(last)) return undefined;
  // camelCase (finalLoss, valAccuracy) reads as words too.
  const words = String(name).replace(/([a-z])([A-Z])/g, '$1_$2');
  if (LOWER.test(words)) return 'lower';
  if (HIGHER.test(words)) return 'higher';
  return undefined;
}

/** The class a delta's cell gets: 'pos' where the change is better, 'neg' where worse, '' where no direction is known. */
export function deltaClass(name, delta) {
  const way = betterWay(name);
  if (!way || typeof delta !== 'number' || delta === 0 || !Number.isFinite(delta)) return '';
  return delta > 0 === (way === 'higher') ? 'pos' : 'neg';
}

/** Text cut in the middle to `n` characters, so both its start and its distinguishing tail stay. */
export function clipMiddle(s, n) {
  s = String(s ?? '');
  if (s.length <= n) return s;
  const head = Math.ceil((n - 1) / 2);
  return `${s.slice(0, head)}…${s.slice(s.length - (n - 1 - head))}`;
}

/** A path's file name (with `…/` before it) where the whole path does not fit; other text cut in the middle. */
export function clipLabel(s, n) {
  s = String(s ?? '');
  if (s.length <= n) return s;
  const slash = s.lastIndexOf('/');
  if (slash >= 0 && slash < s.length - 1) return clipMiddle(`…/${s.slice(slash + 1)}`, n);
  return clipMiddle(s, n);
}

/** Ticks a run for compare: at most `max`; the one past it is refused (`refused` set) instead of dropping the first. */
export function tick(picked, id, max = 8) {
  if (picked.includes(id)) return { picked: picked.filter((x) => x !== id) };
  if (picked.length >= max) return { picked, refused: `compare takes at most ${max} runs; untick one first` };
  return { picked: [...picked, id] };
}

/** A run's parameters on one line, as `tempered runs` prints them: `lr=0.01 model=tiny` (secret-named ones come hidden). */
export function paramsText(params) {
  return Object.entries(params ?? {})
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
}

/** Temporal's execution status in the words the run page and `tempered status` use. */
export function runStateWord(status) {
  const s = String(status ?? '').toLowerCase();
  return { completed: 'succeeded', canceled: 'cancelled', timedout: 'timed out' }[s] ?? s;
}

/** A download's file name: the stage and output, and an extension for its media type. */
export function downloadName(stage, output, mediaType) {
  const m = String(mediaType ?? '');
  const ext = /arrow/.test(m)
    ? '.arrow'
    : /json/.test(m)
      ? '.json'
      : /onnx/.test(m)
        ? '.onnx'
        : /safetensors/.test(m)
          ? '.safetensors'
          : /csv/.test(m)
            ? '.csv'
            : /markdown/.test(m)
              ? '.md'
              : /x-tar/.test(m)
                ? '.tar'
                : /text\/plain/.test(m)
                  ? '.txt'
                  : '';
  return `${stage}-${output}${ext}`;
}

/** A progress message with absolute paths cut to their file names (`saved /…/ckpt/step-40.json` → `saved step-40.json`). */
export function shortPaths(message) {
  return String(message ?? '').replace(/(?:[A-Za-z]:)?(?:\/[^\s/'"`]+){2,}\/([^\s/'"`]+)/g, '$1');
}

/** An alias change as words: a first assignment has no version before it. */
export function aliasChangeText(c) {
  return c.fromVersion == null ? `set to v${c.toVersion}` : `v${c.fromVersion} → v${c.toVersion}`;
}

/** How long until the next try of a lost live stream: 1, 2, 4, … seconds, at most 30. */
export function backoffMs(tries) {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, tries));
}

/**
 * Server-sent events through fetch (EventSource cannot send the Authorization header), started again from the
 * offsets the page has whenever the stream ends before its `end` event. `path()` is asked on every try, so it
 * carries the offsets as they are then; `onLost(error)` on each loss and `onLive()` when a stream is open again.
 * Resolves when the server says `end` or `signal` aborts.
 */
export async function streamEvents({
  path,
  headers,
  onEvent,
  onLost = () => {},
  onLive = () => {},
  onGiveUp = onLost,
  signal,
  fetch: get = fetch,
  wait,
}) {
  const pause = wait ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  for (let tries = 0; !signal?.aborted; ) {
    let ended = false;
    let why;
    try {
      const res = await get(path(), { headers: headers(), signal });
      // A refusal (a token no longer good, a run that is gone) does not change by asking again.
      if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
        onGiveUp(`the server refused the live updates (${res.status}); reload the page`);
        return;
      }
      if (!res.ok || !res.body) throw new Error(`the server answered ${res.status}`);
      tries = 0;
      onLive();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (!ev || !data) continue;
          if (ev === 'end') ended = true;
          onEvent(ev, JSON.parse(data));
        }
      }
      why = 'the stream ended';
    } catch (e) {
      if (signal?.aborted || e.name === 'AbortError') return;
      why = e.message;
    }
    if (ended) return;
    onLost(why);
    await pause(backoffMs(tries++));
  }
}

/**
 * The token in a `#token=…` fragment: the link `tempered ui` prints (URL-encoded) or one a user typed with their
 * TEMPERED_UI_TOKEN as it is. URLSearchParams would read a typed `+` as a space. A TEMPERED_UI_TOKEN may hold `%` or
 * `&`, which must be typed as `%25` and `%26` (`tempered ui` says so when the token has them).
 */
export function tokenFromFragment(hash) {
  const m = /(?:^#?|&)token=([^&]*)/.exec(hash);
  if (!m || !m[1]) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}
