import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter, columnValues, readArrowBatches } from '../data/arrow-io.ts';
import { datasetsDir } from '../data/datasets-dir.ts';
import { InputError } from '../errors.ts';
import { longestFirstLengths } from './post-processor.ts';
import { HfTokenizer, IGNORE_INDEX, loadTokenizer, padBatch } from './tokenizer.ts';
import { tokenizeToArrow } from './tokenize-arrow.ts';
import type { GgufFile } from '../formats/gguf.ts';
import { SUPPORTED_PRE_TOKENIZERS, tokenizerFromGguf } from './gguf-tokenizer.ts';
import { realModel } from './real-models.testing.ts';
import { CheckBudget, MAX_FILE_WORK, PROPERTY_COST, regexVerdict } from './regex-safety.ts';
import { DEFAULT_LLM, type ResolvedModel } from './sources.ts';
import { compilePattern, KNOWN_SAFE_PATTERNS, MAX_PATTERNS } from './tokenizer-patterns.ts';

const FX = new URL('./fixtures/', import.meta.url).pathname;
const json = (f: string) => JSON.parse(readFileSync(join(FX, f), 'utf8'));
const fixture = json('tokenizer-parity.json') as {
  strings: string[];
  pairs: [string, string][];
  pair_max_length: number;
  tokenizers: Record<
    string,
    {
      single: { ids: number[]; type_ids: number[] }[];
      no_special: number[][];
      pairs: { ids: number[]; type_ids: number[] }[];
      pairs_truncated: { ids: number[]; type_ids: number[] }[];
      single_truncated: { ids: number[]; type_ids: number[] }[];
    }
  >;
};
const toks: Record<string, HfTokenizer> = {
  minilm: new HfTokenizer(json('minilm-tokenizer.json'), json('minilm-tokenizer_config.json')),
  bpe: new HfTokenizer(json('bpe-tokenizer.json'), json('bpe-tokenizer_config.json')),
  llama: new HfTokenizer(json('llama-tokenizer.json'), json('llama-tokenizer_config.json')),
};

for (const name of ['minilm', 'bpe', 'llama']) {
  test(`${name}: ids identical to the Rust tokenizers library on ${fixture.strings.length} strings and ${fixture.pairs.length} pairs`, () => {
    const tok = toks[name]!;
    const ref = fixture.tokenizers[name]!;
    assert.ok(fixture.strings.length >= 200);
    fixture.strings.forEach((s, i) => {
      const label = `string ${i} ${JSON.stringify(s).slice(0, 60)}`;
      const e = tok.encode(s);
      assert.deepEqual(e.inputIds, ref.single[i]!.ids, label);
      assert.deepEqual(e.tokenTypeIds, ref.single[i]!.type_ids, label);
      assert.deepEqual(tok.tokenize(s), ref.no_special[i], label);
      assert.deepEqual(
        tok.encode(s, null, { maxLength: fixture.pair_max_length }).inputIds,
        ref.single_truncated[i]!.ids,
        `truncated ${label}`,
      );
    });
    fixture.pairs.forEach(([a, b], i) => {
      const full = tok.encode(a, b);
      assert.deepEqual([full.inputIds, full.tokenTypeIds], [ref.pairs[i]!.ids, ref.pairs[i]!.type_ids], `pair ${i}`);
      const t = tok.encode(a, b, { maxLength: fixture.pair_max_length });
      assert.deepEqual(
        [t.inputIds, t.tokenTypeIds],
        [ref.pairs_truncated[i]!.ids, ref.pairs_truncated[i]!.type_ids],
        `truncated pair ${i}`,
      );
    });
  });
}

test('longest-first keeps the short side whole when the long side can absorb the cut', () => {
  assert.deepEqual(longestFirstLengths(5, 100, 20), [5, 15]);
  assert.deepEqual(longestFirstLengths(100, 5, 20), [15, 5]);
  assert.deepEqual(longestFirstLengths(30, 40, 21), [10, 11]);
  assert.deepEqual(longestFirstLengths(40, 30, 21), [11, 10]);
  assert.deepEqual(longestFirstLengths(3, 4, 20), [3, 4]);
});

