/** The dashboard's readers that need no server: curves from a progress log, and the spec diff of N runs. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { statePaths } from '../src/state-paths.ts';
import { appendProgressPoint, progressLogPath } from '../src/store/progress-log.ts';
import { FilePoints } from '../src/store/progress-points.ts';
import type { ArtifactStore } from '../src/store/artifact-store.ts';
import type { RunStatus } from '../workflows/types.ts';
import { jsonDiff, trainingCurves } from './data.ts';

describe('trainingCurves from live points', () => {
  it('keeps tokens/s and samples/s, and the newest attempt of a step wins', async () => {
    const paths = statePaths(mkdtempSync(join(tmpdir(), 'ui-data-')));
    const log = progressLogPath(paths.progress, 'run-1', 'exec-1', 'train');
    appendProgressPoint(log, { attempt: 1, t: 1, metrics: { step: 1, loss: 2, lr: 0.1, tokensPerSec: 50 } });
    appendProgressPoint(log, { attempt: 1, t: 2, metrics: { step: 2, loss: 1.5, lr: 0.1, tokensPerSec: 60, samplesPerSec: 3 } });
    // A retry resumed from a checkpoint at step 1 reports step 2 again.
    appendProgressPoint(log, { attempt: 2, t: 3, metrics: { step: 2, loss: 1.4, lr: 0.1, tokensPerSec: 70, samplesPerSec: 4 } });
    const stage = { id: 'train', uses: 'train', state: 'running', outputs: {} } as unknown as RunStatus['stages'][number];
    const c = await trainingCurves(new FilePoints(paths.progress), {} as ArtifactStore, 'run-1', 'exec-1', stage);
    assert.equal(c.source, 'live');
    assert.deepEqual(c.columns.step, [1, 2]);
    assert.deepEqual(c.columns.loss, [2, 1.4]);
    assert.deepEqual(c.columns.tokensPerSec, [50, 70]);
    assert.deepEqual(c.columns.samplesPerSec, [null, 4]);
  });
});

describe('jsonDiff of several specs', () => {
  it("lists the leaves that are not the same in all, with each spec's value", () => {
    const a = { params: { seed: 3, lr: 0.1 }, stages: { split: { with: { ratios: [0.8, 0.2] } } }, tags: {} };
    const b = { params: { seed: 4, lr: 0.1 }, stages: { split: { with: { ratios: [0.8, 0.2] } } }, tags: {} };
    const c = { params: { seed: 3, lr: 0.1, extra: true }, stages: { split: { with: { ratios: [0.7, 0.3] } } } };
    assert.deepEqual(jsonDiff([a, b, c]), [
      { path: 'params.extra', values: [undefined, undefined, true] },
      { path: 'params.seed', values: [3, 4, 3] },
      { path: 'stages.split.with.ratios.0', values: [0.8, 0.8, 0.7] },
      { path: 'stages.split.with.ratios.1', values: [0.2, 0.2, 0.3] },
      { path: 'tags', values: [{}, {}, undefined] },
    ]);
    assert.deepEqual(jsonDiff([a, a]), []);
  });
});
