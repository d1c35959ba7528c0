// Instruction records in SmolLM2-135M-Instruct's own chat format (tokenizer and template from the real GGUF in the
// model cache; no forward pass): exactly the reply's tokens and its <|im_end|> carry loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter, readArrowBatches } from '../data/arrow-io.ts';
import { InputError } from '../errors.ts';
import { encodeChatExample } from './chat-encoding.ts';
import { ChatTemplate, loadChatTemplate, type ChatMessage } from './chat-template.ts';
import { realModel } from './real-models.testing.ts';
import { DEFAULT_LLM, type ResolvedModel } from './sources.ts';
import { IGNORE_INDEX, loadTokenizer } from './tokenizer.ts';
import { tokenizeToArrow } from './tokenize-arrow.ts';

const llm = await realModel(DEFAULT_LLM);
const skip = 'skip' in llm ? llm.skip : false;
const dir = () => (llm as ResolvedModel).dir;
const ref = JSON.parse(readFileSync(new URL('./fixtures/smollm2-chat.json', import.meta.url), 'utf8')) as {
  renderings: Array<{ messages: ChatMessage[]; add_generation_prompt: boolean; ids: number[] }>;
};

test("a SmolLM2 record: the ids are transformers' apply_chat_template ids, and only the reply and <|im_end|> carry loss", { skip }, () => {
  const tok = loadTokenizer(dir());
  const template = loadChatTemplate(dir());
  // Rendering 6 of the reference fixture: system "S", a multi-line user turn, the reply "ok" (transformers' ids).
  const r = ref.renderings[6]!;
  assert.deepEqual(
    r.messages.map((m) => m.role),
    ['system', 'user', 'assistant'],
  );
  const e = encodeChatExample(tok, r.messages[1]!.content, r.messages[2]!.content, { template, system: r.messages[0]!.content });
  assert.deepEqual(e.inputIds, r.ids);
  const ok = tok.tokenize('ok');
  const imEnd = tok.inner.token_to_id('<|im_end|>')!;
  assert.equal(imEnd, 2);
  // …ok <|im_end|> \n: the template's closing newline is not scored.
  assert.deepEqual(r.ids.slice(-ok.length - 2), [...ok, imEnd, tok.tokenize('\n')[0]]);
  const n = r.ids.length;
  assert.deepEqual(
    e.labels,
    r.ids.map((t, i) => (i >= n - ok.length - 2 && i < n - 1 ? t : IGNORE_INDEX)),
  );
  assert.deepEqual([e.lossTokens, e.truncated], [ok.length + 1, false]);
});

test(
  'SmolLM2 records without a system message: masked part is the generation-prompt rendering, the scored part decodes to reply + <|im_end|>',
  { skip },
  () => {
    const tok = loadTokenizer(dir());
    const template = loadChatTemplate(dir());
    const records: Array<[string, string]> = [
      ['What is the capital of France?', 'Paris.'],
      ['Classify the sentiment: "a wonderful, moving film"', 'positive'],
      ['Reply with JSON', '{"a": [1, 2], "b": "日本語 😀"}\n\nDone.'],
      ['Two spaces follow', '  leading spaces and a trailing newline\n'],
    ];
    records.forEach(([prompt, response], k) => {
      const e = encodeChatExample(tok, prompt, response, { template });
      const head = template.render([{ role: 'user', content: prompt }], { addGenerationPrompt: true });
      assert.ok(head.includes('You are a helpful AI assistant named SmolLM'), "the template's default system prompt is in the masked part");
      const headIds = tok.tokenize(head);
      const first = e.labels.findIndex((l) => l !== IGNORE_INDEX);
      // The last record's reply starts with spaces, which merge with the header's "\n" into one token: that token is scored.
      assert.deepEqual(e.inputIds.slice(0, first), k < 3 ? headIds : headIds.slice(0, -1), prompt);
      const scored = e.labels.filter((l) => l !== IGNORE_INDEX);
      // One contiguous run, ending one token before the end (the closing "\n").
      assert.deepEqual(e.labels.slice(first, first + scored.length), scored, prompt);
      assert.equal(first + scored.length, e.inputIds.length - 1, prompt);
      assert.equal(tok.decode(scored, false), `${k < 3 ? '' : '\n'}${response}<|im_end|>`, prompt);
      assert.equal(scored.at(-1), 2);
    });
  },
);

