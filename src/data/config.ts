/**
 * The `with` config of each data stage, exactly as the library functions accept it. The JSON
 * Schemas in schemas.ts mirror these types; defaults are documented on each field.
 */
import type { ENCODINGS } from './lines.ts';
import type { SourceFormat } from './sources.ts';

export type Task = 'classification' | 'pairs' | 'instruction' | 'chat';
export type TaskColumn = 'text' | 'label' | 'text_a' | 'text_b' | 'prompt' | 'response' | 'messages';

/** Output columns per task, in order (provenance `_source`, `_row`, `_hash` follow). */
export const TASK_COLUMNS: Record<Task, readonly TaskColumn[]> = {
  classification: ['text', 'label'],
  pairs: ['text_a', 'text_b', 'label'],
  instruction: ['prompt', 'response'],
  /** A conversation as canonical JSON text (src/data/conversation.ts). */
  chat: ['messages'],
};

export interface IngestConfig {
  /** File, directory (recursive, files with known extensions) or glob, relative to baseDir; or an http(s) URL (then `sha256` is required). */
  path: string;
  /** URL sources only: expected sha256 (hex) of the downloaded file; a mismatch fails the stage. */
  sha256?: string;
  /** Default: inferred per file from the extension (.jsonl/.ndjson, .csv, .tsv/.tab, .parquet, .arrow/.feather/.ipc). */
  format?: SourceFormat;
  task: Task;
  /**
   * JSONL/CSV/TSV: the files' encoding when not UTF-8, one of ENCODINGS (lines.ts): `utf-16` (byte order from the
   * byte-order mark), `windows-1252` (also as `cp1252`, `latin1`, `iso-8859-1`), `iso-8859-15`, `windows-1250`,
   * `windows-1251`. Default 'utf-8'.
   */
  encoding?: (typeof ENCODINGS)[number];
  /** Task column → source field name. Default: each task column reads the field of the same name. */
  fields?: Partial<Record<TaskColumn, string>>;
  /**
   * Instruction task only: builds `prompt` from source fields, e.g. `{instruction}[[\n\n{input}]]`.
   * `{name}` is replaced by the field's text; a `[[...]]` section is dropped when a field inside it
   * is empty or missing; `{{` and `}}` are literal braces. Syntax: prompt-template.ts. Not with
   * `fields.prompt` (the template builds the prompt).
   */
  promptTemplate?: string;
  /** CSV/TSV: first record is a header. Default true. */
  header?: boolean;
  /** CSV/TSV with `header: false`: column names. Default '1', '2', ... */
  columns?: string[];
  /** CSV/TSV: one character. Default ',' (csv) or '\t' (tsv). */
  delimiter?: string;
  /** CSV/TSV: quote character or false. Default '"' for csv (RFC 4180), false for tsv. */
  quote?: string | false;
  /** Declared label set (classification, pairs); rows with other labels are bad. Default: inferred, sorted. */
  labels?: string[];
  /**
   * Classification, pairs: source label → the label it stands for, applied before the label is checked against `labels`
   * (or counted as a class), e.g. `{ "Ham": "ham", "ham ": "ham", "0": "ham" }` to merge spellings without editing the
   * data. Keys match the label's text exactly (an integer label as its digits); with `labels`, every value must be one
   * of them. Applied once: a value is not looked up again (`{a: b, b: c}` reads a as b; `{a: b, b: a}` swaps them).
   * Default: none (each label is read as it is).
   */
  labelMap?: Record<string, string>;
  /** Longest allowed text field in characters (code points). Default: no limit. */
  maxLength?: number;
  /** Default 'fail'. */
  onBadRow?: 'fail' | 'quarantine';
  /** With onBadRow 'quarantine' (in 'fail' mode any bad row fails): fail when bad rows / rows in exceeds this. Default 0.1. */
  maxBadFraction?: number;
  /**
   * Keep the first this many good rows, in file order (a trial run). Rows after them are neither
   * checked nor kept, but the files are still hashed whole. Default: every row.
   */
  maxRows?: number;
}

export type NormalizeStep = 'nfkc' | 'casefold' | 'whitespace' | 'zeroWidth';

export interface DedupeConfig {
  /** Columns whose text is compared. Default: the task's text columns found in the table (text | text_a+text_b | prompt+response). */
  columns?: string[];
  /** Normalization before comparison; each switchable. Default all true. */
  normalize?: Partial<Record<NormalizeStep, boolean>>;
  /** Exact duplicates on the normalized key. Default true. */
  exact?: boolean;
  /** Near duplicates by MinHash + LSH. Default enabled with the defaults below; false turns it off. */
  near?:
    | false
    | {
        /** Default 'word'. */
        shingle?: 'char' | 'word';
        /** Shingle size in characters or words. Default 5 for char, 3 for word. */
        size?: number;
        /** Signature length. Default 128. */
        numPerm?: number;
        /** LSH bands × rows ≤ numPerm. Default: minimises 0.1·false-candidate + 0.9·missed-pair area around the threshold (candidates are verified, so recall is favoured). */
        bands?: number;
        rows?: number;
        /** Estimated Jaccard needed to call two rows near duplicates. Default 0.8. */
        threshold?: number;
        /** Seed of the hash permutations. Default 0. */
        seed?: number;
      };
  /** Column holding the label, checked for conflicts. Default 'label' when present. */
  labelColumn?: string;
  /** What to do when duplicates disagree on the label. Default 'keep-first'. 'majority' drops a cluster whose labels tie. */
  conflicts?: 'keep-first' | 'drop-all' | 'majority';
}

export interface SplitConfig {
  /** Fractions (summing to 1) or row counts (at most the table size; the remainder goes to train). Default { train: 0.8, validation: 0.1, test: 0.1 }. */
  ratios?: { train?: number; validation?: number; test?: number };
  counts?: { train?: number; validation?: number; test?: number };
  /** Default 0. */
  seed?: number;
  /** Stratify by this column. Default 'label' when present; false turns it off. */
  stratify?: string | false;
  /** Keep rows of one group in one split. Default '_cluster' when present; false turns it off. */
  groupBy?: string | false;
  /** k-fold cross-validation: k train/validation pairs over the non-test rows. */
  kfold?: number;
}