test('padding: fixed length and buckets, masks and pad ids', () => {
  const tok = toks.minilm!;
  const rows = [tok.encode('hello world'), tok.encode('a b c d e f g h i j k')];
  const fixed = padBatch(tok, rows, { kind: 'max_length', maxLength: 16 });
  assert.equal(fixed.seqLen, 16);
  assert.deepEqual(Array.from(fixed.inputIds.subarray(0, 5)), [101, 7592, 2088, 102, 0]);
  assert.deepEqual(Array.from(fixed.attentionMask.subarray(0, 5)), [1, 1, 1, 1, 0]);
  const bucket = padBatch(tok, rows, { kind: 'longest', maxLength: 64, multipleOf: 8 });
  assert.equal(bucket.seqLen, 16); // longest row is 13 tokens → next multiple of 8
  const small = padBatch(tok, [rows[0]!], { kind: 'longest', maxLength: 64, multipleOf: 8 });
  assert.equal(small.seqLen, 8);
  // GPT-2-style tokenizers have no pad token: EOS pads, masked out.
  const bpe = toks.bpe!;
  assert.equal(bpe.padId, bpe.eosId);
  assert.throws(() => padBatch(tok, rows, { kind: 'max_length', maxLength: 4 }), /encode with maxLength/);
});

test('prompt/response: loss only on response tokens and EOS; truncation keeps the response and the prompt end', () => {
  const tok = toks.bpe!;
  const tpl = { prompt: 'Q: {prompt}\nA: ' };
  const e = tok.encodePromptResponse('What is 2+2?', 'It is 4.', { template: tpl });
  const p = tok.tokenize('Q: What is 2+2?\nA: ');
  const r = tok.tokenize('It is 4.');
  assert.deepEqual(e.inputIds, [...p, ...r, tok.eosId]);
  assert.deepEqual(e.labels, [...p.map(() => IGNORE_INDEX), ...r, tok.eosId]);
  assert.equal(tok.decode(e.labels.filter((x) => x !== IGNORE_INDEX)), 'It is 4.');
  const long = tok.encodePromptResponse('word '.repeat(100), 'answer '.repeat(50), { template: tpl, maxLength: 40 });
  assert.equal(long.inputIds.length, 40);
  assert.equal(long.labels.filter((x) => x !== IGNORE_INDEX).length, 21); // 20 response tokens (half the 39-token budget, rounded up) + EOS
  // The prompt lost its start, so the response marker "A: " still precedes the response.
  const promptPart = long.inputIds.slice(0, 19);
  assert.ok(tok.decode(promptPart).endsWith('\nA: '), tok.decode(promptPart));
  assert.equal(long.inputIds.at(-1), tok.eosId);
  const withBos = tok.encodePromptResponse('x', 'y', { template: { ...tpl, addBos: true } });
  assert.equal(withBos.inputIds[0], tok.bosId);
  assert.equal(withBos.labels[0], IGNORE_INDEX);
});

function writeTable(path: string, rows: Record<string, unknown>[], spec: Record<string, 'utf8' | 'int32'>): void {
  const w = new ArrowTableWriter(path, spec, 16);
  for (const r of rows) w.push(r);
  w.close();
}

const sms = readFileSync(join(datasetsDir(), 'sms_spam', 'sms_spam.jsonl'), 'utf8')
  .split('\n')
  .filter(Boolean)
  .slice(0, 60)
  .map((l) => JSON.parse(l) as { text: string; label: string });

