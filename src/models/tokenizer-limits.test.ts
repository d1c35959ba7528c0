// Hostile tokenizer files (tokenizer-limits.ts): ids the embedding does not have, added tokens and files far larger than
// any real tokenizer's, and chat templates too long to parse cheaply, are InputErrors naming the file and the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { ChatTemplate, loadChatTemplate } from './chat-template.ts';
import { loadTokenizer } from './tokenizer.ts';

const FX = new URL('./fixtures/', import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), 'tokenizer-limits-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const base = JSON.parse(readFileSync(join(FX, 'bpe-tokenizer.json'), 'utf8')) as Record<string, unknown>;
const config = readFileSync(join(FX, 'bpe-tokenizer_config.json'), 'utf8');

let n = 0;
function modelDir(tokenizer: Record<string, unknown>): string {
  const dir = join(root, String(n++));
  mkdirSync(dir);
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileSync(join(dir, 'tokenizer_config.json'), config);
  return dir;
}

function refused(f: () => unknown, where: string, message: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof InputError, `an InputError, got ${String(e)}`);
    assert.equal(e.where, where);
    assert.match(e.message, message);
    return true;
  });
}

test('token ids that are not whole numbers below 2^24 are refused, naming the field', () => {
  const cases: [(t: Record<string, any>) => void, RegExp][] = [
    [(t) => (t.model.vocab['zz'] = -1), /model\.vocab\["zz"\] is -1, not a token id/],
    [(t) => (t.model.vocab['zz'] = 2.5), /model\.vocab\["zz"\] is 2\.5, not a token id/],
    [(t) => (t.model.vocab['zz'] = 2_000_000_000), /model\.vocab\["zz"\] is 2000000000, not a token id/],
    [(t) => (t.added_tokens = [{ id: 1e15, content: '<x>', special: true }]), /added_tokens\[0\]\.id is 1000000000000000, not a token id/],
    [(t) => (t.added_tokens = [{ id: -5, content: '<x>', special: true }]), /added_tokens\[0\]\.id is -5, not a token id/],
    [
      (t) =>
        (t.post_processor = {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ Sequence: { id: 'A', type_id: 0 } }],
          special_tokens: { '<s>': { id: '<s>', ids: [1e12], tokens: ['<s>'] } },
        }),
      /post_processor\.special_tokens\["<s>"\]\.ids\[0\] is 1000000000000, not a token id/,
    ],
  ];
  for (const [edit, message] of cases) {
    const t = structuredClone(base) as Record<string, any>;
    edit(t);
    const dir = modelDir(t);
    const file = join(dir, 'tokenizer.json');
    assert.throws(
      () => loadTokenizer(dir),
      (e: unknown) => e instanceof InputError && e.where?.startsWith(file) === true && message.test(e.message),
      String(message),
    );
  }
});

test('an added token longer than 4096 characters is refused (a 20 MB one took 26 s and 3.6 GB)', () => {
  const t = structuredClone(base) as Record<string, any>;
  t.added_tokens = [{ id: 300, content: 'x'.repeat(5000), special: true }];
  const dir = modelDir(t);
  refused(() => loadTokenizer(dir), join(dir, 'tokenizer.json'), /added_tokens\[0\]\.content is 5000 characters long/);
});

test('tokenizer files larger than any real one are refused before they are read', () => {
  for (const [file, bytes] of [
    ['tokenizer.json', 257 * 2 ** 20],
    ['tokenizer_config.json', 65 * 2 ** 20],
    ['chat_template.jinja', 65 * 2 ** 20],
    // One byte over: the message must not round it down to the bound itself.
    ['tokenizer_config.json', 64 * 2 ** 20 + 1],
  ] as const) {
    const dir = modelDir(base);
    const path = join(dir, file);
    // Sparse: no disk is written.
    closeSync(openSync(path, 'w'));
    truncateSync(path, bytes);
    refused(
      () => (file === 'chat_template.jinja' ? loadChatTemplate(dir) : loadTokenizer(dir)),
      path,
      new RegExp(`is ${bytes} bytes, more than the ${file === 'tokenizer.json' ? 256 * 2 ** 20 : 64 * 2 ** 20} \\(`),
    );
  }
});

test('a chat template of more than 2^20 characters is refused; one just under renders, however many tags it has', () => {
  refused(() => new ChatTemplate('a'.repeat((1 << 20) + 1), 'long'), 'long', /chat template is 1048577 characters long/);
  // 149,000 tags: their node list was spread into one call's arguments, which overflowed the stack ("does not parse").
  const many = new ChatTemplate('{{ 1 }}'.repeat(149_000), 'many tags');
  assert.equal(many.render([{ role: 'user', content: 'hi' }]), '1'.repeat(149_000));
});

test('a tokenizer_config.json chat_template that is neither a string nor a list naming a "default" one is refused naming the field, not called missing', () => {
  for (const [value, message] of [
    [42, /chat_template must be a string, or a list of \{"name", "template"\} with one named "default"; got number/],
    [[{ name: 'default', template: 42 }], /chat_template lists 1 templates but none named "default" with a string template/],
    [[{ name: 'tool_use', template: 'x' }, null], /chat_template lists 2 templates but none named "default" .*names: "tool_use", null/],
  ] as const) {
    const dir = modelDir(base);
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...JSON.parse(config), chat_template: value }));
    refused(() => loadChatTemplate(dir), `${join(dir, 'tokenizer_config.json')}: chat_template`, message);
  }
  // Absent: the model has no template, as before.
  const dir = modelDir(base);
  assert.throws(() => loadChatTemplate(dir), /has no chat template/);
});

test('a chat template that ends inside an open block says so, not what the parser tripped on', () => {
  for (const t of ['{% for m in messages %}{{ m.content }}', '{% if x %}a', '{% set x %}a', '{% macro f() %}a'])
    refused(
      () => new ChatTemplate(t, 'open block'),
      'open block',
      /does not parse: it ends inside a tag .* or a block .* that is never closed/,
    );
  // A tag left open at the very end trips the parser the same way: the message must not send the reader looking for a
  // {% for %} without its {% endfor %} only.
  for (const t of ['{{ m.content }}{{', 'a{%'])
    refused(() => new ChatTemplate(t, 'open tag'), 'open tag', /does not parse: it ends inside a tag \(\{\{ or \{% without/);
  refused(() => new ChatTemplate('{% endfor %}', 'stray end'), 'stray end', /does not parse: Unknown statement type: endfor/);
});
