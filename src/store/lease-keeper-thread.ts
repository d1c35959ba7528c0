/**
 * The thread that keeps a shared lease (shared-lease.ts) fresh while the thread that took it is busy:
 * a train stage's process spends minutes at a time inside one synchronous onnxruntime run, in which
 * no timer of its own fires. It opens the backend again from its URL, refreshes the lease with a
 * LeaseRefresher, sets the lost flag and says `lost` when the lease is gone, and on `release` writes
 * the tombstone and ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openBackend } from './open-store.ts';
import { KeeperState, LeaseRefresher, type KeeperMessage, type KeeperSetup } from './shared-lease.ts';

const setup = (workerData as { setup: KeeperSetup }).setup;
// A connection that goes silent fails its request after a refresh period instead of the default
// minute, so the next tries come sooner (the SDK retries it; LeaseRefresher gives the lease up on its
// own timer whatever a request does).
// Likewise a refresh keeps retrying a store that is away for one refresh period after its first
// failure, not the 20 s of other requests: one that landed long after the holder gave the lease up
// would leave a generation the next taker must wait out.
const remote = openBackend(setup.backend.url, {
  ...(setup.backend.env ? { env: setup.backend.env } : {}),
  idleTimeoutMs: setup.refreshMs,
  retryMs: setup.refreshMs,
})!;
const post = (m: KeeperMessage) => parentPort!.postMessage(m);
const state = new KeeperState(setup.state);

const refresher = new LeaseRefresher(
  remote,
  setup.prefix,
  state.gen,
  setup.owner,
  setup,
  {
    lost(reason) {
      // Before the message: the holder's thread reads the flag even while its event loop is busy.
      state.lose();
      post({ type: 'lost', reason });
    },
    advanced: (gen, at) => state.advanced(gen, at),
    log: (message) => post({ type: 'log', message }),
  },
  state.writtenAt,
);

parentPort!.on('message', (m: { type: 'release' }) => {
  if (m.type !== 'release') return;
  void refresher.release().then((held) => {
    post({ type: 'released', held });
    parentPort!.close();
  });
});
