/**
 * Evaluation of an exported classifier on an Arrow table, and the frozen-feature baseline it must
 * beat: the base model's pooled embeddings (no training) fed to logistic regression.
 */
import { join } from 'node:path';
import { removeDeadNodes } from '../onnx/graph.ts';
import { readArrowBatches, stringColumn, columnValues } from '../data/arrow-io.ts';
import { InputError } from '../errors.ts';
import { classificationReport, type ClassificationReport } from '../eval/metrics.ts';
import { fit, predict as logregPredict } from '../eval/logreg.ts';
import { createSession, type Device } from '../engine/runtime.ts';
import { loadTokenizer } from '../models/tokenizer.ts';
import { sourceOfRow } from '../models/tokenize-arrow.ts';
import { buildBertClassifier, FEATURES, type Pooling } from './bert.ts';
import { KEEP_BYTES, KeptEncodings } from './kept-encodings.ts';
import { loadPredictor, padEncodings } from './predictor.ts';
import { checkPaddingFitsModel, firstUnfit, unfitMessage, UnfitTextError, type ModelRows } from './token-ids.ts';
import { readBertConfig } from '../models/bert.ts';
import { ModelConfig } from '../models/weights.ts';

export interface LabeledTexts {
  texts: string[];
  labels: string[];
}

/** Text and label columns of a table; labels may be strings or class indices into `labelNames`. */
export async function readLabeledTexts(
  path: string,
  textColumn = 'text',
  labelColumn = 'label',
  labelNames?: string[],
): Promise<LabeledTexts> {
  const texts: string[] = [],
    labels: string[] = [];
  let row = 0;
  for await (const b of readArrowBatches(path)) {
    for (const [c, field] of [
      [textColumn, 'textColumn'],
      [labelColumn, 'labelColumn'],
    ] as const) {
      if (!b.schema.fields.some((f) => f.name === c))
        throw new InputError(`column ${JSON.stringify(c)} not found (columns: ${b.schema.fields.map((f) => f.name).join(', ')})`, {
          where: `${path} (${field})`,
        });
    }
    texts.push(...stringColumn(b, textColumn));
    for (const v of columnValues(b, labelColumn)) {
      if (typeof v === 'string') labels.push(v);
      else if (typeof v === 'number' && labelNames?.[v] !== undefined) labels.push(labelNames[v]!);
      else
        throw new InputError(`label ${JSON.stringify(v)} is neither a class name nor an index into the labels`, {
          where: `${path}: row ${row}, column ${labelColumn}`,
        });
      row++;
    }
  }
  return { texts, labels };
}

export interface EvaluateOptions {
  modelFolder: string;
  /** Arrow table (test split). */
  table: string;
  /** What errors call the table (a pipeline field, say); default its path. */
  tableName?: string;
  /** What errors call the model (a pipeline field or a registry version, say); default its folder. */
  modelName?: string;
  /** The row an error names for row `i` of the table (default `i`): a table of some rows of another names that one's. */
  rowOf?: (i: number) => number;
  /** Label order for the report (default: the model's labels). */
  labels?: string[];
  textColumn?: string;
  labelColumn?: string;
  device?: Device;
  threads?: number;
  batchSize?: number;
}

export interface EvaluateResult {
  metrics: ClassificationReport;
  modelId: string;
  predictions: string[];
}

export async function evaluateClassifier(o: EvaluateOptions): Promise<EvaluateResult> {
  const p = await loadPredictor(o.modelFolder, { device: o.device, threads: o.threads, batchSize: o.batchSize });
  try {
    const labels = o.labels ?? p.labels;
    const data = await readLabeledTexts(o.table, o.textColumn, o.labelColumn, labels);
    const unknown = data.labels.find((l) => !labels.includes(l));
    const where = o.tableName ?? o.table;
    if (unknown !== undefined)
      throw new InputError(`label ${JSON.stringify(unknown)} in the table is not one of the model's labels ${JSON.stringify(labels)}`, {
        where: `${where} (labelColumn)`,
        hint: 'a model scores only the labels it was trained on: give its test rows the same labels as its training rows (ingest with `labels:` refuses any other)',
      });
    let predicted;
    try {
      predicted = await p.predict(data.texts);
    } catch (e) {
      throw await unfitRowError(e, { table: o.table, name: where }, o.modelName ?? o.modelFolder, o.rowOf);
    }
    const preds = predicted.map((r) => r.label);
    return { metrics: classificationReport(data.labels, preds, { labels, where }), modelId: p.id, predictions: preds };
  } finally {
    await p.close();
  }
}

