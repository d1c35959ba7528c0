/**
 * Conversations in OpenAI's fine-tuning format for tests, made from GSM8K's first rows (the shared datasets): the
 * user asks the problem, the assistant works it out, the user asks for the number alone and the assistant gives it.
 * Every third has a system message; every fourth keeps the worked answer out of the loss (`weight: 0`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { datasetsDir } from './datasets-dir.ts';

export interface TestMessage {
  role: string;
  content: string;
  weight?: number;
}

export function gsm8kConversations(n: number): { messages: TestMessage[] }[] {
  const lines = readFileSync(join(datasetsDir(), 'gsm8k', 'test.jsonl'), 'utf8')
    .split('\n')
    .slice(0, n);
  return lines.map((line, i) => {
    const { prompt, response } = JSON.parse(line) as { prompt: string; response: string };
    const answer = /####\s*(.+)$/.exec(response)?.[1] ?? response;
    const worked = response.replace(/\n?####.*$/, '');
    return {
      messages: [
        ...(i % 3 === 0 ? [{ role: 'system', content: 'You solve grade-school maths problems step by step.' }] : []),
        { role: 'user', content: prompt },
        { role: 'assistant', content: worked, ...(i % 4 === 0 ? { weight: 0 } : {}) },
        { role: 'user', content: 'What is the final answer, as a number only?' },
        { role: 'assistant', content: answer },
      ],
    };
  });
}

/** `rows` as a JSONL file at `path`. */
export function writeJsonl(path: string, rows: readonly unknown[]): string {
  writeFileSync(path, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return path;
}
