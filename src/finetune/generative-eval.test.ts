// Generated answers for evaluation: prompts are exactly the training prompts (the tokens before the first scored
// one), answers come back in the prompts' order whatever the batching, long prompts lose their start, and models or
// tables that cannot be scored are refused with the field named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { encodeChatExample } from '../models/chat-encoding.ts';
import { ChatTemplate } from '../models/chat-template.ts';
import { IGNORE_INDEX, loadTokenizer } from '../models/tokenizer.ts';
import { tinyGpt2Dir, tinyLlamaDir } from '../models/tiny.testing.ts';
import { InputError } from '../errors.ts';
import { evaluateCausalLm } from './causal-lm.ts';
import { evaluateGenerative, generateAnswers, promptIds, readPromptResponses } from './generative-eval.ts';

const root = mkdtempSync(join(tmpdir(), 'gen-eval-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const llama = tinyLlamaDir(join(root, 'llama'), 5, { maxPositions: 48 });
const TEMPLATE =
  "{% for m in messages %}{% if m.role == 'user' %}Q:{% else %}A:{% endif %}{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}A:{% endif %}";

test('the generation prompt is the training sequence up to its first scored token (chat template and prompt templates)', () => {
  const tok = loadTokenizer(llama);
  const before = (labels: number[]) => labels.findIndex((l) => l !== IGNORE_INDEX);
  for (const [prompt, response] of [
    ['hello there', 'general kenobi'],
    ['2+2?', '4'],
  ] as const) {
    const chat = encodeChatExample(tok, prompt, response, { template: new ChatTemplate(TEMPLATE, 'test') });
    assert.deepEqual(promptIds(tok, llama, prompt, { chat: { template: TEMPLATE } }), chat.inputIds.slice(0, before(chat.labels)));
    for (const template of [undefined, { prompt: 'Q: {prompt}\nA:', addBos: true }, { prompt: '<{prompt}>', addBos: false }]) {
      const e = tok.encodePromptResponse(prompt, response, { template });
      assert.deepEqual(promptIds(tok, llama, prompt, { template }), e.inputIds.slice(0, before(e.labels)), JSON.stringify(template));
    }
  }
});

test('answers come back in the prompts’ order whatever the batch size; a prompt past the context loses its start', async () => {
  const prompts = ['a', 'a much longer prompt than the others', 'mid length', 'b', 'x'.repeat(80)];
  const common = { model: llama, prompts, rendering: { template: { prompt: '{prompt} ->' } }, maxNewTokens: 5, threads: 1 };
  const one = await generateAnswers({ ...common, batchSize: 1 });
  const three = await generateAnswers({ ...common, batchSize: 3 });
  // Each prompt alone is the reference: batching sorts prompts by length and must put every answer back.
  for (const [i, p] of prompts.entries())
    assert.equal(one.outputs[i], (await generateAnswers({ ...common, prompts: [p] })).outputs[0], `prompt ${i}`);
  assert.deepEqual(three.outputs, one.outputs);
  assert.deepEqual(three.finishReasons, one.finishReasons);
  assert.equal(one.outputs.length, prompts.length);
  assert.ok(new Set(one.outputs).size > 1, `different prompts, different answers: ${JSON.stringify(one.outputs)}`);
  // 48 positions - 5 new tokens = 43 prompt tokens at most: only the 80-character prompt is cut.
  assert.equal(one.truncatedPrompts, 1);
});

test('a GPT-2 model, a missing column and a context too small for maxNewTokens are input errors naming the field', async () => {
  const gpt2 = tinyGpt2Dir(join(root, 'gpt2'), 1);
  await assert.rejects(generateAnswers({ model: gpt2, prompts: ['a'], maxNewTokens: 2 }), (e: unknown) => {
    assert.ok(e instanceof InputError);
    assert.equal(e.where, 'evaluate.generation');
    assert.match(e.message, /LLaMA-family/);
    return true;
  });
  await assert.rejects(
    generateAnswers({ model: llama, prompts: ['a'], maxNewTokens: 48, threads: 1 }),
    /evaluate\.generation\.maxNewTokens: .*no room/,
  );
  const path = join(root, 'rows.arrow');
  const w = new ArrowTableWriter(path, { prompt: 'utf8', answer: 'utf8' });
  w.writeBatch({ prompt: ['p1', 'p2', 'p3'], answer: ['r1', 'r2', 'r3'] });
  w.close();
  await assert.rejects(readPromptResponses(path), /no column "response" \(columns: prompt, answer\)/);
  assert.deepEqual(await readPromptResponses(path, { responseColumn: 'answer', maxRows: 2 }), {
    prompts: ['p1', 'p2'],
    references: ['r1', 'r2'],
  });
});

test('the response loss teacher-forced on the KV-cache decoder equals evaluateCausalLm’s full forward (chat and prompt template, truncated rows)', async () => {
  const prompts = ['hi', 'tell me a story about a dragon and a knight please', 'x', 'what is two plus two'];
  const references = ['hello', 'once upon a time', 'a much longer answer than the prompt that it answers', '4'];
  const path = join(root, 'loss.arrow');
  const w = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  w.writeBatch({ prompt: prompts, response: references });
  w.close();
  for (const rendering of [{ chat: { template: TEMPLATE } }, { template: { prompt: 'Q: {prompt}\nA: ', addBos: true } }]) {
    // maxLength 40 cuts the longest rows (their last response tokens are not scored by either path).
    const want = await evaluateCausalLm({ model: llama, table: path, ...rendering, maxLength: 40, batchSize: 3, threads: 1 });
    const got = await evaluateGenerative({
      model: llama,
      prompts,
      references,
      rendering,
      maxLength: 40,
      batchSize: 3,
      maxNewTokens: 2,
      threads: 1,
    });
    assert.equal(got.loss.tokens, want.tokens, JSON.stringify(rendering));
    assert.ok(Math.abs(got.loss.loss - want.loss) < 1e-5 * want.loss, `${JSON.stringify(rendering)}: ${got.loss.loss} vs ${want.loss}`);
    assert.equal(got.outputs.length, 4);
    assert.equal(got.scores.generated, 4);
  }
});