test('tokenizeToArrow (classification): columns, labels, bucketed length, byte-identical reruns', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tok-'));
  const input = join(dir, 'in.arrow');
  writeTable(input, sms, { text: 'utf8', label: 'utf8' });
  const opts = {
    input,
    tokenizer: toks.minilm!,
    task: { kind: 'classification' as const, textColumn: 'text', labelColumn: 'label', labelNames: ['ham', 'spam'] },
    padding: { kind: 'longest' as const, maxLength: 64, multipleOf: 16 },
    batchRows: 25,
  };
  const a = await tokenizeToArrow({ ...opts, output: join(dir, 'a.arrow') });
  const b = await tokenizeToArrow({ ...opts, output: join(dir, 'b.arrow') });
  assert.deepEqual(readFileSync(a.path), readFileSync(b.path));
  assert.equal(a.rows, sms.length);
  assert.equal(a.seqLen % 16, 0);
  assert.ok(a.truncatedRows > 0 && a.seqLen === 64, `longest ${a.longest}`);
  let row = 0;
  for await (const batch of readArrowBatches(a.path)) {
    const ids = columnValues(batch, 'input_ids') as { toArray(): Int32Array }[];
    const labels = columnValues(batch, 'labels') as number[];
    for (let i = 0; i < batch.numRows; i++, row++) {
      const want = toks.minilm!.encode(sms[row]!.text, null, { maxLength: 64 }).inputIds;
      assert.deepEqual(Array.from(ids[i]!.toArray()).slice(0, want.length), want);
      assert.equal(labels[i], sms[row]!.label === 'spam' ? 1 : 0);
    }
  }
  assert.equal(row, sms.length);
  rmSync(dir, { recursive: true });
});

test('tokenizeToArrow (causal): labels mask the prompt and padding', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tok-'));
  const input = join(dir, 'in.arrow');
  writeTable(
    input,
    [
      { prompt: 'Add 2 and 2.', response: '4' },
      { prompt: 'Say hi.', response: 'hi there' },
    ],
    { prompt: 'utf8', response: 'utf8' },
  );
  const r = await tokenizeToArrow({
    input,
    output: join(dir, 'o.arrow'),
    tokenizer: toks.bpe!,
    task: { kind: 'causal', promptColumn: 'prompt', responseColumn: 'response' },
    padding: { kind: 'max_length', maxLength: 32 },
  });
  assert.equal(r.seqLen, 32);
  for await (const batch of readArrowBatches(r.path)) {
    assert.deepEqual(
      batch.schema.fields.map((f) => f.name),
      ['input_ids', 'attention_mask', 'labels'],
    );
    const labels = Array.from((columnValues(batch, 'labels')[1] as { toArray(): Int32Array }).toArray());
    const mask = Array.from((columnValues(batch, 'attention_mask')[1] as { toArray(): Int32Array }).toArray());
    const kept = labels.filter((x) => x !== IGNORE_INDEX);
    assert.equal(toks.bpe!.decode(kept), 'hi there');
    labels.forEach((l, i) => {
      if (mask[i] === 0) assert.equal(l, IGNORE_INDEX);
    });
  }
  rmSync(dir, { recursive: true });
});

test('bad input: missing column, unknown label, missing tokenizer.json; no partial output', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tok-'));
  const input = join(dir, 'in.arrow');
  writeTable(
    input,
    [
      { text: 'ok', label: 'ham' },
      { text: 'x', label: 'eggs' },
    ],
    { text: 'utf8', label: 'utf8' },
  );
  const base = { input, output: join(dir, 'o.arrow'), tokenizer: toks.minilm!, padding: { kind: 'max_length' as const, maxLength: 8 } };
  await assert.rejects(
    tokenizeToArrow({ ...base, task: { kind: 'classification', textColumn: 'sentence' } }),
    (e: unknown) => e instanceof InputError && /column "sentence" not found \(columns: text, label\)/.test(e.message),
  );
  await assert.rejects(
    tokenizeToArrow({ ...base, task: { kind: 'classification', textColumn: 'text', labelColumn: 'label', labelNames: ['ham', 'spam'] } }),
    /row 1, column label: label "eggs" is not one of/,
  );
  await assert.rejects(
    tokenizeToArrow({ ...base, task: { kind: 'classification', textColumn: 'text', labelColumn: 'label' } }),
    /no labelNames/,
  );
  assert.deepEqual(readdirSync(dir), ['in.arrow']);
  assert.throws(() => loadTokenizer(dir), /tokenizer.json not found/);
  writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
  assert.throws(() => loadTokenizer(dir), /not valid JSON/);
  rmSync(dir, { recursive: true });
});

test('LLaMA-style tokenizer: BOS from add_bos_token starts prompt/response rows; byte fallback round-trips', () => {
  const tok = toks.llama!;
  const e = tok.encodePromptResponse('Say 日本', 'ok 😀');
  assert.equal(e.inputIds[0], tok.bosId);
  assert.equal(e.labels[0], IGNORE_INDEX);
  assert.equal(e.inputIds.at(-1), tok.eosId);
  assert.equal(tok.decode(e.labels.filter((x) => x !== IGNORE_INDEX)), 'ok 😀');
  // No pad token in its config: EOS pads.
  assert.equal(tok.padId, tok.eosId);
});

