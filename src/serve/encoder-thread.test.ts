/** The pool's tokenizing thread: the same ids as tokenizing here, and a thread that died is replaced. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { loadPromptEncoder } from '../generate/text-generator.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { ENCODES_WAITING, EncoderThread } from './encoder-thread.ts';

const root = mkdtempSync(join(tmpdir(), 'tempered-encoder-thread-'));
after(() => rmSync(root, { recursive: true, force: true }));
const dir = tinyLlamaDir(join(root, 'm'), 5, { hidden: 32, layers: 1, maxPositions: 64 });

test('a thread that died mid-request fails that request, and the next one starts another thread', async () => {
  const here = loadPromptEncoder(dir);
  const thread = await EncoderThread.start(dir);
  try {
    assert.deepEqual(await thread.encode('The cat sat'), here.encode('The cat sat'));
    const slow = thread.encode('a'.repeat(100_000));
    await (thread as unknown as { worker: Worker }).worker.terminate();
    await assert.rejects(slow, /prompt encoder thread ended/);
    assert.deepEqual(await thread.encode('on the mat'), here.encode('on the mat'));
  } finally {
    await thread.close();
  }
  await assert.rejects(thread.encode('x'), /closed/);
});

test('a thread that cannot load the tokenizer fails its start with the loader’s error', async () => {
  await assert.rejects(EncoderThread.start(join(root, 'missing')), /tokenizer\.json not found/);
});

test('a prompt whose client left while it waited is dropped at once; beyond ENCODES_WAITING waiting, a prompt is refused as overload', async () => {
  const here = loadPromptEncoder(dir);
  const thread = await EncoderThread.start(dir);
  try {
    const slow = thread.encode('a'.repeat(100_000));
    const left = new AbortController();
    const dropped = thread.encode('The cat sat', left.signal);
    const kept = Array.from({ length: ENCODES_WAITING - 1 }, (_, i) => thread.encode(`row ${i}`));
    // One more than may wait: refused at once, as the server's 429.
    await assert.rejects(thread.encode('one too many'), (e: unknown) => (e as { code?: string }).code === 'overloaded');
    let settled = false;
    void slow.finally(() => (settled = true));
    left.abort(new Error('client closed the connection'));
    await assert.rejects(dropped, /client closed the connection/);
    assert.equal(settled, false, 'dropped while the slow prompt still ran');
    assert.deepEqual(await slow, here.encode('a'.repeat(100_000)));
    assert.deepEqual(
      await Promise.all(kept),
      Array.from({ length: ENCODES_WAITING - 1 }, (_, i) => here.encode(`row ${i}`)),
    );
  } finally {
    await thread.close();
  }
});
