/** The first rows of an Arrow table as a table of its own (evaluation bounded by a row count). */
import { ArrowTableWriter, readArrowBatches, readArrowSchema } from './arrow-io.ts';

/** Writes the first `maxRows` rows of `input` (same columns and types) to `output`; returns the rows written. */
export async function headTable(input: string, maxRows: number, output: string): Promise<number> {
  const w = new ArrowTableWriter(output, await readArrowSchema(input));
  try {
    for await (const b of readArrowBatches(input)) {
      if (w.rows >= maxRows) break;
      w.writeRecordBatch(b.numRows <= maxRows - w.rows ? b : b.slice(0, maxRows - w.rows));
    }
    return w.close().rows;
  } catch (e) {
    w.abort();
    throw e;
  }
}
