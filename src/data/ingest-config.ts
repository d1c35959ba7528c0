/**
 * Rules of an ingest config that its JSON Schema cannot state (fields that depend on each other,
 * URL sources). The ingest library enforces them before reading, and the stage kind reports them
 * at `tempered validate` time, so a file that validates does not fail on them later.
 */
import { InputError } from '../errors.ts';
import { TASK_COLUMNS, type IngestConfig } from './config.ts';
import { isUrl, urlPin } from './download.ts';
import { escapedLabel } from './label-spellings.ts';
import { isTemplateError, parseTemplate, type ParsedTemplate } from './prompt-template.ts';
import { formatFromExtension } from './sources.ts';
import { redactUrl } from '../util/redact.ts';

/** A config error at a field; for a string field, also the offset inside the string the problem is at. */
export class ConfigError extends InputError {
  /** 0-based offset in the field's string value (e.g. a promptTemplate's unclosed `[[`). */
  readonly offset?: number;
  constructor(message: string, opts: { where: string; hint?: string; offset?: number }) {
    super(message, opts);
    this.offset = opts.offset;
  }
}

/** The syntax of a promptTemplate (`{field}`, `[[ … ]]`, `{{` `}}`): its first error, at its offset, or its parse. */
export function checkPromptTemplate(template: string): ParsedTemplate | ConfigError {
  const p = parseTemplate(template);
  return isTemplateError(p) ? new ConfigError(p.message, { where: 'promptTemplate', hint: p.hint, offset: p.offset }) : p;
}

const DELIMITED_ONLY = ['header', 'columns', 'delimiter', 'quote'] as const;

