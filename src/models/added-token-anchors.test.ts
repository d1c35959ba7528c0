// Locating each reply from its turn's added token (added-token-anchors.ts) must label every conversation exactly as
// tokenizing each rendering from the start does, and must not tokenize the conversation once per reply.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { addedTokenAnchors } from './added-token-anchors.ts';
import { encodeConversation } from './chat-encoding.ts';
import { ChatTemplate, loadChatTemplate } from './chat-template.ts';
import { outcome } from './conversation-encoding.testing.ts';
import { realModel } from './real-models.testing.ts';
import { DEFAULT_LLM, type ResolvedModel } from './sources.ts';
import { tinyGpt2Dir } from './tiny.testing.ts';
import { loadTokenizer, type HfTokenizer } from './tokenizer.ts';

const root = mkdtempSync(join(tmpdir(), 'anchors-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const tiny = loadTokenizer(tinyGpt2Dir(join(root, 'm'), 1));
const TINY_TEMPLATE = new ChatTemplate(
  '{% for m in messages %}<{{ m.role }}>{{ m.content }}<|endoftext|>\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}',
  'test template',
);

/** The same tokenizer with no added tokens to anchor on: every rendering is tokenized from its start, as before. */
function fromStart(tok: HfTokenizer): HfTokenizer {
  return Object.create(tok, { addedTokenIds: { value: new Set() } }) as HfTokenizer;
}

/** Text that tempts the boundaries: leading spaces and newlines, the turn tokens' text, non-Latin letters, emoji. */
const piece = fc.constantFrom(
  ' ',
  '  ',
  '\n',
  'a',
  'word',
  ' the',
  '<|endoftext|>',
  '<|im_start|>',
  '<|im_end|>',
  'é',
  '日本',
  '🙂',
  '<',
  '|',
  'assistant',
);
const text = fc.array(piece, { minLength: 0, maxLength: 8 }).map((p) => p.join(''));
const conversation = fc
  .tuple(fc.option(text, { nil: undefined }), fc.array(fc.tuple(text, text, fc.constantFrom(0, 1, 1)), { minLength: 1, maxLength: 6 }))
  .map(([system, exchanges]) => [
    ...(system === undefined ? [] : [{ role: 'system', content: system }]),
    ...exchanges.flatMap(([u, a, weight]) => [
      { role: 'user', content: u },
      { role: 'assistant', content: a, weight },
    ]),
  ]);

function sameAsFromStart(tok: HfTokenizer, template: ChatTemplate, runs: number) {
  const slow = fromStart(tok);
  fc.assert(
    fc.property(conversation, fc.option(fc.integer({ min: 4, max: 80 }), { nil: undefined }), (messages, maxLength) => {
      // A conversation whose every reply has weight 0 is refused at ingest; here it is encoded all the same.
      assert.deepEqual(outcome(tok, messages, template, maxLength), outcome(slow, messages, template, maxLength));
    }),
    { seed: 20261207, numRuns: runs },
  );
}

test('anchored on the turn tokens, every conversation encodes exactly as tokenizing each rendering from the start does', () => {
  sameAsFromStart(tiny, TINY_TEMPLATE, 400);
});

const llm = await realModel(DEFAULT_LLM);
test(
  "SmolLM2-135M-Instruct's tokenizer and template: anchored encoding equals tokenizing from the start",
  { skip: 'skip' in llm ? llm.skip : false },
  () => {
    const dir = (llm as ResolvedModel).dir;
    sameAsFromStart(loadTokenizer(dir), loadChatTemplate(dir), 150);
  },
);

test('a conversation of many replies is tokenized about once, not once per reply', () => {
  let chars = 0;
  const counting = Object.create(tiny, {
    tokenize: {
      value(t: string) {
        chars += t.length;
        return tiny.tokenize(t);
      },
    },
  }) as HfTokenizer;
  const messages = Array.from({ length: 200 }, (_, i) => [
    { role: 'user', content: `question ${i}` },
    { role: 'assistant', content: `answer ${i}` },
  ]).flat();
  const e = encodeConversation(counting, messages, { template: TINY_TEMPLATE });
  assert.equal(e.turnsCut, 0);
  const whole = TINY_TEMPLATE.render(messages, { addGenerationPrompt: false }).length;
  // The whole rendering once, then each reply's own turn twice (its header, then header and reply): under 3× in all.
  // Tokenizing each reply's renderings from the start costs about 200× here.
  assert.ok(chars < 3 * whole, `${chars} characters tokenized for a ${whole}-character conversation`);
});

test('where the added tokens found in the text disagree with those in its ids, no anchor is offered', () => {
  const text = 'a<|endoftext|>b<|endoftext|>';
  const ids = tiny.tokenize(text);
  assert.deepEqual(
    addedTokenAnchors(tiny, text, ids).map((a) => [a.pos, a.index]),
    [
      [1, 1],
      [15, 3],
    ],
  );
  // Ids of another text (one added token fewer): nothing may be assumed.
  assert.deepEqual(addedTokenAnchors(tiny, text, tiny.tokenize('a<|endoftext|>b')), []);
  assert.deepEqual(addedTokenAnchors(tiny, text, [...ids, ids[1]!]), []);
});
