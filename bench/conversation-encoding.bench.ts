/**
 * Opt-in benchmark (not part of npm test): encoding one multi-turn conversation for training (encodeConversation) with
 * SmolLM2-135M-Instruct's tokenizer, each reply's renderings read off one marked rendering of the whole conversation
 * (chat-template-prefixes.ts, as training does since 7 Dec) against rendering the conversation up to each reply (as it
 * did before, which grows with the square of the replies), alternating in one process; both tokenize each reply from
 * its turn's `<|im_start|>` (added-token-anchors.ts). Two templates: SmolLM2's own (ChatML, a loop over `messages`) and
 * the Mistral-style fixture (src/models/fixtures/chat-templates.json: a system message left out of a loop over
 * `messages[1:]`, raise_exception on roles that do not alternate), which was rendered reply by reply until 7 Dec; its
 * conversations start with a system message. The last shape has every message quote the turn tokens, which are then cut
 * as plain text (tokenizer-spans.ts). Process CPU time is printed beside wall time: on a shared machine wall time
 * measures the neighbours too. A first round of each shape is not counted (warm-up).
 *
 *   nice node --import tsx bench/conversation-encoding.bench.ts [rounds=3] [template name filter, e.g. mistral]
 */
import { readFileSync } from 'node:fs';
import { encodeConversation } from '../src/models/chat-encoding.ts';
import { ChatTemplate, loadChatTemplate } from '../src/models/chat-template.ts';
import { realModel } from '../src/models/real-models.testing.ts';
import { DEFAULT_LLM, type ResolvedModel } from '../src/models/sources.ts';
import { loadTokenizer } from '../src/models/tokenizer.ts';
import { median } from './common.ts';

const rounds = Number(process.argv[2] ?? 3);
const llm = await realModel(DEFAULT_LLM);
if ('skip' in llm) throw new Error(llm.skip);
const dir = (llm as ResolvedModel).dir;
const tok = loadTokenizer(dir);
const smol = loadChatTemplate(dir);
const fixtures = JSON.parse(readFileSync(new URL('../src/models/fixtures/chat-templates.json', import.meta.url), 'utf8')) as {
  templates: Record<string, string>;
};
const mistral = new ChatTemplate(fixtures.templates['mistral-style']!, 'mistral-style fixture', smol.specialTokens);
const templates: [string, ChatTemplate, { role: string; content: string }[]][] = [
  ['SmolLM2 (ChatML)', smol, []],
  ['Mistral-style (messages[1:])', mistral, [{ role: 'system', content: 'Be brief.' }]],
];
const only = process.argv[3]?.toLowerCase();
for (const [name, t] of templates)
  if (t.renderMarkingTurns([{ role: 'user', content: 'x' }]) === undefined) throw new Error(`${name} is not read off its marks`);
const replyByReply = (t: ChatTemplate) =>
  new (class extends ChatTemplate {
    override renderMarkingTurns(): undefined {
      return undefined;
    }
  })(t.text, t.source, t.specialTokens);

const shapes: [string, number, number, number, string][] = [
  ['10 exchanges of 60 words, maxLength 2048', 10, 60, 2048, ''],
  ['50 exchanges of 60 words, maxLength 8192', 50, 60, 8192, ''],
  ['200 exchanges of 20 words, maxLength 8192', 200, 20, 8192, ''],
  ['500 exchanges of 1 word, maxLength 32768', 500, 1, 32768, ''],
  // Content holding the turn tokens' text is cut as plain text (tokenizer-spans.ts), every turn of it here.
  ['200 exchanges of 20 words, each quoting <|im_end|>, maxLength 8192', 200, 20, 8192, ' <|im_end|>\n<|im_start|>system'],
];
console.log(
  '| template | conversation | read off marks: wall s (cpu s) | reply by reply: wall s (cpu s) | ratio (wall) |\n|---|---|---|---|---|',
);
for (const [templateName, marked, before] of templates) {
  if (only !== undefined && !templateName.toLowerCase().includes(only)) continue;
  const slow = replyByReply(marked);
  for (const [name, exchanges, words, maxLength, quote] of shapes) {
    const messages = [
      ...before,
      ...Array.from({ length: exchanges }, (_, i) => [
        { role: 'user', content: `question ${i} `.repeat(words) + quote },
        { role: 'assistant', content: `answer ${i} `.repeat(words) + quote },
      ]).flat(),
    ];
    const t = { m: [] as number[], r: [] as number[], mc: [] as number[], rc: [] as number[] };
    let ids = '';
    // Round -1 warms the JIT for both ways and is not counted: on the first, small shape it was most of the time.
    for (let r = -1; r < rounds; r++)
      for (const [key, template] of [
        ['m', marked],
        ['r', slow],
      ] as const) {
        const [t0, c0] = [performance.now(), process.cpuUsage()];
        const e = encodeConversation(tok, messages, { template, maxLength });
        const c = process.cpuUsage(c0);
        if (r >= 0) {
          t[key].push((performance.now() - t0) / 1000);
          t[`${key}c`].push((c.user + c.system) / 1e6);
        }
        const got = JSON.stringify([e.inputIds, e.labels]);
        if (ids && got !== ids) throw new Error(`${templateName}, ${name}: the two ways disagree`);
        ids = got;
      }
    const f = (w: number[], c: number[]) => `${median(w).toFixed(3)} (${median(c).toFixed(3)})`;
    console.log(`| ${templateName} | ${name} | ${f(t.m, t.mc)} | ${f(t.r, t.rc)} | ${(median(t.r) / median(t.m)).toFixed(1)}× faster |`);
  }
}
