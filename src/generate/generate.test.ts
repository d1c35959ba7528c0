import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import { buildLlamaGraph } from '../models/llama.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { encodeModel } from '../onnx/proto.ts';
import { Decoder } from './decoder.ts';
import { generate, PrefixCache, type TokenEvent } from './generate.ts';
import { argmax } from './sampling.ts';

const FIXTURE = new URL('../models/fixtures/tiny-llama/', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'tempered-generate-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
/** A tiny model with room for prompts of some length (the fixture's context is 16). */
const LONG = tinyLlamaDir(join(tmp, 'long'), 3, { hidden: 32, layers: 2, maxPositions: 128 });

/** Full recompute without a cache: the training graph on the whole sequence, logits of its last position. */
async function fullRecompute(dir: string) {
  const { model, config } = buildLlamaGraph(dir);
  const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 1 });
  return {
    V: config.vocabSize,
    async last(seq: number[]): Promise<Float32Array> {
      const t = new ort.Tensor('int64', BigInt64Array.from(seq, BigInt), [1, seq.length]);
      const m = new ort.Tensor('int64', new BigInt64Array(seq.length).fill(1n), [1, seq.length]);
      const out = await s.run({ input_ids: t, attention_mask: m });
      return (out.logits!.data as Float32Array).slice((seq.length - 1) * config.vocabSize);
    },
    close: () => s.release(),
  };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const i64 = (xs: number[]) => BigInt64Array.from(xs, BigInt);

test('KV cache: logits of the prompt pass and of every one-token step equal a full recompute of the whole sequence', async () => {
  const dec = await Decoder.load(FIXTURE, { threads: 1 });
  const ref = await fullRecompute(FIXTURE);
  try {
    const seq = [5, 17, 3, 60, 22];
    let { logits, cache } = await dec.run(i64(seq), i64(seq.map((_, i) => i)), i64(seq.map(() => 1)), 1, dec.emptyCache(1));
    let worst = maxAbsDiff(logits, await ref.last(seq));
    // 10 steps: positions up to 14 of the fixture's 16.
    for (let step = 0; step < 10; step++) {
      const t = argmax(logits);
      seq.push(t);
      ({ logits, cache } = await dec.run(i64([t]), i64([seq.length - 1]), i64(seq.map(() => 1)), 1, cache));
      assert.equal(cache.length, seq.length, 'the cache grows by one position a step');
      worst = Math.max(worst, maxAbsDiff(logits, await ref.last(seq)));
    }
    assert.ok(worst < 1e-4, `max abs logit difference ${worst}`);
    // The loop above is greedy decoding; generate() must pick the same tokens.
    const [r] = await generate(dec, [seq.slice(0, 5)], { maxNewTokens: 10, eosTokenIds: [] });
    assert.deepEqual(r!.tokens, seq.slice(5));
    assert.equal(r!.finishReason, 'length');
    assert.equal(r!.promptTokens, 5);
  } finally {
    await dec.close();
    await ref.close();
  }
});

