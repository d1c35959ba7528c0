// Chat-template rendering against transformers' apply_chat_template (fixture from bench/fixtures/make_llm_fixtures.py):
// templates in the style of several model families, exercising whitespace control, trim_blocks/lstrip_blocks,
// filters, namespaces, loop variables and raise_exception.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Template } from '@huggingface/jinja';
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

// The render budget. Chat templates come with the model, so a hostile one must fail fast and deterministically (counted
// steps, characters and nesting, never time), while real templates render exactly as the unbudgeted library renders
// them, using a small part of a budget that grows with the conversation.

const smol = JSON.parse(readFileSync(new URL('./fixtures/smollm2-chat.json', import.meta.url), 'utf8')) as {
  template: string;
  renderings: Array<{ messages: ChatMessage[]; add_generation_prompt: boolean; text: string }>;
};

const REAL_TEMPLATES: Record<string, string> = {
  'SmolLM2-135M-Instruct (the model file)': smol.template,
  ChatML:
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  'Llama-3 style':
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
  'Mistral style':
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}{{- bos_token }}{%- for message in loop_messages %}{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif %}{%- if message['role'] == 'user' %}{%- if loop.last and system_message is defined %}{{- '[INST] ' + system_message + '\\n\\n' + message['content'] + '[/INST]' }}{%- else %}{{- '[INST] ' + message['content'] + '[/INST]' }}{%- endif %}{%- elif message['role'] == 'assistant' %}{{- ' ' + message['content'] + eos_token }}{%- else %}{{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}{%- endif %}{%- endfor %}",
  // Tools, namespaces, macros and the guarded filters (tojson with indent, join, replace, indent), as in
  // Llama 3.1's and Qwen 2.5's tool-calling templates.
  'tool-calling style':
    '{%- macro render_tool(t) -%}{{ t | tojson(indent=4) }}{%- endmacro -%}{%- set ns = namespace(system="", turns=0) -%}{%- if messages[0].role == "system" -%}{%- set ns.system = messages[0].content | trim -%}{%- endif -%}<|system|>{{ ns.system }}{%- if tools is defined %}\n# Tools\n{%- for t in tools %}\n{{ render_tool(t) | indent(2) }}{%- endfor %}\nNames: {{ tools | map(attribute="name") | join(", ") }}{%- endif %}\n{%- for m in messages if m.role != "system" %}{%- set ns.turns = ns.turns + 1 %}<|{{ m.role }}|>{{ m.content.replace("\\r\\n", "\\n") | replace("<|", "< |") }}{% if m.content.startswith("/think") %} (thinking){% endif %}\n{%- endfor %}{%- if add_generation_prompt %}<|assistant|>{%- endif %}[{{ ns.turns }} turns]',
};
const TOOLS = Array.from({ length: 20 }, (_, i) => ({
  name: `tool_${i}`,
  description: 'Looks something up. '.repeat(5),
  parameters: { type: 'object', properties: { q: { type: 'string', description: 'the query' }, n: { type: 'integer' } }, required: ['q'] },
}));
const SPECIALS = { bos_token: '<s>', eos_token: '</s>' };

/** A long conversation: a system message, then user and assistant turns of varied length, lines and scripts. */
function conversation(turns: number, longest = 2_000): ChatMessage[] {
  const out: ChatMessage[] = [{ role: 'system', content: '  You are terse.\nAnswer in English.  ' }];
  for (let i = 0; i < turns; i++) {
    const words = 1 + ((i * 7919) % longest) / 10;
    const content = `${'turn ' + i + ' 日本語 😀 line\r\n'.repeat(1 + (i % 3))}${'word '.repeat(words)}<|im_end|>`;
    out.push({ role: i % 2 === 0 ? 'user' : 'assistant', content });
  }
  return out;
}

