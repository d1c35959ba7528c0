// tempered's dashboard: preact + htm (no build step), uPlot for curves. Routes live in the URL's hash.
import { h, render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';
import { Dag, LineageGraph } from './dag.js';
import {
  aliasChangeText,
  deltaClass,
  downloadName,
  fmtSig,
  paramsText,
  runStateWord,
  shortPaths,
  streamEvents,
  tick as tickRun,
  tokenFromFragment,
} from './format.js';

const html = htm.bind(h);

// ---- token: the link `tempered ui` prints carries it in the fragment; keep it for this tab --------
const fragToken = tokenFromFragment(location.hash);
if (fragToken) {
  sessionStorage.setItem('tempered-token', fragToken);
  history.replaceState(null, '', location.pathname + '#/runs');
}
const token = () => sessionStorage.getItem('tempered-token');

let showBanner = () => {};
async function api(path, opts = {}) {
  const headers = { ...(opts.body ? { 'content-type': 'application/json' } : {}) };
  if (token()) headers.authorization = `Bearer ${token()}`;
  const res = await fetch(path, { method: opts.method ?? 'GET', headers, body: opts.body ? JSON.stringify(opts.body) : undefined });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(
      `${res.status}: ${body.error ?? res.statusText}${body.explanation ? `\n${body.explanation}` : ''}${body.hint ? `\n${body.hint}` : ''}`,
    );
    err.status = res.status;
    err.body = body;
    throw err;
  }
  return body;
}
/** Runs an action, reporting its outcome in the banner. */
async function act(fn, done) {
  try {
    const r = await fn();
    showBanner({ ok: true, text: done(r) });
    return r;
  } catch (e) {
    showBanner({ ok: false, text: e.message });
  }
}

// ---- formatting -------------------------------------------------------------------------------
const fmtBytes = (n) =>
  n == null ? '' : n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
const fmtNum = (x, d = 4) => (typeof x === 'number' ? (Number.isInteger(x) ? String(x) : x.toFixed(d)) : x == null ? '–' : String(x));
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '');
function fmtDur(a, b) {
  if (!a) return '';
  const ms = (b ? Date.parse(b) : Date.now()) - Date.parse(a);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}