test("a kept prefix cache: a conversation's next turn computes only its new tokens, and generates what a full pass does", async () => {
  const dir = tinyLlamaDir(join(tmp, 'tiny-prefix'), 3, { hidden: 32, layers: 2, maxPositions: 128 });
  const dec = await Decoder.load(dir, { threads: 1 });
  const ref = await fullRecompute(dir);
  try {
    const greedy = { maxNewTokens: 6, eosTokenIds: [] };
    const pc = new PrefixCache();
    const turn1 = [5, 17, 3, 60, 22];
    const [a] = await generate(dec, [turn1], { ...greedy, prefixCache: pc });
    assert.equal(a!.cachedTokens, 0, 'an empty cache reuses nothing');
    // The last sampled token is never fed back, so the cache holds all but it.
    assert.deepEqual(pc.tokens, [...turn1, ...a!.tokens.slice(0, -1)]);
    assert.equal(pc.cache!.length, pc.tokens.length);

    // The next turn: the last prompt, its answer, and new tokens.
    const turn2 = [...turn1, ...a!.tokens, 9, 4, 11];
    const [full] = await generate(dec, [turn2], greedy);
    const held = pc.tokens.length;
    const kept = pc.cache!.copy(held);
    const [b] = await generate(dec, [turn2], { ...greedy, prefixCache: pc });
    assert.equal(b!.cachedTokens, held);
    assert.equal(full!.cachedTokens, 0);
    assert.deepEqual(b!.tokens, full!.tokens);
    // The logits after the reused prefix against a full recompute of the whole prompt.
    const rest = turn2.slice(held);
    const { logits } = await dec.run(i64(rest), i64(rest.map((_, j) => held + j)), i64(turn2.map(() => 1)), 1, kept);
    const d = maxAbsDiff(logits, await ref.last(turn2));
    assert.ok(d < 1e-4, `max abs logit difference ${d}`);
    // Against the decoder's own pass over the whole prompt: the same bits on CPU, so a conversation's answers do
    // not depend on whether its cache was kept (each position's rows are computed alike in either pass).
    const whole = await dec.run(i64(turn2), i64(turn2.map((_, j) => j)), i64(turn2.map(() => 1)), 1, dec.emptyCache(1));
    assert.equal(maxAbsDiff(logits, whole.logits), 0);

    // A prompt that leaves the cached tokens partway (an earlier turn edited): only the shared part is reused.
    const turn3 = [...turn1.slice(0, 3), 40, 41];
    const [c] = await generate(dec, [turn3], { ...greedy, prefixCache: pc });
    assert.equal(c!.cachedTokens, 3);
    assert.deepEqual(c!.tokens, (await generate(dec, [turn3], greedy))[0]!.tokens);
    // The same prompt again: every token but the last, which gives the logits.
    await generate(dec, [turn3], { ...greedy, prefixCache: pc });
    assert.equal((await generate(dec, [turn3], { ...greedy, prefixCache: pc }))[0]!.cachedTokens, turn3.length - 1);
    pc.clear();
    assert.equal((await generate(dec, [turn3], { ...greedy, prefixCache: pc }))[0]!.cachedTokens, 0, 'cleared');
    await assert.rejects(generate(dec, [turn1, turn3], { ...greedy, prefixCache: pc }), /generate\.prefixCache: .*one row/);
  } finally {
    await dec.close();
    await ref.close();
  }
});

test('KvCache: appends at the end, keeps what it held when it grows or is cut back, and gives room back', async () => {
  const dec = await Decoder.load(FIXTURE, { threads: 1 });
  try {
    const stride = 2 * 8; // one row × the fixture's 2 kv heads × head size 8
    const positions = (n: number, from = 0) => Array.from({ length: n * stride }, (_, i) => from * stride + i);
    const outputs = (seq: number, from: number) =>
      Object.fromEntries(
        [0, 1].flatMap((l) =>
          ['key', 'value'].map((k) => [
            `new_key_values.${l}.${k}`,
            new ort.Tensor('float32', Float32Array.from(positions(seq, from)), [seq, 1, 2, 8]),
          ]),
        ),
      );
    const held = (c: ReturnType<typeof dec.emptyCache>) => Array.from(c.feeds()['past_key_values.1.value']!.data as Float32Array);
    const room = (c: ReturnType<typeof dec.emptyCache>) => (c as unknown as { capacity: number }).capacity;
    const c = dec.emptyCache(1);
    c.append(outputs(5, 0), 5);
    assert.equal(room(c), 16, 'the first growth stops at the model context (16 positions)');
    // Past the context (a loss over longer rows), it still grows, by doubling.
    for (let p = 5; p < 300; p++) c.append(outputs(1, p), 1);
    assert.deepEqual(held(c), positions(300));
    assert.ok(room(c) >= 300 && room(c) < 600, `room ${room(c)}`);
    assert.deepEqual(c.feeds()['past_key_values.0.key']!.dims, [300, 1, 2, 8]);
    // Cut back to a short prefix with little room asked for: the buffers shrink, the prefix stays.
    c.truncate(3, 10);
    assert.deepEqual(held(c), positions(3));
    assert.equal(room(c), 128);
    c.append(outputs(2, 50), 2);
    assert.deepEqual(held(c), [...positions(3), ...positions(2, 50)]);
    // Room asked for is taken at once.
    const r = dec.emptyCache(1, 40);
    assert.equal(room(r), 40);
    r.append(outputs(40, 0), 40);
    assert.equal(room(r), 40, 'no growth within what was reserved');
    const copy = r.copy(7);
    r.truncate(0);
    assert.deepEqual(held(copy), positions(7), 'a copy is its own');
    assert.throws(() => r.truncate(1), /cannot keep 1 of 0/);
  } finally {
    await dec.close();
  }
});

