import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Field, Schema, Utf8, Int32 } from 'apache-arrow';
import { InputError } from '../errors.ts';
import { PROMPT_TEMPLATE_METADATA } from './arrow-io.ts';
import { shingleHashes } from './minhash.ts';
import { makeNormalizer } from './normalize.ts';
import { isTemplateError, parseTemplate, type ParsedTemplate } from './prompt-template.ts';
import { columnTemplates, TemplateShingles } from './template-shingles.ts';

const normalize = makeNormalizer();
const SST2 = 'Is the sentiment of this movie review positive or negative? Answer with one word.\n\n{text}';

function parsed(t: string): ParsedTemplate {
  const p = parseTemplate(t);
  if (isTemplateError(p)) throw new Error(p.message);
  return p;
}

/** One prompt column rendered with `t`: its template shingles (word 3-shingles, dedupe's default). */
function templateOf(t: string, shingle: 'word' | 'char' = 'word', size = 3): TemplateShingles {
  return TemplateShingles.of([[parsed(t)]], normalize, shingle, size);
}

function jaccard(a: Uint32Array, b: Uint32Array): number {
  const x = new Set(a),
    y = new Set(b);
  let both = 0;
  for (const h of x) if (y.has(h)) both++;
  return both / (x.size + y.size - both);
}

/** A row's shingles with the template's left out, as a copy. */
const stripped = (tpl: TemplateShingles, text: string, shingle: 'word' | 'char' = 'word', size = 3) =>
  tpl.strip(shingleHashes(normalize(text), shingle, size)).slice();

test("two different short inputs in one long template share none of their own shingles (SST-2's question)", () => {
  const a = SST2.replace('{text}', 'cool ?'),
    b = SST2.replace('{text}', 'horrible .');
  // As stored they share 12 of their 16 shingles (0.75), and MinHash's estimate puts some such pairs past dedupe's
  // default threshold (0.8); one-word inputs are past it outright (12 of 14): the bug this module fixes.
  assert.equal(jaccard(shingleHashes(normalize(a), 'word', 3), shingleHashes(normalize(b), 'word', 3)), 0.75);
  assert.ok(
    jaccard(
      shingleHashes(normalize(SST2.replace('{text}', 'cool')), 'word', 3),
      shingleHashes(normalize(SST2.replace('{text}', 'dull')), 'word', 3),
    ) >= 0.8,
  );
  const tpl = templateOf(SST2);
  // The question's 14 words hold 12 word 3-shingles; the two that reach the input are the row's own.
  assert.equal(tpl.size, 12);
  const sa = stripped(tpl, a),
    sb = stripped(tpl, b);
  assert.equal(sa.length, 2); // "one word. cool", "word. cool ?": the rest is the question's
  assert.equal(jaccard(sa, sb), 0);
  // The same input in the template is the same row, and a one-word edit of a long input is still near.
  // 40 words with one changed: 37 of the 43 shingles a pair has are shared (0.86), as without the template.
  const long = Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
  const edited = long.replace('w20', 'changed');
  assert.equal(stripped(tpl, SST2.replace('{text}', long)).length, 38 + 2); // its own 38, and 2 across the boundary
  assert.equal(jaccard(stripped(tpl, SST2.replace('{text}', long)), stripped(tpl, SST2.replace('{text}', edited))), 37 / 43);
});

test('char shingles: the template text is left out the same way', () => {
  const tpl = templateOf(SST2, 'char', 5);
  const a = stripped(tpl, SST2.replace('{text}', 'cool ?'), 'char', 5),
    b = stripped(tpl, SST2.replace('{text}', 'horrible .'), 'char', 5);
  assert.ok(a.length > 0 && b.length > 0);
  assert.equal(jaccard(a, b), 0);
});

test("a word the input runs into is not the template's, unless an input starting with a space makes it whole", () => {
  // "review:" touches the input: "review:great" is the input's word. Template shingles: "say yes or", "yes or no",
  // "or no now." — and "no now. review:", which is whole text of the template when the input starts with a space.
  const t = 'Say yes or no now. Review:{text}';
  const tpl = templateOf(t);
  assert.equal(tpl.size, 4);
  const joined = stripped(tpl, 'Say yes or no now. Review:great film');
  // "no now. review:great", "now. review:great film": both hold the input, both kept.
  assert.equal(joined.length, 2);
  const spaced = stripped(tpl, 'Say yes or no now. Review: great film');
  // "now. review: great", "review: great film": the input's; "no now. review:" is the template's.
  assert.equal(spaced.length, 2);
});

