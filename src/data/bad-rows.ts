/** Stable codes for rows that ingest rejects; quarantine files and reports use them verbatim. */
export const BAD_REASONS = [
  'invalid-utf8', // bytes on the line are not valid UTF-8
  'invalid-json', // JSONL line does not parse
  'not-object', // JSONL line parses but is not a JSON object
  'csv-syntax', // quoting error in a CSV/TSV record
  'column-count', // CSV/TSV record has a different number of columns than the header
  'missing-field', // a mapped text field is absent or null
  'not-string', // a mapped text field is not a string
  'empty-text', // a text field is empty or only whitespace
  'missing-label', // label absent, null or empty
  'invalid-label', // label is not a string, integer or boolean
  'unknown-label', // label not in the declared `labels`
  'too-long', // a text field exceeds maxLength characters
  'lone-surrogate', // a text field or label holds an unpaired UTF-16 surrogate (a JSON \ud800 escape), which UTF-8 cannot store
  'line-too-long', // a physical line exceeds the reader's line limit (64 MiB by default)
  'invalid-conversation', // chat task: messages is not a valid conversation (roles, order, weights, content)
  'duplicate-field', // JSONL: a field the task reads is named twice in the object (which value is meant cannot be told)
] as const;
export type BadReason = (typeof BAD_REASONS)[number];

export interface BadRow {
  reason: BadReason;
  detail: string;
  /** missing-field: the source field the row lacks (for the hint when every row lacks the same one). */
  field?: string;
  /** unknown-label: the row's label is this declared label written differently (case, spaces, "1.0" for "1"). */
  spelling?: { label: string; meant: string };
}