test('left-padded batch: every row gives the logits and the tokens it gives alone', async () => {
  const dec = await Decoder.load(FIXTURE, { threads: 1 });
  try {
    const prompts = [[7, 8, 9, 10, 11, 12], [40], [3, 30, 33]];
    const batch = await generate(dec, prompts, { maxNewTokens: 8, eosTokenIds: [] });
    for (let i = 0; i < prompts.length; i++) {
      const [alone] = await generate(dec, [prompts[i]!], { maxNewTokens: 8, eosTokenIds: [] });
      assert.deepEqual(batch[i]!.tokens, alone!.tokens, `row ${i}`);
      assert.equal(batch[i]!.promptTokens, prompts[i]!.length);
    }
    // Logits of the padded prompt pass against each prompt alone.
    const P = 6,
      V = dec.config.vocabSize;
    const ids: number[] = [],
      pos: number[] = [],
      mask: number[] = [];
    for (const p of prompts) {
      const pad = P - p.length;
      for (let j = 0; j < P; j++) {
        ids.push(j < pad ? 0 : p[j - pad]!);
        pos.push(j < pad ? 1 : j - pad);
        mask.push(j < pad ? 0 : 1);
      }
    }
    const { logits } = await dec.run(i64(ids), i64(pos), i64(mask), 3, dec.emptyCache(3));
    for (let i = 0; i < prompts.length; i++) {
      const p = prompts[i]!;
      const alone = await dec.run(i64(p), i64(p.map((_, j) => j)), i64(p.map(() => 1)), 1, dec.emptyCache(1));
      const d = maxAbsDiff(logits.subarray(i * V, (i + 1) * V), alone.logits);
      assert.ok(d < 1e-5, `row ${i}: max abs difference ${d}`);
    }
  } finally {
    await dec.close();
  }
});

test('a prompt read in chunks generates what one pass does, batched, sampled and after a kept cache', async () => {
  const dec = await Decoder.load(LONG, { threads: 1 });
  try {
    const long = Array.from({ length: 40 }, (_, i) => 3 + ((i * 7) % 50));
    const prompts = [long, long.slice(5, 22), [40]];
    const sampled = { maxNewTokens: 10, eosTokenIds: [], temperature: 1, seed: 5 };
    const whole = await generate(dec, prompts, { ...sampled, prefillChunkTokens: 1000 });
    for (const chunk of [1, 7, 16]) {
      const parts = await generate(dec, prompts, { ...sampled, prefillChunkTokens: chunk });
      assert.deepEqual(
        parts.map((r) => r.tokens),
        whole.map((r) => r.tokens),
        `chunks of ${chunk}`,
      );
    }
    // A kept cache of a shorter prompt: the rest goes in chunks after it.
    const pc = new PrefixCache();
    await generate(dec, [long.slice(0, 9)], { maxNewTokens: 1, eosTokenIds: [], prefixCache: pc });
    const [after] = await generate(dec, [long], { ...sampled, prefixCache: pc, prefillChunkTokens: 6 });
    assert.equal(after!.cachedTokens, 9);
    assert.deepEqual(after!.tokens, whole[0]!.tokens);
    await assert.rejects(
      generate(dec, [long], { ...sampled, prefillChunkTokens: 0 }),
      /generate\.prefillChunkTokens: must be a positive integer/,
    );
  } finally {
    await dec.close();
  }
});

test('stopped while the prompt is read, or before the first token: nothing is sampled, and a kept cache holds what was read', async () => {
  const dec = await Decoder.load(LONG, { threads: 1 });
  try {
    const long = Array.from({ length: 30 }, (_, i) => 3 + i);
    const stop = new AbortController();
    // The decoder's third pass is a chunk of the prompt: stop the request there.
    let passes = 0;
    const run = dec.run.bind(dec);
    dec.run = (...a: Parameters<Decoder['run']>) => {
      if (++passes === 3) stop.abort();
      return run(...a);
    };
    const pc = new PrefixCache();
    const seen: TokenEvent[] = [];
    const [r] = await generate(dec, [long], {
      maxNewTokens: 5,
      eosTokenIds: [],
      prefixCache: pc,
      prefillChunkTokens: 4,
      signal: stop.signal,
      onToken: (e) => void seen.push(e),
    });
    dec.run = run;
    assert.deepEqual([r!.finishReason, r!.tokens, r!.text, seen.length], ['cancelled', [], '', 0]);
    assert.equal(passes, 3, 'no pass after the one the stop came in');
    assert.deepEqual(pc.tokens, long.slice(0, 12), 'the cache holds the three chunks read');
    const [again] = await generate(dec, [long], { maxNewTokens: 5, eosTokenIds: [], prefixCache: pc });
    const [fresh] = await generate(dec, [long], { maxNewTokens: 5, eosTokenIds: [] });
    assert.equal(again!.cachedTokens, 12);
    assert.deepEqual(again!.tokens, fresh!.tokens);

    // Stopped before it starts (a client that left while queued): no token either.
    const gone = new AbortController();
    gone.abort();
    const [early] = await generate(dec, [[5, 6, 7]], { maxNewTokens: 5, eosTokenIds: [], signal: gone.signal });
    assert.deepEqual([early!.finishReason, early!.tokens], ['cancelled', []]);
  } finally {
    await dec.close();
  }
});

