// Generated answers for evaluation: prompts are exactly the training prompts (the tokens before the first scored
// one), answers come back in the prompts' order whatever the batching, long prompts lose their start, and models or
// tables that cannot be scored are refused with the field named.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { conversationJson, promptText, type ConversationMessage } from '../data/conversation.ts';
import { encodeChatExample, encodeConversation } from '../models/chat-encoding.ts';
import { ChatTemplate } from '../models/chat-template.ts';
import { IGNORE_INDEX, loadTokenizer } from '../models/tokenizer.ts';
import { tinyGpt2Dir, tinyLlamaDir } from '../models/tiny.testing.ts';
import { InputError } from '../errors.ts';
import { NoAnswerTokensError } from '../eval/metrics.ts';
import { evaluateCausalLm } from './causal-lm.ts';
import { evaluateGenerative, generateAnswers, promptIds, readPromptResponses, tableReferencesRepeat } from './generative-eval.ts';

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
    // Both paths leave out (and count) the same rows: with the chat template, the one whose reply alone overflows.
    assert.deepEqual([got.loss.rows, got.loss.unscoredRows], [want.rows, want.unscoredRows], JSON.stringify(rendering));
    assert.equal(want.unscoredRows, rendering.chat ? 1 : 0, JSON.stringify(rendering));
    assert.ok(Math.abs(got.loss.loss - want.loss) < 1e-5 * want.loss, `${JSON.stringify(rendering)}: ${got.loss.loss} vs ${want.loss}`);
    assert.equal(got.outputs.length, 4);
    assert.equal(got.scores.generated, 4);
  }
});

test('rows whose prompt + reply exceed maxLength are left out of the reply loss and counted; when every row is, the error says so', async () => {
  // Chat records keep their reply whole or not at all (as training does): the first two replies cannot fit 24 tokens.
  const long = 'a reply far longer than the twenty-four tokens this evaluation allows';
  const prompts = ['tell me', 'and now', 'hi', 'what is two plus two'];
  const references = [long, long, 'hello', '4'];
  const write = (name: string, n: number) => {
    const path = join(root, name);
    const w = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
    w.writeBatch({ prompt: prompts.slice(0, n), response: references.slice(0, n) });
    w.close();
    return path;
  };
  const chat = { template: TEMPLATE };
  const all = write('mixed.arrow', 4);
  const fitting = join(root, 'fitting.arrow');
  {
    const w = new ArrowTableWriter(fitting, { prompt: 'utf8', response: 'utf8' });
    w.writeBatch({ prompt: prompts.slice(2), response: references.slice(2) });
    w.close();
  }
  const common = { model: llama, chat, maxLength: 24, threads: 1 };
  const mixed = await evaluateCausalLm({ ...common, table: all });
  const only = await evaluateCausalLm({ ...common, table: fitting });
  assert.deepEqual([mixed.rows, mixed.unscoredRows, mixed.maxLength], [4, 2, 24]);
  // The loss is over the rows that keep their answer: the same as scoring those rows alone.
  assert.deepEqual([mixed.tokens, mixed.loss], [only.tokens, only.loss]);
  const gen = { model: llama, rendering: { chat }, maxLength: 24, maxNewTokens: 2, threads: 1 };
  const g = await evaluateGenerative({ ...gen, prompts, references });
  assert.deepEqual([g.loss.rows, g.loss.unscoredRows, g.loss.tokens], [4, 2, only.tokens]);
  assert.ok(Math.abs(g.loss.loss - only.loss) < 1e-5 * only.loss, `${g.loss.loss} vs ${only.loss}`);
  assert.equal(g.outputs.length, 4, 'every row is still answered');

  // With a prompt template the answer tokens that fit are kept and scored, as training trains on them.
  const cut = await evaluateCausalLm({ model: llama, table: all, template: { prompt: 'Q: {prompt}\nA: ' }, maxLength: 24, threads: 1 });
  assert.deepEqual([cut.rows, cut.unscoredRows], [4, 0]);

  // Only the first two rows (evalRows 2): no answer token anywhere. Both paths say so in the user's terms.
  const first2 = write('first2.arrow', 2);
  const refused = (e: unknown) => {
    assert.ok(e instanceof NoAnswerTokensError && e instanceof InputError, String(e));
    assert.match(
      e.message,
      /none of the 2 test rows keeps an answer token within maxLength 24: .*prompt .* and the reply together exceed 24 tokens/,
    );
    assert.match(e.hint!, /raise maxLength.*shorten the prompt template.*evaluate more rows/);
    assert.doesNotMatch(e.message, /response mask/);
    return true;
  };
  await assert.rejects(evaluateCausalLm({ ...common, table: first2 }), refused);
  await assert.rejects(evaluateGenerative({ ...gen, prompts: prompts.slice(0, 2), references: references.slice(0, 2) }), refused);
});

