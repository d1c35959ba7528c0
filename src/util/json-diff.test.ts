/** jsonDiff: the paths where N JSON values (runs' specs) differ, for the dashboard's compare and `models diff`. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jsonDiff } from './json-diff.ts';

describe('jsonDiff of several specs', () => {
  it("lists the leaves that are not the same in all, with each spec's value", () => {
    const a = { params: { seed: 3, lr: 0.1 }, stages: { split: { with: { ratios: [0.8, 0.2] } } }, tags: {} };
    const b = { params: { seed: 4, lr: 0.1 }, stages: { split: { with: { ratios: [0.8, 0.2] } } }, tags: {} };
    const c = { params: { seed: 3, lr: 0.1, extra: true }, stages: { split: { with: { ratios: [0.7, 0.3] } } } };
    assert.deepEqual(jsonDiff([a, b, c]), [
      { path: 'params.extra', values: [undefined, undefined, true], absent: [true, true, false] },
      { path: 'params.seed', values: [3, 4, 3] },
      { path: 'stages.split.with.ratios.0', values: [0.8, 0.8, 0.7] },
      { path: 'stages.split.with.ratios.1', values: [0.2, 0.2, 0.3] },
      { path: 'tags', values: [{}, {}, undefined], absent: [false, false, true] },
    ]);
    assert.deepEqual(jsonDiff([a, a]), []);
  });

  it('lists a stage only one spec has as one line, marked absent in the other', () => {
    const stage = { uses: 'train', needs: ['split'], with: { epochs: 3, lr: 0.001, lora: { r: 8, alpha: 16 } } };
    const a = { stages: { split: { with: { seed: 3 } } } };
    const b = { stages: { split: { with: { seed: 3 } }, train: stage } };
    const diff = jsonDiff([a, b]);
    assert.deepEqual(diff, [{ path: 'stages.train', values: [undefined, stage], absent: [true, false] }]);
    // Sent as JSON the absent value reads null; `absent` says it was not there (a null setting is not absent).
    assert.deepEqual(JSON.parse(JSON.stringify(diff))[0].values, [null, stage]);
    assert.deepEqual(jsonDiff([{ x: null }, {}]), [{ path: 'x', values: [null, undefined], absent: [false, true] }]);
  });
});