test('sampling: the same seed gives the same tokens, other seeds other tokens; top-k 1 is greedy', async () => {
  const dec = await Decoder.load(FIXTURE, { threads: 1 });
  try {
    const prompt = [[5, 17, 3]];
    const opts = { maxNewTokens: 12, eosTokenIds: [], temperature: 1.5, topP: 0.95, topK: 40 };
    const a = await generate(dec, prompt, { ...opts, seed: 7 });
    const b = await generate(dec, prompt, { ...opts, seed: 7 });
    assert.deepEqual(a[0]!.tokens, b[0]!.tokens);
    const others = await Promise.all([8, 9, 10].map((seed) => generate(dec, prompt, { ...opts, seed })));
    assert.ok(
      others.some((o) => o[0]!.tokens.join() !== a[0]!.tokens.join()),
      'other seeds draw other tokens',
    );
    // Each row has its own generator: a row's draws do not depend on the rows beside it.
    const two = await generate(dec, [prompt[0]!, [9, 9]], { ...opts, seed: 7 });
    assert.deepEqual(two[0]!.tokens, a[0]!.tokens);
    const greedy = await generate(dec, prompt, { maxNewTokens: 12, eosTokenIds: [] });
    const topK1 = await generate(dec, prompt, { ...opts, topK: 1, seed: 3 });
    assert.deepEqual(topK1[0]!.tokens, greedy[0]!.tokens);
  } finally {
    await dec.close();
  }
});

test('repetition penalty changes greedy output away from repeats', async () => {
  const dec = await Decoder.load(FIXTURE, { threads: 1 });
  try {
    const plain = await generate(dec, [[5, 17, 3]], { maxNewTokens: 10, eosTokenIds: [] });
    const penal = await generate(dec, [[5, 17, 3]], { maxNewTokens: 10, eosTokenIds: [], repetitionPenalty: 100 });
    const repeats = (xs: number[]) => xs.length - new Set(xs).size;
    assert.ok(repeats(plain[0]!.tokens) > 0, 'the fixture repeats itself without a penalty');
    // With a huge penalty every seen token scores below unseen ones (whose logits are positive): no repeats.
    assert.ok(repeats(penal[0]!.tokens) < repeats(plain[0]!.tokens));
  } finally {
    await dec.close();
  }
});

test('EOS ends a row early; stop strings cut the text and never reach the stream', async () => {
  const dir = tinyLlamaDir(join(tmp, 'tiny-tok'), 11, { hidden: 16, layers: 2 });
  const dec = await Decoder.load(dir, { threads: 1 });
  try {
    assert.ok(dec.tokenizer);
    const prompt = [dec.tokenizer!.encode('The cat sat on').inputIds];
    const free = await generate(dec, prompt, { maxNewTokens: 24, eosTokenIds: [] });
    assert.equal(free[0]!.tokens.length, 24);
    // EOS: the 6th greedy token declared an end-of-sequence id.
    const eosTok = free[0]!.tokens[5]!;
    const firstAt = free[0]!.tokens.indexOf(eosTok);
    const ended = await generate(dec, prompt, { maxNewTokens: 24, eosTokenIds: [eosTok] });
    assert.equal(ended[0]!.finishReason, 'stop');
    assert.deepEqual(ended[0]!.tokens, free[0]!.tokens.slice(0, firstAt));

    // Stop string: a piece of the free text after its first few characters.
    const text = free[0]!.text;
    assert.ok(text.length >= 12, `free text ${JSON.stringify(text)}`);
    const stop = text.slice(6, 9);
    const streamed: TokenEvent[] = [];
    const cut = await generate(dec, prompt, {
      maxNewTokens: 24,
      eosTokenIds: [],
      stop: ['never-there', stop],
      onToken: (e) => {
        streamed.push(e);
      },
    });
    assert.equal(cut[0]!.finishReason, 'stop');
    assert.equal(cut[0]!.text, text.slice(0, text.indexOf(stop)));
    assert.equal(streamed.map((e) => e.text).join(''), cut[0]!.text, 'the streamed deltas add up to the final text');
    assert.equal(streamed.length, cut[0]!.tokens.length);
    assert.deepEqual(
      streamed.map((e) => e.token),
      cut[0]!.tokens,
    );
    // Without stop strings the stream is the whole text too.
    const all: string[] = [];
    const whole = await generate(dec, prompt, {
      maxNewTokens: 24,
      eosTokenIds: [],
      onToken: (e) => {
        all.push(e.text);
      },
    });
    assert.equal(all.join(''), whole[0]!.text);
    assert.equal(whole[0]!.text, dec.tokenizer!.decode(whole[0]!.tokens));
  } finally {
    await dec.close();
  }
});

