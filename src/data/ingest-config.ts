/**
 * Rules of an ingest config that its JSON Schema cannot state (fields that depend on each other,
 * URL sources). The ingest library enforces them before reading, and the stage kind reports them
 * at `tempered validate` time, so a file that validates does not fail on them later.
 */
import { InputError } from '../errors.ts';
import { TASK_COLUMNS, type IngestConfig } from './config.ts';
import { isUrl, urlPin } from './download.ts';
import { formatFromExtension } from './sources.ts';
import { templateFields } from './task-fields.ts';

/** Every rule the config breaks, each as the InputError ingest would throw (`where` is the field). */
export function checkIngestConfig(cfg: IngestConfig): InputError[] {
  const out: InputError[] = [];
  const bad = (message: string, where: string, hint?: string) => out.push(new InputError(message, { where, hint }));
  if (!(cfg.task in TASK_COLUMNS))
    bad(`unknown task ${JSON.stringify(cfg.task)}`, 'task', "use 'classification', 'pairs' or 'instruction'");
  if (cfg.maxBadFraction !== undefined && !(cfg.maxBadFraction >= 0 && cfg.maxBadFraction <= 1))
    bad(`maxBadFraction must be within [0, 1], got ${cfg.maxBadFraction}`, 'maxBadFraction');
  if (cfg.maxLength !== undefined && !(Number.isInteger(cfg.maxLength) && cfg.maxLength > 0))
    bad(`maxLength must be a positive integer, got ${cfg.maxLength}`, 'maxLength');
  if (cfg.promptTemplate !== undefined) {
    if (cfg.task !== 'instruction') bad('promptTemplate applies to the instruction task only', 'promptTemplate');
    else if (templateFields(cfg.promptTemplate).length === 0)
      bad('promptTemplate names no {field}', 'promptTemplate', 'e.g. "{instruction}[[\\n\\n{input}]]"');
  }
  if (cfg.labels !== undefined) {
    if (cfg.task === 'instruction') bad('labels apply to classification and pairs only', 'labels');
    else if (cfg.labels.length === 0 || new Set(cfg.labels).size !== cfg.labels.length)
      bad('labels must be a non-empty list without repeats', 'labels');
  }
  if (isUrl(cfg.path)) {
    try {
      urlPin(cfg.sha256);
    } catch (e) {
      out.push(e as InputError);
    }
    if (!cfg.format && !formatFromExtension(new URL(cfg.path).pathname))
      bad(
        `cannot tell the format of ${cfg.path} from its extension`,
        'format',
        "set format: 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'arrow'",
      );
  } else if (cfg.sha256 !== undefined) bad('sha256 applies to http(s) URL sources only', 'sha256');
  if (cfg.header === false && cfg.columns === undefined && cfg.fields === undefined && cfg.promptTemplate === undefined) {
    // Without names the default task fields ('text', 'label') can never match '1', '2', ...
    bad('header is false but neither columns nor fields are given', 'columns', "name the columns, e.g. columns: ['label', 'text']");
  }
  return out;
}
