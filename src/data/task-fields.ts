/**
 * Maps a source record onto a task's columns and checks it. Returns the row or a BadRow; never
 * throws for bad data, so the caller decides between failing and quarantining.
 */
import type { BadRow } from './bad-rows.ts';
import { declaredSpelling, quotedPair } from './label-spellings.ts';
import { TASK_COLUMNS, type IngestConfig, type TaskColumn } from './config.ts';
import { InputError } from '../errors.ts';
import { isTemplateError, parseTemplate, type ParsedTemplate } from './prompt-template.ts';
import { conversationJson, parseConversation, type ConversationMessage } from './conversation.ts';

export type TaskRow = Partial<Record<TaskColumn, string>>;

/** Length in code points, the unit users count in; UTF-16 length is an upper bound, so it is a fast path. */
function tooLong(s: string, max: number): number | null {
  if (s.length <= max) return null;
  let n = 0;
  for (const _ of s) n++;
  return n > max ? n : null;
}

/**
 * A field of a source record: own properties only, so a field the row lacks is missing even when
 * its name is inherited (`constructor`, `toString`, `__proto__`).
 */
function field(values: Record<string, unknown>, name: string): unknown {
  return Object.hasOwn(values, name) ? values[name] : undefined;
}

/** In `u` mode surrogate pairs are one code point, so only an unpaired surrogate is in category Cs. */
const LONE_SURROGATE = /\p{Cs}/u;

function renderTemplate(sections: ParsedTemplate['sections'], values: Record<string, unknown>): string | BadRow {
  let out = '';
  for (const s of sections) {
    let dropped = false;
    let text = '';
    for (const p of s.pieces) {
      if (typeof p === 'string') {
        text += p;
        continue;
      }
      const v = field(values, p.field);
      if (v === undefined || v === null) {
        if (s.optional) {
          dropped = true;
          continue;
        }
        // null (pandas' NaN) as in fieldText: the field is there, so no hint that the template names the wrong one.
        return v === null
          ? { reason: 'missing-field', detail: `template field ${JSON.stringify(p.field)} is null` }
          : { reason: 'missing-field', detail: `template field ${JSON.stringify(p.field)} is missing`, field: p.field };
      }
      if (typeof v !== 'string')
        return { reason: 'not-string', detail: `template field ${JSON.stringify(p.field)} is ${typeof v}, expected string` };
      if (s.optional && v.trim() === '') dropped = true;
      text += v;
    }
    if (!dropped) out += text;
  }
  return out;
}

/**
 * The text of source field `f`, read as column `column` (named in the detail), or why the row has none: the field
 * is missing or null, or not a string. `tempered predict` reads its text field through this too.
 */
export function fieldText(values: Record<string, unknown>, f: string, column: string): string | BadRow {
  const v = field(values, f);
  if (v === undefined) return { reason: 'missing-field', detail: `field ${JSON.stringify(f)} (${column}) is missing`, field: f };
  // null is what pandas writes for NaN: the field is there, so "missing" (and the hint that every row lacks it, that
  // the mapping is wrong) would send the user looking for a column the file has.
  if (v === null) return { reason: 'missing-field', detail: `field ${JSON.stringify(f)} (${column}) is null` };
  if (typeof v !== 'string')
    return {
      reason: 'not-string',
      detail: `field ${JSON.stringify(f)} (${column}) is ${Array.isArray(v) ? 'an array' : typeof v}, expected string`,
    };
  return v;
}

/** Why `text` cannot be column `column`'s (empty, a lone surrogate, over `max` code points), or undefined when it can. */
export function badText(text: string, column: string, max?: number): BadRow | undefined {
  if (text.trim() === '') return { reason: 'empty-text', detail: `${column} is empty` };
  // Written as UTF-8 it would silently become U+FFFD: refuse rather than change the text.
  if (LONE_SURROGATE.test(text))
    return { reason: 'lone-surrogate', detail: `${column} holds an unpaired UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair)` };
  if (max !== undefined) {
    const n = tooLong(text, max);
    if (n !== null) return { reason: 'too-long', detail: `${column} has ${n} characters, maxLength is ${max}` };
  }
  return undefined;
}

