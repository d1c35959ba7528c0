/** The thread of encoder-thread.ts: loads the model folder's tokenizer and chat template, then tokenizes what it is sent. */
import { parentPort, workerData } from 'node:worker_threads';
import { loadPromptEncoder } from '../generate/text-generator.ts';
import { toWire } from './worker-pool.ts';
import type { EncoderReply, EncoderRequest, EncoderThreadSetup } from './encoder-thread.ts';

const setup = workerData as EncoderThreadSetup;
const port = parentPort!;
const reply = (m: EncoderReply, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

try {
  const encoder = loadPromptEncoder(setup.dir, setup.chatTemplate);
  port.on('message', (m: EncoderRequest) => {
    try {
      const ids = Int32Array.from(m.op === 'encode' ? encoder.encode(m.text) : encoder.encodeChat(m.messages));
      reply({ type: 'ids', id: m.id, ids }, [ids.buffer as ArrayBuffer]);
    } catch (e) {
      reply({ type: 'error', id: m.id, ...toWire(e) });
    }
  });
  reply({ type: 'ready' });
} catch (e) {
  reply({ type: 'failed', ...toWire(e) });
}
