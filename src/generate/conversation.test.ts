import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import type { ChatMessage } from '../serve/types.ts';
import { Conversation, type Reply } from './conversation.ts';

type LocalReply = Awaited<ReturnType<Conversation['reply']>>;
import { generate } from './generate.ts';
import { loadTextGenerator, type LoadedTextGenerator } from './text-generator.ts';

const tmp = mkdtempSync(join(tmpdir(), 'tempered-conversation-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const TEMPLATE = '{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>';
const greedy = { maxNewTokens: 6, eosTokenIds: [] as number[] };

async function tiny(maxPositions: number): Promise<LoadedTextGenerator> {
  const dir = tinyLlamaDir(join(tmp, `tiny-${maxPositions}`), 7, { hidden: 32, layers: 2, maxPositions });
  return loadTextGenerator(dir, { threads: 1, chatTemplate: TEMPLATE });
}

/** What the model says to a whole conversation computed from scratch, without any kept cache. */
async function fresh(gen: LoadedTextGenerator, messages: ChatMessage[], maxNewTokens = greedy.maxNewTokens): Promise<string> {
  const [r] = await generate(gen.decoder, [gen.encodeChat(messages)], { ...greedy, maxNewTokens });
  return r!.text;
}

test('each answer is what the model says to the whole conversation so far; later turns reuse the cache', async () => {
  const gen = await tiny(256);
  try {
    const chat = new Conversation(gen, greedy, 'be brief');
    const a = await chat.reply('hello');
    assert.equal(
      a.text,
      await fresh(gen, [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello' },
      ]),
    );
    assert.equal(a.reusedTokens, 0);
    const b = await chat.reply('and then?');
    const expected: ChatMessage[] = [
      { role: 'system', content: 'be brief' },
      { role: 'user', content: 'hello' },
      { role: 'assistant', content: a.text },
      { role: 'user', content: 'and then?' },
    ];
    assert.equal(b.text, await fresh(gen, expected));
    assert.equal(b.promptTokens, gen.encodeChat(expected).length);
    assert.ok(b.reusedTokens >= gen.encodeChat(expected.slice(0, 2)).length, `reused ${b.reusedTokens}`);
    assert.deepEqual(chat.messages, [...expected, { role: 'assistant', content: b.text }]);
    assert.equal(chat.exchanges, 2);

    assert.equal(chat.undo(), true);
    assert.deepEqual(chat.messages, expected.slice(0, 3));
    chat.reset();
    assert.deepEqual(chat.messages, [{ role: 'system', content: 'be brief' }], 'reset keeps the system message');
    assert.equal(chat.undo(), false);
  } finally {
    await gen.close();
  }
});

test('the oldest exchanges are left out when the conversation outgrows the context; a message too long alone changes nothing', async () => {
  const gen = await tiny(96);
  try {
    const chat = new Conversation(gen, greedy);
    // Each exchange is about 30 tokens (the byte-level tokenizer: a token a byte): the fourth no longer fits with the rest.
    const said: LocalReply[] = [];
    for (const q of ['first question', 'second question', 'third question', 'fourth question']) said.push(await chat.reply(q));
    const dropped = said.reduce((n, r) => n + r.droppedExchanges, 0);
    assert.ok(dropped >= 1, 'an exchange was left out');
    assert.equal(chat.exchanges, 4 - dropped);
    assert.ok(!chat.messages.some((m) => m.content === 'first question'), 'the oldest went first');
    assert.equal(chat.messages.at(-2)!.content, 'fourth question');
    for (const r of said) assert.ok(r.promptTokens + greedy.maxNewTokens <= 96, `prompt ${r.promptTokens} leaves room for the answer`);
    const before = chat.messages;
    await assert.rejects(chat.reply('x'.repeat(200)), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.match(e.message, /^message: the conversation with this message alone is \d+ tokens; the model's context is 96/);
      return true;
    });
    assert.deepEqual(chat.messages, before, 'the refused message left no trace');
  } finally {
    await gen.close();
  }
});

test('once the context is full, later turns keep their cache again; the exchange before the new message stays', async () => {
  const gen = await tiny(256);
  try {
    const chat = new Conversation(gen, greedy);
    const said: LocalReply[] = [];
    for (let i = 0; i < 14; i++) said.push(await chat.reply(`question number ${i}`));
    // One exchange left out a turn would change the conversation's start, and so recompute it all, at every turn.
    const firstDrop = said.findIndex((r) => r.droppedExchanges > 0);
    assert.ok(firstDrop > 0, 'the context filled up');
    const after = said.slice(firstDrop + 1);
    assert.ok(
      after.some((r, i) => r.droppedExchanges === 0 && r.reusedTokens >= said[firstDrop + i]!.promptTokens),
      `a turn after the first drop reused the whole last prompt: ${JSON.stringify(after.map((r) => [r.droppedExchanges, r.reusedTokens, r.promptTokens]))}`,
    );

    // Paste a document, then ask about it: the document's exchange stays even when the half-room target cannot be met.
    const doc = new Conversation(gen, greedy);
    await doc.reply('hi');
    await doc.reply(`DOCUMENT:${'d'.repeat(150)}`);
    const asked = await doc.reply(`summarize it ${'q'.repeat(30)}`);
    assert.equal(asked.droppedExchanges, 1);
    assert.ok(
      doc.messages.some((m) => m.content.startsWith('DOCUMENT:')),
      'the document is still there',
    );
  } finally {
    await gen.close();
  }
});

test('an answer stopped partway is kept as far as it got', async () => {
  const gen = await tiny(256);
  try {
    const chat = new Conversation(gen, { ...greedy, maxNewTokens: 20 });
    const stop = new AbortController();
    let streamed = '';
    let n = 0;
    const r = await chat.reply('tell me more', {
      signal: stop.signal,
      onToken: ({ text }) => {
        streamed += text;
        if (++n === 4) stop.abort();
      },
    });
    assert.equal(r.finishReason, 'cancelled');
    assert.equal(r.newTokens, 4);
    assert.equal(chat.messages.at(-1)!.content, r.text);
    assert.ok(r.text.startsWith(streamed), 'the kept answer is what was shown (and any bytes a character was waiting for)');
    // The next turn goes on from the stopped answer.
    const next = await chat.reply('go on');
    assert.equal(next.text, await fresh(gen, chat.messages.slice(0, -1), 20));
  } finally {
    await gen.close();
  }
});
