/**
 * One inference worker thread of the pool (worker-pool.ts): loads the model folder once and answers
 * `predict` messages one at a time. onnxruntime blocks this thread while it runs, not the server's.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadPredictor } from '../finetune/predictor.ts';
import { toWire, type ThreadReply, type ThreadRequest, type ThreadSetup } from './worker-pool.ts';

const setup = workerData as ThreadSetup;
const port = parentPort!;
const reply = (m: ThreadReply) => port.postMessage(m);

try {
  const predictor = await loadPredictor(setup.folder, { threads: setup.threads, device: setup.device, memArena: setup.memArena });
  reply({ type: 'ready', id: predictor.id, labels: predictor.labels });
  port.on('message', async (m: ThreadRequest) => {
    if (m.type === 'close') {
      await predictor.close();
      // Ends this thread only; the loader tsx registered keeps a port open, so it would not end by itself.
      process.exit(0);
    }
    try {
      // Test-only (worker-pool's holdBatches): keep the batch in flight until the test lets it go.
      if (setup.hold) {
        Atomics.wait(setup.hold, 0, 0);
        // Test-only: a code in hold[1] makes this thread die mid-batch, as a native crash would; taken once,
        // so the thread that replaces it works normally.
        const exitCode = setup.hold.length > 1 ? Atomics.exchange(setup.hold, 1, 0) : 0;
        if (exitCode !== 0) process.exit(exitCode);
      }
      // Each text's verdict: a text the model cannot take is left out of the batch, not the batch's failure.
      reply({ type: 'result', batch: m.batch, predictions: await predictor.predictEach(m.texts) });
    } catch (e) {
      reply({ type: 'error', batch: m.batch, ...toWire(e) });
    }
  });
} catch (e) {
  reply({ type: 'failed', ...toWire(e) });
}
