/**
 * The test rows the evaluate stage may score the production version on: those whose task input is not in the rows
 * production was trained on. A scheduled retrain re-splits the whole table, so most of the candidate's test rows
 * were in production's training split; scored on them, production's figures are its memory, not its skill.
 *
 * Production's training rows are the `train` data set its registered lineage records (register's
 * `data: { train: ... }`), read from the artifact store. Loaded by the stage when it runs (Arrow).
 */
import { DataType } from 'apache-arrow';
import { ArrowTableWriter, readArrowBatches, readArrowSchema, stringColumn, takeRows } from '../data/arrow-io.ts';
import { columnTemplates } from '../data/template-shingles.ts';
import { MESSAGES, promptText, trainedInputs } from '../data/conversation.ts';
import { SeenInputs } from '../eval/contamination.ts';
import { InputError, IntegrityError } from '../errors.ts';
import type { DataRef } from '../registry/types.ts';
import { uriFor, type ArtifactStore } from '../store/artifact-store.ts';

/** The lineage data set that holds a version's training rows. */
export const TRAINING_DATA = 'train';

export type ProductionTraining =
  | { checked: true; data: DataRef; seen: SeenInputs; rows: number; /** The training table's local file. */ path: string }
  /** Not available: why, in a sentence that follows "production was scored on all test rows: ". */
  | { checked: false; reason: string };

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The normalised inputs (`columns`, in order) of production's training rows. Not available (`checked: false`) when its
 * lineage records no `train` data, when the store no longer has it (another host's store, a deleted or damaged
 * object: an IntegrityError) or when it is not a table with those text columns. Other faults (a bucket that does not
 * answer) are thrown: the stage retries rather than compare on rows production may have learnt.
 */
export async function productionTraining(
  store: ArtifactStore,
  lineage: readonly DataRef[],
  columns: readonly string[],
  signal?: AbortSignal,
  /**
   * The test table's file: the prompt template it records (src/data/template-shingles.ts), like the training table's,
   * is left out of the near-duplicate checks.
   */
  testTable?: string,
): Promise<ProductionTraining> {
  const data = lineage.find((d) => d.name === TRAINING_DATA);
  if (!data)
    return {
      checked: false,
      reason: `its registered lineage records no '${TRAINING_DATA}' data${lineage.length ? ` (it records ${lineage.map((d) => `'${d.name}'`).join(', ')})` : ''}`,
    };
  if (!HEX64.test(data.sha256)) return { checked: false, reason: `its '${TRAINING_DATA}' data has a malformed sha256` };
  let path: string;
  try {
    path = await store.localPath(uriFor(data.sha256));
  } catch (e) {
    if (e instanceof IntegrityError)
      return { checked: false, reason: `its training data (${data.sha256.slice(0, 12)}…) is not available: ${e.message}` };
    throw e;
  }
  const where = `its training data (${data.sha256.slice(0, 12)}…)`;
  let schema;
  try {
    schema = await readArrowSchema(path);
  } catch (e) {
    return { checked: false, reason: `${where} is not an Arrow table: ${(e as Error).message}` };
  }
  for (const c of columns) {
    const f = schema.fields.find((x) => x.name === c);
    if (!f || !(DataType.isUtf8(f.type) || DataType.isLargeUtf8(f.type)))
      return {
        checked: false,
        reason: `${where} has no text column '${c}' (columns: ${schema.fields.map((x) => x.name).join(', ')})`,
      };
  }
  const templates = [];
  try {
    templates.push(columnTemplates(schema, columns, where));
  } catch (e) {
    if (e instanceof InputError) return { checked: false, reason: e.message };
    throw e;
  }
  if (testTable !== undefined) templates.push(columnTemplates(await readArrowSchema(testTable), columns, 'the test table'));
  const seen = new SeenInputs(undefined, undefined, templates);
  let rows = 0;
  for await (const b of readArrowBatches(path)) {
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('evaluation was aborted');
    // A conversation taught its every trained reply, each after the messages before it: all are its inputs.
    if (columns.length === 1 && columns[0] === MESSAGES) {
      for (const cell of stringColumn(b, MESSAGES)) seen.add(...trainedInputs(cell).map((t) => [t]));
      rows += b.numRows;
      continue;
    }
    const cols = columns.map((c) => stringColumn(b, c));
    const values = new Array<string>(cols.length);
    for (let i = 0; i < b.numRows; i++, rows++) {
      for (let c = 0; c < cols.length; c++) values[c] = cols[c]![i]!;
      seen.add(values);
    }
  }
  return { checked: true, data, seen, rows, path };
}

