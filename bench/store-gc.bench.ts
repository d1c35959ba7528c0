/**
 * Opt-in benchmark (not part of npm test): `tempered store gc` on a real SeaweedFS bucket (`weed mini`
 * on this machine, installed by setup). Two identical buckets are filled: `objects` small artifacts,
 * every second one named by a stage-cache record, half of those records past the horizon. Each is
 * then collected, one with a single request in flight and one with REQUESTS_IN_FLIGHT (the reads
 * of the records and of kept objects while marking, the record drops and the object deletes), and
 * the bench prints both dry runs, both collections and their ratios. The reference is the serial loop
 * on the same server in the same run.
 *
 *   nice node --import tsx bench/store-gc.bench.ts [objects=2000]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectGarbage, REQUESTS_IN_FLIGHT } from '../src/store/garbage.ts';
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
    { label: 'one request at a time', inFlight: 1 },
    { label: `${REQUESTS_IN_FLIGHT} requests in flight`, inFlight: REQUESTS_IN_FLIGHT },
  ];
  for (const [i, side] of sides.entries()) {
    const t0 = performance.now();
    const { store, cache } = await filled(s3, join(dir, `cache-${i}`));
    console.log(`  filled bucket ${i + 1} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // Every object is past the horizon; only the records within it keep theirs.
    const now = Date.now() + HORIZON + 60_000;
    const run = async (collect: boolean) => {
      const t = performance.now();
      const r = await collectGarbage({ store, cache, roots: [], olderThanMs: HORIZON, collect, now, inFlight: side.inFlight });
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
  const ratio = (k: 'dryS' | 'collectS') => (sides[1]![k]! / sides[0]![k]!).toFixed(2);
  console.log(`  ${REQUESTS_IN_FLIGHT} in flight / one at a time: dry run ${ratio('dryS')}×, collect ${ratio('collectS')}×`);
} finally {
  await s3.stop();
  rmSync(dir, { recursive: true, force: true });
}
