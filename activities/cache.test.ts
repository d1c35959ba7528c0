/**
 * The cache-lookup local activity on a full disk (a small tmpfs): a lookup writes too (an old record's use is
 * recorded, so garbage collection spares its outputs), and a full disk there reached the workflow as a bare
 * `ENOSPC: no space left on device`, retried at once, naming no disk and no run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { AnyStageKind } from '../src/stages/types.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { StageCache } from '../src/store/stage-cache.ts';
import { fillDisk, mountTmpfs, NO_TMPFS } from '../src/util/tmpfs.testing.ts';
import type { CacheLookupResult } from '../workflows/types.ts';
import { cacheLookupActivity, stageKey } from './cache.ts';

const probe: AnyStageKind = {
  kind: 'probe',
  description: 'test stage',
  codeVersion: 'probe-1',
  withSchema: { type: 'object' },
  outputs: { report: { type: 'json' } },
  run: async () => ({}),
};

test(
  "a lookup that finds its disk full fails as DiskFull, naming the stage cache's folder, what the record needed and the run to resume, and retried after a wait",
  { skip: NO_TMPFS },
  async (t) => {
    const disk = mountTmpfs(t, 512);
    const other = mkdtempSync(join(tmpdir(), 'tempered-lookup-'));
    t.after(() => rmSync(other, { recursive: true, force: true }));
    // The store elsewhere, with room: only the record's refresh has to write on the full disk.
    const store = new ArtifactStore(join(other, 'store'), { freshenAfterMs: 60_000 });
    const cacheDir = join(disk, 'cache');
    const cache = new StageCache(cacheDir, store);
    const config = { value: 1 };
    const key = stageKey(probe, config, undefined);
    const report = await store.putJson({ pad: 'p'.repeat(1000) });
    const old = new Date(Date.now() - 3_600_000).toISOString();
    await cache.put({ key, kind: 'probe', outputs: { report }, producedBy: { runId: 'earlier', stageId: 's' }, createdAt: old });
    const lookup = cacheLookupActivity(new Map([['probe', probe]]), { cache, stateDir: disk, store });
    const env = (attempt: number) =>
      new MockActivityEnvironment({ attempt, workflowExecution: { workflowId: 'spam-0042', runId: 'exec-1' } });
    const req = { kind: 'probe', config, baseDir: other };

    const filler = fillDisk(disk);
    const err = await env(2)
      .run(lookup, req)
      .then(
        () => assert.fail('the lookup wrote nothing'),
        (e: unknown) => e,
      );
    assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
    assert.equal(err.type, 'DiskFull');
    assert.equal(err.nonRetryable, false);
    assert.equal(err.nextRetryDelay, 60_000, 'the second attempt waits 60 s, as a stage does');
    assert.match(
      err.message,
      new RegExp(
        `^no space left on the disk that holds ${cacheDir} \\(0 B free of 512\\.0 KiB; this write needed \\d+(\\.\\d)? (B|KiB)\\): ENOSPC`,
      ),
    );
    const details = err.details?.[0] as { path: string; neededBytes: number; hint: string };
    assert.equal(details.path, cacheDir);
    assert.ok(details.neededBytes > 300, String(details.neededBytes));
    assert.match(details.hint, /then `tempered resume spam-0042`: finished stages are reused/);
    assert.deepEqual(
      readdirSync(cacheDir, { recursive: true }).filter((f) => String(f).endsWith('.tmp')),
      [],
      'no cut-short record left',
    );

    // Once space is freed the same lookup is a hit, its use recorded.
    rmSync(filler);
    const res = (await env(3).run(lookup, req)) as CacheLookupResult;
    assert.deepEqual(res.hit?.outputs, { report });
    assert.ok((await cache.get(key))?.usedAt);
  },
);
