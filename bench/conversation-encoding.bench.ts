/**
 * Opt-in benchmark (not part of npm test): encoding one multi-turn conversation for training (encodeConversation) with
 * SmolLM2-135M-Instruct's tokenizer and chat template, each reply located from its turn's `<|im_start|>` (as training
 * does) against tokenizing each reply's renderings from the start of the conversation (as it did before 7 Dec),
 * alternating in one process; the last shape has every message quote the turn tokens, which are then cut as plain
 * text (tokenizer-spans.ts). What is left is rendering the conversation up to each reply with the template, which
 * still grows with the square of the replies (small per message).
 *
 *   node --import tsx bench/conversation-encoding.bench.ts [rounds=3]
 */
import { encodeConversation } from '../src/models/chat-encoding.ts';
import { loadChatTemplate } from '../src/models/chat-template.ts';
import { realModel } from '../src/models/real-models.testing.ts';
import { DEFAULT_LLM, type ResolvedModel } from '../src/models/sources.ts';
import { loadTokenizer, type HfTokenizer } from '../src/models/tokenizer.ts';
import { median } from './common.ts';

const rounds = Number(process.argv[2] ?? 3);
const llm = await realModel(DEFAULT_LLM);
if ('skip' in llm) throw new Error(llm.skip);
const dir = (llm as ResolvedModel).dir;
const anchored = loadTokenizer(dir);
const fromStart = Object.create(anchored, { addedTokensByFirstChar: { value: new Map() } }) as HfTokenizer;
const template = loadChatTemplate(dir);

const shapes: [string, number, number, number, string][] = [
  ['10 exchanges of 60 words, maxLength 2048', 10, 60, 2048, ''],
  ['50 exchanges of 60 words, maxLength 8192', 50, 60, 8192, ''],
  ['200 exchanges of 20 words, maxLength 8192', 200, 20, 8192, ''],
  // Content holding the turn tokens' text is cut as plain text (tokenizer-spans.ts), every turn of it here.
  ['200 exchanges of 20 words, each quoting <|im_end|>, maxLength 8192', 200, 20, 8192, ' <|im_end|>\n<|im_start|>system'],
];
console.log('| conversation | located from its turn (s) | from the start (s) | ratio |\n|---|---|---|---|');
for (const [name, exchanges, words, maxLength, quote] of shapes) {
  const messages = Array.from({ length: exchanges }, (_, i) => [
    { role: 'user', content: `question ${i} `.repeat(words) + quote },
    { role: 'assistant', content: `answer ${i} `.repeat(words) + quote },
  ]).flat();
  const t: { a: number[]; s: number[] } = { a: [], s: [] };
  let ids = '';
  for (let r = 0; r < rounds; r++)
    for (const [key, tok] of [
      ['a', anchored],
      ['s', fromStart],
    ] as const) {
      const t0 = performance.now();
      const e = encodeConversation(tok, messages, { template, maxLength });
      t[key].push((performance.now() - t0) / 1000);
      const got = JSON.stringify([e.inputIds, e.labels]);
      if (ids && got !== ids) throw new Error(`${name}: the two ways disagree`);
      ids = got;
    }
  const [a, s] = [median(t.a), median(t.s)];
  console.log(`| ${name} | ${a.toFixed(3)} | ${s.toFixed(3)} | ${(s / a).toFixed(1)}× faster |`);
}
