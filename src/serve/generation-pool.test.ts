/**
 * Generation in worker threads (generation-pool.ts) on a real tiny LLaMA (real onnxruntime sessions in
 * the threads) behind the real HTTP server: results and streamed events equal the in-thread
 * generator's bit for bit, /health and /metrics answer while a generation is provably in flight, a
 * request beyond the gate gets 429 at once, and a cancel reaches the thread. "In flight" is made
 * certain, not timed: the test holds the generation inside its thread (GenerationPoolOptions.hold).
 */
import { getEventListeners } from 'node:events';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { InputError } from '../errors.ts';
import type { GenerateOptions, TokenEvent } from '../generate/generate.ts';
import { loadTextGenerator } from '../generate/text-generator.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { loadPooledTextGenerator } from './generation-pool.ts';
import { createModelServer } from './server.ts';
import type { GenerationLimits } from './openai.ts';

const TOKEN = 'generation-pool-token';
const CHATML =
  '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';
const root = mkdtempSync(join(tmpdir(), 'tempered-genpool-'));
after(() => rmSync(root, { recursive: true, force: true }));
const dir = tinyLlamaDir(join(root, 'm'), 3, { hidden: 32, layers: 2, maxPositions: 256 });
const opts = { id: 'tiny@1', threads: 1, chatTemplate: CHATML };
const messages = [{ role: 'user', content: 'Hi there' }];

function release(hold: Int32Array): void {
  Atomics.store(hold, 0, 1);
  Atomics.notify(hold, 0);
}

test('generations in the thread equal in-thread ones bit for bit: results, streamed events, errors', async () => {
  const direct = await loadTextGenerator(dir, opts);
  const pool = await loadPooledTextGenerator(dir, { ...opts, workers: 2 });
  try {
    assert.equal(pool.id, 'tiny@1');
    assert.equal(pool.contextLength, direct.contextLength);
    assert.deepEqual(await pool.encodeChat(messages), direct.encodeChat(messages));
    const prompts = [direct.encodeChat(messages), direct.encode('The cat sat'), direct.encode('A')];
    const cases: Omit<GenerateOptions, 'onToken' | 'signal'>[] = [
      { maxNewTokens: 12, eosTokenIds: [] },
      { maxNewTokens: 30, temperature: 0.9, topK: 20, topP: 0.9, repetitionPenalty: 1.2, seed: 5, stop: ['e'] },
    ];
    for (const c of cases) {
      const events = { direct: [] as TokenEvent[], pool: [] as TokenEvent[] };
      const a = await direct.generate(prompts, { ...c, onToken: (e) => void events.direct.push(e) });
      // A slow consumer: the thread runs ahead by at most its window and waits for acknowledgements.
      const b = await pool.generate(prompts, { ...c, onToken: async (e) => (await tick(), void events.pool.push(e)) });
      assert.deepEqual(b, a);
      assert.deepEqual(events.pool, events.direct);
      assert.deepEqual(await pool.generate(prompts, c), a, 'without streaming too');
    }
    // Two generations at once run in the two threads, each as it would alone.
    const [x, y] = await Promise.all([pool.generate([prompts[0]!], cases[1]!), pool.generate([prompts[1]!], cases[0]!)]);
    assert.deepEqual(x, await direct.generate([prompts[0]!], cases[1]!));
    assert.deepEqual(y, await direct.generate([prompts[1]!], cases[0]!));

    // An input error in the thread is still an InputError, with the same message.
    const bad = direct.generate([[1, 10_000_000]], { maxNewTokens: 2 });
    const err = await bad.catch((e: Error) => e);
    await assert.rejects(pool.generate([[1, 10_000_000]], { maxNewTokens: 2 }), (e: Error) => {
      assert.ok(e instanceof InputError, `${e.name}: ${e.message}`);
      assert.equal(e.message, (err as Error).message);
      return true;
    });
    // An onToken that throws rejects the generation with its error, as in-thread.
    await assert.rejects(
      pool.generate(prompts, {
        maxNewTokens: 5,
        onToken: () => {
          throw new Error('consumer broke');
        },
      }),
      /consumer broke/,
    );
    assert.equal((await pool.generate([prompts[2]!], cases[0]!))[0]!.tokens.length, 12, 'the thread serves on after that');
  } finally {
    await pool.close();
    await direct.close();
  }
});