test('real templates render exactly as the unbudgeted library renders them, within a small part of their budget', () => {
  for (const r of smol.renderings) {
    const tpl = new ChatTemplate(smol.template, 'smollm2');
    assert.equal(tpl.render(r.messages, { addGenerationPrompt: r.add_generation_prompt }), r.text, "transformers' rendering");
  }
  const cases: Array<[string, ChatMessage[]]> = [
    ['2,000 turns', conversation(2_000)],
    ['one 1,000,000-character message', [{ role: 'user', content: 'a long document. '.repeat(60_000) }]],
  ];
  for (const [name, text] of Object.entries(REAL_TEMPLATES)) {
    for (const [what, messages] of cases) {
      const tpl = new ChatTemplate(text, name, SPECIALS);
      const variables = { tools: TOOLS };
      const got = tpl.renderWithUsage(messages, { addGenerationPrompt: true, variables });
      const expected = new Template(text).render({ ...SPECIALS, ...variables, messages, add_generation_prompt: true });
      assert.ok(got.text === expected, `${name}, ${what}: renders as the library does`);
      for (const k of ['steps', 'work', 'size', 'depth'] as const)
        assert.ok(got.used[k] <= got.limits[k] / 4, `${name}, ${what}: ${k} ${got.used[k]} of ${got.limits[k]}`);
    }
  }
});

test('the budget grows with the conversation: 10,000 turns take more steps than the fixed allowance and still render', () => {
  const messages = conversation(10_000, 100);
  const tpl = new ChatTemplate(REAL_TEMPLATES.ChatML!, 'chatml');
  const got = tpl.renderWithUsage(messages);
  assert.ok(got.used.steps > 100_000, `${got.used.steps} steps`);
  assert.equal(got.text, new Template(REAL_TEMPLATES.ChatML!).render({ messages, add_generation_prompt: false }));
  const short = tpl.renderWithUsage(messages.slice(0, 3));
  assert.ok(short.limits.steps < got.used.steps, 'a short conversation would not have allowed it');
});

/** Renders a hostile template over one short message: it must fail with the budget error naming the template. */
function refused(template: string, detail: RegExp): void {
  const tpl = new ChatTemplate(template, 'hostile.jinja');
  assert.throws(
    () => tpl.render([{ role: 'user', content: 'hi' }]),
    (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, /^hostile\.jinja: chat template exceeds its work budget: /);
      assert.match(e.message, /a real chat template loops over the messages/);
      assert.match(e.message, detail);
      assert.match(e.hint ?? '', /give a template explicitly/);
      return true;
    },
  );
}
/** A namespace holding a string of 2**k characters, built by doubling. */
const doubled = (k: number, seed = 'x') =>
  `{% set ns = namespace(s='${seed}') %}{% for i in range(${k}) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}`;

test('range(10**8) is refused before it allocates (it filled the heap); so is a range the library cannot count', () => {
  refused('{% for i in range(10**8) %}x{% endfor %}', /range\(\) of 100000000 numbers \(at most \d+\)/);
  refused('{{ range(10**8) | length }}', /range\(\) of 100000000 numbers/);
  // The library adds 1 to 1e20 forever.
  assert.throws(
    () => new ChatTemplate('{% for i in range(10**20, 10**20 + 10**6) %}{% endfor %}', 't').render([]),
    (e: unknown) => e instanceof InputError && /chat template failed: range\(\) arguments must be integers/.test(e.message),
  );
  assert.equal(
    new ChatTemplate('{{ range(3) }}{{ range(1, 7, 2) }}{{ range(5, 0, -2) }}{{ range(2, 2) }}', 't').render([]),
    '[0, 1, 2][1, 3, 5][5, 3, 1][]',
  );
});

test('nested loops are counted: three nested range(1000) loops (hours before) stop at the step limit', () => {
  const nested = (body: string) =>
    `{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}${body}{% endfor %}{% endfor %}{% endfor %}`;
  refused(nested(''), /more than \d+ steps \(nodes evaluated and loop iterations\)/);
  refused(nested('x'), /more than \d+ steps/);
  refused(nested('{{ a + b + c }}'), /more than \d+ steps/);
  refused(`{% for a in range(1000) %}{% for b in range(1000) if b > 2000 %}{% endfor %}{% endfor %}`, /more than \d+ steps/);
});