/**
 * The predictor's refusal of a text (its place among the table's texts) as the table's row: the row is what to look at,
 * and the hint says what to fix (the model's tokenizer files, or its maxLength).
 */
async function unfitRowError(
  e: unknown,
  table: { table: string; name: string },
  model: string,
  rowOf = (i: number) => i,
): Promise<unknown> {
  if (!(e instanceof UnfitTextError)) return e;
  return new InputError(`the text is one ${model} cannot take: ${e.reason}`, {
    where: `${table.name}: row ${rowOf(e.index)}${await sourceOfRow(table.table, e.index)}`,
    hint: `${e.hint} (${e.where})`,
  });
}

export interface BaselineOptions {
  /** Base model folder (HF layout), not a fine-tuned one. */
  modelDir: string;
  train: string;
  test: string;
  /** What errors call the train and test tables (pipeline fields, say); default their paths. */
  trainName?: string;
  testName?: string;
  labels: string[];
  pooling: Pooling;
  seed: number;
  maxLength?: number;
  textColumn?: string;
  labelColumn?: string;
  device?: Device;
  threads?: number;
  /** L2 strength of the logistic regression (default 1e-3). */
  l2?: number;
  /** Rows embedded so far of all (train and test): embedding is minutes for a large train split. */
  onProgress?: (done: number, total: number) => void;
  /** Bytes of tokens the check keeps for the embedding batches, half a table (default KEEP_BYTES); the rest are tokenized again. */
  keepBytes?: number;
}

export interface BaselineResult {
  metrics: ClassificationReport;
  trainRows: number;
  testRows: number;
  dim: number;
}

/**
 * The baseline's rows are the base model's own to take: a token id or type past its rows means its tokenizer files are
 * not its own, a row longer than its positions a maxLength past them. Every row of every table is checked before any is
 * embedded (embedding the train rows is minutes on a large split, and onnxruntime's Gather or Add failure, retried as
 * transient, named no row), one text's tokens at a time; each table's encodings are kept (`keepBytes` split between the
 * tables) for its embedding batches.
 */
async function checkBaselineRows(
  modelDir: string,
  maxLength: number,
  tables: { path: string; name: string; texts: string[] }[],
  keepBytes: number,
): Promise<KeptEncodings[]> {
  const tok = loadTokenizer(modelDir);
  const vocab = ModelConfig.read(modelDir).raw.vocab_size;
  const bert = readBertConfig(modelDir);
  const rows: ModelRows = {
    vocab: typeof vocab === 'number' && Number.isInteger(vocab) ? vocab : undefined,
    types: bert.typeVocabSize,
    positions: bert.maxPositions,
  };
  checkPaddingFitsModel(modelDir, rows, tok);
  const kept: KeptEncodings[] = [];
  for (const { path, name, texts } of tables) {
    const k = new KeptEncodings(keepBytes / tables.length);
    kept.push(k);
    const found = await firstUnfit(
      texts,
      (t) => tok.encode(t, null, { maxLength }),
      rows,
      (e) => k.add(e),
    );
    if (!found) continue;
    const { index, unfit } = found;
    if (unfit.what === 'length')
      throw new InputError(
        `maxLength ${maxLength} exceeds the model's ${unfit.limit} positions (config.json's max_position_embeddings): row ${index} of ${name} is ${unfit.value} tokens long`,
        { where: 'evaluate.baseline.maxLength', hint: `set maxLength to at most ${unfit.limit}` },
      );
    throw new InputError(unfitMessage(unfit, 'the text'), {
      where: `${name}: row ${index}${await sourceOfRow(path, index)}`,
      hint: `the base model's tokenizer files (${join(modelDir, 'tokenizer.json')}) are not the ones saved with its weights: use those (tokenizer.json, tokenizer_config.json), or a base model whose own they are`,
    });
  }
  return kept;
}

