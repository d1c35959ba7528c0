/**
 * Multi-turn conversations (the `chat` task): OpenAI's fine-tuning format, `{"messages": [{"role": "system" | "user" |
 * "assistant", "content": "…", "weight"?: 0 | 1}, …]}`, the one hosted fine-tuning APIs, Axolotl and torchtune read.
 *
 * A source row's messages are hostile input, checked here into a BadRow (never a throw) so ingest can fail or
 * quarantine the row. A good conversation is stored in the table's `messages` column as canonical JSON text: the
 * messages in order, each `{role, content}` and `weight: 0` only where a reply is not trained on (1 is the default,
 * so a row that spells it out and one that does not are the same row, with the same `_hash`).
 */
import type { BadRow } from './bad-rows.ts';
import { scanKeys } from './json-keys.ts';
import { badText } from './task-fields.ts';

export type ChatRole = 'system' | 'user' | 'assistant';

export interface ConversationMessage {
  role: ChatRole;
  content: string;
  /** Assistant messages only: 0 leaves the reply out of the loss (context only); absent means 1. */
  weight?: 0;
}

/** More messages than this is a bad row: the template renders the conversation once per assistant turn. */
export const MAX_MESSAGES = 1000;

const ROLES: readonly string[] = ['system', 'user', 'assistant'];
const KEYS: readonly string[] = ['role', 'content', 'weight'];

function bad(detail: string): BadRow {
  return { reason: 'invalid-conversation', detail };
}

/**
 * A source value as a detail quotes it: a string's first 40 characters, a number or boolean as it is, else its kind.
 * Never JSON.stringify of the value itself: a list nested 100,000 deep (parsed fine) overflows the stack there.
 */
function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.slice(0, 40));
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return v === undefined ? 'missing' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'an object' : typeof v;
}

/**
 * The first key a message object of `text` names twice, with the message's index, or undefined. `text` is JSON that
 * JSON.parse took: a list of messages, or, with `field`, an object whose field `field` holds one (a JSONL row). JSON.parse
 * keeps a repeated key's last value without a word, and other readers the first, so `{"role": "user", "content": "a",
 * "content": "b"}` trained on what a reviewer did not read; the duplicate-field check of a row's own keys did not look
 * into its messages. The JSONL reader asks json-keys' scanKeys for this and its own checks in one pass.
 */
export function repeatedMessageKey(text: string, field?: string): { index: number; key: string } | undefined {
  return scanKeys(text, { messages: field ?? true }).repeatedMessageKey;
}

/** The bad row of a message that names `key` twice (repeatedMessageKey), as the row's own repeated field is one. */
export function repeatedMessageKeyRow(column: string, r: { index: number; key: string }): BadRow {
  return {
    reason: 'duplicate-field',
    detail: `${column}[${r.index}] names ${JSON.stringify(r.key.slice(0, 40))} more than once, so which value is meant cannot be told (JSON.parse would keep the last): keep one`,
  };
}

/**
 * A source field's value as a conversation, or why it is none. A JSON array (JSONL, Parquet lists) or JSON text of one
 * (a CSV cell, a table ingest wrote) are both read. `column` names the field in details; `max` bounds each content in
 * code points as other tasks' maxLength bounds each text field. `toAnswer`: a conversation to be answered (predict's
 * input), not trained on, so it may end with a user message and need no trained reply.
 */