/** Whole seconds as the CLI's duration() writes them: 75 → "1m15s". */
function fmtSecs(sec) {
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
const State = ({ s }) => html`<span class=${`state ${String(s).toLowerCase()}`}>${String(s).toLowerCase()}</span>`;
const isRef = (v) => v && typeof v === 'object' && typeof v.uri === 'string' && typeof v.sha256 === 'string';

/** Re-renders once a second while `active`, so elapsed times of running things move without new data. */
function useTicking(active) {
  const [, set] = useState(0);
  useEffect(() => {
    if (!active) return;
    const t = setInterval(() => set((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, [active]);
}

/** Whether the page's tab is shown (document.hidden false), kept as the browser changes it. */
function useShown() {
  const [shown, set] = useState(!document.hidden);
  useEffect(() => {
    const changed = () => set(!document.hidden);
    document.addEventListener('visibilitychange', changed);
    return () => document.removeEventListener('visibilitychange', changed);
  }, []);
  return shown;
}

function usePoll(fn, deps, everyMs) {
  const [state, set] = useState({ data: undefined, error: undefined });
  useEffect(() => {
    let live = true;
    let timer;
    // A tab left open in the background polled Temporal every few seconds for a page nobody read: the next poll waits
    // until the tab is shown again, and is sent then.
    let skipped = false;
    const go = async () => {
      try {
        const data = await fn();
        if (live) set({ data, error: undefined });
      } catch (e) {
        if (live) set((s) => ({ data: s.data, error: e.message }));
      }
      if (!live || !everyMs) return;
      if (document.hidden) skipped = true;
      else timer = setTimeout(go, everyMs);
    };
    const shown = () => {
      if (!live || !skipped || document.hidden) return;
      skipped = false;
      go();
    };
    if (everyMs) document.addEventListener('visibilitychange', shown);
    go();
    return () => {
      live = false;
      clearTimeout(timer);
      document.removeEventListener('visibilitychange', shown);
    };
  }, deps);
  return state;
}

// ---- Runs -------------------------------------------------------------------------------------
const RUN_FILTERS = ['status', 'pipeline', 'since', 'id', 'schedule'];
const STATUSES = ['', 'Running', 'Completed', 'Failed', 'Canceled', 'Terminated', 'TimedOut'];
/** Start-time windows; any `<n>h`, `<n>d` or date typed into the URL works too (ui/run-list.ts sinceTime). */
const SINCE = [
  ['', 'any time'],
  ['1h', 'last hour'],
  ['24h', 'last 24 hours'],
  ['7d', 'last 7 days'],
  ['30d', 'last 30 days'],
];
/** Runs a page shows at first, and how many more each "show more" adds. */
const RUN_PAGE = 50;
/** The longest page the server gives (ui/server.ts MAX_RUN_PAGE): past it, "show more" would show the same runs. */
const RUN_PAGE_MAX = 1000;
/** The sortable columns: a value to compare by, and whether the first click sorts descending. */
const RUN_SORTS = {
  started: { key: (r) => Date.parse(r.startTime), desc: true },
  duration: { key: (r) => (r.closeTime ? Date.parse(r.closeTime) : Date.now()) - Date.parse(r.startTime), desc: true },
  pipeline: { key: (r) => r.pipeline.toLowerCase(), desc: false },
  status: { key: (r) => runStateWord(r.status), desc: false },
  who: { key: (r) => (r.actor ?? '').toLowerCase(), desc: false },
};

/** What the filters ask for, in words, for the empty list. */
function filterText(f) {
  return [
    f.status && `status ${runStateWord(f.status)}`,
    f.pipeline && `a pipeline name beginning '${f.pipeline}'`,
    f.since &&
      (SINCE.some(([v]) => v === f.since) ? `started in the ${SINCE.find(([v]) => v === f.since)[1]}` : `started since ${f.since}`),
    f.id && `a run id beginning '${f.id}'`,
    f.schedule && `schedule '${f.schedule}'`,
  ]
    .filter(Boolean)
    .join(', ');
}

/** `runs` in the order `sort` names (`duration`, `-started`, …): started newest first when none. */
function sortRuns(runs, sort) {
  const by = RUN_SORTS[sort.replace(/^-/, '')];
  if (!by) return runs;
  const dir = sort.startsWith('-') ? -1 : 1;
  return [...runs].sort((a, b) => {
    const [x, y] = [by.key(a), by.key(b)];
    return (x < y ? -1 : x > y ? 1 : 0) * dir;
  });
}

function RunsPage({ query }) {
  // The filters, the page's length and its order live in the URL: a link or a changed hash shows those runs, and the
  // page can be shared or bookmarked (the week's failures of one pipeline is one link).
  const f = Object.fromEntries(RUN_FILTERS.map((k) => [k, query.get(k) ?? '']));
  // A link may ask for a shorter or longer page; `show more` adds a page to it.
  const limit = Math.min(RUN_PAGE_MAX, Math.max(1, Math.floor(Number(query.get('limit'))) || RUN_PAGE));
  const sort = query.get('sort') ?? '';
  const go = (next, o = {}) => {
    const qs = new URLSearchParams(
      Object.entries({ ...next, limit: o.limit && o.limit !== RUN_PAGE ? String(o.limit) : '', sort: o.sort ?? sort }).filter(([, v]) => v),
    ).toString();
    location.hash = `#/runs${qs ? `?${qs}` : ''}`;
  };
  // A changed filter starts again at the first page.
  const setF = (next) => go(next);
  const [picked, setPicked] = useState([]);
  const [refused, setRefused] = useState();
  const qs = new URLSearchParams(Object.entries({ ...f, limit: String(limit) }).filter(([, v]) => v)).toString();
  // What is typed and not yet applied stays while another filter changes the hash; a filter the hash changed shows.
  const [draft, setDraft] = useState(f);
  const shown = useRef(f);
  useEffect(() => {
    const was = shown.current;
    shown.current = f;
    setDraft((d) => Object.fromEntries(RUN_FILTERS.map((k) => [k, f[k] !== was[k] ? f[k] : d[k]])));
  }, [qs]);
  // `/` anywhere but in a field goes to the run id field, as in most list pages.
  const idField = useRef();
  useEffect(() => {
    const on = (e) => {
      if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey || /^(INPUT|SELECT|TEXTAREA)$/.test(e.target.tagName)) return;
      e.preventDefault();
      idField.current?.focus();
    };
    addEventListener('keydown', on);
    return () => removeEventListener('keydown', on);
  }, []);
  const field = (k, label, placeholder, title, o = {}) =>
    html`<label
      >${label}
      <input
        ref=${o.ref}
        list=${o.list}
        data-filter=${k}
        value=${draft[k]}
        onInput=${(e) => setDraft((d) => ({ ...d, [k]: e.target.value }))}
        onChange=${(e) => setF({ ...f, [k]: e.target.value.trim() })}
        onKeyDown=${(e) => e.key === 'Escape' && draft[k] && (setDraft((d) => ({ ...d, [k]: '' })), setF({ ...f, [k]: '' }))}
        placeholder=${placeholder}
        title=${title}
    /></label>`;
  // Each answer says which filters it is for: another filter's rows are never shown under this one's, while it loads.
  const { data: got, error } = usePoll(() => api(`/api/runs?${qs}`).then((d) => ({ ...d, qs })), [qs], 3000);
  const data = got?.qs === qs ? got : undefined;
  // The pipelines and schedules seen so far, offered as their fields' choices.
  const seen = useRef(new Set());
  const seenSchedules = useRef(new Set());
  for (const r of data?.runs ?? []) {
    if (r.pipeline && r.pipeline !== '(encrypted)') seen.current.add(r.pipeline);
    if (r.scheduleId) seenSchedules.current.add(r.scheduleId);
  }
  // The filter matches a name's beginning (a Temporal list query: client/runs.ts): names seen that hold the text
  // elsewhere are offered when it matches none, as `spam` for sms-spam.
  const holding = f.pipeline
    ? [...seen.current].filter((p) => p.includes(f.pipeline.toLowerCase()) && !p.startsWith(f.pipeline.toLowerCase())).sort()
    : [];
  /** The Runs page with one more filter, the others kept: a row's pipeline or schedule is one click from its runs. */
  const withFilter = (k, v) => `#/runs?${new URLSearchParams(Object.entries({ ...f, [k]: v, sort }).filter(([, x]) => x)).toString()}`;
  const toggle = (id) => {
    const r = tickRun(picked, id);
    setPicked(r.picked);
    setRefused(r.refused);
  };
  const asked = filterText(f);
  const rows = data ? sortRuns(data.runs, sort) : [];
  // A run whose memo is under a key this dashboard lacks (client/runs.ts listRuns): the note says which, and what to set.
  const encrypted = data?.runs.find((r) => r.memoEncrypted);
  const header = (col, label, cls) => {
    const on = sort.replace(/^-/, '') === col || (!sort && col === 'started');
    const desc = sort ? sort.startsWith('-') : col === 'started';
    const next = on ? (desc ? col : `-${col}`) : RUN_SORTS[col].desc ? `-${col}` : col;
    return html`<th class=${cls} aria-sort=${on ? (desc ? 'descending' : 'ascending') : 'none'}>
      <button class="sort" data-sort=${col} onClick=${() => go(f, { limit, sort: next === '-started' ? '' : next })}>
        ${label}${on ? (desc ? ' ▾' : ' ▴') : ''}
      </button>
    </th>`;
  };
  const anyFilter = RUN_FILTERS.some((k) => f[k]);
  // The page is always the newest started runs (client/runs.ts listRuns); a column's order sorts those, and "show more"
  // adds the next newest started to them, wherever they sort.
  const sortCol = sort.replace(/^-/, '');
  const sortedBy =
    !RUN_SORTS[sortCol] || sort === '-started' ? '' : sort === 'started' ? ', oldest first here' : `, sorted by ${sortCol} here`;
  return html`<h1>Runs</h1>
    <div class="bar">
      <label
        >status
        <select data-filter="status" value=${f.status} onChange=${(e) => setF({ ...f, status: e.target.value })}>
          ${STATUSES.map((s) => html`<option value=${s}>${s ? runStateWord(s) : 'any'}</option>`)}
        </select></label
      >
      ${field(
        'pipeline',
        'pipeline',
        'name or its start',
        'runs whose pipeline name is this or begins with it, in any case; applies on Enter or when the field is left',
        { list: 'pipelines-seen' },
      )}
      <datalist id="pipelines-seen">${[...seen.current].sort().map((p) => html`<option value=${p} />`)}</datalist>
      <label
        >started
        <select data-filter="since" value=${f.since} onChange=${(e) => setF({ ...f, since: e.target.value })}>
          ${[...SINCE, ...(f.since && !SINCE.some(([v]) => v === f.since) ? [[f.since, `since ${f.since}`]] : [])].map(
            ([v, label]) => html`<option value=${v}>${label}</option>`,
          )}
        </select></label
      >
      ${field('id', 'run id', 'an id or its start (/)', 'runs whose id begins with this (press / to come here); Enter to apply', {
        ref: idField,
      })}
      ${field(
        'schedule',
        'schedule',
        'name',
        'the runs a schedule started (and their resumes); applies on Enter or when the field is left',
        {
          list: 'schedules-seen',
        },
      )}
      <datalist id="schedules-seen">${[...seenSchedules.current].sort().map((p) => html`<option value=${p} />`)}</datalist>
      ${anyFilter && html`<button id="runs-clear" onClick=${() => go({}, { sort })}>clear filters</button>`}
      <a
        href=${picked.length >= 2 ? `#/compare?${picked.map((id) => `run=${encodeURIComponent(id)}`).join('&')}` : undefined}
        id="compare-link"
        class=${picked.length >= 2 ? '' : 'muted'}
        >${picked.length >= 2 ? `compare ${picked.length} runs` : `compare: tick two or more (${picked.length} ticked)`}</a
      >
      ${refused && html`<span class="warning" id="tick-refused">${refused}</span>`}
    </div>
    ${error && html`<p class="error" id="runs-error">${error}</p>`}
    ${!data && !error && html`<p class="muted" id="runs-loading">loading runs…</p>`}
    ${data &&
    data.runs.length > 0 &&
    html`<table id="runs">
        <tr>
          <th></th>
          <th>run</th>
          ${header('pipeline', 'pipeline')}
          <th title="what the run was submitted with (--param); the same for every run of a pipeline unless set">params</th>
          ${header('status', 'status')} ${header('who', 'who')} ${header('started', 'started')} ${header('duration', 'duration', 'num')}
          <th>schedule</th>
        </tr>
        ${rows.map(
          (r) =>
            html`<tr data-run=${r.runId}>
              <td>
                <input
                  type="checkbox"
                  aria-label=${`tick ${r.runId} to compare`}
                  checked=${picked.includes(r.runId)}
                  onChange=${() => toggle(r.runId)}
                />
              </td>
              <td>
                <a href=${`#/run/${encodeURIComponent(r.runId)}`}>${r.runId}</a>
                ${r.resumeOf &&
                html`<br /><span class="muted" data-resumes=${r.resumeOf}
                    >resumes <a href=${`#/run/${encodeURIComponent(r.resumeOf)}`}>${r.resumeOf}</a></span
                  >`}
              </td>
              <td title=${r.memoEncrypted}>
                ${r.pipeline === '(encrypted)'
                  ? r.pipeline
                  : html`<a class="filter-link" href=${withFilter('pipeline', r.pipeline)} title=${`only ${r.pipeline}'s runs`}
                      >${r.pipeline}</a
                    >`}
              </td>
              <td class="params">${paramsText(r.params)}</td>
              <td title=${r.skipped ? `its gate ended it before training: ${r.skipped.reason}` : undefined}>
                ${r.skipped
                  ? html`<${State} s="skipped" /> <span class="muted" data-skipped=${r.skipped.outcome}>${r.skipped.outcome}</span>`
                  : html`<${State} s=${runStateWord(r.status)} />`}
              </td>
              <td>${r.actor ?? ''}</td>
              <td>${fmtTime(r.startTime)}</td>
              <td class="num">${fmtDur(r.startTime, r.closeTime)}</td>
              <td>
                ${r.scheduleId &&
                html`<a class="filter-link" href=${withFilter('schedule', r.scheduleId)} title=${`only ${r.scheduleId}'s runs`}
                  >${r.scheduleId}</a
                >`}
              </td>
            </tr>`,
        )}
      </table>
      <p class="muted" id="runs-count">
        ${data.more
          ? html`the ${data.runs.length} newest started
            runs${asked ? ` with ${asked}` : ''}${sortedBy}${' '}${limit < RUN_PAGE_MAX
              ? html`<button id="runs-more" onClick=${() => go(f, { limit: limit + RUN_PAGE })}>show ${RUN_PAGE} more</button>`
              : html`<span id="runs-longest">(the longest page: a start time or another filter shows older ones)</span>`}`
          : `${data.runs.length === 1 ? 'the one run' : `all ${data.runs.length} runs`}${asked ? ` with ${asked}` : ''}${sortedBy}`}
      </p>`}
    ${encrypted &&
    html`<p class="warning" id="runs-encrypted">
      runs with no submitter or params shown keep them in an encrypted memo (their pipeline too, shown as (encrypted) where Temporal has no
      TemperedPipeline search attribute for it): ${encrypted.memoEncrypted}
    </p>`}
    ${data &&
    data.runs.length === 0 &&
    html`<p class="muted" id="runs-none">
      ${asked ? `no runs with ${asked}` : html`no runs yet; submit one with <code>tempered submit pipeline.yaml</code>`}
      ${holding.length > 0 &&
      html`<span id="runs-pipelines-holding"
        >; pipelines seen whose name holds '${f.pipeline}':${' '}
        ${holding.map((p, i) => html`${i ? ', ' : ''}<a href=${withFilter('pipeline', p)}>${p}</a>`)}</span
      >`}
    </p>`}`;
}

// ---- curves -----------------------------------------------------------------------------------
const GROUPS = [
  {
    title: 'loss',
    series: [
      ['loss', 'train loss', '#1565c0'],
      ['val_loss', 'validation loss', '#c62828'],
    ],
  },
  { title: 'learning rate', series: [['lr', 'lr', '#6a4fb3']] },
  { title: 'gradient norm', series: [['grad_norm', 'grad norm', '#ef6c00']] },
  {
    title: 'validation metrics',
    series: [
      ['val_accuracy', 'accuracy', '#1f8a4c'],
      ['val_f1_macro', 'macro F1', '#00838f'],
    ],
  },
  { title: 'throughput (samples/s)', series: [['samplesPerSec', 'samples/s', '#5d4037']] },
  { title: 'throughput (tokens/s)', series: [['tokensPerSec', 'tokens/s', '#ad1457']] },
];
/** History column → the name the train stage reports it under live. */
const LIVE_NAMES = {
  loss: 'loss',
  lr: 'lr',
  grad_norm: 'gradNorm',
  val_loss: 'val_loss',
  val_accuracy: 'val_accuracy',
  val_f1_macro: 'val_f1_macro',
  samplesPerSec: 'samplesPerSec',
  tokensPerSec: 'tokensPerSec',
};

/** Adds live points to a stage's columns: a step seen before (a retried attempt) is replaced, a new one appended. */
function mergePoints(curves, points, offset) {
  const cols = curves.columns;
  const index = new Map(cols.step.map((s, i) => [s, i]));
  for (const { metrics: m } of points) {
    let i = index.get(m.step);
    if (i === undefined) {
      i = cols.step.length;
      index.set(m.step, i);
      for (const k of Object.keys(cols)) cols[k].push(null);
      cols.step[i] = m.step;
    }
    for (const [col, name] of Object.entries(LIVE_NAMES)) if (cols[col]) cols[col][i] = m[name] ?? null;
  }
  // A new wrapper so the charts see the change; the arrays grow in place (a history is never copied).
  return { ...curves, columns: { ...cols }, offset };
}

const emptyCurves = () => ({
  columns: { step: [], ...Object.fromEntries(Object.keys(LIVE_NAMES).map((k) => [k, []])) },
  source: 'live',
  offset: 0,
});

function Chart({ title, series, cols, id, extra }) {
  const el = useRef(null);
  const plot = useRef(null);
  const present = series.filter(([k]) => cols[k] && cols[k].some((v) => v != null));
  const data = [cols.step, ...present.map(([k]) => cols[k])];
  useEffect(() => {
    if (!el.current || present.length === 0) return;
    const opts = {
      width: Math.max(320, el.current.clientWidth - 4),
      height: 220,
      scales: { x: { time: false } },
      axes: [{ label: 'step' }, {}],
      series: [
        { label: 'step' },
        ...present.map(([, label, stroke]) => ({
          label,
          stroke,
          width: 1.5,
          spanGaps: true,
          points: { show: false },
          // Significant digits, not uPlot's fixed three decimals: a learning rate of 3e-4 is not 0.
          value: (_u, v) => (v == null ? '–' : fmtSig(v)),
        })),
      ],
      cursor: { drag: { x: true, y: false } },
    };
    plot.current?.destroy();
    plot.current = new uPlot(opts, data, el.current);
    return () => {
      plot.current?.destroy();
      plot.current = null;
    };
  }, [present.map((p) => p[0]).join()]);
  const drawn = useRef(cols);
  useEffect(() => {
    // The first data went in when the chart was made; redraw only for new points.
    if (drawn.current !== cols) plot.current?.setData(data);
    drawn.current = cols;
  }, [cols]);
  if (present.length === 0) return null;
  const points = cols[present[0][0]].filter((v) => v != null).length;
  return html`<div class="chart" id=${id} data-points=${points} ...${extra}>
    <h3>${title} <span class="muted">(${points} points; drag to zoom, double-click to reset)</span></h3>
    <div ref=${el}></div>
  </div>`;
}

function Curves({ cols }) {
  return html`<div class="grid" id="curves">
    ${GROUPS.map((g) => html`<${Chart} key=${g.title} id=${`chart-${g.series[0][0]}`} title=${g.title} series=${g.series} cols=${cols} />`)}
  </div>`;
}

// ---- evaluation -------------------------------------------------------------------------------
function ConfusionMatrix({ labels, matrix }) {
  const max = Math.max(1, ...matrix.flat());
  return html`<table class="cm" id="confusion">
    <tr>
      <th>true \\ predicted</th>
      ${labels.map((l) => html`<th>${l}</th>`)}
    </tr>
    ${matrix.map(
      (row, i) =>
        html`<tr>
          <th>${labels[i]}</th>
          ${row.map(
            (c, j) =>
              html`<td
                data-true=${labels[i]}
                data-pred=${labels[j]}
                data-count=${c}
                style=${`background: rgba(${i === j ? '31,138,76' : '198,40,40'}, ${(0.08 + 0.8 * (c / max)).toFixed(3)})`}
              >
                ${c}
              </td>`,
          )}
        </tr>`,
    )}
  </table>`;
}

/**
 * The fine-tuned model against production, like with like: both on the test rows production was not trained on
 * (`production.candidate.*` beside `production.*`), with how many rows that is and how many were left out, and a
 * warning where production's training data could not be read (then both are on every test row).
 */
function VersusProduction({ c }) {
  const left = c.contaminatedRows ?? 0;
  const n = c.nearDuplicateRows ?? 0;
  const near = n ? `, ${n} of them ${n === 1 ? 'a near duplicate of a training input' : 'near duplicates of training inputs'}` : '';
  const who = c.version ? `production (${c.version})` : 'production';
  const rows =
    c.decontaminated === false
      ? `on all ${c.rows ?? c.testRows ?? '?'} test rows: production's training data could not be read, so none were left out`
      : c.scored
        ? `on ${c.rows} test rows production was not trained on; ${left} left out${near}`
        : `not scored: production was trained on the input of every test row (${left} left out${near})`;
  return html`<div
    id="versus-production"
    data-version=${c.version}
    data-rows=${c.rows}
    data-contaminated=${left}
    data-decontaminated=${String(c.decontaminated)}
  >
    <h3>Against ${who}</h3>
    <p id="production-rows">${rows}</p>
    ${c.decontaminated === false &&
    html`<p class="warning" id="production-contaminated">
      not decontaminated: production may have been trained on some of these rows, so its scores may be
      inflated${c.reason ? ` (${c.reason})` : ''}
    </p>`}
    ${c.scored &&
    html`<table id="versus-production-table">
      <tr>
        <th></th>
        ${c.metrics.map((m) => html`<th class="num">${m.name}</th>`)}
      </tr>
      <tr data-who="candidate">
        <td>fine-tuned, same rows</td>
        ${c.metrics.map((m) => html`<td class="num" data-metric=${m.name}>${fmtNum(m.candidate)}</td>`)}
      </tr>
      <tr data-who="production">
        <td>${who}</td>
        ${c.metrics.map((m) => html`<td class="num" data-metric=${m.name}>${fmtNum(m.production)}</td>`)}
      </tr>
      <tr data-who="delta">
        <td>Δ fine-tuned − production</td>
        ${c.metrics.map(
          (m) =>
            html`<td
              class=${`num ${m.delta === undefined || m.delta === 0 ? '' : m.delta > 0 === (m.better === 'higher') ? 'pos' : 'neg'}`}
              data-metric=${m.name}
            >
              ${m.delta === undefined ? '' : fmtNum(m.delta)}
            </td>`,
        )}
      </tr>
    </table>`}
  </div>`;
}

function Evaluation({ report, metrics, production }) {
  if (!report) return null;
  // Evaluations that scored production on the rows it was not trained on (or found none) get their own table;
  // older ones keep production beside the fine-tuned model's scores, as they always showed.
  const apart = production && (production.sameRows || !production.scored) ? production : undefined;
  if (report.task === 'causal-lm') {
    const keys = ['loss', 'perplexity', 'exact_match', 'balanced_exact_match', 'answer_f1_macro', 'rouge_l', 'chrf'].filter(
      (k) => report[k] !== undefined,
    );
    const answers = report.answers
      ? [
          ['fine-tuned', report.answers.model],
          ['baseline', report.answers.baseline],
          [apart?.rows !== undefined ? `production (its ${apart.rows} rows)` : 'production', report.answers.production],
        ].filter(([, a]) => a)
      : [];
    const who = [
      ['fine-tuned', report],
      ['baseline', report.baseline],
      [`production${report.production?.version ? ` (${report.production.version})` : ''}`, apart ? undefined : report.production],
    ].filter(([, m]) => m);
    const samples = report.samples ?? [];
    // Free-form answers (an instruction tune's replies): no reference answer occurs twice, so each answer's recall is
    // one row's exact match, and a table of every reference pushed the samples, which say more, off the screen. Only
    // where no answer was given to another row too: labels that each occur once (a 2-row test set) with 'positive'
    // answered to both keep the table, whose precision shows it.
    const freeForm =
      answers.length > 0 && answers.every(([, list]) => list.every((a) => a.rows <= 1 && a.predicted === a.exact_match * a.rows));
    const answerCount = answers[0]?.[1].length ?? 0;
    return html`<h2>Evaluation</h2>
      <table id="versus">
        <tr>
          <th></th>
          ${keys.map((k) => html`<th class="num">${k}</th>`)}
        </tr>
        ${who.map(
          ([name, m]) =>
            html`<tr>
              <td>${name}</td>
              ${keys.map((k) => html`<td class="num">${fmtNum(m[k])}</td>`)}
            </tr>`,
        )}
      </table>
      ${apart && html`<${VersusProduction} c=${apart} />`}
      ${freeForm &&
      html`<p class="muted" id="per-answer-free">
        per answer: each of the ${answerCount} reference answers occurs once and was given on its own row only (free-form answers), so an
        answer's recall and precision are its row's exact match; compare the answers in the samples below
      </p>`}
      ${answers.length > 0 &&
      !freeForm &&
      html`<h3>Per answer <span class="muted">(exact match = recall of that answer)</span></h3>
        <table id="per-answer">
          <tr>
            <th></th>
            <th>answer</th>
            <th class="num">rows</th>
            <th class="num">exact match</th>
            <th class="num">predicted</th>
            <th class="num">precision</th>
            <th class="num">f1</th>
          </tr>
          ${answers.flatMap(([name, list]) =>
            list.map(
              (a) =>
                html`<tr>
                  <td>${name}</td>
                  <td>${a.answer}</td>
                  <td class="num">${a.rows}</td>
                  <td class="num">${fmtNum(a.exact_match)}</td>
                  <td class="num">${a.predicted}</td>
                  <td class="num">${fmtNum(a.precision)}</td>
                  <td class="num">${fmtNum(a.f1)}</td>
                </tr>`,
            ),
          )}
        </table>`}
      ${samples.length > 0 &&
      html`<h3>Samples side by side</h3>
        <table id="samples">
          <tr>
            <th>prompt</th>
            <th>reference</th>
            <th>fine-tuned</th>
            ${samples[0].baseline !== undefined && html`<th>baseline</th>`}${samples[0].production !== undefined &&
            html`<th>production</th>`}
          </tr>
          ${samples.map(
            (r) =>
              html`<tr>
                <td style="white-space:pre-wrap;max-width:320px">${r.prompt}</td>
                <td style="white-space:pre-wrap">${r.reference}</td>
                <td class=${r.exact ? 'pos' : ''} style="white-space:pre-wrap">${r.output}</td>
                ${r.baseline !== undefined &&
                html`<td class=${r.baseline_exact ? 'pos' : ''} style="white-space:pre-wrap">${r.baseline}</td>`}
                ${r.production !== undefined &&
                (r.production === null && r.production_trained_on
                  ? html`<td class="muted" data-trained-on="true">not scored: production was trained on this row</td>`
                  : html`<td class=${r.production_exact ? 'pos' : ''} style="white-space:pre-wrap">${r.production}</td>`)}
              </tr>`,
          )}
        </table>`}`;
  }
  const model = report.model;
  const rows = [
    ['fine-tuned', model],
    ['baseline', report.baseline],
    [`production${report.production ? ` (${report.production.id})` : ''}`, apart ? undefined : report.production?.metrics],
  ];
  return html`<h2>Evaluation <span class="muted">(${report.testRows} test rows)</span></h2>
    <div class="bar" style="align-items:flex-start; gap: 24px">
      <div>
        <h3>Confusion matrix</h3>
        <${ConfusionMatrix} labels=${model.labels ?? report.labels} matrix=${model.confusion} />
      </div>
      <div>
        <h3>Per class</h3>
        <table id="per-class">
          <tr>
            <th>label</th>
            <th class="num">precision</th>
            <th class="num">recall</th>
            <th class="num">F1</th>
            <th class="num">support</th>
          </tr>
          ${Object.entries(model.perClass).map(
            ([l, m]) =>
              html`<tr data-label=${l}>
                <td>${l}</td>
                <td class="num">${fmtNum(m.precision)}</td>
                <td class="num">${fmtNum(m.recall)}</td>
                <td class="num">${fmtNum(m.f1)}</td>
                <td class="num">${m.support}</td>
              </tr>`,
          )}
        </table>
      </div>
      <div>
        <h3 id="versus-title">${apart || !report.production ? 'Against baseline' : 'Against baseline and production'}</h3>
        <table id="versus">
          <tr>
            <th></th>
            <th class="num">accuracy</th>
            <th class="num">macro F1</th>
            <th class="num" title="positive: the fine-tuned model scores higher">Δ F1 fine-tuned − this</th>
          </tr>
          ${rows
            .filter(([, m]) => m)
            .map(
              ([name, m]) =>
                html`<tr>
                  <td>${name}</td>
                  <td class="num">${fmtNum(m.accuracy)}</td>
                  <td class="num">${fmtNum(m.macro?.f1)}</td>
                  <td class="num">${m === model ? '' : fmtNum(model.macro.f1 - m.macro.f1)}</td>
                </tr>`,
            )}
        </table>
        ${apart && html`<${VersusProduction} c=${apart} />`}
      </div>
    </div>`;
}

// ---- data reports -----------------------------------------------------------------------------
function ReportTable({ report }) {
  if (!report || typeof report !== 'object') return null;
  const scalars = Object.entries(report).filter(([, v]) => v == null || typeof v !== 'object');
  const objects = Object.entries(report).filter(([, v]) => v && typeof v === 'object');
  return html`<div class="report">
    <table>
      ${scalars.map(
        ([k, v]) =>
          html`<tr>
            <th>${k}</th>
            <td class="num">${fmtNum(v)}</td>
          </tr>`,
      )}
    </table>
    ${objects.map(([k, v]) =>
      Object.keys(v).length === 0
        ? html`<h3>${k}</h3>
            <p class="muted">(none)</p>`
        : Array.isArray(v) && v.every((x) => x == null || typeof x !== 'object')
          ? html`<h3>${k}</h3>
              <p>${v.join(', ') || '(none)'}</p>`
          : Object.values(v).every((x) => x == null || typeof x !== 'object')
            ? html`<h3>${k}</h3>
                <table>
                  ${Object.entries(v).map(
                    ([a, b]) =>
                      html`<tr>
                        <th>${a}</th>
                        <td class="num">${fmtNum(b)}</td>
                      </tr>`,
                  )}
                </table>`
            : html`<h3>${k}</h3>
                <${ReportTable} report=${v} />`,
    )}
  </div>`;
}

// ---- a run ------------------------------------------------------------------------------------
/** A stage's error as the CLI prints it: type, message, how its retries went (note), and every hint. */
function errorText(e) {
  const hints = [e.hint, ...(e.moreHints ?? [])].filter(Boolean);
  return `${e.type ? `${e.type}: ` : ''}${e.message}${e.note ? ` (${e.note})` : ''}${hints.length ? `\nhint: ${hints.join('; ')}` : ''}`;
}

/** As the CLI says it (cli/format.ts): the first few stages of other runs that hold the queue. */
function busyWithText(busy, shown = 3) {
  const named = busy
    .slice(0, shown)
    .map(
      (b) =>
        `stage ${b.stage} of run ${b.runId}${b.silentSec !== undefined ? ` (its worker silent for ${fmtSecs(b.silentSec)}, likely dead: the slot frees once that stage's heartbeat timeout passes)` : ''}`,
    );
  return busy.length > shown ? `${named.join(', ')} and ${busy.length - shown} more` : named.join(', ');
}

/**
 * The page's stages with a live `stages` event applied. A stage the page did not list is added: without the run's
 * key the status has only the stages scheduled so far (what Temporal keeps in clear), so later ones come this way.
 */
function liveStages(shown, live) {
  const known = new Set(shown.map((s) => s.id));
  const merged = (s, n) => ({
    ...s,
    ...n,
    // JSON drops undefined fields: what a stage no longer has (a wait, a retried error) is cleared here.
    progress: n.progress ? { message: n.progress, fraction: n.fraction } : undefined,
    error: n.error,
    waitingForWorker: n.waitingForWorker,
    waitingBehind: n.waitingBehind,
    waitingBehindRuns: n.waitingBehindRuns,
    silentSec: n.silentSec,
  });
  return [
    ...shown.map((s) => {
      const n = live.find((x) => x.id === s.id);
      return n ? merged(s, n) : s;
    }),
    ...live.filter((n) => !known.has(n.id)).map((n) => merged({ id: n.id, needs: [] }, n)),
  ];
}

function StageCard({ s, view }) {
  const reports = view.reports[s.id] ?? {};
  const unread = view.unread?.[s.id]?.report;
  return html`<div class="card" data-stage-card=${s.id}>
    <div class="bar" style="margin:0">
      <b>${s.id}</b> <span class="muted">${s.uses}</span> <${State} s=${s.state} />
      ${s.attempt > 1 && html`<span>attempt ${s.attempt}</span>`}
      <span class="muted">${s.state === 'cached' ? `cache hit from ${s.cachedFrom?.runId ?? '?'}` : fmtDur(s.startedAt, s.endedAt)}</span>
      ${s.progress?.message && html`<span class="muted" title=${s.progress.message}>${shortPaths(s.progress.message)}</span>`}
    </div>
    ${s.state === 'running' &&
    s.waitingForWorker &&
    html`<p class="waiting" data-waiting-for=${s.waitingForWorker}>
      ${s.waitingBehind?.length
        ? `waiting: task queue ${s.waitingForWorker} is busy with ${s.waitingBehind.length > 1 ? 'stages' : 'stage'} ${s.waitingBehind.join(', ')} of this run; this stage starts when a worker slot there is free`
        : s.waitingBehindRuns?.length
          ? `waiting: task queue ${s.waitingForWorker} is busy with ${busyWithText(s.waitingBehindRuns)}; this stage starts when a worker slot there is free`
          : `waiting: no worker of task queue ${s.waitingForWorker} has asked for work lately (none runs, or all are busy); this stage starts when one takes it (tempered worker --queue ${s.waitingForWorker})`}
    </p>`}
    ${s.state === 'running' &&
    s.silentSec !== undefined &&
    html`<p class="waiting" data-silent=${s.silentSec}>
      no heartbeat from its worker for ${fmtSecs(s.silentSec)}: the worker may have died or lost the server; once its heartbeat timeout
      passes the stage is retried on another worker, if it has attempts left
    </p>`}
    ${s.error && html`<p class="error" data-retry=${s.error.note}>${errorText(s.error)}</p>`}
    ${s.skippedBecause && html`<p class="muted">skipped: ${s.skippedBecause}</p>`}
    ${s.outputs &&
    html`<table class="outputs">
      ${Object.entries(s.outputs).map(
        ([k, v]) =>
          html`<tr>
            <th>${k}</th>
            <td>
              ${isRef(v)
                ? html`<a
                      href=${`/api/artifacts/${v.sha256}`}
                      download=${downloadName(s.id, k, v.mediaType)}
                      onClick=${(e) => download(e, v, downloadName(s.id, k, v.mediaType))}
                      >${v.sha256.slice(0, 12)}…</a
                    >
                    <span class="muted"> ${fmtBytes(v.bytes)}${v.rows != null ? ` · ${v.rows} rows` : ''} · ${v.mediaType}</span>`
                : typeof v === 'object' && v !== null && Object.keys(v).length === 0
                  ? html`<span class="muted">${Array.isArray(v) ? 'none' : '{}'}</span>`
                  : typeof v === 'object' && v !== null
                    ? html`<details>
                        <summary class="muted">${JSON.stringify(v).slice(0, 60)}…</summary>
                        <pre>${JSON.stringify(v, null, 2)}</pre>
                      </details>`
                    : html`<span>${fmtNum(v)}</span>`}
            </td>
          </tr>`,
      )}
    </table>`}
    ${unread && html`<p class="warning" data-unread="report">report not shown: ${unread}</p>`}
    ${['ingest', 'dedupe', 'split'].includes(s.uses) &&
    reports.report &&
    html`<details>
      <summary>data report</summary>
      <${ReportTable} report=${reports.report} />
    </details>`}
  </div>`;
}

/** Downloads go through fetch so the token travels in a header where reads need it. */
async function download(e, ref, name) {
  return downloadFrom(e, `/api/artifacts/${ref.sha256}`, name);
}
async function downloadFrom(e, path, name) {
  if (!token()) return;
  e.preventDefault();
  const res = await fetch(path, { headers: { authorization: `Bearer ${token()}` } });
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  URL.revokeObjectURL(url);
}

/** A spec file's text, folded, with its sha256 and a download of the exact text (`path`: its `/spec` route). */
function SpecText({ path, file, sha256, text }) {
  return html`<details class="spec-text">
    <summary>
      ${file} · sha256 <code data-spec-sha256>${sha256}</code>${' '}
      <a href=${`${path}?download=1`} download=${file} data-spec-download onClick=${(e) => downloadFrom(e, `${path}?download=1`, file)}
        >download</a
      >
    </summary>
    <pre data-spec-text>${text}</pre>
  </details>`;
}

/**
 * The spec a run was submitted with and what its train stages ran with, from the audit trail (`path`: a run's or a
 * version's `/spec` route): the text as submitted, folded, with its sha256 and a download of the exact text, or why
 * the trail has none; per train stage `models show`'s line and the facts it leaves out (CPU model, platform, Node.js).
 */
function RecordedSpec({ path }) {
  const { data, error } = usePoll(() => api(path), [path], 0);
  if (error) return html`<p class="error" data-spec-error>${error}</p>`;
  if (!data) return html`<p class="muted">loading the recorded spec…</p>`;
  const s = data.spec;
  const file = (s?.specFile?.split('/').pop() || `${data.runId}.yaml`).replace(/[^\w.-]/g, '_');
  return html`<div class="recorded-spec" data-spec-run=${data.runId}>
    <h3>
      ${s?.schedule
        ? html`Spec as its schedule keeps it <span class="muted">(from the store, named by the audit trail)</span>`
        : html`Spec as submitted <span class="muted">(from the audit trail)</span>`}
    </h3>
    ${s &&
    html`<p class="muted">
      run ${data.runId},
      ${s.schedule
        ? html`started by schedule <span data-spec-schedule>${s.schedule}</span>: the spec file it keeps in the store for this spec hash,
            set by ${s.actor} at`
        : `submitted by ${s.actor} at`}
      ${fmtTime(s.time)}${s.specFile ? ` from ${s.specFile}` : ''}${s.textFrom && s.textFrom !== data.runId
        ? ` (the text run ${s.textFrom} was submitted with; this run resumed it)`
        : ''}${s.params && Object.keys(s.params).length ? ` · params ${JSON.stringify(s.params)}` : ''}
    </p>`}
    ${data.missing && html`<p class="muted" data-spec-missing>${data.missing}</p>`}
    ${s?.textMatches === false &&
    html`<p class="warning">the recorded text does not hash to its recorded sha256 ${s.textSha256 ?? '?'}</p>`}
    ${s?.planMatches === false && html`<p class="warning">the recorded plan does not hash to the spec hash ${data.specHash}</p>`}
    ${s?.redacted?.length > 0 &&
    html`<p class="muted" data-spec-redacted>
      credentials were hidden ${s.schedule ? 'here' : 'when the trail recorded this spec'} (${s.redacted.join('; ')}): the text is not the
      file ${s.schedule ? 'the schedule keeps' : 'submitted'}, whose sha256 is the one shown; put them back where it says REDACTED before
      submitting it again
    </p>`}
    ${s?.text !== undefined && html`<${SpecText} path=${path} file=${file} sha256=${s.textSha256} text=${s.text} />`}
    ${s?.text === undefined &&
    s?.plan &&
    html`<details class="spec-text">
      <summary>resolved plan (JSON)</summary>
      <pre>${JSON.stringify(s.plan, null, 2)}</pre>
    </details>`}
    ${s?.sources?.length > 0 &&
    html`<ul class="muted">
      ${s.sources.map(
        (x) => html`<li>data: ${x.stage} read ${x.path} sha256 ${x.sha256}${x.bytes != null ? ` (${x.bytes} bytes)` : ''}</li>`,
      )}
    </ul>`}
    <h3>Trained with</h3>
    ${data.trainedWithMissing && html`<p class="muted" data-trained-missing>${data.trainedWithMissing}</p>`}
    ${data.trainedWith.length > 0 &&
    html`<table class="trained-with">
      <tr>
        <th>stage</th>
        <th>device</th>
        <th>threads</th>
        <th>onnxruntime</th>
        <th>cpus</th>
        <th>CPU model</th>
        <th>resumed from step</th>
      </tr>
      ${data.trainedWith.map(
        (t) =>
          html`<tr
            data-trained=${t.stage}
            title=${`${t.summary}${t.platform ? ` · ${t.platform}` : ''}${t.node ? ` · Node.js ${t.node}` : ''}`}
          >
            <td>${t.stage}</td>
            <td>${t.device}</td>
            <td>${t.threads === null ? "onnxruntime's default" : (t.threads ?? '–')}</td>
            <td>${t.onnxruntime ?? '–'}</td>
            <td>${t.cpus ?? '–'}</td>
            <td>${t.cpu ?? '–'}</td>
            <td>${t.resumedFromStep ?? '–'}</td>
          </tr>`,
      )}
    </table>`}
  </div>`;
}

const RESUME_SUCCEEDED =
  'this run succeeded; resuming reruns it from the stage cache: its stages come back as they were, except those whose inputs changed since';

/** A training stage's curves, or why there are none to draw (its history not in this store, no points yet). */
function Training({ id, curves }) {
  const points = curves.columns.step?.length ?? 0;
  return html`<h2>Training: ${id}</h2>
    ${curves.unread &&
    html`<p class="warning" data-unread="history">
      training history not shown${points > 0 ? ' (the live points are)' : ''}: ${curves.unread}
    </p>`}
    ${points === 0 && !curves.unread && html`<p class="muted">no training points yet</p>`}
    ${points > 0 && html`<${Curves} cols=${curves.columns} />`}`;
}

function RunPage({ id }) {
  const [view, setView] = useState();
  const [error, setError] = useState();
  const [selected, setSelected] = useState();
  const [curves, setCurves] = useState({});
  const [curvesFor, setCurvesFor] = useState();
  // The offsets a lost live stream starts again from: the curves as last drawn.
  const curvesNow = useRef(curves);
  curvesNow.current = curves;
  const [live, setLive] = useState({});
  const [cancelAsked, setCancelAsked] = useState(false);
  // A run past the namespace's retention: the server's account of it from the audit trail, as `tempered status` gives.
  const [gone, setGone] = useState();
  // An id Temporal does not know may be the beginning of one (copied short, or typed from memory): the runs it begins.
  const [prefixOf, setPrefixOf] = useState();
  // The run shown now: an answer for the run shown before (a slow 404 for an id copied short, answered after its
  // suggestion was clicked) is dropped, not shown as this run's.
  const idNow = useRef(id);
  idNow.current = id;
  const forThis = (asked, f) => (x) => (idNow.current === asked ? f(x) : undefined);
  const reload = (asked = id) =>
    api(`/api/runs/${encodeURIComponent(asked)}`).then(
      forThis(asked, setView),
      forThis(asked, (e) => {
        if (e.body?.gone) return setGone(e.body);
        setError(e.message);
        if (e.status === 404) api(`/api/runs?id=${encodeURIComponent(asked)}&limit=10`).then(forThis(asked, setPrefixOf), () => {});
      }),
    );
  const loadCurves = (asked = id) =>
    api(`/api/runs/${encodeURIComponent(asked)}/curves`).then(
      forThis(asked, (c) => {
        setCurves(c.stages);
        setCurvesFor(c.states);
      }),
      // A run Temporal cannot describe: the status read fails too, and says why.
      () => {},
    );
  useEffect(() => {
    setView(undefined);
    setCurves({});
    setCurvesFor(undefined);
    setLive({});
    setCancelAsked(false);
    setGone(undefined);
    // Another run's refusal is not this one's (a link from a refused id's page to the run it meant kept showing it).
    setError(undefined);
    setPrefixOf(undefined);
    // Status and curves in parallel: the curves do not wait for the status to name the training stages.
    reload();
    loadCurves();
  }, [id]);
  const trainStages = view ? view.status.stages.filter((s) => s.uses === 'train' && s.state !== 'pending' && s.state !== 'skipped') : [];
  const trainKey = trainStages.map((s) => `${s.id}:${s.state}`).join();
  useEffect(() => {
    // A training stage started or finished since the curves were read: read them again (once per change).
    if (!view || !curvesFor) return;
    if (trainStages.some((s) => curvesFor[s.id] !== s.state && !(curvesFor[s.id] === 'running' && s.state === 'running'))) loadCurves();
  }, [trainKey, curvesFor]);
  // Live: stage states and new training points while the run is going.
  const running = view?.status.state === 'running';
  const curvesLoaded = curvesFor !== undefined;
  useTicking(running);
  // The server reads the run's status from Temporal every second for each open stream: a page left in a background
  // tab closes it, and opens it again when shown, from the offsets drawn (the run may have ended meanwhile: 'end').
  const shown = useShown();
  useEffect(() => {
    if (!running || !curvesLoaded || !shown) return;
    const ctl = new AbortController();
    const offsets = () =>
      Object.entries(curvesNow.current)
        .map(([s, c]) => `offset.${encodeURIComponent(s)}=${c.offset}`)
        .join('&');
    streamEvents({
      path: () => `/api/runs/${encodeURIComponent(id)}/events?${offsets()}`,
      headers: () => (token() ? { authorization: `Bearer ${token()}` } : {}),
      onEvent: (ev, d) => {
        if (ev === 'stages') {
          setLive({});
          setView((v) => ({
            ...v,
            status: {
              ...v.status,
              state: d.state,
              endedAt: d.endedAt,
              waitingForWorker: d.waitingForWorker,
              cancelRequested: d.cancelRequested,
              recordingEnd: d.recordingEnd,
              stages: liveStages(v.status.stages, d.stages),
            },
          }));
        } else if (ev === 'points')
          setCurves((all) => {
            return { ...all, [d.stage]: mergePoints(all[d.stage] ?? emptyCurves(), d.points, d.offset) };
          });
        else if (ev === 'failure') setLive((l) => ({ ...l, failure: d.error }));
        else if (ev === 'end') reload();
      },
      onLost: (why) => setLive((l) => ({ ...l, lost: why })),
      onLive: () => setLive((l) => ({ ...l, lost: undefined })),
      onGiveUp: (why) => setLive((l) => ({ ...l, lost: undefined, failure: why })),
      signal: ctl.signal,
    });
    return () => ctl.abort();
  }, [id, running, curvesLoaded, shown]);
  const spec = html`<${RecordedSpec} path=${`/api/runs/${encodeURIComponent(id)}/spec`} />`;
  // The trail keeps the spec after Temporal's retention deleted the run: shown even where the run cannot be.
  if (gone)
    return html`<div class="warning" id="run-gone">
        <p>${gone.error}</p>
        <p>${gone.hint}</p>
      </div>
      ${spec}`;
  if (error)
    return html`<p class="error">${error}</p>
      ${prefixOf?.runs.length > 0 &&
      html`<div id="run-prefix-matches">
        <p>${prefixOf.runs.length === 1 && !prefixOf.more ? 'The run whose id begins with it:' : `Runs whose id begins with it:`}</p>
        <ul>
          ${prefixOf.runs.map(
            (r) =>
              html`<li>
                <a href=${`#/run/${encodeURIComponent(r.runId)}`}>${r.runId}</a> ${r.pipeline} <${State} s=${runStateWord(r.status)} />
                <span class="muted">${fmtTime(r.startTime)}</span>
              </li>`,
          )}
        </ul>
        ${prefixOf.more && html`<a href=${`#/runs?id=${encodeURIComponent(id)}`}>all of them on the Runs page</a>`}
      </div>`}
      ${!prefixOf?.runs.length && spec}`;
  if (!view) return html`<p class="muted">loading ${id}…</p>`;
  const st = view.status;
  const evalStage = st.stages.find((s) => s.uses === 'evaluate' && view.reports[s.id]?.report);
  const evalUnread = evalStage ? undefined : st.stages.find((s) => s.uses === 'evaluate' && view.unread?.[s.id]?.report);
  const cancelPending = cancelAsked || !!st.cancelRequested;
  return html`<h1>${st.runId} <${State} s=${st.state} /></h1>
    <div class="bar">
      <span>pipeline <b>${st.name}</b></span
      ><span>by ${st.actor}</span><span>started ${fmtTime(st.startedAt)}</span>
      <span id="run-duration">${fmtDur(st.startedAt, st.endedAt)}</span>
      ${st.resumeOf && html`<span>resumes <a href=${`#/run/${encodeURIComponent(st.resumeOf)}`}>${st.resumeOf}</a></span>`}
      ${view.webUrl && html`<a href=${view.webUrl} target="_blank" rel="noopener">Temporal Web UI ↗</a>`}
      <button
        class="danger"
        id="cancel"
        disabled=${st.state !== 'running' || cancelPending}
        title=${cancelPending ? 'cancellation requested' : undefined}
        onClick=${() =>
          act(
            () => api(`/api/runs/${encodeURIComponent(id)}/cancel`, { method: 'POST' }),
            (r) => {
              setCancelAsked(true);
              reload();
              return r.alreadyRequested ? 'cancellation was already requested' : 'cancellation requested';
            },
          )}
      >
        ${cancelPending ? 'cancel requested' : 'cancel'}
      </button>
      <button
        id="resume"
        disabled=${st.state === 'running'}
        title=${st.state === 'succeeded' ? RESUME_SUCCEEDED : undefined}
        onClick=${() =>
          act(
            () => api(`/api/runs/${encodeURIComponent(id)}/resume`, { method: 'POST' }),
            (r) => {
              location.hash = `#/run/${encodeURIComponent(r.runId)}`;
              return `resumed as ${r.runId}${st.state === 'succeeded' ? `\nnote: ${RESUME_SUCCEEDED}` : ''}`;
            },
          )}
      >
        resume
      </button>
    </div>
    ${(live.lost || live.failure) &&
    html`<p class="warning" id="live-lost">
      ${live.lost ? 'live updates lost, reconnecting…' : 'live updates failed'}${live.failure ? ` (${live.failure})` : ''}
    </p>`}
    ${st.encrypted &&
    html`<p class="warning" id="run-encrypted">
      pipeline, submitter, params, outputs and error messages read (encrypted) or are left out, and stages not started yet are not listed,
      as only the run's encrypted payloads hold them: ${st.encrypted}
    </p>`}
    ${st.gate && html`<p>run gate: <b>${st.gate.outcome}</b> — ${st.gate.reason}</p>`}
    ${st.waitingForWorker &&
    (st.cancelRequested
      ? html`<p class="waiting" data-cancel-requested="true">
          waiting: cancellation requested; no worker has picked this run up yet, and it ends (cancelled, nothing run) when a worker serving
          task queue${' '}<code>${st.waitingForWorker}</code>${' '}takes it
        </p>`
      : html`<p class="waiting">
          waiting: no worker has picked this run up yet; it starts when a worker serving task
          queue${' '}<code>${st.waitingForWorker}</code>${' '}runs (<code>tempered worker --queue ${st.waitingForWorker}</code>)
        </p>`)}
    ${st.recordingEnd &&
    html`<p class="waiting" id="recording-end">
      closing: every stage has ended (${st.state}); the run closes once its end is recorded (the audit log's end record, then the outcome
      later runs' gates read), which waits for a database that does not answer, up to half an hour (the worker's log says why)
    </p>`}
    <${Dag} stages=${st.stages} selected=${selected} onSelect=${(sid) => setSelected((cur) => (cur === sid ? undefined : sid))} />
    ${trainStages.map((s) => curves[s.id] && html`<${Training} id=${s.id} curves=${curves[s.id]} />`)}
    ${evalUnread &&
    html`<h2>Evaluation</h2>
      <p class="warning" id="evaluation-unread">report not shown: ${view.unread[evalUnread.id].report}</p>`}
    ${evalStage &&
    html`<${Evaluation}
      report=${view.reports[evalStage.id].report}
      metrics=${view.reports[evalStage.id].metrics}
      production=${view.production?.[evalStage.id]}
    />`}
    <h2>
      Stages
      ${selected &&
      html`<span class="muted">(${selected} only)</span>
        <button id="all-stages" onClick=${() => setSelected(undefined)}>show all stages</button>`}
    </h2>
    <div class="stages">
      ${st.stages.filter((s) => !selected || s.id === selected).map((s) => html`<${StageCard} key=${s.id} s=${s} view=${view} />`)}
    </div>
    ${spec}`;
}

// ---- models -----------------------------------------------------------------------------------
/** The card's markdown, rendered by marked and sanitised by DOMPurify (loaded only when a card is opened). */
function ModelCard({ text }) {
  const [htmlText, set] = useState();
  useEffect(() => {
    Promise.all([import('marked'), import('dompurify')]).then(([{ marked }, { default: DOMPurify }]) =>
      set(DOMPurify.sanitize(marked.parse(text))),
    );
  }, [text]);
  return htmlText === undefined
    ? html`<pre class="model-card">${text}</pre>`
    : html`<div class="model-card card" dangerouslySetInnerHTML=${{ __html: htmlText }}></div>`;
}

/** A version's lineage, read when asked for (it looks the run up in Temporal). */
function Lineage({ name, version }) {
  const { data, error } = usePoll(() => api(`/api/models/${encodeURIComponent(name)}/versions/${version}/lineage`), [name, version], 0);
  if (error) return html`<p class="error">${error}</p>`;
  if (!data) return html`<p class="muted">loading the lineage of v${version}…</p>`;
  return html`<h3>Lineage of v${version} <span class="muted">(source files and data → run → version → aliases → serving)</span></h3>
    <${LineageGraph} graph=${data} />
    ${data.notes.map((n) => html`<p class="muted">${n}</p>`)}`;
}

/** A version's model card and recorded lineage, read when it is opened (the list carries no cards). */
function VersionCard({ name, version }) {
  const { data, error } = usePoll(() => api(`/api/models/${encodeURIComponent(name)}/versions/${version}/card`), [name, version], 0);
  if (error) return html`<p class="error">${error}</p>`;
  if (!data) return html`<p class="muted">loading the card of v${version}…</p>`;
  const l = data.lineage;
  return html`<div id="version-card" data-version=${version}>
    <h3>Model card v${version}</h3>
    <${ModelCard} text=${data.card} />
    <h3>Recorded lineage</h3>
    <table>
      <tr>
        <th>run</th>
        <td><a href=${`#/run/${encodeURIComponent(l.runId)}`}>${l.runId}</a> · stage ${l.stageId}</td>
      </tr>
      <tr>
        <th>spec</th>
        <td>${l.specHash.slice(0, 16)}…</td>
      </tr>
      ${l.data.map(
        (d) =>
          html`<tr>
            <th>data ${d.name}</th>
            <td>${d.sha256.slice(0, 16)}…${d.rows != null ? ` (${d.rows} rows)` : ''}</td>
          </tr>`,
      )}
    </table>
    <${RecordedSpec} path=${`/api/models/${encodeURIComponent(name)}/versions/${version}/spec`} />
  </div>`;
}

const fmtSha = (x) => (x ? `${x.slice(0, 12)}…` : '–');
/** production.version is a version number, as `models diff` shows it, not a score. */
const fmtMetricValue = (name, x) => (name === 'production.version' && typeof x === 'number' ? `v${x}` : fmtNum(x));

/** What changed between two versions: metrics with deltas, parameters, data hashes, artifacts, the model card. */
function VersionDiffView({ name, a, b }) {
  const { data, error } = usePoll(() => api(`/api/models/${encodeURIComponent(name)}/diff?a=${a}&b=${b}`), [name, a, b], 0);
  if (error) return html`<p class="error">${error}</p>`;
  if (!data) return html`<p class="muted">loading…</p>`;
  const d = data.diff;
  const flags = [
    d.specHashChanged && 'pipeline spec',
    d.codeVersionChanged && 'tempered code version',
    d.baseModelChanged && 'base model',
  ].filter(Boolean);
  // A data set of the same name with other bytes (a retrain's new split) shows once, as changed.
  const paired = new Set(d.data.changed.flatMap((c) => [c.a.sha256, c.b.sha256]));
  return html`<div id="version-diff" data-a=${a} data-b=${b}>
    <h3>v${a} → v${b}</h3>
    <p>${flags.length ? `changed: ${flags.join(', ')}` : 'same spec, code version and base model'}</p>
    ${data.productionNote ? html`<p class="muted" id="diff-production">${data.productionNote}</p>` : null}
    <div class="bar" style="align-items:flex-start; gap: 24px">
      <div>
        <h3>Metrics</h3>
        <table id="diff-metrics">
          <tr>
            <th>metric</th>
            <th class="num">v${a}</th>
            <th class="num">v${b}</th>
            <th class="num">Δ</th>
          </tr>
          ${d.metrics.map(
            (m) =>
              html`<tr data-metric=${m.name}>
                <td>${m.name}</td>
                <td class="num">${fmtMetricValue(m.name, m.a)}</td>
                <td class="num">${fmtMetricValue(m.name, m.b)}</td>
                <td class=${`num ${deltaClass(m.name, m.delta)}`}>${m.delta === undefined ? '' : fmtNum(m.delta)}</td>
              </tr>`,
          )}
        </table>
      </div>
      <div>
        <h3>Config</h3>
        ${d.params.length === 0
          ? html`<p class="muted" id="diff-params">same parameters</p>`
          : html`<table id="diff-params">
              <tr>
                <th>parameter</th>
                <th>v${a}</th>
                <th>v${b}</th>
              </tr>
              ${d.params.map(
                (p) =>
                  html`<tr>
                    <td>${p.key}</td>
                    <td><code>${p.a === undefined ? '–' : JSON.stringify(p.a)}</code></td>
                    <td><code>${p.b === undefined ? '–' : JSON.stringify(p.b)}</code></td>
                  </tr>`,
              )}
            </table>`}
        <h3>Data</h3>
        <table id="diff-data">
          ${d.data.changed.map(
            (c) =>
              html`<tr data-change="changed" data-name=${c.name} data-sha-a=${c.a.sha256} data-sha=${c.b.sha256}>
                <td class="neg">changed</td>
                <td>${c.name}</td>
                <td>${fmtSha(c.a.sha256)} → ${fmtSha(c.b.sha256)}</td>
                <td class="num">${c.a.rows === undefined && c.b.rows === undefined ? '' : `${c.a.rows ?? '–'} → ${c.b.rows ?? '–'}`}</td>
              </tr>`,
          )}
          ${[
            ['removed', d.data.removed.filter((r) => !paired.has(r.sha256)), 'neg'],
            ['added', d.data.added.filter((r) => !paired.has(r.sha256)), 'pos'],
            ['unchanged', d.data.unchanged, 'muted'],
          ].flatMap(([what, refs, cls]) =>
            refs.map(
              (r) =>
                html`<tr data-change=${what} data-sha=${r.sha256}>
                  <td class=${cls}>${what}</td>
                  <td>${r.name}</td>
                  <td>${fmtSha(r.sha256)}</td>
                  <td class="num">${r.rows ?? ''}</td>
                </tr>`,
            ),
          )}
        </table>
        <h3>Artifacts</h3>
        <table id="diff-artifacts">
          ${d.artifacts.map(
            (x) =>
              html`<tr data-role=${x.role}>
                <td>${x.role}</td>
                <td>${fmtSha(x.a)}</td>
                <td class=${x.changed ? 'neg' : 'muted'}>${x.changed ? fmtSha(x.b) : 'same'}</td>
              </tr>`,
          )}
        </table>
      </div>
    </div>
    <h3>Model card</h3>
    <div class="card-diff" id="card-diff">
      ${data.card.flatMap((c) =>
        c.value
          .replace(/\n$/, '')
          .split('\n')
          .map(
            (line) => html`<div class=${c.added ? 'add' : c.removed ? 'del' : ''}>${c.added ? '+ ' : c.removed ? '- ' : '  '}${line}</div>`,
          ),
      )}
    </div>
  </div>`;
}

// ---- models (list) ---------------------------------------------------------------------------------
/** What `models rollback` says too: deploy refuses a version a person rolled back until someone promotes it by hand. */
function heldNote(name, alias, from) {
  if (from == null) return '';
  const cli = `tempered models promote ${name}@${from}${alias === 'production' ? '' : ` --alias ${alias}`}`;
  return `. v${from} is held: no run's deploy promotes it to ${alias} again (a rerun on the same data registers the same version); promoting it by hand does (its row's "promote to ${alias}", or \`${cli}\`)`;
}

function ModelsPage() {
  const [tick, setTick] = useState(0);
  const { data, error } = usePoll(() => api('/api/models'), [tick], 0);
  const [form, setForm] = useState({});
  const [card, setCard] = useState();
  const [lineage, setLineage] = useState();
  const [diff, setDiff] = useState({});
  // By model, the rows shown when the user asked for older versions, and those older ones (a page each time).
  const [older, setOlder] = useState({});
  const refresh = () => setTick((t) => t + 1);
  const loadOlder = async (name, shown) => {
    try {
      const r = await api(`/api/models/${encodeURIComponent(name)}/versions?before=${shown[shown.length - 1].version}`);
      setOlder((o) => ({ ...o, [name]: { versions: [...shown, ...r.versions], more: r.more } }));
    } catch (e) {
      showBanner({ ok: false, text: e.message });
    }
  };
  if (error) return html`<p class="error">${error}</p>`;
  if (!data) return html`<p class="muted">loading…</p>`;
  if (data.models.length === 0)
    return html`<h1>Models</h1>
      <p class="muted">no registered models yet; a pipeline's register stage creates them</p>`;
  return html`<h1>Models</h1>
    ${data.models.map((m) => {
      const initial = { alias: 'production', gate: m.lastGate ?? '' };
      const f = form[m.name] ?? initial;
      // From the state as it is when the update runs, not as this render saw it: two inputs filled before a
      // render would otherwise each write the other's old value back.
      const set = (patch) => setForm((cur) => ({ ...cur, [m.name]: { ...(cur[m.name] ?? initial), ...patch } }));
      // The newest page (refreshed after an action), then the rows loaded before below it. Versions are numbered
      // 1, 2, … with none removed, so a hole between the two (a page's worth registered since) drops the loaded ones.
      const edge = m.versions.at(-1)?.version ?? 0;
      const loaded = (older[m.name]?.versions ?? []).filter((v) => v.version < edge);
      const joined = loaded.length > 0 && loaded[0].version === edge - 1;
      const versions = joined ? [...m.versions, ...loaded] : m.versions;
      const moreOlder = joined ? older[m.name].more : versions.length < m.versionCount;
      const aliasesOf = (version) =>
        Object.entries(m.aliases)
          .filter(([, to]) => to === version)
          .map(([a]) => a);
      const keys = data.metricColumns.filter((k) => versions.some((v) => v.metrics[k] !== undefined));
      return html`<div class="card" data-model=${m.name}>
        <h2 style="margin-top:0">
          ${m.name}${' '}
          ${Object.entries(m.aliases).map(([a, v]) => {
            const c = m.aliasSet?.[a];
            const who = c ? ` (${c.kind === 'rollback' ? 'rolled back' : 'set'} by ${c.actor}, ${fmtTime(c.at)})` : '';
            return html`<span class="muted" data-alias=${a}>${a} → v${v}${who}</span>${' '}`;
          })}
        </h2>
        <div class="bar">
          <label>alias <input value=${f.alias} onInput=${(e) => set({ alias: e.target.value })} size="10" /></label>
          <label
            >gate
            <input
              value=${f.gate}
              onInput=${(e) => set({ gate: e.target.value })}
              size="60"
              placeholder="optional, e.g. f1_macro >= production.f1_macro"
          /></label>
          <button
            class="danger"
            id=${`rollback-${m.name}`}
            onClick=${() =>
              act(
                () =>
                  api(`/api/models/${encodeURIComponent(m.name)}/rollback`, {
                    method: 'POST',
                    body: { alias: f.alias, expect: m.aliases[f.alias] },
                  }),
                (r) => {
                  refresh();
                  // Back to a twin of the version left: nothing served changed, and no hold is put on it.
                  return `${m.name}@${f.alias} rolled back to v${r.version}${r.sameModel ? `. ${r.sameModel}` : heldNote(m.name, f.alias, r.change?.fromVersion)}`;
                },
              )}
            title=${`moves ${f.alias} back to the version it held before; the one it leaves is then held: no run's deploy promotes it to ${f.alias} again until someone promotes it by hand`}
          >
            roll back ${f.alias}
          </button>
        </div>
        <table class="versions">
          <tr>
            <th>version</th>
            <th>created</th>
            <th>by</th>
            <th>run</th>
            ${keys.map((k) => html`<th class="num">${k}</th>`)}
            <th>aliases</th>
            <th></th>
          </tr>
          ${versions.map(
            (v) =>
              html`<tr data-version=${v.version}>
                <td>v${v.version}</td>
                <td>${fmtTime(v.createdAt)}</td>
                <td>${v.createdBy}</td>
                <td><a href=${`#/run/${encodeURIComponent(v.runId)}`}>${v.runId}</a></td>
                ${keys.map((k) => html`<td class="num">${fmtNum(v.metrics[k])}</td>`)}
                <td>${aliasesOf(v.version).join(', ')}</td>
                <td>
                  ${m.aliases[f.alias] === v.version
                    ? html`<span class="muted" data-holds=${f.alias}>${f.alias} now</span>`
                    : html`<button
                        class="primary"
                        data-promote=${v.version}
                        onClick=${() =>
                          act(
                            () =>
                              api(`/api/models/${encodeURIComponent(m.name)}/promote`, {
                                method: 'POST',
                                body: { version: v.version, alias: f.alias, gate: f.gate || undefined, expect: m.aliases[f.alias] ?? null },
                              }),
                            (r) => {
                              refresh();
                              // Nothing moved (the alias serves this model already): "→ v1" for a click on v2 said it moved.
                              if (!r.change) return `${m.name}@${f.alias} stays on v${r.version}: ${r.already}`;
                              return `${m.name}@${f.alias} → v${r.version}${r.gate ? `\ngate: ${r.gate.explanation}` : ''}`;
                            },
                          )}
                      >
                        promote to ${f.alias}
                      </button>`}
                  <button onClick=${() => setCard(card === `${m.name}@${v.version}` ? undefined : `${m.name}@${v.version}`)}>card</button>
                  <button
                    data-lineage=${v.version}
                    onClick=${() => setLineage(lineage === `${m.name}@${v.version}` ? undefined : `${m.name}@${v.version}`)}
                  >
                    lineage
                  </button>
                </td>
              </tr>`,
          )}
        </table>
        <p class="muted" data-shown=${m.name}>
          ${versions.length} of ${m.versionCount} versions${' '}
          ${moreOlder && html`<button data-older=${m.name} onClick=${() => loadOlder(m.name, versions)}>older versions</button>`}
        </p>
        ${versions
          .filter((v) => card === `${m.name}@${v.version}`)
          .map((v) => html`<${VersionCard} name=${m.name} version=${v.version} />`)}
        ${versions.filter((v) => lineage === `${m.name}@${v.version}`).map((v) => html`<${Lineage} name=${m.name} version=${v.version} />`)}
        ${versions.length > 1 &&
        (() => {
          const sel = diff[m.name] ?? { a: versions[1].version, b: versions[0].version, shown: false };
          const setSel = (patch) => setDiff({ ...diff, [m.name]: { ...sel, ...patch } });
          const pick = (k) =>
            html`<select data-diff=${k} value=${sel[k]} onChange=${(e) => setSel({ [k]: Number(e.target.value), shown: false })}>
              ${versions.map((v) => html`<option value=${v.version}>v${v.version}</option>`)}
            </select>`;
          return html`<h3>Compare versions</h3>
            <div class="bar">
              ${pick('a')} → ${pick('b')}
              <button id=${`diff-${m.name}`} onClick=${() => setSel({ shown: true })}>diff</button>
            </div>
            ${sel.shown && html`<${VersionDiffView} name=${m.name} a=${sel.a} b=${sel.b} />`}`;
        })()}
        <h3>Alias history</h3>
        <table>
          ${m.history
            .slice()
            .reverse()
            .map(
              (c) =>
                html`<tr>
                  <td>${fmtTime(c.at)}</td>
                  <td>${c.alias}</td>
                  <td>${c.kind}</td>
                  <td>${aliasChangeText(c)}</td>
                  <td>${c.actor}</td>
                  <td class="muted">${c.reason ?? ''}</td>
                </tr>`,
            )}
        </table>
      </div>`;
    })}`;
}

// ---- audit ------------------------------------------------------------------------------------
function AuditPage({ query }) {
  const [f, setF] = useState({ run: query.get('run') ?? '', model: query.get('model') ?? '', actor: '', action: '' });
  const [verify, setVerify] = useState();
  const qs = new URLSearchParams(Object.entries(f).filter(([, v]) => v)).toString();
  const { data, error } = usePoll(() => api(`/api/audit?${qs}`), [qs], 5000);
  const input = (k) => html`<label>${k} <input value=${f[k]} onChange=${(e) => setF({ ...f, [k]: e.target.value })} /></label>`;
  return html`<h1>Audit trail</h1>
    <div class="bar">
      ${['run', 'model', 'actor', 'action'].map(input)}
      <button
        id="verify"
        onClick=${async () => setVerify(await api('/api/audit/verify').catch((e) => ({ ok: false, message: e.message })))}
      >
        verify chain
      </button>
      ${verify &&
      html`<span id="verify-result" class=${verify.ok ? 'pos' : 'neg'}
        >${verify.ok
          ? `intact: ${verify.checked} records, head ${verify.head?.seq}:${verify.head?.hash.slice(0, 12)}…`
          : `NOT intact: ${verify.problem ?? ''} ${verify.message ?? ''}`}</span
      >`}
    </div>
    ${error && html`<p class="error" id="audit-error">${error}</p>`}
    ${!error &&
    data?.model?.resolved &&
    html`<p id="audit-model" data-ref=${data.model.ref} data-version=${data.model.resolved.version}>
      <b>${data.model.ref}</b> is <b>${data.model.query}</b>${' '}
      ${!/@v\d+$/.test(data.model.ref) &&
      html`<span class="muted">(the version it points at now; records of the versions it pointed at before are not shown)</span>`}${' '}
      <button id="audit-model-all" onClick=${() => setF({ ...f, model: data.model.resolved.name })}>
        every version of ${data.model.resolved.name}
      </button>
    </p>`}
    ${!error &&
    data &&
    html`<table id="audit">
        <tr>
          <th class="num">seq</th>
          <th>time</th>
          <th>actor</th>
          <th>action</th>
          <th>subject</th>
          <th>details</th>
        </tr>
        ${data.records.map(
          (r) =>
            html`<tr data-action=${r.action}>
              <td class="num">${r.seq}</td>
              <td>${fmtTime(r.time)}</td>
              <td>${r.actor}</td>
              <td>${r.action}</td>
              <td>${r.subject}</td>
              <td class="muted audit-details">
                ${Object.entries(r.details ?? {}).map(
                  ([k, v]) => html`<div><b>${k}</b> ${typeof v === 'string' ? v : JSON.stringify(v)}</div>`,
                )}
              </td>
            </tr>`,
        )}
      </table>
      ${data.records.length === 0 && html`<p class="muted" id="audit-none">no matching audit records</p>`}`}`;
}

// ---- compare ----------------------------------------------------------------------------------
const RUN_COLORS = ['#1565c0', '#ef6c00', '#1f8a4c', '#c62828', '#6a4fb3', '#00838f', '#5d4037', '#ad1457'];
const runLetter = (i) => String.fromCharCode(65 + i);

/** Each run's history column `key` on the union of all runs' steps (null where a run has no such step). */
function overlay(curves, key) {
  const present = curves.filter(Boolean);
  const steps = [...new Set(present.flatMap((c) => c.step))].sort((x, y) => x - y);
  const cols = { step: steps };
  curves.forEach((c, i) => {
    const m = new Map(c ? c.step.map((s, j) => [s, c[key]?.[j]]) : []);
    cols[`r${i}`] = steps.map((s) => m.get(s) ?? null);
  });
  return cols;
}

/**
 * The validation curve the runs have, scores before loss: a classifier's macro F1, a causal LM's loss (its history has
 * no F1 column with a value). The chart was macro F1 only, so a causal LM's runs showed no validation at all.
 */
const VALIDATION_CURVES = [
  { key: 'val_f1_macro', title: 'macro F1', short: 'F1' },
  { key: 'val_accuracy', title: 'accuracy', short: 'accuracy' },
  { key: 'val_loss', title: 'loss', short: 'val loss' },
];
function validationCurve(curves) {
  return VALIDATION_CURVES.find(({ key }) => curves.some((c) => c?.[key]?.some((x) => x != null)));
}

/** A JSON value in a cell, long ones clipped (the whole value on hover); an absent one is a dash. */
function Json({ value }) {
  if (value === undefined) return html`<span class="muted" title="absent">–</span>`;
  const text = JSON.stringify(value);
  return html`<code title=${text.length > 40 ? text : undefined}>${text.length > 40 ? `${text.slice(0, 39)}…` : text}</code>`;
}

/**
 * The runs as `tempered runs --compare` shows them (the server compares them with the same code, src/eval/trials.ts):
 * params that differ, the exported model's validation, evaluate's scores, stage times, each metric's best marked, and
 * the run to choose on validation.
 */
function Trials({ trials, runs, letters }) {
  const best = trials.bestOnValidation;
  const chosen = best && trials.params.map((p) => `${p.name}=${String(p.values[best.run])}`).join(' ');
  const chosenId = best ? (runs[best.run]?.status.runId ?? '') : '';
  return html`<h2>
      Trials <span class="muted">(as <code>tempered runs --compare</code>)</span>
    </h2>
    <table id="compare-trials">
      <tr>
        <th></th>
        ${letters.map((l) => html`<th class="num">${l}</th>`)}
      </tr>
      ${trials.params.map(
        (p) =>
          html`<tr data-param=${p.name}>
            <td>params.${p.name}</td>
            ${p.values.map((x) => html`<td class="num"><${Json} value=${x ?? undefined} /></td>`)}
          </tr>`,
      )}
      ${trials.rows.map(
        (r) =>
          html`<tr data-row=${r.name}>
            <td>${r.name}</td>
            ${r.values.map(
              (x, i) =>
                html`<td class=${r.best === i ? 'num best' : 'num'} data-best=${r.best === i ? 'true' : undefined}>
                  ${x == null ? '–' : `${r.best === i ? '*' : ''}${r.name.startsWith('time.') ? fmtSecs(x) : fmtNum(x)}`}
                </td>`,
            )}
          </tr>`,
      )}
      ${trials.flags.map(
        (f) =>
          html`<tr data-row=${f.name}>
            <td>${f.name}</td>
            ${f.values.map((x) => html`<td class="num">${x === undefined || x === null ? '–' : x ? 'yes' : 'no'}</td>`)}
          </tr>`,
      )}
    </table>
    <p class="muted">
      * best of the runs (higher for scores, lower for losses; none on a tie); val_*: the exported model's validation (early stopping's best
      step, else the last evaluation), as models show gives them; –: none (a stage taken from the cache has no time)
    </p>
    ${(trials.evaluatedOn ?? []).map(
      ({ metric, fewest, most }) =>
        html`<p class=${fewest < 100 ? '' : 'muted'} data-metric=${metric} id=${`compare-rows-${metric}`}>
          ${metric.split('.')[0]}'s scores are over ${fewest === most ? fewest : `${fewest}–${most}`} test rows
          (${metric})${fewest < 100
            ? `: one row is ${fmtNum(1 / fewest)} of a per-row score such as exact_match, so a smaller difference is a single answer; read the answers side by side below (evaluate's generation.samples sets how many rows) or evaluate more rows (maxRows)`
            : ''}
        </p>`,
    )}
    ${trials.params.length === 0 && html`<p class="muted" id="compare-same-params">the runs were submitted with the same parameters</p>`}
    ${best
      ? html`<p id="compare-best" data-run=${chosenId}>
          best on validation (${best.metric}): <b>${letters[best.run]}</b>${' '}<a href=${`#/run/${encodeURIComponent(chosenId)}`}
            >${chosenId}</a
          >${chosen ? ` (${chosen})` : ''}
        </p>`
      : html`<p class="muted" id="compare-best">
          no validation metrics to choose on: give the train stage a validation table and evalEvery; choosing on the test metrics makes them
          an optimistic estimate
        </p>`}`;
}

/**
 * The evaluate reports' sample rows with each run's answer beside the reference and the baseline's (as `runs --compare`
 * prints them): what a difference in the scores is made of, on the same test rows.
 */
function AnswersSideBySide({ answers, letters }) {
  if (answers.length === 0) return null;
  const baseline = answers.some((a) => a.baseline !== undefined);
  // Several evaluate stages (an in-domain and an out-of-domain test set): each row says whose it is.
  const stages = new Set(answers.map((a) => a.stage)).size > 1;
  return html`<h2>Answers side by side <span class="muted">(the evaluate reports' sample rows; ✓ exact match)</span></h2>
    <table id="compare-answers">
      <tr>
        ${stages && html`<th>stage</th>`}
        <th>prompt</th>
        <th>reference</th>
        ${baseline && html`<th>baseline</th>`} ${letters.map((l) => html`<th>${l}</th>`)}
      </tr>
      ${answers.map(
        (a) =>
          html`<tr data-prompt=${a.prompt} data-stage=${a.stage}>
            ${stages && html`<td>${a.stage}</td>`}
            <td style="white-space:pre-wrap;max-width:320px">${a.prompt}</td>
            <td style="white-space:pre-wrap">${a.reference}</td>
            ${baseline && html`<td style="white-space:pre-wrap">${a.baseline ?? '–'}</td>`}
            ${a.outputs.map(
              (x, i) =>
                html`<td style="white-space:pre-wrap" data-run=${letters[i]} data-exact=${a.exact[i] ? 'true' : undefined}>
                  ${x ?? '–'}${a.exact[i] ? ' ✓' : ''}
                </td>`,
            )}
          </tr>`,
      )}
    </table>`;
}

function ComparePage({ query }) {
  const ids = [...query.getAll('run'), ...['a', 'b'].map((k) => query.get(k)).filter(Boolean)];
  const qs = ids.map((id) => `run=${encodeURIComponent(id)}`).join('&');
  const { data, error } = usePoll(() => api(`/api/compare?${qs}`), [qs], 0);
  if (error) return html`<p class="error">${error}</p>`;
  if (!data) return html`<p class="muted">loading…</p>`;
  const n = data.runs.length;
  const series = (what) => data.runs.map((_, i) => [`r${i}`, `${runLetter(i)} ${what}`, RUN_COLORS[i % RUN_COLORS.length]]);
  const drawn = data.curves.some(Boolean);
  const val = validationCurve(data.curves);
  const letters = data.runs.map((_, i) => runLetter(i));
  return html`<h1>Compare <span class="muted">(${n} runs; deltas against A)</span></h1>
    <table id="compare-runs">
      <tr>
        <th></th>
        <th>run</th>
        <th>state</th>
        <th>pipeline</th>
        <th>started</th>
        <th class="num">steps drawn</th>
      </tr>
      ${data.runs.map(
        (v, i) =>
          html`<tr data-run=${v.status.runId}>
            <td><b style=${`color:${RUN_COLORS[i % RUN_COLORS.length]}`}>${letters[i]}</b></td>
            <td><a href=${`#/run/${encodeURIComponent(v.status.runId)}`}>${v.status.runId}</a></td>
            <td><${State} s=${v.status.state} /></td>
            <td>${v.status.name}</td>
            <td>${fmtTime(v.status.startedAt)}</td>
            <td class="num">${data.curves[i]?.step.length ?? '–'}</td>
          </tr>`,
      )}
    </table>
    ${drawn &&
    html`<div class="grid">
      <${Chart} id="compare-loss" title="training loss" cols=${overlay(data.curves, 'loss')} series=${series('loss')} />
      ${val &&
      html`<${Chart}
        id="compare-val"
        title=${`validation ${val.title}`}
        cols=${overlay(data.curves, val.key)}
        series=${series(val.short)}
      />`}
    </div>`}
    <${Trials} trials=${data.trials} runs=${data.runs} letters=${letters} />
    <${AnswersSideBySide} answers=${data.trials.answers ?? []} letters=${letters} />
    <h2>Metrics</h2>
    <table id="compare-metrics">
      <tr>
        <th>output</th>
        ${letters.map((l) => html`<th class="num">${l}</th>`)} ${letters.slice(1).map((l) => html`<th class="num">${l} − A</th>`)}
      </tr>
      ${data.metrics.map(
        (m) =>
          html`<tr data-metric=${m.name}>
            <td>${m.name}</td>
            ${m.values.map((x) => html`<td class="num">${fmtNum(x)}</td>`)}
            ${m.deltas
              .slice(1)
              .map((d) => html`<td class=${`num delta ${deltaClass(m.name, d)}`}>${d === undefined || d === null ? '' : fmtNum(d)}</td>`)}
          </tr>`,
      )}
    </table>
    <h2>Data <span class="muted">(hashes of each table a stage made)</span></h2>
    <table id="compare-data">
      <tr>
        <th>table</th>
        ${letters.map((l) => html`<th>${l}</th>`)}
      </tr>
      ${data.data.map(
        (d) =>
          html`<tr data-table=${d.name} data-same=${String(d.same)}>
            <td>${d.name}</td>
            ${d.values.map(
              (x, i) =>
                html`<td class=${!d.same && x !== d.values[0] ? 'neg' : ''}>
                  ${i > 0 && x === d.values[0] ? 'same as A' : (x?.slice(0, 12) ?? '–')}
                </td>`,
            )}
          </tr>`,
      )}
    </table>
    <h2>Spec differences</h2>
    ${data.spec.length === 0
      ? html`<p class="muted" id="spec-diff">identical specs</p>`
      : html`<table id="spec-diff">
          <tr>
            <th>path</th>
            ${letters.map((l) => html`<th>${l}</th>`)}
          </tr>
          ${data.spec.map(
            (d) =>
              html`<tr data-path=${d.path}>
                <td>${d.path}</td>
                ${d.values.map((x, i) => html`<td><${Json} value=${d.absent?.[i] ? undefined : x} /></td>`)}
              </tr>`,
          )}
        </table>`}`;
}

// ---- schedules --------------------------------------------------------------------------------
/** The spec file a schedule runs, as it keeps it in the store: folded as a run's spec is, or why the store cannot give it. */
function ScheduleSpec({ name }) {
  const path = `/api/schedules/${encodeURIComponent(name)}/spec`;
  const { data, error } = usePoll(() => api(path), [path], 0);
  if (error) return html`<p class="error" data-spec-error>${error}</p>`;
  if (!data) return html`<p class="muted">loading the spec file…</p>`;
  const file = (data.file.split('/').pop() || `${name}.yaml`).replace(/[^\w.-]/g, '_');
  return html`<div class="schedule-spec" data-schedule-spec=${name}>
    <span class="muted"
      >spec file ${data.file || '(no path recorded)'}${data.params.length ? ` · params ${data.params.join(' ')}` : ''}</span
    >
    ${data.missing && html`<p class="warning" data-spec-missing>${data.missing}</p>`}
    ${data.redacted?.length > 0 &&
    html`<p class="muted" data-spec-redacted>
      credentials were hidden here (${data.redacted.join('; ')}): the text is not the file the schedule keeps, whose sha256 is the one shown
    </p>`}
    ${data.text !== undefined && html`<${SpecText} path=${path} file=${file} sha256=${data.textSha256} text=${data.text} />`}
  </div>`;
}

function SchedulesPage() {
  const [tick, setTick] = useState(0);
  const [notes, setNotes] = useState({});
  const { data, error } = usePoll(() => api('/api/schedules'), [tick], 3000);
  // A pause or unpause takes the row's note, as `schedule pause --note` does; without one no note shows.
  const op = (name, what) =>
    act(
      () =>
        api(`/api/schedules/${encodeURIComponent(name)}/${what}`, {
          method: 'POST',
          body: what !== 'trigger' && notes[name]?.trim() ? { note: notes[name].trim() } : undefined,
        }),
      (r) => {
        setTick((t) => t + 1);
        if (what !== 'trigger') setNotes((n) => ({ ...n, [name]: '' }));
        if (what !== 'trigger') return `${what}: ${name}`;
        // As `schedule trigger` says it: which run started, or why none did.
        return r?.runId
          ? `triggered ${name}: run ${r.runId}`
          : r?.skipped
            ? `triggered ${name}, but its overlap policy (${r.overlap}) skipped it: a run is still in progress`
            : `triggered ${name}; the server has not started the run yet`;
      },
    );
  return html`<h1>Schedules</h1>
    ${error && html`<p class="error">${error}</p>`}
    ${data && data.schedules.length === 0 && html`<p class="muted">no schedules; create one with <code>tempered schedule create</code></p>`}
    ${data &&
    data.schedules.length > 0 &&
    html`<table id="schedules">
      <tr>
        <th>name</th>
        <th>pipeline</th>
        <th>timing</th>
        <th>state</th>
        <th>next fires</th>
        <th>recent runs</th>
        <th></th>
      </tr>
      ${data.schedules.map(
        (s) =>
          html`<tr data-schedule=${s.name} data-paused=${String(s.paused)}>
            <td>${s.name}<br /><a class="muted" href=${`#/runs?schedule=${encodeURIComponent(s.name)}`}>its runs</a></td>
            <td>${s.pipeline}<${ScheduleSpec} name=${s.name} /></td>
            <td>
              ${s.timing}<br /><span class="muted" title="what a fire or a trigger does while a run is still in progress"
                >overlap ${s.overlap}</span
              >
            </td>
            <td><${State} s=${s.paused ? 'paused' : 'active'} />${s.note ? html`<br /><span class="muted">${s.note}</span>` : ''}</td>
            <td>
              ${s.nextRuns.length === 0 && html`<span class="muted">${s.paused ? 'none while paused' : 'none'}</span>`}
              ${s.nextRuns.map((t) => html`<div data-next=${t}>${fmtTime(t)}</div>`)}
            </td>
            <td>
              ${s.recent.length === 0 && html`<span class="muted">none yet</span>`}
              ${s.recent.map(
                (r) =>
                  html`<div data-recent=${r.runId}>
                    <a href=${`#/run/${encodeURIComponent(r.runId)}`}>${r.runId}</a> <${State} s=${r.state} />${r.gate
                      ? html` <span class="muted">gate ${r.gate.outcome}</span>`
                      : ''}
                    ${r.error &&
                    html`<div class="muted recent-error" data-error title=${r.error}>
                      ${r.error.length > 160 ? `${r.error.slice(0, 160)}…` : r.error}
                    </div>`}
                  </div>`,
              )}
            </td>
            <td>
              <input
                data-note
                size="18"
                value=${notes[s.name] ?? ''}
                onInput=${(e) => setNotes((n) => ({ ...n, [s.name]: e.target.value }))}
                placeholder="note (optional)"
                title=${`a note for the ${s.paused ? 'unpause' : 'pause'}, shown with the schedule`}
              />
              <button data-op=${s.paused ? 'unpause' : 'pause'} onClick=${() => op(s.name, s.paused ? 'unpause' : 'pause')}>
                ${s.paused ? 'unpause' : 'pause'}
              </button>
              <button data-op="trigger" onClick=${() => op(s.name, 'trigger')}>trigger now</button>
            </td>
          </tr>`,
      )}
    </table>`}`;
}

// ---- shell ------------------------------------------------------------------------------------
/** A part of the address as written where it is no percent-encoding (`#/run/50%`): decodeURIComponent threw, blanking the page. */
const decodedPart = (p) => {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
};

function route() {
  const [path, q] = location.hash.replace(/^#/, '').split('?');
  return { parts: (path || '/runs').split('/').filter(Boolean).map(decodedPart), query: new URLSearchParams(q ?? '') };
}

function App() {
  const [r, setR] = useState(route());
  const hashAtRender = location.hash;
  const [banner, setBanner] = useState();
  showBanner = (b) => {
    setBanner(b);
    clearTimeout(showBanner.t);
    showBanner.t = setTimeout(() => setBanner(undefined), 8000);
  };
  useEffect(() => {
    const on = () => setR(route());
    addEventListener('hashchange', on);
    // Effects run after the first paint: a hash that changed between the first render and now fired its hashchange
    // before anyone listened, and the page stayed on the first route (tests/ui.test.ts waited 30 s on Runs for Models).
    if (location.hash !== hashAtRender) on();
    return () => removeEventListener('hashchange', on);
  }, []);
  const [page, arg] = r.parts;
  const nav = ['runs', 'models', 'audit', 'schedules'];
  let body;
  if (page === 'run' && arg) body = html`<${RunPage} id=${arg} />`;
  else if (page === 'models') body = html`<${ModelsPage} />`;
  else if (page === 'audit') body = html`<${AuditPage} query=${r.query} />`;
  else if (page === 'compare') body = html`<${ComparePage} query=${r.query} />`;
  else if (page === 'schedules') body = html`<${SchedulesPage} />`;
  else body = html`<${RunsPage} query=${r.query} />`;
  return html`<header>
      <b>tempered</b>${nav.map((n) => html`<a href=${`#/${n}`} class=${page === n ? 'on' : ''}>${n}</a>`)}
      <span class="who"
        >${token()
          ? 'token set: actions enabled'
          : 'no token: read only (open the link `tempered ui` printed, or add #token=<TEMPERED_UI_TOKEN> to this address)'}</span
      >
    </header>
    <main>${body}</main>
    ${banner && html`<div class=${`banner ${banner.ok ? 'ok' : ''}`} id="banner">${banner.text}</div>`}`;
}

render(html`<${App} />`, document.getElementById('root'));
