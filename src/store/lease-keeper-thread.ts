/**
 * The thread that keeps a shared lease (shared-lease.ts) fresh while the thread that took it is busy:
 * a train stage's process spends minutes at a time inside one synchronous onnxruntime run, in which
 * no timer of its own fires. It opens the backend again from its URL, refreshes every `refreshMs`,
 * says `lost` if another writer took the lease over, and on `release` writes the tombstone and ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openBackend } from './open-store.ts';
import { advanceLease, type KeeperMessage, type KeeperSetup } from './shared-lease.ts';

const setup = (workerData as { setup: KeeperSetup }).setup;
const remote = openBackend(setup.backend.url, setup.backend.env ? { env: setup.backend.env } : {})!;
const post = (m: KeeperMessage) => parentPort!.postMessage(m);

let gen: number | undefined = setup.gen;
let refreshing: Promise<void> | undefined;

async function step(released: boolean): Promise<boolean> {
  if (gen === undefined) return false;
  try {
    const r = await advanceLease(remote, setup.prefix, gen, setup.owner, { released });
    if (r.held) {
      gen = released ? undefined : r.gen;
      if (!released) post({ type: 'gen', gen: r.gen });
      return true;
    }
    gen = undefined;
    post({ type: 'lost' });
  } catch (e) {
    post({
      type: 'log',
      message: `could not ${released ? 'release' : 'refresh'} the lease ${remote.url}/${setup.prefix}: ${(e as Error).message}`,
    });
  }
  return false;
}

const timer = setInterval(() => {
  // One refresh at a time: a slow store must not pile up requests.
  refreshing ??= step(false).then(() => {
    refreshing = undefined;
  });
}, setup.refreshMs);

parentPort!.on('message', (m: { type: 'release' }) => {
  if (m.type !== 'release') return;
  clearInterval(timer);
  void (async () => {
    await refreshing;
    post({ type: 'released', held: await step(true) });
    parentPort!.close();
  })();
});
