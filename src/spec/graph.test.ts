import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ancestors, buildGraph, findCycles, topologicalOrder } from './graph.ts';

const g = (spec: Record<string, string[]>) => buildGraph(Object.fromEntries(Object.entries(spec).map(([k, v]) => [k, { needs: v }])));

test('topological order follows needs and breaks ties by declaration order', () => {
  assert.deepEqual(topologicalOrder(g({ d: ['b', 'c'], c: ['a'], b: ['a'], a: [] })), ['a', 'c', 'b', 'd']);
  assert.deepEqual(topologicalOrder(g({ z: [], y: [], x: ['z'] })), ['z', 'y', 'x']);
});

test('unknown needs and self needs are left out of the graph', () => {
  const graph = g({ a: ['a', 'ghost'], b: ['a', 'a'] });
  assert.deepEqual(graph.needs.get('a'), []);
  assert.deepEqual(graph.needs.get('b'), ['a']);
  assert.deepEqual(topologicalOrder(graph), ['a', 'b']);
});

test('topological order refuses a cycle', () => {
  assert.throws(() => topologicalOrder(g({ a: ['b'], b: ['a'] })), /cycle/);
});

test('cycles: one per strongly connected component, shortest through its first-declared stage', () => {
  // a→b→c→a plus a chord c→b: the component is {a,b,c}; from a the only way back is a→b→c→a.
  assert.deepEqual(findCycles(g({ a: ['c'], b: ['a', 'c'], c: ['b'], d: ['a'] })), [['a', 'b', 'c']]);
  assert.deepEqual(findCycles(g({ x: [], p: ['q'], q: ['p'], r: ['s'], s: ['r'] })), [
    ['p', 'q'],
    ['r', 's'],
  ]);
  assert.deepEqual(findCycles(g({ a: [], b: ['a'], c: ['a', 'b'] })), []);
});

test('cycle search survives a 20000-stage chain closed into a loop', () => {
  const spec: Record<string, string[]> = {};
  const n = 20000;
  for (let i = 0; i < n; i++) spec[`s${i}`] = [`s${(i + n - 1) % n}`];
  const cycles = findCycles(g(spec));
  assert.equal(cycles.length, 1);
  assert.equal(cycles[0]!.length, n);
  assert.equal(cycles[0]![0], 's0');
  assert.equal(cycles[0]![1], 's1');
});

test('ancestors are transitive', () => {
  const graph = g({ a: [], b: ['a'], c: ['b'], d: [] });
  assert.deepEqual([...ancestors(graph, 'c')].sort(), ['a', 'b']);
  assert.deepEqual([...ancestors(graph, 'd')], []);
});
