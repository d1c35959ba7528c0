import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../errors.ts';
import { TokenSampler, applyRepetitionPenalty, argmax, checkSampling } from './sampling.ts';
import { TextStream } from './text-stream.ts';

const logits = () => Float32Array.from([1, 3, 2, 0.5, 2.5]);

function frequencies(s: TokenSampler, n: number): number[] {
  const counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < n; i++) counts[s.next(logits(), [])]!++;
  return counts.map((c) => c / n);
}

test('sampling draws tokens with softmax(logits / temperature) probabilities', () => {
  const n = 20000;
  for (const t of [1, 0.5]) {
    const f = frequencies(new TokenSampler({ temperature: t, seed: 1 }), n);
    const e = Array.from(logits(), (v) => Math.exp(v / t));
    const z = e.reduce((a, b) => a + b, 0);
    e.forEach((p, i) => assert.ok(Math.abs(f[i]! - p / z) < 0.015, `t=${t} token ${i}: ${f[i]} vs ${p / z}`));
  }
});

test('top-k keeps the k best tokens; top-p the shortest set reaching p', () => {
  const k2 = frequencies(new TokenSampler({ temperature: 1, topK: 2, seed: 2 }), 4000);
  assert.deepEqual(
    k2.map((f) => f > 0),
    [false, true, false, false, true],
  );
  // softmax of [1,3,2,0.5,2.5]: token 1 has 0.43, token 4 0.26, token 2 0.16: p = 0.6 needs tokens 1 and 4.
  const p6 = frequencies(new TokenSampler({ temperature: 1, topP: 0.6, seed: 3 }), 4000);
  assert.deepEqual(
    p6.map((f) => f > 0),
    [false, true, false, false, true],
  );
  assert.ok(Math.abs(p6[1]! - 0.43 / 0.69) < 0.03);
  const p1 = frequencies(new TokenSampler({ temperature: 1, topP: 0.01, seed: 4 }), 100);
  assert.deepEqual(p1, [0, 1, 0, 0, 0]);
});

test('greedy is argmax (first on ties); repetition penalty divides positive and multiplies negative logits', () => {
  assert.equal(argmax([1, 5, 5, 2]), 1);
  assert.equal(new TokenSampler({}).next(logits(), []), 1);
  const l = Float32Array.from([2, -2, 1]);
  applyRepetitionPenalty(l, [0, 1, 1], 2);
  assert.deepEqual([...l], [1, -4, 1]);
  // With the penalty, greedy moves from token 1 (3 / 2 = 1.5) to token 4 (2.5).
  assert.equal(new TokenSampler({ repetitionPenalty: 2 }).next(logits(), [1]), 4);
});

test('the same seed and row draw the same sequence; rows of one seed differ', () => {
  const draw = (seed: number, row: number) => {
    const s = new TokenSampler({ temperature: 1, seed }, row);
    return Array.from({ length: 30 }, () => s.next(logits(), []));
  };
  assert.deepEqual(draw(5, 0), draw(5, 0));
  assert.notDeepEqual(draw(5, 0), draw(5, 1));
  assert.notDeepEqual(draw(5, 0), draw(6, 0));
  assert.deepEqual(draw(2 ** 40 + 3, 0), draw(2 ** 40 + 3, 0));
});

test('text stream: holds back half a character and a possible stop-string start', () => {
  // Bytes as tokens: 'é' is two bytes, the emoji four.
  const bytes = [...new TextEncoder().encode('né 😀 END!')];
  const dec = (ids: number[]) => new TextDecoder().decode(Uint8Array.from(ids.map((i) => bytes[i]!)));
  const s = new TextStream(dec, ['END']);
  const deltas: string[] = [];
  const ids: number[] = [];
  for (let i = 0; i < bytes.length && s.stoppedText === null; i++) {
    ids.push(i);
    deltas.push(s.push(ids));
  }
  assert.equal(s.stoppedText, 'né 😀 ');
  assert.equal(deltas.join(''), 'né 😀 ');
  assert.ok(deltas.every((d) => !d.includes('\uFFFD')));
  // 'E' and 'EN' could start 'END': nothing of them was shown before the stop was seen.
  assert.deepEqual(deltas.slice(-3), ['', '', '']);
  const plain = new TextStream(dec, []);
  const out: string[] = [];
  const all: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    all.push(i);
    out.push(plain.push(all));
  }
  out.push(plain.flush(all));
  assert.equal(out.join(''), 'né 😀 END!');
});

test('text stream: output cut inside a character (a token limit) ends before it, streamed and whole', () => {
  const bytes = [...new TextEncoder().encode('né 😀')];
  const dec = (ids: number[]) => new TextDecoder().decode(Uint8Array.from(ids.map((i) => bytes[i]!)));
  // Cut after two of the emoji's four bytes.
  const ids = [0, 1, 2, 3, 4, 5];
  assert.equal(dec(ids), 'né \uFFFD');
  const s = new TextStream(dec, []);
  const deltas: string[] = [];
  for (let i = 1; i <= ids.length; i++) deltas.push(s.push(ids.slice(0, i)));
  deltas.push(s.flush(ids));
  assert.equal(deltas.join(''), 'né ');
  assert.equal(s.final(ids), 'né ');
  assert.equal(new TextStream(dec, []).final(bytes.map((_, i) => i)), 'né 😀');
});

test("a repetition penalty outside [0.01, 100] is refused naming the field: past float32's range it drew the least likely token", () => {
  for (const repetitionPenalty of [1e-39, 0.001, 101, 1e39, 0, Number.NaN])
    assert.throws(
      () => checkSampling({ repetitionPenalty }, 'chat'),
      (e) => e instanceof InputError && /chat\.repetitionPenalty/.test(String(e.where)) && /from 0\.01 to 100/.test(e.message),
      String(repetitionPenalty),
    );
  for (const repetitionPenalty of [0.01, 1, 1.2, 100]) checkSampling({ repetitionPenalty });
  assert.throws(() => new TokenSampler({ temperature: 1, repetitionPenalty: 1e-39, seed: 0 }), InputError);
});