/** Every rule the config breaks, each as the InputError ingest would throw (`where` is the field). */
export function checkIngestConfig(cfg: IngestConfig): InputError[] {
  const out: InputError[] = [];
  const bad = (message: string, where: string, hint?: string, offset?: number) =>
    out.push(new ConfigError(message, { where, hint, offset }));
  const taskKnown = Object.hasOwn(TASK_COLUMNS, cfg.task);
  if (!taskKnown) bad(`unknown task ${JSON.stringify(cfg.task)}`, 'task', "use 'classification', 'pairs', 'instruction' or 'chat'");
  if (cfg.maxBadFraction !== undefined && !(cfg.maxBadFraction >= 0 && cfg.maxBadFraction <= 1))
    bad(`maxBadFraction must be within [0, 1], got ${cfg.maxBadFraction}`, 'maxBadFraction');
  else if (cfg.maxBadFraction !== undefined && (cfg.onBadRow ?? 'fail') === 'fail')
    bad(
      'maxBadFraction applies with onBadRow: quarantine only: with onBadRow: fail (the default) the first bad row fails the stage, so it would be ignored',
      'maxBadFraction',
      'set onBadRow: quarantine to keep going past bad rows up to this fraction, or remove maxBadFraction',
    );
  if (cfg.maxLength !== undefined && !(Number.isInteger(cfg.maxLength) && cfg.maxLength > 0))
    bad(`maxLength must be a positive integer, got ${cfg.maxLength}`, 'maxLength');
  if (cfg.maxRows !== undefined && !(Number.isInteger(cfg.maxRows) && cfg.maxRows > 0))
    bad(`maxRows must be a positive integer, got ${cfg.maxRows}`, 'maxRows');
  if (cfg.promptTemplate !== undefined) {
    if (cfg.task !== 'instruction') bad('promptTemplate applies to the instruction task only', 'promptTemplate');
    else {
      const t = checkPromptTemplate(cfg.promptTemplate);
      if (t instanceof ConfigError) out.push(t);
      if (cfg.fields?.prompt !== undefined)
        bad(
          'promptTemplate builds the prompt, so fields.prompt would be ignored: remove one',
          'fields.prompt',
          'to use a field as the prompt unchanged, write promptTemplate: "{name}" or keep fields.prompt alone',
        );
    }
  }
  if (taskKnown && cfg.fields !== undefined) {
    const cols = TASK_COLUMNS[cfg.task];
    for (const k of Object.keys(cfg.fields))
      if (!(cols as readonly string[]).includes(k))
        bad(
          `fields.${k} does not apply to task ${cfg.task}, which has no ${k} column: it would be ignored`,
          `fields.${k}`,
          `the ${cfg.task} task's columns are ${cols.join(', ')}`,
        );
  }
  if (cfg.labels !== undefined) {
    if (cfg.task === 'instruction' || cfg.task === 'chat') bad('labels apply to classification and pairs only', 'labels');
    else if (cfg.labels.length === 0 || new Set(cfg.labels).size !== cfg.labels.length)
      bad('labels must be a non-empty list without repeats', 'labels');
    else {
      // One text in two Unicode normal forms ("café" pasted from two places) prints alike: two classes that no report,
      // metric or answer could tell apart, each taking the rows written its way.
      const byNfc = new Map<string, string>();
      for (const l of cfg.labels) {
        const n = l.normalize('NFC');
        const first = byNfc.get(n);
        if (first === undefined) {
          byNfc.set(n, l);
          continue;
        }
        const [kept, other] = l === n ? [l, first] : [first, l];
        bad(
          `labels ${escapedLabel(first)} and ${escapedLabel(l)} are one text in two Unicode normal forms: they print alike but would be two classes`,
          'labels',
          // Neither may be NFC (combining marks in either order): the hint must not name a third spelling as the one kept.
          `keep one (${kept === n ? `${escapedLabel(n)} is NFC, what most tools write` : `neither is NFC, ${escapedLabel(n)}, what most tools write; either does`}) and map the other onto it: labelMap: {${escapedLabel(other)}: ${escapedLabel(kept)}}`,
        );
        break;
      }
    }
  }
  if (cfg.labelMap !== undefined) {
    if (cfg.task === 'instruction' || cfg.task === 'chat') bad('labelMap applies to classification and pairs only', 'labelMap');
    else if (cfg.labels !== undefined && cfg.labels.length > 0) {
      for (const [from, to] of Object.entries(cfg.labelMap))
        if (!cfg.labels.includes(to))
          bad(
            `labelMap maps ${JSON.stringify(from)} to ${JSON.stringify(to)}, which is not one of labels ${JSON.stringify(cfg.labels)}`,
            `labelMap.${from}`,
            `map it to one of ${cfg.labels.map((l) => JSON.stringify(l)).join(', ')}, or add ${JSON.stringify(to)} to labels`,
          );
    }
  }
  if (isUrl(cfg.path)) {
    try {
      urlPin(cfg.sha256);
    } catch (e) {
      out.push(e as InputError);
    }
    if (!cfg.format && !formatFromExtension(new URL(cfg.path).pathname))
      bad(
        `cannot tell the format of ${redactUrl(cfg.path)} from its extension`,
        'format',
        "set format: 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'arrow'",
      );
  } else if (cfg.sha256 !== undefined) bad('sha256 applies to http(s) URL sources only', 'sha256');
  // CSV/TSV settings on a source that is known to be another format are never read.
  const format = cfg.format ?? formatFromExtension(isUrl(cfg.path) ? new URL(cfg.path).pathname : cfg.path);
  if ((format === 'parquet' || format === 'arrow') && cfg.encoding !== undefined && cfg.encoding !== 'utf-8')
    bad(
      `encoding applies to text sources (JSONL, CSV, TSV) only; this source is ${format}${cfg.format ? '' : ' (from its extension)'}, whose strings are UTF-8, so it would be ignored`,
      'encoding',
      'remove it',
    );
  if (format !== undefined && format !== 'csv' && format !== 'tsv') {
    for (const k of DELIMITED_ONLY)
      if (cfg[k] !== undefined)
        bad(
          `${k} applies to CSV/TSV sources only; this source is ${format}${cfg.format ? '' : ' (from its extension)'}, so it would be ignored`,
          k,
          'remove it, or set format: csv | tsv if the files are delimited text',
        );
    return out;
  }
  // A line break ends a record before any delimiter or quote is looked at: as either it splits nothing. The quote as
  // the delimiter too could not be told from it.
  const lineBreak = (c: unknown) => c === '\n' || c === '\r';
  if (lineBreak(cfg.delimiter))
    bad(
      `delimiter ${JSON.stringify(cfg.delimiter)} is a line break: records end at line breaks, so it would split no line`,
      'delimiter',
      'set the character between fields (",", ";", "\\t", "|")',
    );
  if (lineBreak(cfg.quote))
    bad(
      `quote ${JSON.stringify(cfg.quote)} is a line break, which ends a record`,
      'quote',
      'set the quote character ("\'" or \'"\'), or quote: false',
    );
  const quote = cfg.quote === undefined ? (format === 'tsv' ? false : '"') : cfg.quote;
  if (cfg.delimiter !== undefined && cfg.delimiter === quote)
    bad(
      `delimiter and quote are both ${JSON.stringify(cfg.delimiter)}: a field's quotes could not be told from the delimiters between fields`,
      'delimiter',
      'set another delimiter, or quote: false if the file quotes nothing',
    );
  if (cfg.columns !== undefined && cfg.header !== false)
    bad(
      "columns names the columns of a file without a header, but header is true (the default): the header's names are used and columns would be ignored",
      'columns',
      'set header: false if the first line is data, or remove columns',
    );
  if (cfg.header === false && cfg.columns === undefined && cfg.fields === undefined && cfg.promptTemplate === undefined) {
    // Without names the default task fields ('text', 'label') can never match '1', '2', ...
    bad('header is false but neither columns nor fields are given', 'columns', "name the columns, e.g. columns: ['label', 'text']");
  }
  return out;
}
