// Reading each reply's renderings off one marked rendering of the whole conversation (chat-template-prefixes.ts) must
// encode every conversation exactly as rendering each reply's beginnings one by one does, errors included, and must
// not render once per reply.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { encodeConversation } from './chat-encoding.ts';
import type { RenderLimits } from './chat-template-budget.ts';
import { ChatTemplate, loadChatTemplate, type ChatMessage, type RenderOptions } from './chat-template.ts';
import { outcome } from './conversation-encoding.testing.ts';
import { realModel } from './real-models.testing.ts';
import { DEFAULT_LLM, type ResolvedModel } from './sources.ts';
import { tinyGpt2Dir } from './tiny.testing.ts';
import { loadTokenizer, type HfTokenizer } from './tokenizer.ts';

const root = mkdtempSync(join(tmpdir(), 'prefixes-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const tiny = loadTokenizer(tinyGpt2Dir(join(root, 'm'), 1));

const FIXTURE_TEMPLATES = JSON.parse(readFileSync(new URL('./fixtures/chat-templates.json', import.meta.url), 'utf8')).templates as Record<
  string,
  string
>;

/** Templates on the tiny tokenizer, each one loop over the messages that can be read off its whole rendering. */
const TINY_TEMPLATES = [
  '{% for m in messages %}<{{ m.role }}>{{ m.content }}<|endoftext|>\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}',
  // SmolLM2's shape (a default system turn decided from messages[0]), with a generation prompt that only replies
  // starting with "a" continue (the others are refused).
  "{% for m in messages %}{% if loop.first and messages[0]['role'] != 'system' %}<system>be kind<|endoftext|>\n{% endif %}<{{ m.role }}>\n{{ m.content | trim }}<|endoftext|>{{ '\\n' if loop.index0 % 2 == 0 else ' ' }}{% endfor %}{% if add_generation_prompt %}<assistant>\na{% endif %}",
  // State carried through the loop, a turn that differs on the first message, text before the loop.
  '{% set ns = namespace(n=0) %}[{{ messages[0].role }}]{% for m in messages %}{% set ns.n = ns.n + 1 %}{% if not loop.first %}\n{% endif %}<{{ m.role }}>{{ m.content }}({{ ns.n }})<|endoftext|>{% endfor %}{% if add_generation_prompt %}\n<assistant>{% endif %}',
  // Text after the loop that no turn starts with: only the last reply can be located, the others are refused.
  '{% for m in messages %}\n<{{ m.role }}>{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}\n<assistant>{% else %}.{% endif %}',
  // The generation prompt written inside the loop, after the last turn (TinyLlama's and Zephyr's way).
  '{% for m in messages %}<{{ m.role }}>{{ m.content }}<|endoftext|>\n{% if loop.last and add_generation_prompt %}<assistant>{% endif %}{% endfor %}',
  // A turn skipped, or one that reads the turn before it; a loop that stops before the messages end.
  "{% for m in messages %}{% if m.role == 'system' %}{% continue %}{% endif %}{% if loop.previtem is defined and loop.previtem.role == m.role %}+{% endif %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% if loop.last and add_generation_prompt %}<assistant>{% endif %}{% endfor %}",
  '{% for m in messages %}{% if loop.index0 == 3 %}{% break %}{% endif %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}',
  FIXTURE_TEMPLATES['zephyr-style (trim_blocks, lstrip_blocks)'],
  // Mistral's: a system message left out of the loop (`loop_messages = messages[1:]`) and written in the first turn,
  // raise_exception where the roles do not alternate.
  FIXTURE_TEMPLATES['mistral-style'],
  // The loop over `messages[1:]` itself, messages[0] written before it; and over a variable set in both branches, with
  // the generation prompt in the loop.
  "{{ messages[0]['role'] }}:{{ messages[0]['content'] }}|{% for m in messages[1:] %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
  "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set rest = messages[1:] %}{% else %}{% set rest = messages %}{% endif %}{% for m in rest %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('roles must alternate') }}{% endif %}{% if loop.first and sys is defined %}[{{ sys }}]{% endif %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% if loop.last and add_generation_prompt %}<assistant>{% endif %}{% endfor %}",
].map((t, i) => new ChatTemplate(t, `template ${i}`, { eos_token: '<|endoftext|>' }));

/** The same template rendered reply by reply, as encodeConversation did before. */
function replyByReply(t: ChatTemplate): ChatTemplate {
  return new (class extends ChatTemplate {
    override renderMarkingTurns(): undefined {
      return undefined;
    }
  })(t.text, t.source, t.specialTokens);
}

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
  '🙂',
  '<',
  '|',
  'assistant',
  // The marks' own characters: such a conversation is rendered reply by reply.
  '\uFFFF',
  '\uFFFE',
);
const text = fc.array(piece, { minLength: 0, maxLength: 6 }).map((p) => p.join(''));
const message = fc.tuple(fc.constantFrom('system', 'user', 'assistant', 'assistant'), text, fc.constantFrom(0, 1, 1));
const conversation = fc.oneof(
  fc.array(message, { minLength: 1, maxLength: 8 }).map((ms) => ms.map(([role, content, weight]) => ({ role, content, weight }))),
  // Roles that alternate after an optional system message, as Mistral's template requires.
  fc
    .tuple(fc.option(text, { nil: undefined }), fc.array(fc.tuple(text, text, fc.constantFrom(0, 1, 1)), { minLength: 1, maxLength: 4 }))
    .map(([system, exchanges]) => [
      ...(system === undefined ? [] : [{ role: 'system', content: system }]),
      ...exchanges.flatMap(([u, a, weight]) => [
        { role: 'user', content: u },
        { role: 'assistant', content: a, weight },
      ]),
    ]),
);

function sameAsReplyByReply(tok: HfTokenizer, template: ChatTemplate, runs: number) {
  assert.notEqual(template.renderMarkingTurns([{ role: 'user', content: 'x' }]), undefined, `${template.source} is read off its marks`);
  const slow = replyByReply(template);
  fc.assert(
    fc.property(conversation, fc.option(fc.integer({ min: 4, max: 80 }), { nil: undefined }), (messages, maxLength) => {
      assert.deepEqual(outcome(tok, messages, template, maxLength), outcome(tok, messages, slow, maxLength));
    }),
    { seed: 20261207, numRuns: runs },
  );
}

for (const t of TINY_TEMPLATES)
  test(`${t.source} on the tiny tokenizer: every conversation encodes as rendering reply by reply does`, () => {
    sameAsReplyByReply(tiny, t, 300);
  });

const llm = await realModel(DEFAULT_LLM);
test(
  "SmolLM2-135M-Instruct's tokenizer and template: every conversation encodes as rendering reply by reply does",
  { skip: 'skip' in llm ? llm.skip : false },
  () => {
    const dir = (llm as ResolvedModel).dir;
    sameAsReplyByReply(loadTokenizer(dir), loadChatTemplate(dir), 150);
  },
);

test("the marked rendering takes at least the budget of any beginning's rendering with the generation prompt, and the whole rendering of any without", () => {
  // So a conversation whose marked and whole renderings are within its budget has every beginning within it: read off
  // the marks or reply by reply, it is accepted or refused alike (chat-template-prefixes.ts, the budget). The
  // generation-prompt if of Zephyr's shape, evaluated as only `add_generation_prompt`, took less work and nesting than
  // its `loop.last and add_generation_prompt` takes in a beginning.
  const within = (part: RenderLimits, all: RenderLimits, what: string) => {
    for (const key of ['steps', 'work', 'size', 'depth'] as const)
      assert.ok(part[key] <= all[key], `${what}: ${key} ${part[key]} > ${all[key]}`);
  };
  const usage = (t: ChatTemplate, messages: ChatMessage[], addGenerationPrompt: boolean) => {
    try {
      return t.renderWithUsage(messages, { addGenerationPrompt }).used;
    } catch {
      return undefined; // raise_exception, as in Mistral's on roles that do not alternate
    }
  };
  for (const t of TINY_TEMPLATES)
    fc.assert(
      fc.property(conversation, (convo) => {
        const messages = convo.map(({ role, content }) => ({ role, content }));
        const whole = usage(t, messages, false);
        let marked: RenderLimits | undefined;
        try {
          marked = t.renderMarkingTurns(messages, { addGenerationPrompt: true })!.used;
        } catch {
          return;
        }
        if (whole === undefined) return;
        for (let k = 1; k < messages.length; k++) {
          const head = usage(t, messages.slice(0, k), true);
          const upTo = usage(t, messages.slice(0, k + 1), false);
          if (head !== undefined) within(head, marked, `${t.source}: messages before ${k} with the generation prompt`);
          if (upTo !== undefined) within(upTo, whole, `${t.source}: messages through ${k}`);
        }
      }),
      { seed: 20261207, numRuns: 100 },
    );
});

test('templates that can tell how many messages follow, or whether a generation prompt comes, are rendered reply by reply', () => {
  const lookingAhead = [
    "{% for m in messages %}<{{ m.role }}>{% if m.role != 'assistant' or loop.last %}{{ m.content }}{% endif %}<|endoftext|>{% endfor %}",
    '{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ loop.length }}{% endfor %}',
    '{% for m in messages %}{{ m.content }}{% endfor %}{{ messages | length }}',
    '{% for m in messages %}{{ m.content }}{% if messages[1] is defined %}!{% endif %}{% endfor %}',
    '{% for m in messages %}{{ m.content }}{% if add_generation_prompt %}?{% endif %}{% endfor %}',
    '{% set ns = namespace(last=none) %}{% for m in messages %}{{ m.content }}{% set ns.last = m.role %}{% endfor %}{{ ns.last }}',
    '{% for m in messages %}{{ m.content }}{% endfor %}{% for m in messages %}{{ m.role }}{% endfor %}',
    '{% macro turn(m) %}{{ m.content }}{% endmacro %}{% for m in messages %}{{ turn(m) }}{% endfor %}{{ add_generation_prompt }}',
    '{% if true %}{% for m in messages %}{{ m.content }}{% endfor %}{% endif %}',
    // The generation prompt in the loop, but not at the end of its body, or with an else, or setting what it writes.
    '{% for m in messages %}{% if loop.last and add_generation_prompt %}<a>{% endif %}{{ m.content }}{% endfor %}',
    '{% for m in messages %}{{ m.content }}{% if loop.last and add_generation_prompt %}<a>{% else %}.{% endif %}{% endfor %}',
    '{% set ns = namespace(p=0) %}{% for m in messages %}{{ m.content }}{% if loop.last and add_generation_prompt %}{% set ns.p = 1 %}<a>{% endif %}{% endfor %}',
    '{% for m in messages %}{{ m.content }}{% if loop.last or add_generation_prompt %}<a>{% endif %}{% endfor %}',
    // A loop over the messages from one on: from the end, up to one, read elsewhere, not set whichever way the if
    // goes, set again in the loop, or one that breaks (its turns' count would no longer tell where it starts).
    '{% for m in messages[-1:] %}{{ m.content }}{% endfor %}',
    '{% for m in messages[1:3] %}{{ m.content }}{% endfor %}',
    '{% set rest = messages[1:] %}{% for m in rest %}{{ m.content }}{% endfor %}{{ rest | length }}',
    "{% if messages[0]['role'] == 'system' %}{% set rest = messages[1:] %}{% endif %}{% for m in rest %}{{ m.content }}{% endfor %}",
    '{% set rest = messages[1:] %}{% for m in rest %}{% set rest = messages %}{{ m.content }}{% endfor %}',
    '{% macro again() %}{% set rest = messages %}{% endmacro %}{% set rest = messages[1:] %}{% for m in rest %}{{ m.content }}{% endfor %}',
    '{% for m in messages[1:] %}{% if loop.index0 == 2 %}{% break %}{% endif %}{{ m.content }}{% endfor %}',
    // The variable set in ifs nested deeper than judged (a hostile template's nest overflowed the stack).
    `${'{% if true %}'.repeat(2000)}{% set rest = messages[1:] %}${'{% else %}{% set rest = messages %}{% endif %}'.repeat(2000)}{% for m in rest %}{{ m.content }}{% endfor %}`,
    // Mistral v0.3's: the system message written in the last user turn.
    "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set rest = messages[1:] %}{% else %}{% set rest = messages %}{% endif %}{% for m in rest %}{% if loop.last and sys is defined %}[{{ sys }}]{% endif %}{{ m.content }}{% endfor %}",
  ];
  for (const t of lookingAhead)
    assert.equal(new ChatTemplate(t, 'ahead').renderMarkingTurns([{ role: 'user', content: 'x' }]), undefined, t);
  // One of them, whose earlier turns do change: still refused, naming the reply.
  const rewriting = new ChatTemplate(`${lookingAhead[0]}{% if add_generation_prompt %}<assistant>{% endif %}`, 'rewriting');
  const convo = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Name?' },
    { role: 'assistant', content: 'Bo' },
  ];
  assert.throws(() => encodeConversation(tiny, convo, { template: rewriting }, 'row 7'), /rewrites earlier turns/);
});

