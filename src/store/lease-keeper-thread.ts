/**
 * The thread that keeps a shared lease (shared-lease.ts) fresh while the thread that took it is busy:
 * a train stage's process spends minutes at a time inside one synchronous onnxruntime run, in which
 * no timer of its own fires. It opens the backend again from its URL, refreshes the lease with a
 * LeaseRefresher, sets the lost flag and says `lost` when the lease is gone, and on `release` writes
 * the tombstone and ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openBackend } from './open-store.ts';
import { LeaseRefresher, type KeeperMessage, type KeeperSetup } from './shared-lease.ts';

const setup = (workerData as { setup: KeeperSetup }).setup;
// A connection that goes silent fails its request after a refresh period instead of the default
// minute, so the next tries come sooner (the SDK retries it; LeaseRefresher gives the lease up on its
// own timer whatever a request does).
const remote = openBackend(setup.backend.url, {
  ...(setup.backend.env ? { env: setup.backend.env } : {}),
  idleTimeoutMs: setup.refreshMs,
})!;
const post = (m: KeeperMessage) => parentPort!.postMessage(m);
const lostFlag = new Int32Array(setup.shared, 0, 1);
const lastOk = new BigInt64Array(setup.shared, 8, 1);

const refresher = new LeaseRefresher(
  remote,
  setup.prefix,
  setup.gen,
  setup.owner,
  setup,
  {
    lost(reason) {
      // Before the message: the holder's thread reads the flag even while its event loop is busy.
      Atomics.store(lostFlag, 0, 1);
      post({ type: 'lost', reason });
    },
    advanced(gen, at) {
      Atomics.store(lastOk, 0, BigInt(at));
      post({ type: 'gen', gen, at });
    },
    log: (message) => post({ type: 'log', message }),
  },
  setup.writtenAt,
);

parentPort!.on('message', (m: { type: 'release' }) => {
  if (m.type !== 'release') return;
  void refresher.release().then((held) => {
    post({ type: 'released', held });
    parentPort!.close();
  });
});
