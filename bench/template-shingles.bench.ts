/**
 * What leaving a prompt template out of near-duplicate detection costs (src/data/template-shingles.ts): the time
 * TemplateShingles.of takes once per dedupe or contamination check, for the shipped SST-2 question and for templates
 * at the 65,536-character limit built to make it work hardest (long optional sections rendered in every combination,
 * thousands of sections, distinct words), with dedupe's default word 3-shingles and char 5-shingles. Median of rounds.
 *
 *   node --import tsx bench/template-shingles.bench.ts [rounds=5]
 */
import { makeNormalizer } from '../src/data/normalize.ts';
import { isTemplateError, MAX_TEMPLATE_CHARS, parseTemplate, type ParsedTemplate } from '../src/data/prompt-template.ts';
import { TemplateShingles } from '../src/data/template-shingles.ts';
import { median } from './common.ts';

const rounds = Number(process.argv[2] ?? 5);
const words = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}${i}`).join(' ');
const cases: Record<string, string> = {
  'SST-2 question (instruct.yaml)': 'Is the sentiment of this movie review positive or negative? Answer with one word.\n\n{text}',
  '4 optional sections of distinct words': [0, 1, 2, 3].map((s) => `[[${words(1400, `s${s}w`)} {f${s}}]]`).join('') + ' {q}',
  '5,000 optional sections': Array.from({ length: 5000 }, (_, i) => `[[a{f${i}}]]`).join('') + '{q}',
  '9,000 distinct words, 1 field': words(9000, 'w') + ' {q}',
};
const normalize = makeNormalizer();
for (const [name, text] of Object.entries(cases)) {
  const t = parseTemplate(text);
  if (isTemplateError(t)) throw new Error(`${name}: ${t.message}`);
  if (text.length > MAX_TEMPLATE_CHARS) throw new Error(`${name}: ${text.length} characters, over the limit`);
  for (const [shingle, size] of [
    ['word', 3],
    ['char', 5],
  ] as const) {
    const ms: number[] = [];
    let found = 0;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      found = TemplateShingles.of([[t as ParsedTemplate]], normalize, shingle, size).size;
      ms.push(performance.now() - t0);
    }
    console.log(`${name} (${text.length} chars), ${shingle} ${size}-shingles: ${median(ms).toFixed(1)} ms (${found} template shingles)`);
  }
}