test("a conversation's next turn goes to the thread that kept its cache: only the new turn is computed, and the answer is the same", async () => {
  const pool = await loadPooledTextGenerator(dir, { ...opts, workers: 2 });
  const uncached = await loadPooledTextGenerator(dir, { ...opts, promptCache: false });
  try {
    const greedy = { maxNewTokens: 8, eosTokenIds: [] as number[] };
    const system = { role: 'system', content: 'You answer in one short sentence, and you never repeat yourself.' };
    const a1 = [system, { role: 'user', content: 'Tell me about cats' }];
    const b1 = [system, { role: 'user', content: 'And dogs?' }];
    // Both conversations start with the same system message; B's first turn must not take A's thread.
    const [ra1] = await pool.generate([await pool.encodeChat(a1)], greedy);
    const [rb1] = await pool.generate([await pool.encodeChat(b1)], greedy);
    assert.equal(ra1!.cachedTokens, 0);
    assert.equal(rb1!.cachedTokens, 0, 'B went to the thread with nothing kept, not to A whose cache shares only the system message');
    const a2 = [...a1, { role: 'assistant', content: ra1!.text }, { role: 'user', content: 'Why?' }];
    const b2 = [...b1, { role: 'assistant', content: rb1!.text }, { role: 'user', content: 'Why?' }];
    const [ra2] = await pool.generate([await pool.encodeChat(a2)], greedy);
    const [rb2] = await pool.generate([await pool.encodeChat(b2)], greedy);
    for (const [r, first] of [
      [ra2!, a1],
      [rb2!, b1],
    ] as const)
      assert.ok(
        r.cachedTokens >= (await pool.encodeChat(first)).length,
        `the whole first prompt came from the cache: ${r.cachedTokens} tokens`,
      );
    assert.equal(pool.stats().cachedPromptTokens, ra2!.cachedTokens + rb2!.cachedTokens);
    // The same tokens as a pool that keeps nothing.
    for (const [m, r] of [
      [a1, ra1],
      [b1, rb1],
      [a2, ra2],
      [b2, rb2],
    ] as const) {
      const [u] = await uncached.generate([await uncached.encodeChat(m)], greedy);
      assert.equal(u!.cachedTokens, 0);
      assert.deepEqual(r!.tokens, u!.tokens);
    }
    assert.equal(uncached.stats().cachedPromptTokens, 0);
  } finally {
    await pool.close();
    await uncached.close();
  }
});

test("a kept cache serves only its own scope: another user's request neither reuses it nor learns from it what it held", async () => {
  const pool = await loadPooledTextGenerator(dir, { ...opts, workers: 1 });
  try {
    const greedy = { maxNewTokens: 4, eosTokenIds: [] as number[] };
    const secret = await pool.encodeChat([{ role: 'user', content: 'My PIN is 4817; keep it safe.' }]);
    const as = (cacheScope: string) => pool.generate([secret], { ...greedy, cacheScope });
    const [alice] = await as('alice');
    // The same prompt from another user: without scopes, all but its last token would come from alice's cache.
    const [mallory] = await as('mallory');
    assert.equal(mallory!.cachedTokens, 0, "mallory's request read nothing of alice's cache");
    assert.deepEqual(mallory!.tokens, alice!.tokens);
    // mallory's generation replaced the thread's cache: alice starts again, then reuses her own.
    assert.equal((await as('alice'))[0]!.cachedTokens, 0);
    assert.equal((await as('alice'))[0]!.cachedTokens, secret.length - 1);
    // No scope given is a scope of its own.
    assert.equal((await pool.generate([secret], greedy))[0]!.cachedTokens, 0);
  } finally {
    await pool.close();
  }
});