export function parseConversation(
  value: unknown,
  column: string,
  max?: number,
  o: { toAnswer?: boolean } = {},
): ConversationMessage[] | BadRow {
  let v = value;
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch {
      return bad(`${column} is text that is not JSON; expected a list of {role, content} messages`);
    }
    const twice = repeatedMessageKey(value as string);
    if (twice) return repeatedMessageKeyRow(column, twice);
  }
  if (!Array.isArray(v)) return bad(`${column} is ${v === null ? 'null' : typeof v}, expected a list of {role, content} messages`);
  if (v.length === 0) return bad(`${column} is an empty list; a conversation needs a user message and an assistant reply`);
  if (v.length > MAX_MESSAGES) return bad(`${column} has ${v.length} messages, more than ${MAX_MESSAGES}; split the conversation`);
  const out: ConversationMessage[] = [];
  let trained = 0;
  for (let i = 0; i < v.length; i++) {
    const at = `${column}[${i}]`;
    const m: unknown = v[i];
    if (typeof m !== 'object' || m === null || Array.isArray(m))
      return bad(`${at} is ${m === null ? 'null' : Array.isArray(m) ? 'a list' : typeof m}, expected {role, content}`);
    // tool_calls, name, function_call…: dropping them would train on a different conversation than the one given. One
    // that is null is absent: a Parquet or Arrow list of structs has every field in every message, null where not set.
    const extra = Object.keys(m).find((k) => !KEYS.includes(k) && (m as Record<string, unknown>)[k] != null);
    if (extra !== undefined)
      return bad(`${at} has field ${shown(extra)}; only role, content and weight are read (tool calls are not supported)`);
    const { role, content, weight } = m as Record<string, unknown>;
    if (typeof role !== 'string' || !ROLES.includes(role)) return bad(`${at}.role is ${shown(role)}; use system, user or assistant`);
    if (role === 'system' && i > 0) return bad(`${at} is a system message after the first message; only the first may be system`);
    // Content parts (OpenAI's [{type: "text", text}], images) are refused: whoever converts the file says what the text is.
    if (typeof content !== 'string')
      return bad(
        Array.isArray(content)
          ? `${at}.content is a list of content parts, which are not supported; give the message's text as one string (join the "text" of its text parts)`
          : `${at}.content is ${content === undefined ? 'missing' : content === null ? 'null' : typeof content}, expected text`,
      );
    const wrong = badText(content, `${at}.content`, max);
    if (wrong)
      return { ...wrong, reason: wrong.reason === 'too-long' || wrong.reason === 'lone-surrogate' ? wrong.reason : 'invalid-conversation' };
    const msg: ConversationMessage = { role, content } as ConversationMessage;
    if (weight !== undefined && weight !== null) {
      if (role !== 'assistant') return bad(`${at} is a ${role} message with a weight; weight applies to assistant messages only`);
      if (weight !== 0 && weight !== 1) return bad(`${at}.weight is ${shown(weight)}; use 0 (not trained on) or 1`);
      if (weight === 0) msg.weight = 0;
    }
    if (role === 'assistant' && msg.weight === undefined) trained++;
    out.push(msg);
  }
  if (o.toAnswer) {
    if (out.at(-1)!.role === 'system') return bad(`${column} holds only a system message; add the user's message to answer`);
    return out;
  }
  if (out.at(-1)!.role !== 'assistant')
    return bad(`the last message of ${column} is a ${out.at(-1)!.role} message; a conversation ends with the assistant's reply`);
  if (trained === 0) return bad(`every assistant message of ${column} has weight 0; there is nothing to train on`);
  return out;
}

/** The table's text of a conversation: canonical JSON, so equal conversations are equal bytes and hash alike. */
export function conversationJson(messages: readonly ConversationMessage[]): string {
  return JSON.stringify(
    messages.map((m) => (m.weight === 0 ? { role: m.role, content: m.content, weight: 0 } : { role: m.role, content: m.content })),
  );
}

/**
 * A `messages` cell read back from a table: the canonical JSON ingest wrote. Anything else (a table edited by hand, a
 * column of another meaning) is an error message for the caller to raise with the row's place.
 */
export function readConversation(text: string): ConversationMessage[] | string {
  const c = parseConversation(text, 'messages');
  return Array.isArray(c) ? c : c.detail;
}

/**
 * What dedupe and the report compare and count of a conversation: each message as `role: content` on its own lines,
 * not the JSON (whose keys and quotes would make every short conversation look alike to near-duplicate shingles).
 */
export function conversationText(messages: readonly ConversationMessage[]): string {
  return messages.map((m) => `${m.role}: ${m.content}`).join('\n');
}

/** The column a chat table keeps its conversations in. */
export const MESSAGES = 'messages';

/** A `messages` cell as dedupe compares it: its conversation's text, or the cell as it is when it holds no conversation. */
export function messagesText(cell: string): string {
  const c = readConversation(cell);
  return typeof c === 'string' ? cell : conversationText(c);
}

/**
 * What evaluate asks and scores of a conversation: its messages up to its last trained reply (weight not 0), the
 * reference, after the messages before it. A weight-0 reply after that one is context training never scored (often a
 * reply the data's author did not want learnt), so it is no reference for exact match, as it carries no reply loss.
 */
export function evaluatedPart(messages: readonly ConversationMessage[]): ConversationMessage[] {
  return messages.slice(0, messages.findLastIndex((m) => m.role === 'assistant' && m.weight !== 0) + 1);
}

/**
 * A `messages` cell's input, as a prompt is an instruction row's: the messages before its last trained reply
 * (evaluatedPart), as conversationText writes them (what evaluate asks a model, and what its contamination check
 * compares a test conversation by); the cell as it is when it holds no conversation.
 */
export function promptText(cell: string): string {
  const c = readConversation(cell);
  return typeof c === 'string' ? cell : conversationText(evaluatedPart(c).slice(0, -1));
}

/**
 * Every input a model trained on a `messages` cell was asked: the messages before each trained reply, as
 * conversationText writes them (the last is promptText's). A test conversation whose input is any of them asks what
 * training taught, and one that asks the first question of a training conversation is contaminated as much as one that
 * asks its last. The cell as it is when it holds no conversation.
 */
export function trainedInputs(cell: string): string[] {
  const c = readConversation(cell);
  if (typeof c === 'string') return [cell];
  return c.flatMap((m, k) => (m.role === 'assistant' && m.weight !== 0 ? [conversationText(c.slice(0, k))] : []));
}
