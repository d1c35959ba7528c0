// The pipeline's DAG as SVG: stages in columns by their longest path from a root, edges as curves.
import { h } from 'preact';
import htm from 'htm';
import { clipLabel, clipMiddle } from './format.js';

const html = htm.bind(h);
const W = 170;
const H = 54;
const GAP_X = 46;
const GAP_Y = 18;
/** About how wide a character of the nodes' 12px font is, bold and plain, to fit text in a node (SVG text does not wrap or clip). */
const BOLD_W = 7.6;
const CHAR_W = 6.6;
const COLORS = {
  succeeded: ['#e6f4ec', '#1f8a4c'],
  cached: ['#efeaf8', '#6a4fb3'],
  running: ['#e6eefa', '#1565c0'],
  failed: ['#fbe9e9', '#c62828'],
  cancelled: ['#f3ece9', '#8d6e63'],
  skipped: ['#f3ece9', '#8d6e63'],
  pending: ['#f4f5f6', '#9aa3ab'],
};

export function layout(stages) {
  const byId = new Map(stages.map((s) => [s.id, s]));
  const depth = new Map();
  const depthOf = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const s = byId.get(id);
    const d = s && s.needs.length ? 1 + Math.max(...s.needs.map((n) => depthOf(n, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  const columns = [];
  for (const s of stages) (columns[depthOf(s.id)] ??= []).push(s.id);
  const pos = new Map();
  columns.forEach((col, x) => col.forEach((id, y) => pos.set(id, { x: 10 + x * (W + GAP_X), y: 10 + y * (H + GAP_Y) })));
  const width = 20 + columns.length * (W + GAP_X) - GAP_X;
  const height = 20 + Math.max(...columns.map((c) => c.length)) * (H + GAP_Y) - GAP_Y;
  return { pos, width, height };
}

function duration(s) {
  if (!s.startedAt) return '';
  const ms = (s.endedAt ? Date.parse(s.endedAt) : Date.now()) - Date.parse(s.startedAt);
  return ms < 1000 ? `${ms} ms` : ms < 120000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60000).toFixed(1)} min`;
}

export function Dag({ stages, selected, onSelect }) {
  const { pos, width, height } = layout(stages);
  const edges = [];
  for (const s of stages)
    for (const n of s.needs) {
      const a = pos.get(n);
      const b = pos.get(s.id);
      if (!a || !b) continue;
      const x1 = a.x + W;
      const y1 = a.y + H / 2;
      const x2 = b.x;
      const y2 = b.y + H / 2;
      edges.push(html`<path class="edge" d=${`M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}`} />`);
    }
  return html`<div class="dag">
    <svg width=${width} height=${height} role="img" aria-label="pipeline graph">
      ${edges}
      ${stages.map((s) => {
        const p = pos.get(s.id);
        // Scheduled but taken by no worker yet (its queue is busy or unserved): not running yet, whatever Temporal says.
        const waiting = s.state === 'running' && s.waitingForWorker;
        const label = waiting ? 'waiting' : s.state;
        const [fill, stroke] = waiting ? COLORS.pending : (COLORS[s.state] ?? COLORS.pending);
        const extra = [s.attempt > 1 ? `attempt ${s.attempt}` : '', s.state === 'cached' ? 'cache hit' : duration(s)]
          .filter(Boolean)
          .join(' · ');
        // The id gets what the state label leaves; the tooltip has it whole.
        const idRoom = Math.max(6, Math.floor((W - 28 - label.length * CHAR_W) / BOLD_W));
        return html`<g
          class="node"
          data-stage=${s.id}
          data-state=${s.state}
          data-waiting=${waiting ? s.waitingForWorker : undefined}
          transform=${`translate(${p.x},${p.y})`}
          style="cursor:pointer"
          onClick=${() => onSelect?.(s.id)}
        >
          <title>
            ${s.id} (${s.uses}):
            ${waiting ? `waiting for a worker of task queue ${s.waitingForWorker}` : s.state}${selected === s.id
              ? '; click again to show all stages'
              : ''}
          </title>
          <rect width=${W} height=${H} fill=${fill} stroke=${stroke} stroke-width=${selected === s.id ? 3 : 1.5} rx="6" />
          <text x="10" y="19" font-weight="600">${clipMiddle(s.id, idRoom)}</text>
          <text x=${W - 10} y="19" text-anchor="end" fill=${stroke}>${label}</text>
          <text x="10" y="40" fill="#66707a">${clipMiddle(`${s.uses}${extra ? ` · ${extra}` : ''}`, Math.floor((W - 16) / CHAR_W))}</text>
        </g>`;
      })}
    </svg>
  </div>`;
}

// ---- a model version's lineage: source files and data → run → version → aliases → serving ----------
const LINEAGE_COLUMNS = ['source', 'data', 'run', 'version', 'alias', 'serving'];
const LINEAGE_COLORS = {
  source: ['#f4f5f6', '#66707a'],
  data: ['#e6eefa', '#1565c0'],
  run: ['#efeaf8', '#6a4fb3'],
  version: ['#e6f4ec', '#1f8a4c'],
  alias: ['#fff3e0', '#ef6c00'],
  serving: ['#fbe9e9', '#c62828'],
};
const LW = 176;
const LH = 58;
const LGAP = 34;

export function LineageGraph({ graph }) {
  const cols = LINEAGE_COLUMNS.map((k) => graph.nodes.filter((n) => n.kind === k)).filter((c) => c.length > 0);
  const pos = new Map();
  cols.forEach((col, x) => col.forEach((n, y) => pos.set(n.id, { x: 10 + x * (LW + LGAP), y: 10 + y * (LH + GAP_Y) })));
  const width = 20 + cols.length * (LW + LGAP) - LGAP;
  const height = 20 + Math.max(1, ...cols.map((c) => c.length)) * (LH + GAP_Y) - GAP_Y;
  const edges = graph.edges
    .filter(([a, b]) => pos.has(a) && pos.has(b))
    .map(([a, b]) => {
      const p = pos.get(a);
      const q = pos.get(b);
      const x1 = p.x + LW;
      const y1 = p.y + LH / 2;
      const x2 = q.x;
      const y2 = q.y + LH / 2;
      return html`<path
        class="edge"
        data-from=${a}
        data-to=${b}
        d=${`M${x1},${y1} C${x1 + LGAP / 2},${y1} ${x2 - LGAP / 2},${y2} ${x2},${y2}`}
      />`;
    });
  return html`<div class="dag lineage" id="lineage" data-version=${graph.version}>
    <svg width=${width} height=${height} role="img" aria-label=${`lineage of ${graph.name} v${graph.version}`}>
      ${edges}
      ${graph.nodes.map((n) => {
        const p = pos.get(n.id);
        const [fill, stroke] = LINEAGE_COLORS[n.kind];
        const box = html`<g class="lnode" data-kind=${n.kind} data-id=${n.id} transform=${`translate(${p.x},${p.y})`}>
          <title>${n.label}${n.detail ? `\n${n.detail}` : ''}</title>
          <rect width=${LW} height=${LH} fill=${fill} stroke=${stroke} stroke-width="1.5" rx="6" />
          <text x="10" y="15" fill=${stroke} font-size="10">${n.kind}</text>
          <text x="10" y="32" font-weight="600">${clipLabel(n.label, 22)}</text>
          <text x="10" y="49" fill="#66707a" font-size="11">${clipMiddle(n.detail ?? '', 27)}</text>
        </g>`;
        return n.href ? html`<a href=${n.href}>${box}</a>` : box;
      })}
    </svg>
  </div>`;
}