// ---- tokenizer.json patterns are hostile input: catastrophic backtracking is refused at load.

/** The byte-level BPE fixture with `pre_tokenizer`, `normalizer` or `decoder` replaced. */
function bpeWith(parts: Record<string, unknown>): Record<string, unknown> {
  return { ...(json('bpe-tokenizer.json') as Record<string, unknown>), ...parts };
}
const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
const splitThenBytes = (...regexes: string[]) => ({
  pre_tokenizer: { type: 'Sequence', pretokenizers: [...regexes.map(split), byteLevel] },
});

/** Writes a model folder holding `tokenizer` and loads it the way every caller does. */
function loadFrom(tokenizer: Record<string, unknown>): HfTokenizer {
  const dir = mkdtempSync(join(tmpdir(), 'tok-regex-'));
  try {
    writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
    return loadTokenizer(dir);
  } finally {
    rmSync(dir, { recursive: true });
  }
}

function refused(tokenizer: Record<string, unknown>, path: string, kind: RegExp) {
  assert.throws(
    () => loadFrom(tokenizer),
    (e: unknown) => {
      assert.ok(e instanceof InputError, String(e));
      assert.match(e.message, /tok-regex-[^/]*\/tokenizer\.json: /, 'names the file');
      assert.ok(e.message.includes(`: ${path} `), `names ${path}: ${e.message}`);
      assert.match(e.message, kind);
      assert.match(e.message, /source you trust|rewrite the pattern/, 'says what to do');
      return true;
    },
  );
}

test('a Split pattern with nested repeats ((a+)+$) is refused at load, naming its JSON path', () => {
  refused(bpeWith(splitThenBytes('\\p{N}', '(a+)+$')), 'pre_tokenizer.pretokenizers[1].pattern.Regex', /exponential time.*\(a\+\)\+/);
  refused(bpeWith({ pre_tokenizer: split('(\\w+\\s?)+$') }), 'pre_tokenizer.pattern.Regex', /exponential/);
  refused(bpeWith({ pre_tokenizer: split('(a|aa)+b') }), 'pre_tokenizer.pattern.Regex', /exponential/);
  // Backreferences and lookarounds hide the same blow-up.
  refused(bpeWith({ pre_tokenizer: split('(?=(a+)+$)a') }), 'pre_tokenizer.pattern.Regex', /exponential/);
  refused(bpeWith({ pre_tokenizer: split('(a*)*\\1b') }), 'pre_tokenizer.pattern.Regex', /backreference/);
});

test('normalizer and decoder Replace patterns are checked too', () => {
  const replace = (regex: string) => ({ type: 'Replace', pattern: { Regex: regex }, content: ' ' });
  refused(
    bpeWith({ normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, replace('(\\s|\\s)*$')] } }),
    'normalizer.normalizers[1].pattern.Regex',
    /exponential/,
  );
  refused(bpeWith({ decoder: replace('(x+x+)+y') }), 'decoder.pattern.Regex', /exponential/);
  // A String pattern is a literal: nothing to backtrack.
  loadFrom(bpeWith({ normalizer: { type: 'Replace', pattern: { String: '(a+)+$' }, content: '' } }));
});