test('a string cannot be multiplied into hundreds of megabytes: doubling, indent, replace, join and tojson widths', () => {
  // The library has no string `*`.
  assert.throws(
    () => new ChatTemplate("{{ 'x' * 10**9 }}", 't').render([]),
    (e: unknown) => e instanceof InputError && /Unknown operator "\*"/.test(e.message),
  );
  refused(`${doubled(40)}{{ ns.s | length }}`, /a value of 1048576 characters \(at most \d+\)/);
  refused(
    "{% set x = 'ab' %}{% for i in range(40) %}{% set x %}{{ x }}{{ x }}{% endset %}{% endfor %}{{ x }}",
    /a value of 1048576 characters/,
  );
  refused("{{ 'a\\nb' | indent(10**8) }}", /indent would build 200000003 characters/);
  refused('{% filter indent(10**8, true) %}a{% endfilter %}', /indent would build 100000001 characters/);
  refused(`${doubled(15)}{{ ns.s | replace('x', '\\n') | indent(ns.s) }}`, /indent would build 1073807360 characters/);
  refused(`${doubled(15)}{{ ns.s.replace('', ns.s) }}`, /replace would build 1073807360 characters/);
  refused(`${doubled(15)}{{ ns.s | replace('x', ns.s) }}`, /replace would build 1073774592 characters/);
  refused(`${doubled(15)}{% set r = ns.s.replace %}{{ r('x', ns.s, count=-1) }}`, /replace would build/);
  refused(`${doubled(15)}{% set r = ns.s.replace %}{% call r('x', ns.s) %}{% endcall %}`, /replace would build/);
  refused(`${doubled(15)}{{ ns.s | join(ns.s) }}`, /join would build \d+ characters/);
  refused(`${doubled(15)}{{ range(10**5) | join(ns.s) }}`, /join would build \d+ characters/);
  refused("{{ [[[['x']]]] | tojson(indent=10**8) }}", /tojson would build \d+ characters/);
  refused(`${doubled(12)}{{ range(1000) | tojson(separators=(ns.s, ns.s)) }}`, /tojson would build \d+ characters/);
});

test('lists that hold each other are measured as written out: 60 doublings of a shared list are refused', () => {
  refused(
    "{% set ns = namespace(a=['x']) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a | tojson }}",
    /a value of more than \d+ characters/,
  );
  refused(
    '{% set ns = namespace(l=[]) %}{% for i in range(200) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}',
    /a value nests deeper than 128/,
  );
  refused('{% set ns = namespace() %}{% set ns.me = [ns] %}{{ ns | tojson }}', /a namespace holds itself/);
});

test('macro recursion is bounded: endless recursion by depth, branching recursion by steps', () => {
  refused(
    '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
    /evaluations nest deeper than 128 \(a macro that calls itself without end\?\)/,
  );
  refused('{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}', /more than \d+ steps/);
  // Within the depth limit, recursion renders.
  assert.equal(
    new ChatTemplate('{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(5) }}', 't').render([]),
    '54321',
  );
});

test('scanning a long string over and over is charged by its length (work), within the step and size limits', () => {
  refused(
    `${doubled(19)}{% for i in range(1000) %}{% if 'zz' in ns.s %}{% endif %}{% endfor %}`,
    /more than \d+ characters and items built or scanned/,
  );
  refused(
    `${doubled(18, 'x,')}{% for i in range(1000) %}{% set p = ns.s.split(',') %}{% endfor %}`,
    /more than \d+ characters and items built or scanned/,
  );
  refused(
    `{% set ns = namespace(l=[]) %}{% for i in range(20000) %}{% set ns.l = ns.l + [i] %}{% endfor %}`,
    /more than \d+ characters and items built or scanned/,
  );
});

test('the output is bounded too: a loop that writes a long string over and over is refused without building it', () => {
  refused(`${doubled(19)}{% for i in range(1000) %}{{ ns.s }}{% endfor %}`, /a value of 524288000 characters \(at most \d+\)/);
  refused(`${doubled(19)}{% for i in range(3000) %}{{ ns.s }}{% endfor %}`, /the output passes the longest string JavaScript can hold/);
  refused(
    `${doubled(19)}{% filter upper %}{% for i in range(1000) %}{{ ns.s }}{% endfor %}{% endfilter %}`,
    /a value of 524288000 characters/,
  );
});

// A security review found that joining strings is charged only for the new characters (V8 makes a rope), while reading
// one character of the result copied the whole rope flat for free: 2,600 top-level variables of a 1 MB rope read once
// each took 4.3 GB and crashed the heap, 14,000 fresh ropes indexed in a loop took 6 s (30 s with the limits raised
// by a 50 KB comment). These are the same templates with smaller strings.

/** A top-level string of 2**k euro signs, built by doubling a 16-character one. */
const euros = (k: number) => `{%- set s = '${'€'.repeat(16)}' -%}${'{%- set s = s ~ s -%}'.repeat(k - 4)}`;

