// The pipeline's DAG as SVG: stages in columns by their longest path from a root, edges as curves.
import { h } from 'preact';
import htm from 'htm';

const html = htm.bind(h);
const W = 170;
const H = 54;
const GAP_X = 46;
const GAP_Y = 18;
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
        const [fill, stroke] = COLORS[s.state] ?? COLORS.pending;
        const extra = [s.attempt > 1 ? `attempt ${s.attempt}` : '', s.state === 'cached' ? 'cache hit' : duration(s)]
          .filter(Boolean)
          .join(' · ');
        return html`<g
          class="node"
          data-stage=${s.id}
          data-state=${s.state}
          transform=${`translate(${p.x},${p.y})`}
          style="cursor:pointer"
          onClick=${() => onSelect?.(s.id)}
        >
          <rect width=${W} height=${H} fill=${fill} stroke=${stroke} stroke-width=${selected === s.id ? 3 : 1.5} rx="6" />
          <text x="10" y="19" font-weight="600">${s.id}</text>
          <text x=${W - 10} y="19" text-anchor="end" fill=${stroke}>${s.state}</text>
          <text x="10" y="40" fill="#66707a">${s.uses}${extra ? ` · ${extra}` : ''}</text>
        </g>`;
      })}
    </svg>
  </div>`;
}
