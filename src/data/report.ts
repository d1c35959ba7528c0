/**
 * Reports of the data stages: plain JSON (they travel in workflow history and land in the run's
 * record) and a readable text rendering for the CLI.
 */
import type { Task } from './config.ts';

export interface SourceFileInfo {
  path: string;
  sha256: string;
  bytes: number;
}
export interface LengthStats {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface IngestReport {
  kind: 'ingest';
  task: Task;
  rowsIn: number;
  rowsOut: number;
  /** Physical lines the rows came from (a quoted CSV record may span several; blank lines and the header excluded); rows for Parquet and Arrow. */
  linesIn: number;
  /** Physical lines of the bad rows; `maxBadFraction` holds for rows and for lines. */
  badLines: number;
  /** Stable reason code → count (quarantined rows). */
  badRows: Record<string, number>;
  /** Label → count among kept rows (empty for instruction data). */
  labels: Record<string, number>;
  sourceFiles: SourceFileInfo[];
  /** sha256 over the source files' hashes in order: identifies the raw data. */
  dataHash: string;
  /** Characters (code points) of the task's text, summed over text columns per row. */
  textLength: LengthStats;
  /** Output column → Arrow type. */
  schema: Record<string, string>;
  /** With `maxRows`: the cap, and the records after the last kept row, which were not checked or kept. */
  maxRows?: number;
  rowsNotTaken?: number;
  /**
   * With `onBadRow: quarantine`, the first quarantined rows as `file:line: reason: detail` (details shortened): what
   * the status shows, so the rows to fix are named without reading the quarantine table. Absent when none was.
   */
  firstQuarantined?: string[];
  /**
   * Lines read that are no rows, so not in `linesIn`: blank ones, and in CSV/TSV lines of delimiters alone (`,,,`, a
   * spreadsheet's empty rows). With the header and `linesIn` they add up to the file's lines (`wc -l`), but for an Excel
   * `sep=` line and, with `maxRows`, the lines of the rows not taken (counted as `rowsNotTaken`, not in `linesIn`).
   * Absent when none.
   */
  blankLines?: number;
  /**
   * CSV/TSV header columns left out because they have no name (pandas' index as `df.to_csv()` writes it, a
   * spreadsheet's empty trailing columns): source file → their 1-based positions. Absent when none.
   */
  unnamedColumns?: Record<string, number[]>;
  /** A file of `unnamedColumns` with more than the 20 listed there → how many more it has. Absent when none. */
  unnamedColumnsNotListed?: Record<string, number>;
  /**
   * What looks wrong with the data though no row is bad: inferred labels that differ only in case or surrounding
   * spaces, or that mix numbers and words (each a class of its own). Absent when none.
   */
  warnings?: string[];
}

export interface DedupeConflict {
  cluster: number;
  reason: 'exact' | 'near';
  /** Label → member count. */
  labels: Record<string, number>;
  /** Policy outcome: the label kept, or null when the cluster was dropped. */
  kept: string | null;
  /** Policy majority: no label had more members than every other, so the cluster was dropped. */
  tie?: true;
}

export interface DedupeReport {
  kind: 'dedupe';
  rowsIn: number;
  rowsOut: number;
  exactRemoved: number;
  nearRemoved: number;
  conflictsRemoved: number;
  /** Clusters with more than one member. */
  clusters: number;
  largestCluster: number;
  /** Up to 20 conflicting clusters, for the user to inspect; `conflictCount` has the total. */
  conflicts: DedupeConflict[];
  conflictCount: number;
  /** Candidate pairs from LSH and how many passed verification. */
  nearCandidates: number;
  nearVerified: number;
  /**
   * Shingles of the prompt template the compared columns were rendered with (ingest's promptTemplate), left out of
   * near-duplicate detection: 0 when they have none (src/data/template-shingles.ts).
   */
  templateShingles: number;
}

export interface SplitPart {
  rows: number;
  labels: Record<string, number>;
}

export interface SplitReport {
  kind: 'split';
  rowsIn: number;
  seed: number;
  /** Split name (train | validation | test | fold-<i>-train | fold-<i>-validation) → counts. */
  splits: Record<string, SplitPart>;
  /** Groups whose rows land in more than one of train/validation/test (or a fold's pair); must be 0. */
  leakage: number;
  groupBy: string | null;
  stratify: string | null;
  /** Largest deviation, over splits and labels, of a label count from its exact proportional share. */
  maxStratifyDeviation: number;
  /** What the split cannot do with this data: a split without any row of a class. Absent when none. */
  warnings?: string[];
}

export type DataReport = IngestReport | DedupeReport | SplitReport;

function pct(n: number, d: number): string {
  return d === 0 ? '-' : `${((100 * n) / d).toFixed(1)}%`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** Most labels a counts line lists: a label field that holds text (a class per row) made one line of every row. */
const COUNTS_LISTED = 30;

function countsLine(m: Record<string, number>): string {
  const keys = Object.keys(m).sort();
  if (keys.length <= COUNTS_LISTED) return keys.length === 0 ? '-' : keys.map((k) => `${k} ${m[k]}`).join(', ');
  const listed = keys.sort((a, b) => m[b] - m[a] || (a < b ? -1 : 1)).slice(0, COUNTS_LISTED);
  const rest = keys.slice(COUNTS_LISTED);
  const restRows = rest.reduce((n, k) => n + m[k], 0);
  return `${listed.map((k) => `${k} ${m[k]}`).join(', ')}, and ${rest.length} more labels (${restRows} rows)`;
}

export function formatDataReport(r: DataReport): string {
  switch (r.kind) {
    case 'ingest': {
      const lines = [
        `ingest (${r.task}): ${r.rowsIn} rows in, ${r.rowsOut} kept, ${r.rowsIn - r.rowsOut} quarantined`,
        table([
          ['', 'rows', 'share'],
          ['kept', String(r.rowsOut), pct(r.rowsOut, r.rowsIn)],
          ...Object.keys(r.badRows)
            .sort()
            .map((k) => [`bad: ${k}`, String(r.badRows[k]), pct(r.badRows[k], r.rowsIn)]),
        ]),
        ...(r.maxRows !== undefined
          ? [
              `maxRows ${r.maxRows}: the first ${r.rowsOut} good rows in file order; ${r.rowsNotTaken ?? 0} rows after them not read into the table`,
            ]
          : []),
        ...(r.firstQuarantined?.length
          ? [
              `quarantined rows${Object.values(r.badRows).reduce((a, b) => a + b, 0) > r.firstQuarantined.length ? ` (the first ${r.firstQuarantined.length}; \`tempered status <run> --quarantine\` prints all, each with its raw text)` : ''}:`,
              ...r.firstQuarantined.map((q) => `  ${q}`),
            ]
          : []),
        ...(r.linesIn !== undefined && r.linesIn !== r.rowsIn
          ? [`physical lines: ${r.linesIn} in, ${r.badLines} in bad rows (${pct(r.badLines, r.linesIn)})`]
          : []),
        ...(r.blankLines ? [`blank lines: ${r.blankLines} skipped, not rows (empty, or delimiters alone)`] : []),
        ...Object.entries(r.unnamedColumns ?? {}).map(
          ([file, cols]) =>
            `left out: ${file}: ${cols.length === 1 ? 'column' : 'columns'} ${cols.join(', ')}${r.unnamedColumnsNotListed?.[file] ? ` and ${r.unnamedColumnsNotListed[file]} more` : ''}, no name in the header${cols[0] === 1 ? ` (${cols.length > 1 ? 'column 1: ' : ''}pandas' index, as df.to_csv() writes it)` : ''}`,
        ),
        `labels: ${countsLine(r.labels)}`,
        ...(r.warnings ?? []).map((w) => `warning: ${w}`),
        `text length (chars): p50 ${r.textLength.p50}, p90 ${r.textLength.p90}, p99 ${r.textLength.p99}, max ${r.textLength.max}`,
        `sources: ${r.sourceFiles.length} file(s), data hash ${r.dataHash.slice(0, 16)}…`,
        ...r.sourceFiles.map((f) => `  ${f.path}  ${f.bytes} bytes  sha256 ${f.sha256.slice(0, 16)}…`),
      ];
      return lines.join('\n');
    }
    case 'dedupe':
      return [
        `dedupe: ${r.rowsIn} rows in, ${r.rowsOut} kept`,
        table([
          ['', 'rows', 'share'],
          ['exact duplicates removed', String(r.exactRemoved), pct(r.exactRemoved, r.rowsIn)],
          ['near duplicates removed', String(r.nearRemoved), pct(r.nearRemoved, r.rowsIn)],
          ['label conflicts removed', String(r.conflictsRemoved), pct(r.conflictsRemoved, r.rowsIn)],
        ]),
        `clusters: ${r.clusters} (largest ${r.largestCluster}); near candidates ${r.nearCandidates}, verified ${r.nearVerified}`,
        ...(r.templateShingles > 0
          ? [`near duplicates compared without the prompt template's own text (${r.templateShingles} shingles)`]
          : []),
        `label conflicts: ${r.conflictCount}`,
        ...r.conflicts.map(
          (c) =>
            `  cluster ${c.cluster} (${c.reason}): ${countsLine(c.labels)} → ${c.kept ?? (c.tie ? 'dropped (no majority)' : 'dropped')}`,
        ),
      ].join('\n');
    case 'split': {
      const names = Object.keys(r.splits);
      let labels = [...new Set(names.flatMap((n) => Object.keys(r.splits[n].labels)))].sort();
      // A column a label: past COUNTS_LISTED the most common, and one column for the rest (a class per row made thousands).
      const total = (l: string) => names.reduce((s, n) => s + (r.splits[n].labels[l] ?? 0), 0);
      const rest = labels.length > COUNTS_LISTED ? [...labels] : [];
      if (rest.length > 0) {
        labels = [...labels].sort((a, b) => total(b) - total(a) || (a < b ? -1 : 1)).slice(0, COUNTS_LISTED);
        const listed = new Set(labels);
        rest.splice(0, rest.length, ...rest.filter((l) => !listed.has(l)));
      }
      return [
        `split (seed ${r.seed}${r.stratify ? `, stratified by ${r.stratify}` : ''}${r.groupBy ? `, grouped by ${r.groupBy}` : ''}): ${r.rowsIn} rows`,
        table([
          ['split', 'rows', 'share', ...labels, ...(rest.length > 0 ? [`${rest.length} more labels`] : [])],
          ...names.map((n) => [
            n,
            String(r.splits[n].rows),
            pct(r.splits[n].rows, r.rowsIn),
            ...labels.map((l) => String(r.splits[n].labels[l] ?? 0)),
            ...(rest.length > 0 ? [String(rest.reduce((s, l) => s + (r.splits[n].labels[l] ?? 0), 0))] : []),
          ]),
        ]),
        `leakage: ${r.leakage} group(s) across splits${r.leakage === 0 ? ' (ok)' : ' (BROKEN)'}; max stratification deviation ${r.maxStratifyDeviation.toFixed(2)} rows`,
        ...(r.warnings ?? []).map((w) => `warning: ${w}`),
      ].join('\n');
    }
  }
}

/** Nearest-rank percentiles from a length histogram (exact, and bounded by the number of distinct lengths). */
export function lengthStats(hist: Map<number, number>): LengthStats {
  const lengths = [...hist.keys()].sort((a, b) => a - b);
  const total = lengths.reduce((s, l) => s + hist.get(l)!, 0);
  if (total === 0) return { p50: 0, p90: 0, p99: 0, max: 0 };
  const at = (q: number) => {
    const rank = Math.max(1, Math.ceil(q * total));
    let seen = 0;
    for (const l of lengths) {
      seen += hist.get(l)!;
      if (seen >= rank) return l;
    }
    return lengths[lengths.length - 1];
  };
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: lengths[lengths.length - 1] };
}
