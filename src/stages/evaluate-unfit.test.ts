/**
 * A test or baseline train row that the model cannot take (a token id past its embedding rows: the folder's tokenizer is
 * another model's) is refused by the evaluate stage as an input error naming the row, before any row is scored or
 * embedded: it was refused at its own batch, after every batch before it had run, naming tokenizer.json and no row.
 * Real tiny BERT, real training, real onnxruntime, the real evaluate stage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportTinyClassifier } from '../serve/tiny-classifier.testing.ts';
import { writeTextTable } from '../finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { InputError } from '../errors.ts';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { evaluateStage } from './evaluate.ts';
import { stageTestbed } from './stage-context.testing.ts';

const ARROW = 'application/vnd.apache.arrow.file';

/** MiniLM's tokenizer files (30522 entries) into `dir`, whose model has the tiny tokenizer's 119 rows. */
const withMiniLmTokenizer = (dir: string, root: string) => {
  const miniLm = tinyBertDir(join(root, 'minilm'), 7, TINY_MINILM);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(miniLm, f), join(dir, f));
  return dir;
};

// With MiniLM's tokenizer, 'ꙮ' is [CLS] [UNK] [SEP] (ids 101, 100, 102: within 119 rows); 'a great day' reaches thousands.
const rows = (unfitAt: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    text: i === unfitAt ? 'a great day' : 'ꙮ'.repeat(1 + (i % 3)),
    label: i % 2 ? 'positive' : 'negative',
  }));

test('evaluate refuses a test row or a baseline train row the model cannot take, naming the row, before scoring any', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'eval-unfit-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const testbed = stageTestbed(root, 'w');
  const { store } = testbed;
  const small = tinyBertDir(join(root, 'small'), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 });
  const exported = await exportTinyClassifier(join(root, 'a'), { modelDir: small });
  const model = await store.putTree(exported);
  const unfitModel = await store.putTree(withMiniLmTokenizer(exported, root));
  const put = async (name: string, r: ReturnType<typeof rows>) => store.putFile(writeTextTable(join(root, name), r), { mediaType: ARROW });
  const fitting = await put('test.arrow', rows(-1, 12));
  const unfitTest = await put('unfit-test.arrow', rows(8, 12));
  const unfitTrain = await put('unfit-train.arrow', rows(5, 24));

  const messages: string[] = [];
  const ctx = () => testbed.ctx('evaluate', 'r1', (p) => void (p.message && messages.push(p.message)));
  await assert.rejects(
    evaluateStage.run({ model: unfitModel, test: unfitTest, threads: 1 }, ctx()),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'evaluate.test: row 8' &&
      /^the text is one evaluate\.model cannot take: the text holds token id \d{3,}, but config\.json's vocab_size is 119/.test(
        e.bareMessage,
      ),
  );

  // The fine-tuned model (its own tiny tokenizer) takes every test row; the baseline's base model, given MiniLM's
  // tokenizer, cannot take train row 5: refused before any row is embedded.
  const base = withMiniLmTokenizer(tinyBertDir(join(root, 'base'), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 }), root);
  messages.length = 0;
  await assert.rejects(
    evaluateStage.run({ model, test: fitting, baseline: { model: base, train: unfitTrain }, threads: 1 }, ctx()),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'evaluate.baseline.train: row 5' &&
      /^the text holds token id \d{3,}, but config\.json's vocab_size is 119/.test(e.bareMessage),
  );
  assert.ok(!messages.some((m) => /base model embeddings, \d+ of/.test(m)), messages.join('\n'));
});

test("production's decontaminated rows name the test row of a row production cannot take, not its place among them", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'eval-unfit-prod-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const { store, ctx, promote } = stageTestbed(root, 'w');
  const small = tinyBertDir(join(root, 'small'), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 });
  const exported = await exportTinyClassifier(join(root, 'a'), { modelDir: small });
  // The candidate takes every test row; production (MiniLM's tokenizer beside the same weights) cannot take row 6.
  const candidate = await store.putTree(exported);
  const production = await store.putTree(withMiniLmTokenizer(exported, root));
  const texts = Array.from({ length: 12 }, (_, i) => (i === 6 ? 'a great day' : 'ꙮ'.repeat(i + 1)));
  const test = await store.putFile(
    writeTextTable(
      join(root, 'test.arrow'),
      texts.map((text, i) => ({ text, label: i % 2 ? 'positive' : 'negative' })),
    ),
    { mediaType: ARROW },
  );
  // Production was trained on test rows 1 and 3: left out, so test row 6 is row 4 of the rows it is scored on.
  const train = await store.putFile(
    writeTextTable(join(root, 'train.arrow'), [
      { text: texts[1]!, label: 'positive' },
      { text: texts[3]!, label: 'positive' },
    ]),
    { mediaType: ARROW },
  );
  await promote('unfit', production, { train });
  await assert.rejects(
    evaluateStage.run({ model: candidate, test, production: { name: 'unfit' }, threads: 1 }, ctx('evaluate')),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'evaluate.test: row 6' &&
      /^the text is one unfit@1\b.* cannot take: the text holds token id \d{3,}, but config\.json's vocab_size is 119/.test(e.bareMessage),
  );
});

test('the row named is followed by the file and line ingest read it from, where the table has them', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'eval-unfit-source-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const { store, ctx } = stageTestbed(root, 'w');
  const small = tinyBertDir(join(root, 'small'), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 });
  const exported = await exportTinyClassifier(join(root, 'a'), { modelDir: small });
  const model = await store.putTree(withMiniLmTokenizer(exported, root));
  // As ingest writes a table: each row's source file and line (a header on line 1), in batches of 4 rows.
  const r = rows(9, 12);
  const path = join(root, 'ingested.arrow');
  const w = new ArrowTableWriter(path, { text: 'utf8', label: 'utf8', _source: 'utf8', _row: 'int32' }, 4);
  w.writeBatch({
    text: r.map((x) => x.text),
    label: r.map((x) => x.label),
    _source: r.map(() => 'data/reviews.csv'),
    _row: r.map((_, i) => i + 2),
  });
  w.close();
  const test = await store.putFile(path, { mediaType: ARROW });
  // Before: 'evaluate.test: row 9' alone, a row of a store object named by its hash.
  await assert.rejects(
    evaluateStage.run({ model, test, threads: 1 }, ctx('evaluate')),
    (e: unknown) => e instanceof InputError && e.where === 'evaluate.test: row 9 (data/reviews.csv:11)',
  );
});