test("marks the template writes itself, in its text or in a special token, are not taken for a turn's", () => {
  // Written only with the generation prompt (never in the whole rendering) and with a loop that breaks before the
  // messages end, they made up the count of marks: reply 1 was located on the template's own text, where rendering reply
  // by reply refuses it.
  const loop =
    '{% for m in messages %}{% if loop.index0 == 2 %}{% break %}{% endif %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% endfor %}';
  const convo = [
    { role: 'user', content: 'a' },
    { role: 'assistant', content: 'b' },
    { role: 'user', content: 'c' },
    { role: 'user', content: 'd' },
  ];
  const templates = [
    new ChatTemplate(`${loop}{% if add_generation_prompt %}{{ '\\uFFFF\\uFFFF' }}<assistant>{% endif %}`, 'escaped marks'),
    new ChatTemplate(`${loop}{% if add_generation_prompt %}{{ bos_token }}<assistant>{% endif %}`, 'marks in bos_token', {
      bos_token: '\uFFFF\uFFFF',
    }),
  ];
  for (const t of templates) {
    const slow = outcome(tiny, convo, replyByReply(t));
    assert.match((slow as { error: string }).error, /renders the conversation with this reply differently/);
    assert.deepEqual(outcome(tiny, convo, t), slow, t.source);
  }
  assert.equal(templates[0]!.renderMarkingTurns(convo), undefined);
  // So must one whose loop leaves out messages at the start, told from the count of its turns.
  const sliced = new ChatTemplate(
    "{% for m in messages[1:] %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}{{ '\\uFFFF' }}<assistant>{% endif %}",
    'escaped mark, sliced loop',
  );
  assert.equal(sliced.renderMarkingTurns(convo), undefined);
  assert.notEqual(new ChatTemplate(sliced.text.replace("{{ '\\uFFFF' }}", ''), 'sliced loop').renderMarkingTurns(convo), undefined);
});

