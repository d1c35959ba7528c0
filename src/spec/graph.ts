/**
 * The stage DAG: who needs whom, cycles, ancestors and a deterministic topological order.
 * Edges to unknown stages and self-edges are dropped here; the validator reports them itself.
 */

export interface StageGraph {
  /** Stage ids in the order the file declares them. */
  ids: string[];
  /** id → the known stages it needs, deduplicated, in written order. */
  needs: Map<string, string[]>;
  /** id → stages that need it, in declaration order. */
  dependents: Map<string, string[]>;
}

export function normalizeNeeds(needs: unknown): string[] {
  if (typeof needs === 'string') return [needs];
  if (Array.isArray(needs)) return needs.filter((n): n is string => typeof n === 'string');
  return [];
}

export function buildGraph(stages: Record<string, { needs?: unknown }>): StageGraph {
  const ids = Object.keys(stages);
  const known = new Set(ids);
  const needs = new Map<string, string[]>();
  const dependents = new Map<string, string[]>(ids.map((id) => [id, []]));
  for (const id of ids) {
    const list = [...new Set(normalizeNeeds(stages[id]?.needs))].filter((n) => known.has(n) && n !== id);
    needs.set(id, list);
  }
  for (const id of ids) for (const n of needs.get(id)!) dependents.get(n)!.push(id);
  return { ids, needs, dependents };
}

/**
 * One cycle per strongly connected component, each listed in the direction work flows
 * (a needed stage before the stage that needs it), starting at its first-declared stage.
 */
export function findCycles(g: StageGraph): string[][] {
  const order = new Map(g.ids.map((id, i) => [id, i]));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;
  // Iterative Tarjan so a long chain of stages cannot overflow the call stack.
  for (const root of g.ids) {
    if (index.has(root)) continue;
    const work: Array<{ id: string; next: number }> = [{ id: root, next: 0 }];
    index.set(root, counter);
    low.set(root, counter++);
    stack.push(root);
    onStack.add(root);
    while (work.length) {
      const top = work[work.length - 1]!;
      const succ = g.dependents.get(top.id)!;
      if (top.next < succ.length) {
        const w = succ[top.next++]!;
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push({ id: w, next: 0 });
        } else if (onStack.has(w)) {
          low.set(top.id, Math.min(low.get(top.id)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1]!.id;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.id)!));
      }
      if (low.get(top.id) === index.get(top.id)) {
        const comp: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          comp.push(w);
        } while (w !== top.id);
        if (comp.length > 1) components.push(comp);
      }
    }
  }
  const cycles = components.map((comp) => {
    const members = new Set(comp);
    const start = [...comp].sort((a, b) => order.get(a)! - order.get(b)!)[0]!;
    return shortestCycle(g, start, members);
  });
  return cycles.sort((a, b) => order.get(a[0]!)! - order.get(b[0]!)!);
}

function shortestCycle(g: StageGraph, start: string, members: Set<string>): string[] {
  const prev = new Map<string, string>();
  const queue = [start];
  const seen = new Set([start]);
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of g.dependents.get(v)!) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(prev.get(path[0]!)!);
        return path;
      }
      if (!seen.has(w)) {
        seen.add(w);
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

/** Every stage `id` transitively needs. */
export function ancestors(g: StageGraph, id: string): Set<string> {
  const out = new Set<string>();
  const todo = [...(g.needs.get(id) ?? [])];
  while (todo.length) {
    const n = todo.pop()!;
    if (out.has(n)) continue;
    out.add(n);
    todo.push(...(g.needs.get(n) ?? []));
  }
  return out;
}

/** Kahn's algorithm; among stages ready at the same time, the one declared first goes first. Throws on a cycle. */
export function topologicalOrder(g: StageGraph): string[] {
  const order = new Map(g.ids.map((id, i) => [id, i]));
  const waiting = new Map(g.ids.map((id) => [id, g.needs.get(id)!.length]));
  const ready = g.ids.filter((id) => waiting.get(id) === 0);
  const out: string[] = [];
  while (ready.length) {
    ready.sort((a, b) => order.get(a)! - order.get(b)!);
    const id = ready.shift()!;
    out.push(id);
    for (const d of g.dependents.get(id)!) {
      const left = waiting.get(d)! - 1;
      waiting.set(d, left);
      if (left === 0) ready.push(d);
    }
  }
  if (out.length !== g.ids.length) throw new Error('topologicalOrder: the stage graph has a cycle');
  return out;
}
