// Stopping a real `tempered serve` process mid-answer: the first signal says it stops and lets the answer go on,
// a second ends it, and the streaming client is told why before the stream ends; the process then exits 0.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyLlamaDir } from '../src/models/tiny.testing.ts';
import { startServeProcess } from './helpers/serve-process.ts';

const home = mkdtempSync(join(tmpdir(), 'tempered-serve-stop-'));
after(() => rmSync(home, { recursive: true, force: true }));
const TOKEN = 'serve-stop-test-token-0123456789';
// Large enough that 1,500 tokens take seconds.
const dir = tinyLlamaDir(join(home, 'model'), 6, { hidden: 256, layers: 6, maxPositions: 2048 });

test('a first signal lets the answer go on and says so; a second ends it, and the stream says why', async (t) => {
  const s = await startServeProcess([dir, '--threads', '1', '--stop-grace', '600', '--max-tokens', '2000'], {
    TEMPERED_HOME: join(home, 'state'),
    TEMPERED_SERVE_TOKEN: TOKEN,
  });
  t.after(() => void s.child.kill('SIGKILL'));
  const exited = new Promise<number | null>((r) => s.child.once('exit', (code) => r(code)));
  const res = await fetch(`${s.url}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once', max_tokens: 1500, temperature: 0, stream: true }),
  });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const read = async () => {
    const { value, done } = await reader.read();
    if (!done) text += decoder.decode(value, { stream: true });
    return done;
  };
  const waitFor = async (what: () => boolean, why: string) => {
    for (const deadline = Date.now() + 60_000; !what(); await new Promise((r) => setTimeout(r, 50)))
      assert.ok(Date.now() < deadline, `${why}; printed: ${s.output()}`);
  };
  while (!text.includes('"text"')) assert.equal(await read(), false, 'the stream went on until the first token');
  s.child.kill('SIGINT');
  await waitFor(() => /serve: SIGINT: stopping; generations running may finish for up to 600 s/.test(s.output()), 'said it stops');
  // Still answering after the first signal.
  const before = text.length;
  while (text.length === before) assert.equal(await read(), false, 'tokens still came after the first signal');
  s.child.kill('SIGTERM');
  while (!(await read()));
  const events = text.split('\n\n').filter((e) => e.startsWith('data: '));
  assert.equal(events.at(-1), 'data: [DONE]');
  const last = JSON.parse(events.at(-2)!.slice(6)) as { error?: { code: string; message: string } };
  assert.equal(last.error?.code, 'server_shutting_down');
  assert.match(last.error!.message, /ended this generation at once, as the server was told twice to stop/);
  assert.match(s.output(), /serve: SIGTERM again: ending the generations running now/);
  assert.equal(await exited, 0);
});