/**
 * Pooled embeddings of the base model (forward only) for each text, one Float32Array per row; checkBaselineRows first,
 * whose kept encodings of these texts the batches take (tokenizing the others).
 */
async function baseEmbeddings(
  modelDir: string,
  texts: string[],
  kept: KeptEncodings,
  o: { pooling: Pooling; maxLength: number; device?: Device; threads?: number; batchSize?: number; onBatch?: (rows: number) => void },
): Promise<Float32Array[]> {
  const { model } = buildBertClassifier(modelDir, { numLabels: 2, pooling: o.pooling, seed: 0 });
  model.graph.outputs = model.graph.outputs.filter((v) => v.name === FEATURES);
  removeDeadNodes(model.graph);
  const session = await createSession(model, { device: o.device ?? 'cpu', threads: o.threads });
  const tok = loadTokenizer(modelDir);
  // Padding never passes the positions the model has (every row fits them: checkBaselineRows).
  const width = Math.min(o.maxLength, readBertConfig(modelDir).maxPositions);
  const bs = o.batchSize ?? 64;
  try {
    // Sorting by length keeps each batch's padding small; results go back to input order.
    const order = texts
      .map((t, i) => [t.length, i] as const)
      .sort((a, b) => a[0] - b[0] || a[1] - b[1])
      .map(([, i]) => i);
    const out = new Array<Float32Array>(texts.length);
    for (let s = 0; s < order.length; s += bs) {
      const idx = order.slice(s, s + bs);
      const feeds = padEncodings(
        tok,
        idx.map((i) => kept.get(i) ?? tok.encode(texts[i]!, null, { maxLength: o.maxLength })),
        width,
        16,
      );
      const f = (await session.run(feeds))[FEATURES]!;
      const dim = f.dims[1]!;
      const data = f.data as Float32Array;
      idx.forEach((i, k) => {
        out[i] = data.slice(k * dim, (k + 1) * dim);
      });
      o.onBatch?.(idx.length);
    }
    return out;
  } finally {
    await session.release();
  }
}

export async function frozenFeatureBaseline(o: BaselineOptions): Promise<BaselineResult> {
  const maxLength = o.maxLength ?? 128;
  const train = await readLabeledTexts(o.train, o.textColumn, o.labelColumn, o.labels);
  const test = await readLabeledTexts(o.test, o.textColumn, o.labelColumn, o.labels);
  const [keptTrain, keptTest] = await checkBaselineRows(
    o.modelDir,
    maxLength,
    [
      { path: o.train, name: o.trainName ?? o.train, texts: train.texts },
      { path: o.test, name: o.testName ?? o.test, texts: test.texts },
    ],
    o.keepBytes ?? KEEP_BYTES,
  );
  const total = train.texts.length + test.texts.length;
  let done = 0;
  const emb = (texts: string[], kept: KeptEncodings) =>
    baseEmbeddings(o.modelDir, texts, kept, {
      pooling: o.pooling,
      maxLength,
      device: o.device,
      threads: o.threads,
      onBatch: (rows) => o.onProgress?.((done += rows), total),
    });
  const Xtr = await emb(train.texts, keptTrain!);
  const Xte = await emb(test.texts, keptTest!);
  const model = fit(Xtr, train.labels, { seed: o.seed, l2: o.l2 });
  const preds = logregPredict(model, Xte);
  return {
    metrics: classificationReport(test.labels, preds, { labels: o.labels, where: o.test }),
    trainRows: Xtr.length,
    testRows: Xte.length,
    dim: Xtr[0]?.length ?? 0,
  };
}
