/** Graph-level helpers: topological order, producer/consumer maps, dead-node removal. */
import type { Graph, Node } from './ir.ts';

/** Nodes in an order where every node follows the producers of its inputs (stable: ties keep file order). */
export function topoSort(graph: Graph): Node[] {
  const producer = new Map<string, number>();
  graph.nodes.forEach((n, i) => n.outputs.forEach((o) => o && producer.set(o, i)));
  const state = new Uint8Array(graph.nodes.length); // 0 new, 1 visiting, 2 done
  const order: Node[] = [];
  const visit = (root: number) => {
    // Iterative DFS: transformer graphs are deep enough to overflow a recursive walk.
    const stack: [number, number][] = [[root, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const [i, k] = top;
      if (k === 0) {
        if (state[i] === 2) {
          stack.pop();
          continue;
        }
        state[i] = 1;
      }
      const node = graph.nodes[i]!;
      if (k < node.inputs.length) {
        top[1]++;
        const p = producer.get(node.inputs[k]!);
        if (p === undefined || state[p] === 2) continue;
        if (state[p] === 1) throw new Error(`graph has a cycle through node '${graph.nodes[p]!.name}'`);
        stack.push([p, 0]);
      } else {
        state[i] = 2;
        order.push(node);
        stack.pop();
      }
    }
  };
  for (let i = 0; i < graph.nodes.length; i++) visit(i);
  return order;
}

export function producers(graph: Graph): Map<string, Node> {
  const m = new Map<string, Node>();
  for (const n of graph.nodes) for (const o of n.outputs) if (o) m.set(o, n);
  return m;
}

export function consumers(graph: Graph): Map<string, Node[]> {
  const m = new Map<string, Node[]>();
  for (const n of graph.nodes) {
    for (const i of n.inputs) {
      if (!i) continue;
      const list = m.get(i);
      if (list) {
        if (!list.includes(n)) list.push(n);
      } else m.set(i, [n]);
    }
  }
  return m;
}

/** Drops nodes whose outputs reach no graph output, and initializers nothing reads. Mutates and returns the graph. */
export function removeDeadNodes(graph: Graph): Graph {
  const needed = new Set(graph.outputs.map((o) => o.name));
  const keep: Node[] = [];
  for (const node of [...topoSort(graph)].reverse()) {
    if (node.outputs.some((o) => needed.has(o))) {
      keep.push(node);
      for (const i of node.inputs) if (i) needed.add(i);
    }
  }
  const kept = new Set(keep);
  graph.nodes = graph.nodes.filter((n) => kept.has(n));
  for (const name of [...graph.initializers.keys()]) if (!needed.has(name)) graph.initializers.delete(name);
  return graph;
}