test('reading a character of a fresh rope costs the whole string: the reviewer’s loop of (s ~ "x")[0] is refused', () => {
  refused(
    `${euros(17)}{%- for i in range(14000) -%}{%- set c = (s ~ 'x')[0] -%}{%- endfor -%}{{ s|length }}`,
    /more than \d+ characters and items built or scanned/,
  );
  // Every way of reading a string's characters is charged, in a loop where nothing is kept.
  const reads = ['v[0]', 'v[-1]', 'v[:1]', 'v | trim', "v.startswith('x')", "v == 'x'", "'y' in v", 'd[v]', 'v is lower', 'v | tojson'];
  for (const read of reads)
    refused(
      `${euros(17)}{%- set d = {} -%}{%- for i in range(2000) -%}{%- set v = s ~ i -%}{%- set _ = ${read} -%}{%- endfor -%}`,
      /more than \d+ characters and items built or scanned/,
    );
  // The length of a rope, its truthiness and writing it out do not read it: building stays linear.
  const tpl = new ChatTemplate(
    `${euros(17)}{% for i in range(200) %}{% set v = s ~ i %}{% if v %}{{ v | length }}{% endif %}{% endfor %}`,
    't',
  );
  assert.match(tpl.render([{ role: 'user', content: 'hi' }]), /^(131073|131074|131075)+$/);
});

test('what variables hold is counted together: the reviewer’s 2,600 top-level copies of a 1 MB rope are refused', () => {
  const copies = (n: number, target: (i: number) => string) =>
    Array.from({ length: n }, (_, i) => `{%- set ${target(i)} = s ~ '${i}' -%}{%- set _ = ${target(i)}[0] -%}`).join('');
  refused(`${euros(17)}\n${copies(2600, (i) => `v${i}`)}`, /variables holding \d+ characters together \(at most \d+\)/);
  refused(`${euros(17)}{%- set ns = namespace() -%}\n${copies(2600, (i) => `ns.v${i}`)}`, /variables holding \d+ characters together/);
  // Without the reads, the copies would be ropes: still refused, as what a variable holds can be read later.
  refused(`${euros(17)}\n${Array.from({ length: 100 }, (_, i) => `{%- set v${i} = s ~ '${i}' -%}`).join('')}`, /variables holding/);
  // A variable counts what it holds now: setting one variable over and over (a real template's accumulator) is fine.
  const acc = new ChatTemplate(
    `{%- set ns = namespace(out='') -%}{%- for m in messages -%}{%- set ns.out = ns.out ~ m.content -%}{%- set ns.last = ns.out -%}{%- endfor -%}{{ ns.last | length }}`,
    't',
  );
  assert.equal(acc.render(conversation(2_000, 100)), String(conversation(2_000, 100).reduce((n, m) => n + m.content.length, 0)));
});

test('a template cannot raise its own limits by its length: a 50 KB comment adds nothing, padding counts nodes up to a cap', () => {
  const body = '{{ messages[0].content }}';
  const limits = (text: string) => new ChatTemplate(text, 't').renderWithUsage([{ role: 'user', content: 'hi' }]).limits;
  const plain = limits(body);
  const commented = limits(`{#${'p'.repeat(50_000)}#}${body}`);
  assert.ok(commented.steps - plain.steps <= 10 && commented.work - plain.work <= 100, JSON.stringify([plain, commented]));
  // Padding with nodes that never run: 20,000 and 40,000 nodes buy the same, and no more than the fixed allowance.
  const padded = (n: number) => limits(`{% if false %}${'{{ 1 }}'.repeat(n)}{% endif %}${body}`);
  assert.deepEqual(padded(20_000), padded(40_000));
  assert.ok(padded(40_000).steps <= 2 * plain.steps && padded(40_000).work <= 1.3 * plain.work, JSON.stringify(padded(40_000)));
  refused(
    `{#${'p'.repeat(50_000)}#}${euros(17)}{%- for i in range(80000) -%}{%- set c = (s ~ 'x')[0] -%}{%- endfor -%}`,
    /more than \d+ characters and items built or scanned/,
  );
});

test('a loop is charged for the items it copies before its first iteration', () => {
  refused(
    `{% set big = range(500000) | list %}{% for i in range(2000) %}{% for x in big %}{% break %}{% endfor %}{% endfor %}`,
    /more than \d+ characters and items built or scanned/,
  );
});