test('an abort reaches the generation in its thread', async () => {
  const hold = new Int32Array(new SharedArrayBuffer(4));
  const pool = await loadPooledTextGenerator(dir, { ...opts, hold });
  try {
    const stop = new AbortController();
    const running = pool.generate([await pool.encode('Once upon')], { maxNewTokens: 200, eosTokenIds: [], signal: stop.signal });
    while (pool.stats().running === 0) await tick();
    stop.abort();
    release(hold);
    const [r] = await running;
    assert.equal(r!.finishReason, 'cancelled');
    assert.ok(r!.tokens.length < 200);
    assert.deepEqual(pool.stats(), { workers: 1, running: 0, waiting: 0, generations: 1, cachedPromptTokens: 0 });
  } finally {
    release(hold);
    await pool.close();
  }
});

test('a request cancelled while it waits for a thread ends there: no tokens, no thread taken', async () => {
  const hold = new Int32Array(new SharedArrayBuffer(4));
  const pool = await loadPooledTextGenerator(dir, { ...opts, hold });
  try {
    const first = pool.generate([await pool.encode('Once upon')], { maxNewTokens: 4, eosTokenIds: [] });
    while (pool.stats().running === 0) await tick();
    const gone = new AbortController();
    const queued = pool.generate([await pool.encode('A long conversation')], { maxNewTokens: 4, eosTokenIds: [], signal: gone.signal });
    assert.equal(pool.stats().waiting, 1);
    gone.abort();
    // It ends in the queue while the thread is still held: it does not wait for a thread to free.
    const [r] = await queued;
    assert.equal(pool.stats().waiting, 0);
    release(hold);
    assert.equal((await first)[0]!.tokens.length, 4);
    assert.deepEqual(r, {
      tokens: [],
      text: '',
      finishReason: 'cancelled',
      promptTokens: (await pool.encode('A long conversation')).length,
      cachedTokens: 0,
    });
    // One whose client left before it was even queued ends the same way.
    const [early] = await pool.generate([await pool.encode('A')], { maxNewTokens: 4, eosTokenIds: [], signal: AbortSignal.abort() });
    assert.deepEqual([early!.tokens, early!.finishReason], [[], 'cancelled']);
    assert.equal(pool.stats().generations, 1, 'only the first reached a thread');
  } finally {
    release(hold);
    await pool.close();
  }
});