// The analysis is sound, not complete: a safe pattern it cannot prove safe kept its model out, with no way round.
test('a pattern refused at a limit of the check loads when a person vouches for its sha256 (TEMPERED_TRUSTED_PATTERNS); one shown to backtrack does not', () => {
  const hintOf = (tokenizer: Record<string, unknown>) => {
    try {
      loadFrom(tokenizer);
    } catch (e) {
      return (e as InputError).hint ?? '';
    }
    assert.fail('refused');
  };
  const withTrust = <T>(value: string, fn: () => T): T => {
    process.env.TEMPERED_TRUSTED_PATTERNS = value;
    try {
      return fn();
    } finally {
      delete process.env.TEMPERED_TRUSTED_PATTERNS;
    }
  };
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  // Seventeen `a*b` in a row: unambiguous, but more label-blind ways through it than the check counts.
  const safe = 'a*b'.repeat(17) + '$';
  const tokenizer = bpeWith({ pre_tokenizer: split(safe) });
  const hash = sha(safe);
  assert.ok(hintOf(tokenizer).includes(`TEMPERED_TRUSTED_PATTERNS=${hash}`), 'the refusal says how to vouch for it');
  withTrust(`${'0'.repeat(64)}, ${hash.toUpperCase()}`, () => assert.ok(loadFrom(tokenizer).encode('ab'.repeat(20)).inputIds.length > 0));
  withTrust('1'.repeat(64), () => refused(tokenizer, 'pre_tokenizer.pattern.Regex', /exponential time/));
  withTrust(hash.slice(0, 12), () =>
    assert.throws(() => loadFrom(tokenizer), /TEMPERED_TRUSTED_PATTERNS: '[0-9a-f]{12}' is not a sha256 \(64 hex digits\)/),
  );
  // Shown to backtrack (an ambiguity found, not a limit passed): no hint, and its hash changes nothing.
  for (const shown of ['\\s*\\s*\\s*$', '(a+)+$']) {
    const bad = bpeWith({ pre_tokenizer: split(shown) });
    assert.doesNotMatch(hintOf(bad), /TEMPERED_TRUSTED_PATTERNS/, shown);
    withTrust(sha(shown), () => refused(bad, 'pre_tokenizer.pattern.Regex', /(exponential|polynomial) time/));
  }
  // An ambiguity found through a lookaround or \b is no proof (the checker takes them as always true): this one runs in
  // linear time per attempt, and may be vouched for.
  const guarded = '(?:a(?=b)|a(?!b))+$';
  const guardedTokenizer = bpeWith({ pre_tokenizer: split(guarded) });
  assert.ok(hintOf(guardedTokenizer).includes(`TEMPERED_TRUSTED_PATTERNS=${sha(guarded)}`));
  withTrust(sha(guarded), () => assert.ok(loadFrom(guardedTokenizer).encode('ab'.repeat(20)).inputIds.length > 0));
  // A pattern that does not compile is an error, trusted or not.
  withTrust(sha('(a'), () => assert.throws(() => loadFrom(bpeWith({ pre_tokenizer: split('(a') })), /is not a valid pattern/));
});

test('polynomial patterns (\\s*\\s*\\s*$, .*.*=) and patterns beyond the checker are refused', () => {
  refused(bpeWith({ pre_tokenizer: split('\\s*\\s*\\s*$') }), 'pre_tokenizer.pattern.Regex', /polynomial time/);
  refused(bpeWith({ pre_tokenizer: split('.*.*=.*') }), 'pre_tokenizer.pattern.Regex', /polynomial time/);
  // A lookahead that rescans the text on every turn of a loop: quadratic per attempt.
  refused(bpeWith({ pre_tokenizer: split('(?:a(?=[^b]*b))*c') }), 'pre_tokenizer.pattern.Regex', /polynomial time/);
  // Finite ambiguity that doubles with each copy: 2^30 ways before a failure.
  refused(bpeWith({ pre_tokenizer: split('(?:a|a)'.repeat(30) + '$') }), 'pre_tokenizer.pattern.Regex', /exponential/);
  refused(bpeWith({ pre_tokenizer: split('a'.repeat(5000)) }), 'pre_tokenizer.pattern.Regex', /5000 characters long/);
  refused(bpeWith({ pre_tokenizer: split('(?:(?:(?:){100}){100}){100}') }), 'pre_tokenizer.pattern.Regex', /too complex/);
  refused(
    bpeWith({ pre_tokenizer: { type: 'Split', pattern: { Regex: 7 }, behavior: 'Isolated', invert: false } }),
    'pre_tokenizer.pattern.Regex',
    /not a string/,
  );
});