test('a namespace the loop writes into, read after the loop under another name, is rendered reply by reply', () => {
  // The text after the loop saw the whole conversation's count where each beginning's rendering sees its own: read off
  // the marks, reply 1's generation prompt had the space the count of 4 writes, and the space was left out of its labels.
  const count = (before: string, after: string) =>
    new ChatTemplate(
      `{% set ns = namespace(c=0) %}${before}{% for m in messages %}{% set ns.c = ns.c + 1 %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}<assistant>{% if ${after} >= 4 %} {% endif %}{% endif %}`,
      `${before} … ${after}`,
    );
  const aliased = [
    count('{% set alias = ns %}', "alias['c']"),
    count('{% set held = [ns] %}', "held[0]['c']"),
    count('{% set outer = namespace(inner=ns) %}', "outer['inner']['c']"),
    count(
      "{% set outer = namespace(inner=namespace(c=0)) %}{% set d = {'k': outer.inner} %}{% set namespace = d.get %}{% set ns = namespace('k') %}",
      "outer['inner']['c']",
    ),
  ];
  const convo = [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: ' there' },
    { role: 'user', content: 'yo' },
    { role: 'assistant', content: ' ok' },
  ];
  for (const t of aliased) {
    assert.equal(t.renderMarkingTurns(convo), undefined, t.source);
    assert.deepEqual(outcome(tiny, convo, t), outcome(tiny, convo, replyByReply(t)), t.source);
  }
  // Read by its own name only, the namespace is still read off the marks (TINY_TEMPLATES[2] writes its count in turns).
  assert.notEqual(count('', '0').renderMarkingTurns(convo), undefined);
});

