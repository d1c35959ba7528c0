// Review scratch: a tiny-LLaMA generation server; prints its URL; closes on SIGTERM/SIGINT.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyLlamaDir } from '../src/models/tiny.testing.ts';
import { loadPooledTextGenerator } from '../src/serve/generation-pool.ts';
import { createModelServer } from '../src/serve/server.ts';

const CHATML =
  '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';
const root = mkdtempSync(join(tmpdir(), 'review-srv-'));
const dir = process.env.MODEL_DIR ?? tinyLlamaDir(join(root, 'm'), 3, { hidden: 32, layers: 2, maxPositions: 256 });
const hold = process.env.HOLD ? new Int32Array(new SharedArrayBuffer(4)) : undefined;
const pool = await loadPooledTextGenerator(dir, { id: 'tiny@1', threads: 1, chatTemplate: process.env.MODEL_DIR ? undefined : CHATML, workers: Number(process.env.WORKERS ?? 1), ...(hold ? { hold } : {}) });
const server = await createModelServer({
  token: 'review-token-123',
  pollMs: 60_000,
  logger: 'errors',
  resolveCurrent: async () => ({ key: 'k', load: async () => pool }),
  generation: { maxConcurrent: Number(process.env.CONC ?? 1), maxQueue: 4, ...(process.env.GRACE ? { stopGraceMs: Number(process.env.GRACE) } : {}) },
});
const url = await server.listen(Number(process.env.PORT ?? 0));
console.log(url);
const t0 = Date.now();
const stop = async (sig: string) => {
  console.log(`${sig} at ${Date.now() - t0} ms; closing`);
  const c0 = Date.now();
  await server.close();
  console.log(`closed in ${Date.now() - c0} ms`);
  rmSync(root, { recursive: true, force: true });
  setTimeout(() => { console.log('still alive 5 s after close; handles:', (process as any)._getActiveHandles().map((h: any) => h.constructor.name)); process.exit(3); }, 5000).unref();
};
process.once('SIGTERM', () => void stop('SIGTERM'));
process.once('SIGINT', () => void stop('SIGINT'));
if (hold) process.on('SIGUSR2', () => { Atomics.store(hold, 0, 1); Atomics.notify(hold, 0); });