test('a lookaround run at every step of a repeat (bounded or not) must be short: nested scans are refused', () => {
  const pre = 'pre_tokenizer.pattern.Regex';
  // The reviewer's: seconds to encode 90-10,000 characters (the repeats are bounded, the lookarounds nest).
  // Their {0,598} also makes more than 32 ways into a scan now; with {0,20} the lookaround rule refuses them.
  for (const n of [598, 20]) {
    const kind = n === 598 ? /polynomial time/ : /polynomial time.*(scan without bound|characters each time)/;
    refused(bpeWith({ pre_tokenizer: split(`(?:.(?=(?:.(?=(?:.(?=(?:.(?=.{0,599})){0,599})){0,599})){0,599})){0,${n}}\\x00`) }), pre, kind);
    refused(bpeWith({ pre_tokenizer: split(`(?:a(?=(?:a(?=a{0,599})){0,599})){0,${n}}b`) }), pre, kind);
    refused(bpeWith({ pre_tokenizer: split(`(?:.(?=[^\\x00]*)){0,${n}}\\x00`) }), pre, kind);
  }
  refused(bpeWith({ pre_tokenizer: split('(?:.(?=[^\\x00]*)){0,20}\\x00') }), pre, /polynomial time.*without bound/);
  // Mandatory copies run it at one place again and again.
  refused(bpeWith({ pre_tokenizer: split('(?:(?=[^x]*)){100}y') }), pre, /polynomial time/);
  // A short lookaround may not hold another one, nor many ways through itself.
  refused(bpeWith({ pre_tokenizer: split('(?:a(?=b(?=c)))*d') }), pre, /polynomial time/);
  refused(bpeWith({ pre_tokenizer: split('(?:a(?=(?:b|b){7}))*d') }), pre, /exponential/);
  // Short lookarounds in loops pass, as do the library's own rewrites of $ and \b into lookarounds.
  for (const p of ['(?:a(?=b))*c', '(?:a(?!b)){0,500}c', '\\w+\\b', '(?:\\b[a-z]\\b )+', '\\s+$', 'x{2,9}(?=[^y]*y)'])
    new HfTokenizer(bpeWith(splitThenBytes(p)), json('bpe-tokenizer_config.json'));
});

test('finite ambiguity before a loop is bounded tightly: each way rescans the loop', () => {
  // 4096 ways, each scanning [^x]* again: 25 s on 3000 characters when up to 100,000 ways were allowed.
  refused(bpeWith({ pre_tokenizer: split('(?:a|a){12}[^x]*y') }), 'pre_tokenizer.pattern.Regex', /polynomial.*32 ways/);
  refused(bpeWith({ pre_tokenizer: split('(?:a|a){12}(?=[^x]*)y') }), 'pre_tokenizer.pattern.Regex', /polynomial.*32 ways/);
  refused(bpeWith({ pre_tokenizer: split('a{0,500}[^x]*y') }), 'pre_tokenizer.pattern.Regex', /polynomial.*32 ways/);
  // Where no loop follows, each way costs a constant: many are allowed.
  loadFrom(bpeWith(splitThenBytes('(?:a|a){12}y', 'a{0,500}c')));
});

test("the checker's own work is bounded per file: one budget for all patterns, 64 patterns, few properties and word boundaries", () => {
  const pre = 'pre_tokenizer.pattern.Regex';
  // 598 looping positions: the product searches run out of the file's budget.
  refused(bpeWith({ pre_tokenizer: split('(?:\\p{Lu}+\\p{Ll}+){299}!') }), pre, /too complex.*work budget/);
  // Each property costs a scan of every code point: a class of many runs out too.
  const scripts = ['Latn', 'Grek', 'Cyrl', 'Armn', 'Hebr', 'Arab', 'Syrc', 'Thaa', 'Deva', 'Beng', 'Guru', 'Gujr'];
  refused(bpeWith({ pre_tokenizer: split(`[${scripts.map((s) => `\\p{sc=${s}}`).join('')}]+`) }), pre, /too complex.*work budget/);
  // Two spellings of one property are one scan.
  const b = new CheckBudget();
  regexVerdict(/[\p{sc=Latn}\p{Script=Latn}]/gu, b);
  assert.equal(b.properties.size, 1);
  // Alone each of these passes; in one file they share the budget, and the first that exceeds it is named.
  const alone = scripts.map((s) => `\\p{sc=${s}}+`);
  for (const p of alone.slice(0, 2)) loadFrom(bpeWith(splitThenBytes(p)));
  // The budget holds exactly this many properties with nothing else: the patterns' own work tips the last one over.
  const fits = Math.ceil(MAX_FILE_WORK / PROPERTY_COST) - 1;
  assert.ok(fits < alone.length);
  refused(bpeWith(splitThenBytes(...alone)), `pre_tokenizer.pretokenizers[${fits}].pattern.Regex`, /too complex.*work budget/);
  // A cached verdict counts the same work as the first one: verdicts do not depend on what ran before.
  const re = new RegExp('(?:ab*)+c[^d]*', 'gu');
  const first = new CheckBudget();
  const again = new CheckBudget();
  regexVerdict(re, first);
  regexVerdict(re, again);
  assert.equal(again.work, first.work);
  // At most 64 patterns per file, and few \b (the library's rewrite of each is ~280 characters).
  refused(
    bpeWith(splitThenBytes(...Array.from({ length: 100 }, () => 'x'))),
    `pre_tokenizer.pretokenizers[${MAX_PATTERNS}].pattern.Regex`,
    /at most 64 patterns/,
  );
  refused(bpeWith({ pre_tokenizer: split('a\\b'.repeat(100)) }), pre, /100 word boundaries/);
  refused(bpeWith({ pre_tokenizer: split('a{700}') }), pre, /too complex.*over 600/);
});