test('serve: /health and /metrics answer during a generation, a request beyond the gate gets 429, answers equal in-thread', async (t) => {
  const hold = new Int32Array(new SharedArrayBuffer(4));
  const pool = await loadPooledTextGenerator(dir, { ...opts, hold });
  const direct = await loadTextGenerator(dir, opts);
  t.after(() => direct.close());
  const server = await createModelServer({
    token: TOKEN,
    pollMs: 60_000,
    resolveCurrent: async () => ({ key: 'k', load: async () => pool }),
    generation: { maxConcurrent: 1, maxQueue: 1 },
  });
  t.after(async () => {
    release(hold); // a failed assertion must not leave a generation waiting forever
    await server.close();
  });
  const url = await server.listen();
  const post = (path: string, body: unknown) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  let firstDone = false;
  const first = post('/v1/chat/completions', { messages, max_tokens: 20, temperature: 0.8, seed: 9 }).then((r) => ((firstDone = true), r));
  while (pool.stats().running === 0) await tick();
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'ok');
  const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  assert.match(metrics, /^tempered_generations_running 1$/m);

  // A streamed request queues behind it (the gate's queue holds one); a third is refused at once.
  const second = post('/v1/completions', { prompt: 'The cat', max_tokens: 15, temperature: 0, stream: true });
  while (server.gate.queued < 1) await tick();
  const third = await post('/v1/completions', { prompt: 'x', max_tokens: 2 });
  assert.equal(third.status, 429);
  // Whole seconds, from 1 to 30: how many the gate's estimate gives depends on how long the held generation has run (gate.test.ts).
  assert.ok(
    Number(third.headers.get('retry-after')) >= 1 && Number(third.headers.get('retry-after')) <= 30,
    String(third.headers.get('retry-after')),
  );
  assert.match(third.headers.get('retry-after') ?? '', /^\d+$/);
  assert.equal(((await third.json()) as { error: { code: string } }).error.code, 'server_busy');
  assert.equal(firstDone, false, '/health, /metrics and the 429 came while the first generation was held in its thread');

  release(hold);
  const a = (await (await first).json()) as { choices: { message: { content: string }; finish_reason: string }[] };
  const [ref] = await direct.generate([direct.encodeChat(messages)], { maxNewTokens: 20, temperature: 0.8, seed: 9, stop: [] });
  assert.equal(a.choices[0]!.message.content, ref!.text);
  const streamed = await (await second).text();
  const text = streamed
    .split('\n\n')
    .filter((b) => b.startsWith('data: {'))
    .map((b) => (JSON.parse(b.slice(6)) as { choices: { text: string }[] }).choices[0]!.text)
    .join('');
  const [ref2] = await direct.generate([direct.encode('The cat')], { maxNewTokens: 15, temperature: 0, stop: [] });
  assert.equal(text, ref2!.text);
  assert.ok(streamed.endsWith('data: [DONE]\n\n'));
  assert.equal(pool.stats().generations, 2);

  // The API's `user` (or `prompt_cache_key`, or `safety_identifier`, which the openai SDK has replace `user`) scopes the
  // kept cache: the same prompt twice reuses it only within one.
  const cached = async (extra: object) => {
    const r = (await (await post('/v1/completions', { prompt: 'The cat', max_tokens: 2, temperature: 0, ...extra })).json()) as {
      usage: { prompt_tokens_details: { cached_tokens: number } };
    };
    return r.usage.prompt_tokens_details.cached_tokens;
  };
  assert.deepEqual(
    [
      await cached({ user: 'u1' }),
      await cached({ user: 'u1' }),
      await cached({ user: 'u2' }),
      await cached({ prompt_cache_key: 'u2' }),
      await cached({ safety_identifier: 'u3' }),
      await cached({ safety_identifier: 'u3' }),
      await cached({ safety_identifier: 'u4' }),
    ],
    [0, direct.encode('The cat').length - 1, 0, 0, 0, direct.encode('The cat').length - 1, 0],
  );
});

/**
 * A server of a pool whose generations wait in their threads until `hold` is released, closed (and the hold
 * released) after the test; `stop()` closes it early and is what the test awaits.
 */
async function heldServer(t: { after: (fn: () => Promise<void>) => void }, generation: GenerationLimits) {
  const hold = new Int32Array(new SharedArrayBuffer(4));
  const pool = await loadPooledTextGenerator(dir, { ...opts, hold, workers: generation.maxConcurrent ?? 1 });
  const server = await createModelServer({
    token: TOKEN,
    pollMs: 60_000,
    resolveCurrent: async () => ({ key: 'k', load: async () => pool }),
    generation,
  });
  let closed: Promise<void> | undefined;
  t.after(async () => {
    release(hold); // a failed assertion must not leave a generation waiting forever
    await (closed ?? server.close());
  });
  const url = await server.listen();
  const post = (body: unknown) =>
    fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  return { pool, server, post, release: () => release(hold), stop: () => (closed = server.close()) };
}