/** A batch's input column as text: a chat table's conversations as the messages before their last trained reply (promptText). */
function inputTexts(b: Parameters<typeof stringColumn>[0], column: string): string[] {
  const texts = stringColumn(b, column);
  return column === MESSAGES ? texts.map(promptText) : texts;
}

/** Near-duplicate test inputs the report quotes. */
const NEAR_EXAMPLES = 5;

export interface CleanRows {
  /** Rows written to `output`: the first `maxRows` (all without it) test rows production was not trained on. */
  rows: number;
  /** Test rows left out on the way (their input is one of production's training inputs, or a near duplicate of one). */
  contaminated: number;
  /** Of those, the ones left out as near duplicates (not the same input after normalisation). */
  near: number;
  /**
   * The inputs of the first few of them (each column's text, cut at 200 characters), so a person can see what passed
   * for a near duplicate: with a long prompt template around short inputs, two different inputs can.
   */
  nearExamples: string[][];
  /** For each of nearExamples, the input of the training row it was found near (cut the same way). */
  nearMatches: string[][];
  /** The test row each written row is, in order. */
  testRows: number[];
}

/**
 * Writes the first `maxRows` test rows (all without maxRows) whose input `seen` does not hold, nor a near duplicate of it, to `output`, in the
 * test split's order, same columns. Reads the test split no further than it needs.
 */
export async function writeCleanRows(
  test: string,
  seen: SeenInputs,
  columns: readonly string[],
  maxRows: number | undefined,
  output: string,
  /** The training table `seen` was filled from, row by row: near duplicates' matches are quoted from it. */
  trainingTable?: string,
): Promise<CleanRows> {
  const schema = await readArrowSchema(test);
  for (const c of columns)
    if (!schema.fields.some((f) => f.name === c))
      throw new InputError(`the test table has no column ${JSON.stringify(c)} (columns: ${schema.fields.map((f) => f.name).join(', ')})`, {
        where: 'evaluate.test',
      });
  const limit = maxRows ?? Infinity;
  const w = new ArrowTableWriter(output, schema);
  const testRows: number[] = [];
  let contaminated = 0;
  let near = 0;
  const nearExamples: string[][] = [];
  const nearRows: (number | undefined)[] = [];
  let row = 0;
  try {
    for await (const b of readArrowBatches(test)) {
      if (testRows.length >= limit) break;
      const cols = columns.map((c) => inputTexts(b, c));
      const values = new Array<string>(cols.length);
      const keep: number[] = [];
      for (let i = 0; i < b.numRows && testRows.length < limit; i++, row++) {
        for (let c = 0; c < cols.length; c++) values[c] = cols[c]![i]!;
        const as = seen.seenAs(values);
        if (as) {
          contaminated++;
          if (as === 'near' && near++ < NEAR_EXAMPLES) {
            nearExamples.push(values.map(quoted));
            nearRows.push(seen.lastNearRow);
          }
        } else {
          keep.push(i);
          testRows.push(row);
        }
      }
      if (keep.length === b.numRows) w.writeRecordBatch(b);
      else if (keep.length) w.writeRecordBatch(takeRows(b, keep, w.schema));
    }
    const written = w.close().rows;
    const nearMatches = trainingTable && nearRows.length ? await inputsAt(trainingTable, columns, nearRows) : [];
    return { rows: written, contaminated, near, nearExamples, nearMatches, testRows };
  } catch (e) {
    w.abort();
    throw e;
  }
}

/** A column's text as a report quotes it: at most 200 characters. */
const quoted = (v: string) => (v.length > 200 ? `${v.slice(0, 197)}...` : v);

/** The input columns of the rows numbered `rows` (in table order, 0-based) of `table`, quoted; [] for a row not found. */
async function inputsAt(table: string, columns: readonly string[], rows: readonly (number | undefined)[]): Promise<string[][]> {
  const wanted = new Map<number, string[]>();
  for (const r of rows) if (r !== undefined) wanted.set(r, []);
  const last = Math.max(-1, ...wanted.keys());
  let row = 0;
  for await (const b of readArrowBatches(table)) {
    if (row > last) break;
    const cols = columns.map((c) => inputTexts(b, c));
    for (let i = 0; i < b.numRows; i++, row++)
      if (wanted.has(row))
        wanted.set(
          row,
          cols.map((c) => quoted(c[i] ?? '')),
        );
  }
  return rows.map((r) => (r === undefined ? [] : wanted.get(r)!));
}