test('bad requests fail with errors naming the field', async () => {
  const dec = await Decoder.load(FIXTURE, { threads: 1 });
  try {
    await assert.rejects(generate(dec, [[1, 2]], { maxNewTokens: 0 }), /generate\.maxNewTokens/);
    await assert.rejects(generate(dec, [[1, 64]], { maxNewTokens: 2 }), /generate\.prompts\[0\].*outside the vocabulary/);
    await assert.rejects(generate(dec, [[]], { maxNewTokens: 2 }), /generate\.prompts\[0\]/);
    await assert.rejects(generate(dec, [[1]], { maxNewTokens: 2, temperature: -1 }), /generate\.temperature/);
    await assert.rejects(generate(dec, [[1]], { maxNewTokens: 2, topP: 0 }), /generate\.topP/);
    await assert.rejects(generate(dec, [[1]], { maxNewTokens: 2, stop: ['x'] }), /generate\.stop: .*tokenizer/);
    await assert.rejects(generate(dec, [Array(16).fill(1)], { maxNewTokens: 2 }), /context is 16/);
    // The context caps new tokens: 14 prompt tokens leave room for 2.
    const [r] = await generate(dec, [Array(14).fill(1)], { maxNewTokens: 50, eosTokenIds: [] });
    assert.equal(r!.tokens.length, 2);
    assert.equal(r!.finishReason, 'length');
  } finally {
    await dec.close();
  }
  await assert.rejects(Decoder.load(new URL('../models/fixtures/tiny-gpt2/', import.meta.url).pathname), /LLaMA family/);
});

test("generation stops on generation_config.json's end-of-sequence ids too; a malformed one is an input error naming it", async () => {
  // Qwen2.5-Instruct's config.json names <|im_end|> alone and its generation_config.json <|endoftext|> as well, which
  // transformers stops on: an answer ending with the second ran on to the token limit.
  const dir = tinyLlamaDir(join(tmp, 'generation-config'), 3, { hidden: 32, layers: 2, maxPositions: 128 });
  const plain = await Decoder.load(dir, { threads: 1 });
  const [free] = await generate(plain, [[5, 17, 3]], { maxNewTokens: 6 });
  await plain.close();
  const stopAt = free!.tokens[2]!;
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [60_000, stopAt] }));
  const dec = await Decoder.load(dir, { threads: 1 });
  try {
    assert.ok(dec.eosTokenIds.includes(stopAt) && dec.eosTokenIds.includes(60_000));
    const [r] = await generate(dec, [[5, 17, 3]], { maxNewTokens: 6 });
    assert.deepEqual(r!.tokens, free!.tokens.slice(0, free!.tokens.indexOf(stopAt)));
  } finally {
    await dec.close();
  }
  for (const bad of ['"2"', '[1, -1]', '{"a": 1}', '1.5']) {
    writeFileSync(join(dir, 'generation_config.json'), `{"eos_token_id": ${bad}}`);
    await assert.rejects(Decoder.load(dir, { threads: 1 }), (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.where ?? '', /generation_config\.json: eos_token_id$/);
      return true;
    });
  }
  writeFileSync(join(dir, 'generation_config.json'), '{not json');
  await assert.rejects(Decoder.load(dir, { threads: 1 }), /generation_config\.json|not valid JSON/);
});
