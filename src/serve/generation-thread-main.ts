/**
 * One generation worker thread of generation-pool.ts: loads the causal LM once and runs the
 * generations it is sent. onnxruntime blocks this thread while it runs, not the server's; between
 * forward passes the thread reads cancellations and acknowledgements of the token events it streams.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PrefixCache } from '../generate/generate.ts';
import { loadTextGenerator } from '../generate/text-generator.ts';
import { TOKEN_WINDOW, type GenerationReply, type GenerationRequest, type GenerationThreadSetup } from './generation-pool.ts';
import { toWire } from './worker-pool.ts';

const setup = workerData as GenerationThreadSetup;
const port = parentPort!;
const reply = (m: GenerationReply) => port.postMessage(m);

interface Running {
  abort: AbortController;
  /** Token events sent and not yet acknowledged. */
  unacked: number;
  /** Resumes the generation once the server caught up (or cancelled). */
  wake?: () => void;
}

try {
  const gen = await loadTextGenerator(setup.dir, setup.options);
  const jobs = new Map<number, Running>();
  // The cache of the last one-prompt generation, for a next prompt that starts the same way (a chat's next turn).
  const kept = setup.promptCache ? new PrefixCache() : undefined;
  const resume = (r: Running) => {
    const wake = r.wake;
    r.wake = undefined;
    wake?.();
  };
  reply({ type: 'ready', contextLength: gen.contextLength, vocabSize: gen.vocabSize });
  port.on('message', async (m: GenerationRequest) => {
    if (m.type === 'close') {
      await gen.close();
      // Ends this thread only; the loader tsx registered keeps a port open, so it would not end by itself.
      process.exit(0);
    }
    if (m.type === 'ack' || m.type === 'cancel') {
      const r = jobs.get(m.job);
      if (!r) return;
      if (m.type === 'cancel') r.abort.abort(new Error('cancelled'));
      else r.unacked--;
      if (m.type === 'cancel' || r.unacked < TOKEN_WINDOW) resume(r);
      return;
    }
    // Another scope's conversation: its cache must not shorten (and so reveal anything to) this one.
    if (!m.keepCache) kept?.clear();
    const r: Running = { abort: new AbortController(), unacked: 0 };
    if (m.aborted) r.abort.abort(new Error('cancelled'));
    jobs.set(m.job, r);
    try {
      // Test-only (GenerationPoolOptions.hold): keep the generation in flight until the test lets it go.
      if (setup.hold) Atomics.wait(setup.hold, 0, 0);
      const results = await gen.generate(m.prompts, {
        ...m.options,
        ...(kept && m.prompts.length === 1 ? { prefixCache: kept } : {}),
        signal: r.abort.signal,
        ...(m.stream
          ? {
              onToken: async (event) => {
                reply({ type: 'token', job: m.job, event });
                if (++r.unacked >= TOKEN_WINDOW && !r.abort.signal.aborted) await new Promise<void>((w) => (r.wake = w));
              },
            }
          : {}),
      });
      reply({ type: 'done', job: m.job, results });
    } catch (e) {
      reply({ type: 'error', job: m.job, ...toWire(e) });
    } finally {
      jobs.delete(m.job);
    }
  });
} catch (e) {
  reply({ type: 'failed', ...toWire(e) });
}
