/**
 * `tempered status RUN --quarantine`: every row a run's ingest stages quarantined. The report names the first 10; the
 * rest were only in the quarantine table, an Arrow file in the store that no command read (and on an S3 store not on
 * this host at all). Read through the artifact store, so a shared TEMPERED_STORE's object is fetched and re-hashed.
 */
import { isArtifactRef, type ArtifactRef } from '../../src/types.ts';
import type { ArtifactStore } from '../../src/store/artifact-store.ts';
import { columnValues, readArrowBatches, stringColumn } from '../../src/data/arrow-io.ts';
import type { StageStatus } from '../../workflows/types.ts';
import { CliError } from '../errors.ts';
import { printable } from '../format.ts';

export interface QuarantinedRow {
  stage: string;
  file: string;
  line: number;
  reason: string;
  detail: string;
  raw: string;
}

/** The stages of a run that have a quarantine table, in the run's order. */
export function quarantineTables(stages: readonly StageStatus[]): { stage: string; ref: ArtifactRef }[] {
  return stages.flatMap((s) => (isArtifactRef(s.outputs?.quarantine) ? [{ stage: s.id, ref: s.outputs.quarantine }] : []));
}

/** Each quarantined row of one table, in the order ingest wrote them (file order). */
export async function* quarantinedRows(store: ArtifactStore, stage: string, ref: ArtifactRef): AsyncGenerator<QuarantinedRow> {
  if (!store.remote && !store.has(ref.sha256))
    throw new CliError(
      `stage ${stage}'s quarantine table (sha256 ${ref.sha256}) is not in this host's store (${store.root}): where the run's workers share a TEMPERED_STORE, set it (and AWS_*) here as on them`,
    );
  // Fetched from a shared store when this host lacks it, and re-hashed either way: a damaged copy is an IntegrityError.
  const path = await store.verify(ref);
  for await (const batch of readArrowBatches(path)) {
    const [files, lines, reasons, details, raws] = [
      stringColumn(batch, '_source'),
      columnValues(batch, '_row'),
      stringColumn(batch, 'reason'),
      stringColumn(batch, 'detail'),
      stringColumn(batch, 'raw'),
    ];
    for (let i = 0; i < batch.numRows; i++)
      yield { stage, file: files[i]!, line: Number(lines[i]), reason: reasons[i]!, detail: details[i]!, raw: raws[i]! };
  }
}

/**
 * JSON that parses back to the exact row, with DEL, the C1 controls and U+2028/9 escaped too: JSON.stringify leaves
 * those raw, and has escaped every C0 control already, so printable's escapes touch only them.
 */
function jsonLine(row: QuarantinedRow): string {
  return printable(JSON.stringify(row));
}

/**
 * Prints every quarantined row of the run's stages: `--json`, one JSON object a line (a table may hold millions of
 * rows, so no document to hold whole); else `file:line: reason: detail` and the raw line beneath, with control
 * characters escaped, since file names, details and lines come from the data. Returns the number of rows printed.
 */
export async function printQuarantine(
  store: ArtifactStore,
  runId: string,
  stages: readonly StageStatus[],
  json: boolean,
  write: (line: string) => void | Promise<void>,
): Promise<number> {
  const tables = quarantineTables(stages);
  if (tables.length === 0) {
    if (!json)
      await write(`run ${printable(runId)} has no quarantine table: none of its stages that quarantine rows (ingest) has finished`);
    return 0;
  }
  let total = 0;
  for (const { stage, ref } of tables) {
    if (!json) await write(`${printable(stage)}: ${ref.rows ?? '?'} quarantined row(s)`);
    for await (const row of quarantinedRows(store, stage, ref)) {
      total++;
      if (json) await write(jsonLine(row));
      else await write(`  ${printable(`${row.file}:${row.line}: ${row.reason}: ${row.detail}`)}\n    raw: ${printable(row.raw)}`);
    }
  }
  return total;
}
