/**
 * The thread that keeps a shared lease (shared-lease.ts) fresh while the thread that took it is busy:
 * a train stage's process spends minutes at a time inside one synchronous onnxruntime run, in which
 * no timer of its own fires. It opens the backend again from its URL and says `ready`; the holder's
 * thread then writes the lease and says `keep`. It refreshes the lease with a LeaseRefresher, sets the
 * lost flag and says `lost` when the lease is gone, and on `release` writes the tombstone and ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openBackend } from './open-store.ts';
import { KeeperState, LeaseRefresher, type KeeperCommand, type KeeperMessage, type KeeperSetup } from './shared-lease.ts';

const setup = (workerData as { setup: KeeperSetup }).setup;
// A connection that goes silent fails its request after a refresh period (or 2 s, where refreshes
// come more often: on a loaded machine a store's answer can take longer than 100 ms, and every
// request failing would be a lease given up) instead of the default minute, so the next tries come
// sooner (the SDK retries it; LeaseRefresher gives the lease up on its own timer whatever a request
// does).
// Likewise a refresh keeps retrying a store that is away for one refresh period after its first
// failure, not the 20 s of other requests: one that landed long after the holder gave the lease up
// would leave a generation the next taker must wait out.
const remote = openBackend(setup.backend.url, {
  ...(setup.backend.env ? { env: setup.backend.env } : {}),
  idleTimeoutMs: Math.max(setup.refreshMs, 2000),
  retryMs: setup.refreshMs,
})!;
const post = (m: KeeperMessage) => parentPort!.postMessage(m);
const state = new KeeperState(setup.state);
let refresher: LeaseRefresher | undefined;

parentPort!.on('message', (m: KeeperCommand) => {
  if (m.type === 'keep')
    // The generation the holder's thread just wrote, and when.
    refresher = new LeaseRefresher(
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
  else if (m.type === 'release')
    void (refresher?.release() ?? Promise.resolve(false)).then((held) => {
      post({ type: 'released', held });
      parentPort!.close();
    });
});
// The holder's thread writes the lease only now: the time it may go unrefreshed starts when this
// thread can refresh it.
post({ type: 'ready' });