export interface RowMapper {
  /**
   * `checked`, when given, gets a chat row's conversation as checked, so that a caller counting its text need not parse
   * the cell's JSON back (a second JSON.parse of every chat row).
   */
  (values: Record<string, unknown>, checked?: { conversation?: ConversationMessage[] }): TaskRow | BadRow;
}

export function isBad(r: TaskRow | BadRow): r is BadRow {
  return 'reason' in r;
}

export function makeRowMapper(cfg: IngestConfig): RowMapper {
  const cols = TASK_COLUMNS[cfg.task];
  const source = (c: TaskColumn) => cfg.fields?.[c] ?? c;
  const declared = cfg.labels ? new Set(cfg.labels) : null;
  // A Map: a label spelled `__proto__` or `constructor` is a key like any other.
  const labelMap = cfg.labelMap ? new Map(Object.entries(cfg.labelMap)) : null;
  let template: ParsedTemplate['sections'] | null = null;
  if (cfg.task === 'instruction' && cfg.promptTemplate !== undefined) {
    const parsed = parseTemplate(cfg.promptTemplate);
    if (isTemplateError(parsed)) throw new InputError(parsed.message, { where: 'promptTemplate', hint: parsed.hint });
    template = parsed.sections;
  }
  const max = cfg.maxLength;

  return (values, checked) => {
    const row: TaskRow = {};
    for (const c of cols) {
      if (c === 'label') {
        const f = source('label');
        const v = field(values, f);
        if (v === undefined || v === null || v === '')
          return {
            reason: 'missing-label',
            // null is what pandas writes for NaN: "missing" would send the user looking for an absent field.
            detail: `label field ${JSON.stringify(f)} is ${v === '' ? 'empty' : v === null ? 'null' : 'missing'}`,
          };
        let label: string;
        if (typeof v === 'string') label = v;
        else if ((typeof v === 'number' && Number.isInteger(v)) || typeof v === 'boolean' || typeof v === 'bigint') label = String(v);
        else
          return {
            reason: 'invalid-label',
            detail: `label field ${JSON.stringify(f)} is ${typeof v === 'number' ? 'a non-integer number' : typeof v}; use strings or integers`,
          };
        if (LONE_SURROGATE.test(label))
          return { reason: 'lone-surrogate', detail: `label field ${JSON.stringify(f)} holds an unpaired surrogate` };
        label = labelMap?.get(label) ?? label;
        if (declared && !declared.has(label)) {
          const meant = declaredSpelling(label, cfg.labels!);
          const [shown, shownMeant] = meant === undefined ? [] : quotedPair(label, meant);
          return {
            reason: 'unknown-label',
            detail:
              `label ${shown ?? JSON.stringify(label)} is not one of ${JSON.stringify(cfg.labels)}${labelMap ? ' (nor a key of labelMap)' : ''}` +
              (meant === undefined ? '' : `; it is ${shownMeant} written differently: labelMap: {${shown}: ${shownMeant}} keeps such rows`),
            ...(meant === undefined ? {} : { spelling: { label, meant } }),
          };
        }
        row.label = label;
        continue;
      }
      if (c === 'messages') {
        const f = source(c);
        const v = field(values, f);
        if (v === undefined || v === null)
          return { reason: 'missing-field', detail: `field ${JSON.stringify(f)} (messages) is missing`, field: f };
        const convo = parseConversation(v, JSON.stringify(f), max);
        if (!Array.isArray(convo)) return convo;
        if (checked) checked.conversation = convo;
        row.messages = conversationJson(convo);
        continue;
      }
      const text = c === 'prompt' && template ? renderTemplate(template, values) : fieldText(values, source(c), c);
      if (typeof text !== 'string') return text;
      const wrong = badText(text, c, max);
      if (wrong) return wrong;
      row[c] = text;
    }
    return row;
  };
}
