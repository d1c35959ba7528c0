/**
 * The evaluate stage's comparison with production on instruction tables that record their prompt template (ingest's
 * `promptTemplate`, Arrow field metadata on `prompt`): the contamination check leaves the template's own text out, so
 * a short input under a long template is left out of production's rows only when the input itself is one of its
 * training inputs or a near duplicate of one. The template recorded on the test table alone is enough (production
 * trained before ingest recorded templates): that is the evaluate stage handing its test table to the check. On the
 * tiny LLaMA GGUF fixture, one model serving as both candidate and production: the figures checked are the rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Field, Schema, Utf8 } from 'apache-arrow';
import { ArrowTableWriter, PROMPT_TEMPLATE_METADATA } from '../data/arrow-io.ts';
import { Rng } from '../engine/prng.ts';
import { trainCausalLm } from '../finetune/causal-lm.ts';
import { resolveModelSource } from '../models/sources.ts';
import { evaluateStage } from './evaluate.ts';
import { stageTestbed } from './stage-context.testing.ts';

const TINY_GGUF = new URL('../formats/fixtures/tiny-llama.gguf', import.meta.url).pathname;
// The fixture's 64 tokens are capitals and punctuation, no space: its chat template shows a prompt's spaces as `_`.
// The contamination check reads the tables' prompts, spaces and all.
const CHAT =
  "{% for m in messages %}{% if m.role == 'user' %}Q:{% else %}A:{% endif %}{{ m.content | replace(' ', '_') }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}A:{% endif %}";
const ARROW = 'application/vnd.apache.arrow.file';
// 21 words before the input: two prompts whose one-word inputs differ share 19 of their 21 word 3-shingles (Jaccard
// 0.9, a near duplicate as dedupe's defaults find them), and none once the template's own shingles are left out.
const TEMPLATE = 'WHICH LETTER COMES FIRST IN THE WORD AT THE END OF THIS LINE? ANSWER WITH THAT ONE LETTER AND NOTHING ELSE: {text}';

const root = mkdtempSync(join(tmpdir(), 'eval-template-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

/** An instruction table of `inputs` rendered with TEMPLATE (reply: the first letter), recording it as ingest does, or not. */
function promptTable(path: string, inputs: readonly string[], recorded: boolean): string {
  const meta = recorded ? new Map([[PROMPT_TEMPLATE_METADATA, TEMPLATE]]) : null;
  const w = new ArrowTableWriter(
    path,
    new Schema([new Field('prompt', new Utf8(), false, meta), new Field('response', new Utf8(), false)]),
  );
  for (const t of inputs) w.push({ prompt: TEMPLATE.replace('{text}', t), response: t[0]! });
  w.close();
  return path;
}

// 40 distinct three-letter words of consonants (no token of the fixture merges them).
const LETTERS = 'BCDFGHJK';
const rng = new Rng(7);
const distinct = new Set<string>();
while (distinct.size < 40) distinct.add(Array.from({ length: 3 }, () => LETTERS[rng.int(8)]!).join(''));
const words = [...distinct];
// Production's training inputs: 16 words, and a line of 10 words.
const line = words.slice(30, 40).join(' ');
const trainInputs = [...words.slice(0, 16), line];
// The test split: 4 of those inputs again, the line with a word added (a near duplicate of it, template or not: 10 of
// its 11 shingles that touch the input are the line's), and 8 words production never saw, which only the template
// made near duplicates of its training words.
const nearLine = `${line} ${words[20]}`;
const fresh = words.slice(16, 24);
const testInputs = [...words.slice(0, 4), nearLine, ...fresh];

type Metrics = Record<string, any>;

/** The gate-visible scores of a model's own evaluation, without production.* (what production.candidate must equal). */
function own(m: Metrics): Metrics {
  const { production: _p, ...rest } = m;
  return rest;
}

/** production.* without what says which rows they are over. */
function scores(p: Metrics): Metrics {
  const { version: _v, rows: _r, contaminated_rows: _c, decontaminated: _d, candidate: _k, same_model: _s, ...rest } = p;
  return rest;
}

/** The prompt ingest writes for `input`, as the report quotes it. */
const prompt = (input: string) => TEMPLATE.replace('{text}', input);

