/**
 * JSON Schemas (draft 2020-12) of each data stage's `with` block, mirroring config.ts exactly
 * (additionalProperties: false everywhere). Defaults are stated with `default` and in the
 * descriptions; the library applies them, the schemas only document them.
 */
import { BAD_REASONS } from './bad-rows.ts';
import { ENCODINGS } from './lines.ts';

const DIALECT = 'https://json-schema.org/draft/2020-12/schema';
const fieldName = { type: 'string', minLength: 1 } as const;

export const ingestWithSchema = {
  $schema: DIALECT,
  $id: 'tempered:data/ingest.with',
  title: 'ingest: with',
  description: `Reads source files into a task table plus a quarantine table. Bad-row reason codes: ${BAD_REASONS.join(', ')}.`,
  type: 'object',
  additionalProperties: false,
  required: ['path', 'task'],
  properties: {
    path: {
      type: 'string',
      minLength: 1,
      description:
        'File, directory (recursive; known extensions only) or glob (*, **, ?, [..], {a,b}), relative to the pipeline file; or an http(s) URL with sha256.',
    },
    sha256: { type: 'string', pattern: '^[0-9a-fA-F]{64}$', description: 'Required for URL sources: expected sha256 of the file.' },
    format: { enum: ['jsonl', 'csv', 'tsv', 'parquet', 'arrow'], description: "Default: from each file's extension." },
    encoding: {
      enum: [...ENCODINGS],
      default: 'utf-8',
      description:
        "JSONL/CSV/TSV: the files' encoding. windows-1252 (also as latin1 or iso-8859-1, read as browsers and Python's cp1252 read them) is what Excel on Windows and older Western European programs save; utf-16 (byte order from its byte-order mark) what Excel's Unicode Text saves.",
    },
    task: {
      enum: ['classification', 'pairs', 'instruction', 'chat'],
      description:
        'Output columns: text,label | text_a,text_b,label | prompt,response | messages (chat: OpenAI-format conversations, a list of {role: system|user|assistant, content, weight?: 0|1}, stored as JSON text).',
    },
    fields: {
      type: 'object',
      additionalProperties: false,
      description: 'Task column → source field. Default: same name.',
      properties: {
        text: fieldName,
        label: fieldName,
        text_a: fieldName,
        text_b: fieldName,
        prompt: fieldName,
        response: fieldName,
        messages: fieldName,
      },
    },
    promptTemplate: {
      type: 'string',
      minLength: 1,
      description:
        'Instruction task: builds the prompt, e.g. "{instruction}[[\\n\\n{input}]]". {name} is a source field; [[...]] is dropped when a field inside is missing or empty (sections do not nest); {{ and }} are literal braces. Not with fields.prompt. At most 65,536 characters. Recorded on the prompt column, so that dedupe compares near duplicates without its text.',
    },
    header: { type: 'boolean', default: true, description: 'CSV/TSV: first record is a header.' },
    columns: {
      type: 'array',
      items: fieldName,
      minItems: 1,
      uniqueItems: true,
      description: 'CSV/TSV with header: false: column names. Default "1", "2", ...',
    },
    delimiter: { type: 'string', minLength: 1, maxLength: 1, description: 'Default "," (csv) or "\\t" (tsv).' },
    quote: {
      oneOf: [{ type: 'string', minLength: 1, maxLength: 1 }, { const: false }],
      description: 'Default "\\"" for csv, false (no quoting) for tsv.',
    },
    labels: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      minItems: 1,
      uniqueItems: true,
      description: 'Declared label set; default inferred (sorted).',
    },
    labelMap: {
      type: 'object',
      propertyNames: { minLength: 1 },
      additionalProperties: { type: 'string', minLength: 1 },
      minProperties: 1,
      description:
        'Classification, pairs: source label → the label it stands for, applied before labels are checked, e.g. {"Ham": "ham", "ham ": "ham", "0": "ham"} to merge spellings without editing the data. Keys match the label text exactly (an integer label as its digits); with labels, every value must be one of them.',
    },
    maxLength: {
      type: 'integer',
      minimum: 1,
      description: "Longest text field (chat: each message's content) in characters; default unlimited.",
    },
    onBadRow: { enum: ['fail', 'quarantine'], default: 'fail' },
    maxBadFraction: {
      type: 'number',
      minimum: 0,
      maximum: 1,
      default: 0.1,
      description: "With onBadRow: quarantine: fail when bad rows / rows in exceeds this. ('fail' fails on any bad row.)",
    },
    maxRows: {
      type: 'integer',
      minimum: 1,
      description:
        'Keep the first this many good rows, in file order, for a quick trial run; later rows are not checked or kept (the files are still read whole, so their hashes name all of them). Not a random sample: a file sorted by label gives a skewed subset. Default: every row.',
    },
  },
} as const;