test('a loop over messages[c:] that continues is rendered reply by reply: a turn it skips is not a message left out at the start', () => {
  // The library drops what an iteration wrote when it continues, its mark included: the empty user message made the
  // count of turns say one message was left out at the start, and reply 1 was located on the user's turn before it
  // (labels on '<user>hi<|endoftext|>', none on the reply).
  const turn = "{% if m.content == '' %}{% continue %}{% endif %}<{{ m.role }}>{{ m.content }}<|endoftext|>";
  const templates = [
    new ChatTemplate(`{% for m in messages[0:] %}${turn}{% endfor %}`, 'sliced loop that continues'),
    new ChatTemplate(
      `{% if messages[0].role == 'system' %}{% set rest = messages[1:] %}{% else %}{% set rest = messages %}{% endif %}{% for m in rest %}${turn}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}`,
      'Mistral-style loop that continues',
    ),
  ];
  const convo = [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'yo' },
    { role: 'user', content: '' },
    { role: 'assistant', content: 'ok' },
  ];
  for (const t of templates) {
    assert.equal(t.renderMarkingTurns(convo), undefined, t.source);
    assert.deepEqual(outcome(tiny, convo, t), outcome(tiny, convo, replyByReply(t)), t.source);
  }
  // Over `messages` itself it stays read off the marks: a turn fewer than messages there sends the conversation reply
  // by reply (TINY_TEMPLATES[5]).
  assert.notEqual(
    new ChatTemplate(`{% for m in messages %}${turn}{% endfor %}`, 'loop that continues').renderMarkingTurns(convo),
    undefined,
  );
});