test("a chat table: evaluate asks its last trained reply (not a weight-0 one after it) after exactly training's tokens before that reply", async () => {
  const tok = loadTokenizer(llama);
  const template = new ChatTemplate(TEMPLATE, 'test');
  const convo: ConversationMessage[] = [
    { role: 'user', content: 'two plus two?' },
    { role: 'assistant', content: '4' },
    { role: 'user', content: 'and times three?' },
    { role: 'assistant', content: '12' },
    { role: 'user', content: 'thanks' },
    { role: 'assistant', content: 'you are welcome', weight: 0 },
  ];
  const path = join(root, 'chat.arrow');
  const w = new ArrowTableWriter(path, { messages: 'utf8' });
  w.writeBatch({ messages: [conversationJson(convo)] });
  w.close();
  const rows = await readPromptResponses(path);
  assert.deepEqual(rows, {
    prompts: ['user: two plus two?\nassistant: 4\nuser: and times three?'],
    references: ['12'],
    conversations: [convo.slice(0, 4)],
  });
  assert.equal(promptText(conversationJson(convo)), rows.prompts[0]);
  // The prompt's ids are the training sequence's up to that reply's first scored token, chat.system given or not.
  for (const system of [undefined, 'Be exact.']) {
    const e = encodeConversation(tok, convo, { template, system });
    const lastReplyStart = e.labels.findLastIndex((l, i) => l !== IGNORE_INDEX && e.labels[i - 1] === IGNORE_INDEX);
    assert.deepEqual(
      promptIds(tok, llama, rows.prompts[0]!, { chat: { template: TEMPLATE, system } }, rows.conversations![0]),
      e.inputIds.slice(0, lastReplyStart),
      `system ${system}`,
    );
  }
});

test('whether a table’s reference answers repeat is read batch by batch from its answers, chat tables and unreadable rows included', async () => {
  const table = (name: string, batches: Record<string, string[]>[]) => {
    const path = join(root, name);
    const w = new ArrowTableWriter(path, Object.fromEntries(Object.keys(batches[0]!).map((k) => [k, 'utf8'])) as never);
    for (const b of batches) w.writeBatch(b as never);
    w.close();
    return path;
  };
  // A repeat in a later batch, and only after normalization.
  const labels = table('labels.arrow', [
    { prompt: ['a', 'b'], response: ['Yes', 'no'] },
    { prompt: ['c'], response: ['yes'] },
  ]);
  assert.equal(await tableReferencesRepeat(labels), false);
  assert.equal(await tableReferencesRepeat(labels, { caseFold: true }), true);
  // A chat table: each conversation's last trained reply is its answer; a cell that is no conversation
  // and a conversation with no trained reply are passed over (the evaluation refuses them where it reads them).
  const convo = (reply: string, weight?: 0) =>
    conversationJson([
      { role: 'user', content: 'q' },
      { role: 'assistant', content: reply, ...(weight === undefined ? {} : { weight }) },
    ]);
  const chat = table('chat-repeat.arrow', [{ messages: [convo('4'), 'not json', convo('4', 0), convo('5'), convo('4')] }]);
  assert.equal(await tableReferencesRepeat(chat), true);
  const free = table('chat-free.arrow', [{ messages: [convo('4'), 'not json', convo('4', 0), convo('5')] }]);
  assert.equal(await tableReferencesRepeat(free), false);
});
