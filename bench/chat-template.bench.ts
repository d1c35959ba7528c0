/**
 * Opt-in benchmark (not part of npm test): what the chat-template work budget (src/models/chat-template-budget.ts)
 * costs a render, against the plain @huggingface/jinja Template rendering the same template, alternating, in the same
 * process. Templates: SmolLM2's ChatML (the shipped LLM's) on a training-sized conversation (a system-less user
 * turn and a one-word answer, as instruct.yaml renders each row), and the same on a 50-turn conversation.
 *
 *   node --import tsx bench/chat-template.bench.ts [renders=20000] [rounds=3]
 */
import { Template } from '@huggingface/jinja';
import { ChatTemplate, type ChatMessage } from '../src/models/chat-template.ts';
import { median } from './common.ts';

const [renders, rounds] = [20000, 3].map((d, i) => Number(process.argv[2 + i] ?? d)) as [number, number];
const SMOLLM2 =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
const row: ChatMessage[] = [
  {
    role: 'user',
    content:
      'Is the sentiment of this movie review positive or negative? Answer with one word.\n' + 'a gripping, well acted film '.repeat(3),
  },
  { role: 'assistant', content: 'positive' },
];
const long: ChatMessage[] = Array.from({ length: 50 }, (_, i) => row[i % 2]!);
const plain = new Template(SMOLLM2);
const budgeted = new ChatTemplate(SMOLLM2, 'bench');

function time(render: () => string, n: number): number {
  const t = performance.now();
  for (let i = 0; i < n; i++) render();
  return ((performance.now() - t) * 1000) / n;
}

for (const [name, messages, n] of [
  ['one training row', row, renders],
  ['50 turns', long, Math.max(1, Math.round(renders / 25))],
] as const) {
  if (plain.render({ messages, add_generation_prompt: false }) !== budgeted.render(messages)) throw new Error(`${name}: renders differ`);
  const us: { plain: number[]; budgeted: number[] } = { plain: [], budgeted: [] };
  for (let r = 0; r < rounds; r++) {
    us.plain.push(time(() => plain.render({ messages, add_generation_prompt: false }), n));
    us.budgeted.push(time(() => budgeted.render(messages), n));
  }
  const [p, b] = [median(us.plain), median(us.budgeted)];
  console.log(
    `${name.padEnd(18)} plain ${p.toFixed(1)} µs/render  budgeted ${b.toFixed(1)} µs/render  ratio ${(b / p).toFixed(2)}×  (${n} renders, median of ${rounds})`,
  );
}
