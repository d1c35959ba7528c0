/**
 * Opt-in benchmark (not part of npm test): `tempered store gc` on a real SeaweedFS bucket (`weed mini`
 * on this machine, installed by setup). Two identical buckets are filled: `objects` small artifacts,
 * every second one named by a stage-cache record, half of those records past the horizon. Each is
 * then collected, one with a single delete in flight and one with DELETES_IN_FLIGHT, and the bench
 * prints the dry run, both collections and their ratio. The reference for the parallel deletes is the
 * serial loop on the same server in the same run.
 *
 *   nice node --import tsx bench/store-gc.bench.ts [objects=2000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectGarbage, DELETES_IN_FLIGHT } from '../src/store/garbage.ts';
import { StageCache } from '../src/store/stage-cache.ts';
import { startTestS3, type TestS3 } from '../tests/helpers/seaweedfs.ts';

const N = Number(process.argv[2] ?? 2000);
const DAY = 86_400_000;
const HORIZON = 30 * DAY;

async function filled(s3: TestS3, dir: string) {
  const store = s3.store();
  const cache = new StageCache(dir, store);
  for (let i = 0; i < N; i++) {
    const ref = await store.putBytes(`object ${i} ${'x'.repeat(1000)}`, { mediaType: 'application/octet-stream' });
    // Records of every second object: half within the horizon (keeping it), half past it.
    if (i % 2 === 0)
      await cache.put({
        key: i.toString(16).padStart(64, '0'),
        kind: 'bench',
        outputs: { out: ref },
        producedBy: { runId: 'bench', stageId: 'fill' },
        createdAt: new Date(Date.now() + (i % 4 === 0 ? DAY : -40 * DAY)).toISOString(),
      });
  }
  return { store, cache };
}

const s3 = await startTestS3();
const dir = mkdtempSync(join(tmpdir(), 'gc-bench-'));
try {
  console.log(`store gc bench: ${N} objects of 1 KiB on SeaweedFS (this machine), load ${loadavg()[0]!.toFixed(1)}`);
  const sides: { label: string; inFlight: number; dryS?: number; collectS?: number; deleted?: number; garbage?: number }[] = [
    { label: 'one delete at a time', inFlight: 1 },
    { label: `${DELETES_IN_FLIGHT} deletes in flight`, inFlight: DELETES_IN_FLIGHT },
  ];
  for (const [i, side] of sides.entries()) {
    const t0 = performance.now();
    const { store, cache } = await filled(s3, join(dir, `cache-${i}`));
    console.log(`  filled bucket ${i + 1} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // Every object is past the horizon; only the records within it keep theirs.
    const now = Date.now() + HORIZON + 60_000;
    const run = async (collect: boolean) => {
      const t = performance.now();
      const r = await collectGarbage({ store, cache, roots: [], olderThanMs: HORIZON, collect, now, deletesInFlight: side.inFlight });
      return { r, s: (performance.now() - t) / 1000 };
    };
    const dry = await run(false);
    const done = await run(true);
    Object.assign(side, { dryS: dry.s, collectS: done.s, deleted: done.r.objects.deleted, garbage: dry.r.objects.garbage });
    if (done.r.objects.deleted !== dry.r.objects.garbage) throw new Error(`deleted ${done.r.objects.deleted} of ${dry.r.objects.garbage}`);
  }
  for (const s of sides)
    console.log(
      `  ${s.label.padEnd(24)} dry run ${s.dryS!.toFixed(2)} s, collect ${s.collectS!.toFixed(2)} s (${s.deleted} of ${N} deleted; the collection marks again before it deletes)`,
    );
  console.log(`  collect, ${DELETES_IN_FLIGHT} in flight / one at a time: ${(sides[1]!.collectS! / sides[0]!.collectS!).toFixed(2)}×`);
} finally {
  await s3.stop();
  rmSync(dir, { recursive: true, force: true });
}