test('placeholders are characters the template does not hold: a template of the letters q and z', () => {
  // "grade q q", "q q q" and "z z z" lie in the template; each shingle that reaches the input is the row's.
  const tpl = templateOf('Grade q q q {text} z z z');
  assert.equal(tpl.size, 3);
  assert.equal(stripped(tpl, 'Grade q q q w z z z').length, 3);
  // An input q makes one more "q q q", the template's own text (as any input quoting the template does); 2 are left.
  // With q and z as placeholders, "q q z" and "q z z" were taken for the template's, and these rows kept none.
  assert.equal(stripped(tpl, 'Grade q q q q z z z').length, 2);
  assert.equal(stripped(tpl, 'Grade q q q z z z z').length, 2);
});

test("text joined around a dropped [[ … ]] section is the template's too", () => {
  const t = 'Please answer[[ about {topic}]] in one short sentence and stay polite: {q}';
  const tpl = templateOf(t);
  const dropped = (q: string) => stripped(tpl, `Please answer in one short sentence and stay polite: ${q}`);
  const kept = (q: string) => stripped(tpl, `Please answer about cats in one short sentence and stay polite: ${q}`);
  // Only "stay polite: why" is the row's own: the join's "please answer in" and "answer in one" are the template's.
  assert.equal(dropped('why').length, 1);
  assert.equal(jaccard(dropped('why'), dropped('how')), 0);
  // With the section kept, its field's words are the row's own too: three shingles hold "cats", one the question.
  assert.equal(kept('why').length, 4);
  assert.equal(jaccard(kept('why'), kept('how')), 3 / 5);
});

test('a template of many optional sections renders all kept and all dropped, not every combination', () => {
  const t = Array.from({ length: 40 }, (_, i) => `[[ part ${i} {f${i}} ]]`).join('') + ' closing words of the template {q}';
  const tpl = templateOf(t);
  // All dropped: "closing words of", "words of the", "of the template" are the template's; "the template what" is not.
  assert.equal(stripped(tpl, 'closing words of the template what').length, 1);
});

test("other columns joined after the prompt are not the template's, and a table without a template strips nothing", () => {
  const cols = [parsed('Answer the question below. {q}'), null];
  const tpl = TemplateShingles.of([cols], normalize, 'word', 3);
  // "answer the question", "the question below." — "question below. <input>" holds the input.
  assert.equal(tpl.size, 2);
  assert.equal(TemplateShingles.of([[null, null]], normalize, 'word', 3), TemplateShingles.NONE);
  const some = new Uint32Array([5, 1, 9]);
  assert.equal(TemplateShingles.NONE.strip(some), some);
  // Two tables' templates are left out together (a test table and the training table compared with it).
  const both = TemplateShingles.of(
    [[parsed('Answer the question below. {q}')], [parsed('Reply to this one now: {q}')]],
    normalize,
    'word',
    3,
  );
  assert.equal(both.size, 2 + 3);
});

test('columnTemplates reads the metadata ingest writes, and refuses one that is not a template, naming the column', () => {
  const withMeta = (name: string, template: string, type: Utf8 | Int32 = new Utf8()) =>
    new Schema([new Field(name, type, false, new Map([[PROMPT_TEMPLATE_METADATA, template]])), new Field('response', new Utf8(), false)]);
  const [p, r] = columnTemplates(withMeta('prompt', SST2), ['prompt', 'response'], 'in.arrow');
  assert.deepEqual(p?.fields, ['text']);
  assert.equal(r, null);
  assert.deepEqual(columnTemplates(withMeta('prompt', SST2), ['response'], 'in.arrow'), [null]);
  const refused = (schema: Schema, pattern: RegExp) =>
    assert.throws(
      () => columnTemplates(schema, ['prompt'], 'in.arrow'),
      (e: unknown) =>
        e instanceof InputError &&
        /in\.arrow: column "prompt"'s tempered\.promptTemplate metadata/.test(e.message) &&
        pattern.test(e.message),
    );
  refused(withMeta('prompt', 'no field here'), /is not a prompt template: promptTemplate names no \{field\}/);
  refused(withMeta('prompt', 'unclosed [[ {x}'), /unclosed "\[\["/);
  refused(withMeta('prompt', `${'x'.repeat(65536)}{q}`), /65539 characters, more than the 65536/);
  refused(withMeta('prompt', SST2, new Int32()), /on a Int32 column, not text/);
});
