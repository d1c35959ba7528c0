import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KEEP_BYTES, KeptEncodings } from './kept-encodings.ts';

const enc = (ids: number[], type = 0) => ({ inputIds: ids, attentionMask: ids.map(() => 1), tokenTypeIds: ids.map(() => type) });
const plain = (t: ReturnType<KeptEncodings['get']>) =>
  t && { inputIds: [...t.inputIds], attentionMask: [...t.attentionMask], tokenTypeIds: [...t.tokenTypeIds] };

test('KeptEncodings gives back each kept text its own tokens, and keeps a prefix of the texts within its budget', () => {
  // 3 texts: 2 + 3 + 1 tokens (5 bytes each) and 8 bytes a text = 54 bytes; a fourth of 2 tokens would make 72.
  const k = new KeptEncodings(71);
  const texts = [enc([101, 7, 102]), enc([101, 70000, 5, 102], 1), enc([101]), enc([101, 102]), enc([9])];
  assert.deepEqual(
    texts.map((e) => k.add(e)),
    [true, true, true, false, false],
  );
  assert.equal(k.count, 3);
  assert.equal(k.bytes, 8 * 5 + 3 * 8);
  for (let i = 0; i < 3; i++) assert.deepEqual(plain(k.get(i)), texts[i]);
  assert.equal(k.get(3), undefined);
  assert.equal(k.get(4), undefined);
});

test('KeptEncodings stops at a text its packing cannot hold exactly, keeping none after it', () => {
  const k = new KeptEncodings(1 << 20);
  assert.ok(k.add(enc([1, 2])));
  assert.equal(k.add(enc([1, 2], 256)), false, 'a type past a byte');
  assert.equal(k.add(enc([3])), false, 'a text after one not kept would be kept at the wrong place');
  const masked = new KeptEncodings(1 << 20);
  assert.equal(masked.add({ inputIds: [1, 2], attentionMask: [1, 0], tokenTypeIds: [0, 0] }), false);
  const big = new KeptEncodings(1 << 20);
  assert.equal(big.add(enc([2 ** 31])), false);
  assert.deepEqual(plain(k.get(0)), enc([1, 2]));
});

test('KeptEncodings grows past its first allocation and keeps every text intact', () => {
  const k = new KeptEncodings(1 << 24);
  const texts = Array.from({ length: 3000 }, (_, i) =>
    enc(
      Array.from({ length: 1 + (i % 50) }, (_, j) => i * 7 + j),
      i % 2,
    ),
  );
  for (const e of texts) assert.ok(k.add(e));
  texts.forEach((e, i) => assert.deepEqual(plain(k.get(i)), e));
});

test('KeptEncodings holds at most 1.5 times its budget while its arrays grow (old and new side by side)', () => {
  const text = enc(Array.from({ length: 1000 }, (_, i) => i));
  // 16 MiB (the frozen baseline's half of KEEP_BYTES) reached 1.625 times; a budget just past a doubling of the first
  // allocation, nearly twice.
  for (const budget of [KEEP_BYTES / 2, 5 * ((1 << 17) + 1000) + 8 * 200]) {
    const k = new KeptEncodings(budget);
    let peak = 0;
    for (;;) {
      const before = k.arrayBytes;
      const kept = k.add(text);
      if (k.arrayBytes !== before) peak = Math.max(peak, before + k.arrayBytes);
      if (!kept) break;
    }
    assert.ok(k.count > 100, `budget ${budget}: ${k.count} texts kept`);
    assert.ok(k.arrayBytes <= budget, `budget ${budget}: arrays of ${k.arrayBytes} bytes`);
    assert.ok(peak <= 1.5 * budget, `budget ${budget}: ${(peak / budget).toFixed(3)} times it held while growing`);
  }
});

test('KeptEncodings refuses a budget that is not a number of bytes, which kept every text (NaN passes every comparison)', () => {
  for (const budget of [NaN, -1])
    assert.throws(() => new KeptEncodings(budget), /^RangeError: keepBytes (NaN|-1): give a number of bytes of at least 0/);
  assert.equal(new KeptEncodings(Infinity).add(enc([1])), true);
});
