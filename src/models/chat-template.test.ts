// Chat-template rendering against transformers' apply_chat_template (fixture from bench/fixtures/make_llm_fixtures.py):
// templates in the style of several model families, exercising whitespace control, trim_blocks/lstrip_blocks,
// filters, namespaces, loop variables and raise_exception.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { ChatTemplate, type ChatMessage } from './chat-template.ts';

interface Fixture {
  special_tokens: Record<string, string>;
  templates: Record<string, string>;
  renderings: Array<{ name: string; messages: ChatMessage[]; add_generation_prompt: boolean; text: string | null; error: string | null }>;
}
const fx = JSON.parse(readFileSync(new URL('./fixtures/chat-templates.json', import.meta.url), 'utf8')) as Fixture;

test('templates of several families render as transformers renders them (60 cases, with and without the generation prompt)', () => {
  assert.equal(fx.renderings.length, 60);
  const bad: string[] = [];
  for (const r of fx.renderings) {
    const tpl = new ChatTemplate(fx.templates[r.name]!, r.name, fx.special_tokens);
    if (r.error !== null) {
      assert.throws(
        () => tpl.render(r.messages, { addGenerationPrompt: r.add_generation_prompt }),
        (e: unknown) => e instanceof InputError && e.message.includes(r.error!) && e.message.startsWith(`${r.name}: `),
      );
      continue;
    }
    const got = tpl.render(r.messages, { addGenerationPrompt: r.add_generation_prompt });
    if (got !== r.text) bad.push(`${r.name} agp=${r.add_generation_prompt}: ${JSON.stringify(got)} vs ${JSON.stringify(r.text)}`);
  }
  assert.deepEqual(bad, []);
  assert.equal(fx.renderings.filter((r) => r.error !== null).length, 6, 'raise_exception is exercised');
});

test('messages without a string role and content are refused before rendering', () => {
  const tpl = new ChatTemplate('{{ messages[0].content }}', 'inline');
  assert.throws(
    () => tpl.render([{ role: 'user' } as ChatMessage]),
    (e: unknown) => e instanceof InputError && /messages\[0\]: each message needs a string role and a string content/.test(e.message),
  );
});