test('causal LM: production is compared on the test rows whose input alone it was not trained on, the template recorded on either table', async () => {
  const { store, ctx, read, promote, logs } = stageTestbed(root, 'state');

  const trainRecorded = promptTable(join(root, 'train-recorded.arrow'), trainInputs, true);
  const base = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'models') });
  const outDir = join(root, 'model');
  await trainCausalLm({
    modelDir: base.dir,
    train: trainRecorded,
    chat: { template: CHAT },
    method: 'full',
    lr: 0.01,
    maxSteps: 1,
    batchSize: 8,
    schedule: 'constant',
    weightDecay: 0,
    clipNorm: 1,
    seed: 3,
    maxLength: 192,
    device: 'cpu',
    threads: 2,
    checkpointEvery: 0,
    checkpointDir: join(root, 'ck'),
    outDir,
  });
  const model = await store.putTree(outDir);
  // The same model as production, trained on the table recording the template and on one that does not.
  for (const [name, file] of [
    ['recorded', trainRecorded],
    ['unrecorded', promptTable(join(root, 'train-unrecorded.arrow'), trainInputs, false)],
  ] as const) {
    await promote(name, model, { train: await store.putFile(file, { mediaType: ARROW }) });
  }
  const tests = {
    recorded: await store.putFile(promptTable(join(root, 'test-recorded.arrow'), testInputs, true), { mediaType: ARROW }),
    unrecorded: await store.putFile(promptTable(join(root, 'test-unrecorded.arrow'), testInputs, false), { mediaType: ARROW }),
  };
  const evaluate = async (production: 'recorded' | 'unrecorded', testTable: 'recorded' | 'unrecorded') => {
    logs.length = 0;
    const out = await evaluateStage.run({ model, test: tests[testTable], production: { name: production }, threads: 2 }, ctx('evaluate'));
    return { metrics: read(out.metrics), report: read(out.report), comparison: out.comparison, logs: [...logs] };
  };

  // The model alone on the 8 fresh words: what production.* and production.candidate.* must be.
  const onFresh = read(
    (
      await evaluateStage.run(
        { model, test: await store.putFile(promptTable(join(root, 'fresh.arrow'), fresh, true), { mediaType: ARROW }), threads: 2 },
        ctx('evaluate'),
      )
    ).metrics,
  );

  // The template recorded on both tables, on the test table only (production's training table predates it), or on
  // production's only: the figures are those of the inputs alone. 4 exact copies and the near copy of the line are
  // left out; the 8 fresh words are production's rows.
  for (const [production, testTable] of [
    ['recorded', 'recorded'],
    ['unrecorded', 'recorded'],
    ['recorded', 'unrecorded'],
  ] as const) {
    const what = `production's training table ${production}, the test table ${testTable}`;
    const r = await evaluate(production, testTable);
    const p = r.metrics.production;
    assert.deepEqual([p.version, p.rows, p.contaminated_rows, p.decontaminated], [`${production}@1`, 8, 5, true], what);
    // Production is the model evaluated (the same bytes): its figures are the candidate's, not scored twice.
    assert.equal(p.same_model, true, what);
    // Production's scores, and the candidate's beside them, are over the 8 fresh words; the candidate's own over all 13.
    assert.deepEqual(scores(p), own(onFresh), what);
    assert.deepEqual(p.candidate, own(onFresh), what);
    assert.deepEqual([r.metrics.scored_rows, p.scored_rows], [13, 8], what);
    const c = r.report.contamination;
    assert.deepEqual(
      [
        c.rows,
        c.contaminated_rows,
        c.near_duplicate_rows,
        c.near_duplicate_examples,
        c.near_duplicate_matches,
        c.near_duplicate_checks_cut,
      ],
      [8, 5, 1, [[prompt(nearLine)]], [[prompt(line)]], 0],
      what,
    );
    assert.equal(
      r.comparison,
      `${production}@1 (current production) is the fine-tuned model itself (the same model bytes), not scored again: production.* are the fine-tuned model's scores on the 8 test rows it was not trained on; 5 left out`,
      what,
    );
    assert.ok(
      r.logs.some((m) =>
        m.includes(': 5 test rows are in its training data (1 of them as near duplicates) and left out; it is scored on 8 rows'),
      ),
      r.logs.join('\n'),
    );
  }

  // Neither table records it: under the template every fresh word passes for a near duplicate of a training word,
  // and production is not compared at all. What the template's own text did before the check left it out.
  const neither = await evaluate('unrecorded', 'unrecorded');
  assert.deepEqual(neither.metrics.production, {
    version: 'unrecorded@1',
    rows: 0,
    contaminated_rows: 13,
    decontaminated: true,
    same_model: true,
  });
  assert.deepEqual([neither.report.contamination.near_duplicate_rows, neither.report.contamination.rows], [9, 0]);
  assert.equal(neither.comparison, 'unrecorded@1 (current production) not scored: it was trained on the input of every test row (13)');
});