test('a conversation of many replies is rendered a few times, not once per reply', () => {
  let renders = 0;
  const counting = new (class extends ChatTemplate {
    override render(messages: ChatMessage[], opts?: RenderOptions): string {
      renders++;
      return super.render(messages, opts);
    }
    override renderMarkingTurns(messages: ChatMessage[], opts?: RenderOptions): ReturnType<ChatTemplate['renderMarkingTurns']> {
      renders++;
      return super.renderMarkingTurns(messages, opts);
    }
  })(TINY_TEMPLATES[0]!.text, 'counting');
  const messages = Array.from({ length: 200 }, (_, i) => [
    { role: 'user', content: `question ${i}` },
    { role: 'assistant', content: `answer ${i}` },
  ]).flat();
  const e = encodeConversation(tiny, messages, { template: counting });
  assert.deepEqual(
    [e.turnsCut, e.lossTokens],
    [0, messages.filter((m) => m.role === 'assistant').reduce((n, m) => n + m.content.length + 1, 0)],
  );
  // The whole conversation as it is, with placeholders (chat-template-spans.ts), and marked with the generation prompt.
  // Reply by reply it was 2 + 2 × 200.
  assert.equal(renders, 3);
});

test("every rendering of a conversation's beginnings gets the whole conversation's budget, on either path", () => {
  // Heavy work on the first turn only: it fits the budget of the whole conversation (which grows with the messages)
  // but not that of its first message alone. Read off the marks it was accepted, rendered reply by reply refused at
  // reply 1: whether a row trains depended on which path encoded it.
  const heavy = (n: number) =>
    new ChatTemplate(
      `{% for m in messages %}{% if loop.first %}{% for i in range(${n}) %}{% endfor %}{% endif %}<{{ m.role }}>{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}`,
      'heavy first turn',
    );
  const convo = Array.from({ length: 4 }, (_, i) => [
    { role: 'user', content: `q${i}` },
    { role: 'assistant', content: `a${i}` },
  ]).flat();
  const probe = heavy(0);
  const first = probe.renderWithUsage(convo.slice(0, 1), { addGenerationPrompt: true });
  const whole = probe.renderWithUsage(convo);
  // Over the first message's budget by 1,000 steps, within the whole conversation's.
  const n = first.limits.steps + 1_000;
  assert.ok(whole.used.steps + n + 100 < whole.limits.steps, 'the premise: the whole conversation renders within its budget');
  const t = heavy(n);
  assert.throws(() => t.render(convo.slice(0, 1), { addGenerationPrompt: true }), /exceeds its work budget/);
  const fast = outcome(tiny, convo, t);
  assert.deepEqual(fast, outcome(tiny, convo, replyByReply(t)));
  assert.equal((fast as { error?: string }).error, undefined);
  assert.equal((fast as { lossTokens: number }).lossTokens, 4 * 3);
  // A conversation whose whole rendering is over its budget is refused on both paths alike.
  const over = heavy(whole.limits.steps);
  const refused = outcome(tiny, convo, over);
  assert.match((refused as { error: string }).error, /exceeds its work budget/);
  assert.deepEqual(refused, outcome(tiny, convo, replyByReply(over)));
});