test('a record over maxLength loses the end of its user message; the template and the whole reply stay', { skip }, () => {
  const tok = loadTokenizer(dir());
  const template = loadChatTemplate(dir());
  const message = `Is this SMS message spam or ham? Answer with one word.\n\n${'Call 0800 now to claim your free prize, txt WIN to 8007. '.repeat(6)}`;
  const whole = encodeChatExample(tok, message, 'spam', { template });
  assert.deepEqual([whole.truncated, whole.promptTokensCut, whole.tooLong], [false, 0, false]);
  const max = whole.inputIds.length - 20;
  const e = encodeChatExample(tok, message, 'spam', { template, maxLength: max });
  assert.ok(e.inputIds.length <= max, `${e.inputIds.length} tokens`);
  assert.deepEqual([e.truncated, e.tooLong], [true, false]);
  assert.ok(e.promptTokensCut >= 19, `cut ${e.promptTokensCut}`);
  // The reply and its <|im_end|> are scored, exactly as in the whole record.
  const scored = (x: typeof e) => x.labels.filter((l) => l !== IGNORE_INDEX);
  assert.equal(tok.decode(scored(e), false), 'spam<|im_end|>');
  assert.deepEqual(scored(e), scored(whole));
  // The rest is the template around a prefix of the message: system prompt, user turn closed, assistant header.
  const text = tok.decode(e.inputIds, false);
  const m =
    /^<\|im_start\|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<\|im_end\|>\n<\|im_start\|>user\n([^]*)<\|im_end\|>\n<\|im_start\|>assistant\nspam<\|im_end\|>\n?$/.exec(
      text,
    );
  assert.ok(m, text);
  assert.ok(message.startsWith(m[1]!) && m[1]!.length < message.length && m[1]!.startsWith('Is this SMS message spam or ham?'), m[1]);
  assert.equal(e.lossTokens, scored(whole).length);

  // Too short for the template and the reply even with no message left: no tokens, marked for the caller to drop.
  const reply = 'a b c d e f g h i j k l m n o p q r s t u v w x y z';
  const none = encodeChatExample(tok, message, reply, {
    template,
    maxLength: encodeChatExample(tok, '', reply, { template }).inputIds.length - 2,
  });
  assert.deepEqual([none.tooLong, none.inputIds.length, none.lossTokens], [true, 0, 0]);
});

test(
  'tokenizing a chat table keeps the long rows with their reply and leaves out, and counts, rows whose reply cannot fit',
  { skip },
  async () => {
    const tok = loadTokenizer(dir());
    const work = mkdtempSync(join(tmpdir(), 'chat-trunc-'));
    try {
      const input = join(work, 'rows.arrow');
      const w = new ArrowTableWriter(input, { prompt: 'utf8', response: 'utf8' });
      const long = `Label this message.\n\n${'URGENT! You have won a 2000 prize GUARANTEED. Call 09061701461. '.repeat(8)}`;
      w.writeBatch({
        prompt: ['Label: hi there', long, 'Label: ok'],
        response: ['ham', 'spam', 'a b c d e f g h i j k l m n o p q r s t u v w x y z '.repeat(4)],
      });
      w.close();
      const r = await tokenizeToArrow({
        input,
        output: join(work, 'tokens.arrow'),
        tokenizer: tok,
        task: { kind: 'causal', promptColumn: 'prompt', responseColumn: 'response', chat: { template: loadChatTemplate(dir()) } },
        padding: { kind: 'longest', maxLength: 64, multipleOf: 8 },
      });
      assert.deepEqual([r.rows, r.truncatedRows, r.droppedRows, r.droppedExamples], [2, 1, 1, [2]]);
      const rows: number[][] = [];
      for await (const b of readArrowBatches(r.path)) {
        const labels = b.getChild('labels')!;
        for (let i = 0; i < b.numRows; i++) rows.push(Array.from(labels.get(i) as Iterable<number>));
      }
      assert.deepEqual(
        rows.map((l) =>
          tok.decode(
            l.filter((x) => x !== IGNORE_INDEX),
            false,
          ),
        ),
        ['ham<|im_end|>', 'spam<|im_end|>'],
      );
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  },
);

test('templates the reply cannot be located in, or that never end the turn, are input errors naming the record', { skip }, () => {
  const tok = loadTokenizer(dir());
  // No end-of-turn token after the reply.
  const open = new ChatTemplate(
    '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}',
    'open.jinja',
  );
  assert.throws(
    () => encodeChatExample(tok, 'hi', 'yo', { template: open }, 'train.arrow: row 3'),
    (e: unknown) =>
      e instanceof InputError &&
      /does not end the assistant's reply with the end-of-turn token "<\|im_end\|>"/.test(e.message) &&
      e.message.startsWith('train.arrow: row 3 (open.jinja)'),
  );
  // The same template with a named end-of-turn token that it does emit works; " yo" is one token across the
  // "assistant: " / "yo" boundary, and it is scored.
  const closed = new ChatTemplate(
    '{% for m in messages %}{{ m.role }}: {{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}',
    'closed.jinja',
  );
  const e = encodeChatExample(tok, 'hi', 'yo', { template: closed, endOfTurn: '<|endoftext|>' });
  assert.equal(
    tok.decode(
      e.labels.filter((l) => l !== IGNORE_INDEX),
      false,
    ),
    ' yo<|endoftext|>',
  );
  assert.throws(
    () => encodeChatExample(tok, 'hi', 'yo', { template: closed, endOfTurn: '<|nope|>' }),
    (err: unknown) => err instanceof InputError && /"<\|nope\|>" is not in the vocabulary/.test(err.message),
  );
  // The generation prompt is not a prefix of the rendering with the reply.
  const odd = new ChatTemplate(
    '{% if add_generation_prompt %}Q: {{ messages[0].content }}\nA:{% else %}{% for m in messages %}[{{ m.role }}] {{ m.content }}<|im_end|>{% endfor %}{% endif %}',
    'odd.jinja',
  );
  assert.throws(
    () => encodeChatExample(tok, 'hi', 'yo', { template: odd }),
    (err: unknown) => err instanceof InputError && /cannot be located/.test(err.message),
  );
});
