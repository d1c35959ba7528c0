import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { nextStages, type RunProgress } from './next-stages.ts';
import type { StageState } from './types.ts';
import { plannedPipeline } from '../tests/helpers/plans.ts';

const s = (id: string, needs: string[] = [], uses = 'probe') => ({ id, uses, needs, with: {} });
// a → (b, c) → d, plus e on its own.
const diamond = plannedPipeline('diamond', [s('a'), s('b', ['a']), s('c', ['a']), s('d', ['b', 'c']), s('e')]);

function progress(states: Record<string, StageState>, extra: Partial<RunProgress> = {}): RunProgress {
  const all = new Map<string, StageState>(diamond.stages.map((st) => [st.id, 'pending']));
  for (const [id, state] of Object.entries(states)) all.set(id, state);
  const running = [...all.values()].filter((v) => v === 'running').length;
  return { states: all, running, stopping: false, cancelled: false, ...extra };
}

describe('nextStages', () => {
  it('starts every stage whose needs are met, in plan order', () => {
    assert.deepEqual(nextStages(diamond, progress({})), { start: ['a', 'e'], skip: [], cancel: [], done: false });
    assert.deepEqual(nextStages(diamond, progress({ a: 'succeeded', e: 'running' })).start, ['b', 'c']);
    // A cached stage counts as done for its dependents.
    assert.deepEqual(nextStages(diamond, progress({ a: 'succeeded', b: 'cached', c: 'succeeded', e: 'succeeded' })).start, ['d']);
  });

  it('waits (starts nothing, not done) while needs are still running', () => {
    assert.deepEqual(nextStages(diamond, progress({ a: 'running', e: 'succeeded' })), { start: [], skip: [], cancel: [], done: false });
  });

  it('never starts more than concurrency stages, counting those already running', () => {
    const two = { ...diamond, concurrency: 2 };
    assert.deepEqual(nextStages(two, progress({ a: 'succeeded' })).start, ['b', 'c']);
    assert.deepEqual(nextStages(two, progress({ a: 'succeeded', e: 'running' })).start, ['b']);
    assert.deepEqual(nextStages({ ...diamond, concurrency: 1 }, progress({ a: 'running' })).start, []);
  });

  it('skips everything downstream of a failure in one pass, saying why, and lets independent stages go on', () => {
    const next = nextStages(diamond, progress({ a: 'failed', e: 'pending' }));
    assert.deepEqual(next.skip, [
      { id: 'b', because: "needs 'a', which failed" },
      { id: 'c', because: "needs 'a', which failed" },
      { id: 'd', because: "needs 'b', which was skipped" },
    ]);
    assert.deepEqual(next.start, ['e']);
    assert.equal(next.done, false);
    assert.deepEqual(nextStages(diamond, progress({ a: 'succeeded', b: 'cancelled', c: 'running' })).skip, [
      { id: 'd', because: "needs 'b', which cancelled" },
    ]);
  });

  it('under fail-fast stopping, skips every pending stage and is done once nothing runs', () => {
    const next = nextStages(diamond, progress({ a: 'succeeded', b: 'failed' }, { stopping: true }));
    assert.deepEqual(next.skip, [
      { id: 'c', because: 'the run stopped after a failure (fail-fast)' },
      { id: 'd', because: "needs 'b', which failed" },
      { id: 'e', because: 'the run stopped after a failure (fail-fast)' },
    ]);
    assert.deepEqual(next.start, []);
    assert.equal(next.done, true);
  });

  it('cancels every pending stage when the run is cancelled, and is done when the running ones have stopped', () => {
    const running = nextStages(diamond, progress({ a: 'running' }, { cancelled: true }));
    assert.deepEqual(running, { start: [], skip: [], cancel: ['b', 'c', 'd', 'e'], done: false });
    assert.equal(nextStages(diamond, progress({ a: 'cancelled' }, { cancelled: true })).done, true);
  });

  it('while the run gate is undecided, starts only the stages it allows', () => {
    const plan = plannedPipeline('gated', [s('ingest', [], 'ingest'), s('other'), s('train', ['ingest'])]);
    const states = new Map<string, StageState>([
      ['ingest', 'pending'],
      ['other', 'pending'],
      ['train', 'pending'],
    ]);
    const held = nextStages(plan, { states, running: 0, stopping: false, cancelled: false, gateAllows: new Set(['ingest']) });
    assert.deepEqual(held.start, ['ingest']);
    const decided = nextStages(plan, {
      states: new Map([...states, ['ingest', 'succeeded']]),
      running: 0,
      stopping: false,
      cancelled: false,
    });
    assert.deepEqual(decided.start, ['other', 'train']);
  });

  it('is done when every stage has finished', () => {
    const all = progress({ a: 'succeeded', b: 'succeeded', c: 'cached', d: 'succeeded', e: 'succeeded' });
    assert.deepEqual(nextStages(diamond, all), { start: [], skip: [], cancel: [], done: true });
  });
});