test('a server that stops refuses the requests waiting for a slot (503) and lets the running one finish', async (t) => {
  const { pool, server, post, release: go, stop } = await heldServer(t, { maxConcurrent: 1, maxQueue: 4 });
  const running = post({ prompt: 'The cat', max_tokens: 4, temperature: 0 });
  while (pool.stats().running === 0) await tick();
  const queued = [post({ prompt: 'A', max_tokens: 2 }), post({ prompt: 'B', max_tokens: 2 })];
  while (server.gate.queued < 2) await tick();
  const closed = stop();
  // Let the running generation go at once: were the waiting ones not refused, they would run next and answer 200.
  go();
  for (const q of queued) {
    const res = await q;
    assert.equal(res.status, 503);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'server_shutting_down');
  }
  const res = await running;
  assert.equal(res.status, 200, 'the generation that was running ends as it would have');
  assert.equal(((await res.json()) as { choices: { finish_reason: string }[] }).choices[0]!.finish_reason, 'length');
  // Every request unhooked itself from the server-long stop signal.
  assert.equal(getEventListeners(server.gate.halted, 'abort').length, 0);
  await closed;
});

test('a stop that waited its grace out ends the running generations: 503 to a plain request, an error event to a stream', async (t) => {
  const { pool, post, release: go, stop } = await heldServer(t, { maxConcurrent: 2, maxQueue: 4, stopGraceMs: 200 });
  const plain = post({ prompt: 'The cat', max_tokens: 50, temperature: 0 });
  const streamed = post({ prompt: 'A dog', max_tokens: 50, temperature: 0, stream: true });
  while (pool.stats().running < 2) await tick();
  const closed = stop();
  // Both generations are held in their threads past the grace: the stop ends them.
  await new Promise((r) => setTimeout(r, 400));
  go();
  const res = await plain;
  assert.equal(res.status, 503);
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'server_shutting_down');
  assert.match(body.error.message, /ended this generation after 0.2 s/);
  const s = await streamed;
  assert.equal(s.status, 200);
  const events = (await s.text()).split('\n\n').filter((e) => e.startsWith('data: '));
  assert.equal(events.at(-1), 'data: [DONE]');
  assert.equal((JSON.parse(events.at(-2)!.slice(6)) as { error: { code: string } }).error.code, 'server_shutting_down');
  await closed;
});

test("prompts are tokenized in a thread of the pool's own: a slow one holds not the server's thread, and errors keep their kind", async () => {
  // A template that refuses one role, as real ones refuse a conversation out of order.
  const strict = {
    ...opts,
    chatTemplate: `{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tool turns here') }}{% endif %}{% endfor %}${CHATML}`,
  };
  const direct = await loadTextGenerator(dir, strict);
  const pool = await loadPooledTextGenerator(dir, strict);
  try {
    // One long word is one pre-token for BPE to merge: 200,000 characters take a second or more.
    const word = 'a'.repeat(200_000);
    let turns = 0;
    let done = false;
    const spin = async () => {
      while (!done) {
        turns++;
        await tick();
      }
    };
    const spinning = spin();
    const ids = await pool.encode(word);
    done = true;
    await spinning;
    assert.deepEqual(ids, direct.encode(word));
    assert.ok(turns > 1, `this thread went round its event loop ${turns} time(s) while the prompt was tokenized`);
    // A chat the template refuses is an input error on this side too (the server answers 400).
    const tool = [{ role: 'tool' as 'user', content: 'x' }];
    assert.throws(() => direct.encodeChat(tool), /no tool turns here/);
    let expected = '';
    try {
      direct.encodeChat(tool);
    } catch (e) {
      expected = (e as Error).message;
    }
    await assert.rejects(pool.encodeChat(tool), (e: unknown) => e instanceof InputError && e.message === expected);
  } finally {
    await pool.close();
    await direct.close();
  }
  await assert.rejects(pool.encode('x'), /closed/);
});

test("a chat template that does not parse fails the pool's load with the loader's error", async () => {
  await assert.rejects(loadPooledTextGenerator(dir, { ...opts, chatTemplate: '{% for m in messages %}' }), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, /template/i);
    return true;
  });
});