export const dedupeWithSchema = {
  $schema: DIALECT,
  $id: 'tempered:data/dedupe.with',
  title: 'dedupe: with',
  description: 'Removes exact (normalized) and near (MinHash + LSH) duplicates; resolves label conflicts.',
  type: 'object',
  additionalProperties: false,
  properties: {
    columns: {
      type: 'array',
      items: fieldName,
      minItems: 1,
      uniqueItems: true,
      description: 'Text columns compared. Default: text | text_a+text_b | prompt+response.',
    },
    normalize: {
      type: 'object',
      additionalProperties: false,
      description: 'Normalization steps before comparing; all default true.',
      properties: {
        nfkc: { type: 'boolean', default: true },
        casefold: { type: 'boolean', default: true },
        whitespace: { type: 'boolean', default: true, description: 'Collapse runs of whitespace and trim.' },
        zeroWidth: { type: 'boolean', default: true, description: 'Remove U+200B–U+200D, U+2060, U+FEFF.' },
      },
    },
    exact: { type: 'boolean', default: true },
    near: {
      description: 'MinHash + LSH settings, or false to skip near-duplicate detection. Default enabled.',
      oneOf: [
        { const: false },
        {
          type: 'object',
          additionalProperties: false,
          properties: {
            shingle: { enum: ['char', 'word'], default: 'word' },
            size: { type: 'integer', minimum: 1, description: 'Default 5 (char) or 3 (word).' },
            numPerm: { type: 'integer', minimum: 1, maximum: 1024, default: 128 },
            bands: {
              type: 'integer',
              minimum: 1,
              description:
                'Default: minimises 0.1·false-candidate + 0.9·missed-pair area for the threshold (candidates are verified, so recall is favoured); bands × rows ≤ numPerm.',
            },
            rows: { type: 'integer', minimum: 1 },
            threshold: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.8 },
            seed: { type: 'integer', default: 0 },
          },
        },
      ],
    },
    labelColumn: { ...fieldName, description: "Default 'label' when present." },
    conflicts: { enum: ['keep-first', 'drop-all', 'majority'], default: 'keep-first' },
  },
} as const;

const splitShares = (integer: boolean) => ({
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: Object.fromEntries(
    ['train', 'validation', 'test'].map((k) => [k, integer ? { type: 'integer', minimum: 0 } : { type: 'number', minimum: 0, maximum: 1 }]),
  ),
});

export const splitWithSchema = {
  $schema: DIALECT,
  $id: 'tempered:data/split.with',
  title: 'split: with',
  description: 'Seeded, stratified, group-aware train/validation/test or k-fold split.',
  type: 'object',
  additionalProperties: false,
  properties: {
    ratios: {
      ...splitShares(false),
      description: 'Fractions summing to 1. Default {train: 0.8, validation: 0.1, test: 0.1}. With kfold: only test.',
    },
    counts: { ...splitShares(true), description: 'Row counts; omit train to give it the remainder. With kfold: only test.' },
    seed: { type: 'integer', default: 0 },
    stratify: { oneOf: [fieldName, { const: false }], description: "Default 'label' when present." },
    groupBy: { oneOf: [fieldName, { const: false }], description: "Default '_cluster' when present." },
    kfold: { type: 'integer', minimum: 2, maximum: 100 },
  },
  // ratios and counts are alternatives.
  dependentSchemas: { ratios: { properties: { counts: false } } },
} as const;