test('real pre-tokenizer patterns load: the known ones pass the checker, and unknown safe ones are analysed and accepted', () => {
  for (const p of KNOWN_SAFE_PATTERNS) {
    const tok = new HfTokenizer(bpeWith(splitThenBytes(p)), json('bpe-tokenizer_config.json'));
    assert.ok(tok.tokenize("Hello world, it's 2024!  \n\tdone 日本語 and ゟ").length > 0, p);
  }
  // Unknown to the table, analysed: DeepSeek-LLM's splits (quadratic at worst: one attempt per start, not refused),
  // Qwen3.5's, Command-A's digit groups (an unbounded lookahead outside any loop), BERT-like word/punctuation.
  for (const p of [
    '[\\r\\n]',
    '\\s?[!-/:-~！-／：-～‘-‟　-。]+',
    '\\s+$',
    '[一-龥ࠀ-一가-퟿]+',
    '\\p{N}+',
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    '\\d{1,3}(?=(?:\\d{3})*\\b)',
    '\\w+|[^\\w\\s]+',
  ]) {
    assert.ok(!KNOWN_SAFE_PATTERNS.has(p));
    new HfTokenizer(bpeWith(splitThenBytes(p)), json('bpe-tokenizer_config.json'));
  }
});

test('every table entry is safe by the analysis itself (the table only skips the work)', () => {
  for (const p of KNOWN_SAFE_PATTERNS) {
    const re = compilePattern(p)!;
    assert.deepEqual(regexVerdict(re), { kind: 'safe' }, p);
  }
});

test('GGUF tokenizers: the split of every tokenizer.ggml.pre tempered knows loads', () => {
  const tokens = ['a', 'b', 'ab', 'Ġ', '1', '<s>'];
  for (const pre of SUPPORTED_PRE_TOKENIZERS) {
    const g = {
      path: `/m/${pre}.gguf`,
      metadata: new Map<string, unknown>([
        ['tokenizer.ggml.model', 'gpt2'],
        ['tokenizer.ggml.pre', pre],
        ['tokenizer.ggml.tokens', tokens],
        ['tokenizer.ggml.merges', ['a b']],
        ['tokenizer.ggml.bos_token_id', 5],
      ]),
    } as unknown as GgufFile;
    const files = tokenizerFromGguf(g);
    assert.ok(new HfTokenizer(files.tokenizer, files.config).tokenize('ab 1').length > 0, pre);
  }
});

const smollm2 = await realModel(DEFAULT_LLM);
test(
  "SmolLM2's actual tokenizer (the GGUF-derived tokenizer.json of the project's LLM) loads",
  { skip: 'skip' in smollm2 && smollm2.skip },
  () => {
    const tok = loadTokenizer((smollm2 as ResolvedModel).dir);
    const ids = tok.tokenize('Hello 123');
    assert.equal(ids.length, 5); // "Hello", " ", then the digits one by one
    assert.equal(tok.decode(ids), 'Hello 123');
  },
);
