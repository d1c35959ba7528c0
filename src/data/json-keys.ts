/**
 * What JSON.parse does not tell of a JSON text, read from its keys in one pass: a key named twice (JSON.parse keeps the
 * last value without a word, other readers the first, RFC 8259 only says names SHOULD be unique, so a row checked or
 * reviewed by another tool could train on other text), and where a key's value is written (JSON.parse rounds an integer
 * past 2^53, so its exact digits are read from the text). One scanner serves the JSONL reader's checks of a row's own
 * fields and the chat checks of its messages, so a chat row is walked once, not once per check.
 *
 * The text must be JSON that JSON.parse took: the scan trusts its syntax (it reads keys and brackets, passing over
 * strings whole) and never throws on it.
 */

/** What to look for; the scan reads only the keys asked about. */
export interface KeyQuery {
  /** Keys of the root object: the first of these it names twice is `repeatedField`. */
  fields?: readonly string[];
  /**
   * Where a list of messages is: the root object's field of this name (a JSONL chat row), or `true` for the root
   * itself (JSON text of a conversation). A key an object in that list names twice is `repeatedMessageKey`.
   */
  messages?: string | true;
  /** A key of the root object whose value's place is wanted (`valueFrom`): a key of that name nowhere else is read. */
  valueKey?: string;
}

export interface KeyScan {
  /** The first of `fields` the root object names twice. Keys of nested objects are values, not looked into. */
  repeatedField?: string;
  /** The first key a message names twice, with the message's index in the list. */
  repeatedMessageKey?: { index: number; key: string };
  /** Where the root object's `valueKey` key ends (its last, as JSON.parse keeps): its value follows the `:` after it. */
  valueFrom?: number;
}

/**
 * A run of a JSON string's content, sticky: unescaped characters and escapes, up to its closing quote. Finding that
 * quote by indexOf stopped at every escaped one (a reply holding JSON or code is full of them), and the scan cost about
 * twice JSON.parse on such rows; by regex steps, about once. At most 64 steps a match: an unbounded one overflowed V8's
 * backtrack stack on a string of millions of escapes (a RangeError where a row was read). Nothing follows the group, so
 * a match never backtracks, and one that cannot begin fails at once.
 */
const STRING_RUN = /(?:[^"\\]+|\\[^]){1,64}/y;

/** The index of the closing quote of the string whose opening quote is at `open`, or -1 (text cut short). */
function stringEnd(text: string, open: number): number {
  const end = text.indexOf('"', open + 1);
  // A quote with no backslash before it closes the string; after one, whether it is escaped depends on the escapes
  // before it (`\\"` closes), so the string is read escape by escape.
  if (end === -1 || text.charCodeAt(end - 1) !== 0x5c) return end;
  let at = open + 1;
  for (;;) {
    STRING_RUN.lastIndex = at;
    if (!STRING_RUN.test(text)) return text.charCodeAt(at) === 0x22 ? at : -1;
    at = STRING_RUN.lastIndex;
  }
}

interface Frame {
  object: boolean;
  /** An object whose next string is a key. */
  keyNext: boolean;
  /** A message (an object in the list of messages): the keys it named so far. */
  keys?: Set<string>;
  /** The list of messages (the only list with a frame). */
  messages: boolean;
  /** The list of messages: the index of the value being read. */
  index: number;
}

/**
 * Whether a scan for `fields` alone could find a repeat. A text without a backslash can spell a key only as `"name"`,
 * so unless that appears twice the scan would find none; one with a backslash may spell a key with escapes
 * (`"\u0074ext"`), so it could.
 */
export function mayRepeat(text: string, fields: readonly string[]): boolean {
  if (fields.length === 0) return false;
  if (text.includes('\\')) return true;
  return fields.some((f) => {
    const k = `"${f}"`;
    const i = text.indexOf(k);
    return i !== -1 && text.indexOf(k, i + k.length) !== -1;
  });
}

/**
 * One pass over `text`'s keys for what `q` asks. It stops at a repeated field (that is the row's first fault); past a
 * repeated message key it reads on only for a repeated field, which a caller reports first.
 */
export function scanKeys(text: string, q: KeyQuery): KeyScan {
  const out: KeyScan = {};
  const fields = q.fields ?? [];
  const seenFields = fields.length > 0 ? new Set<string>() : undefined;
  /**
   * The open containers whose keys are read: the root, the list of messages, a message. Those inside any other value
   * are only counted (`deep`): a frame each was about 85 bytes a level, and a row JSON.parse takes may be nested
   * millions deep (a 64 MiB line of brackets held 2.2 GB of frames beside JSON.parse's value).
   */
  const stack: Frame[] = [];
  let deep = 0;
  /** The root object's value that comes next is the messages' (set by each of its keys). */
  let messagesNext = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const end = stringEnd(text, i);
      if (end === -1) return out;
      const top = deep === 0 ? stack.at(-1) : undefined;
      if (top?.object && top.keyNext) {
        top.keyNext = false;
        const raw = text.slice(i + 1, end);
        const key = raw.includes('\\') ? (JSON.parse(text.slice(i, end + 1)) as string) : raw;
        if (top.keys) {
          if (top.keys.has(key)) {
            out.repeatedMessageKey = { index: stack.at(-2)!.index, key };
            if (!seenFields) return out;
            top.keys = undefined;
          } else top.keys.add(key);
        }
        if (stack.length === 1) {
          if (seenFields && fields.includes(key)) {
            if (seenFields.has(key)) {
              out.repeatedField = key;
              return out;
            }
            seenFields.add(key);
          }
          messagesNext = key === q.messages;
          if (key === q.valueKey) out.valueFrom = end + 1;
        }
      }
      i = end;
    } else if (c === 0x7b || c === 0x5b) {
      const top = stack.at(-1);
      if (deep > 0) deep++;
      else if (c === 0x7b && top === undefined) stack.push({ object: true, keyNext: true, messages: false, index: 0 });
      else if (c === 0x7b && top!.messages && out.repeatedMessageKey === undefined)
        stack.push({ object: true, keyNext: true, keys: new Set(), messages: false, index: 0 });
      else if (c === 0x5b && (q.messages === true ? top === undefined : stack.length === 1 && top!.object && messagesNext))
        stack.push({ object: false, keyNext: false, messages: true, index: 0 });
      else deep++;
    } else if (c === 0x7d || c === 0x5d) {
      if (deep > 0) deep--;
      else stack.pop();
    } else if (c === 0x2c && deep === 0) {
      const top = stack.at(-1);
      if (top?.object) top.keyNext = true;
      else if (top) top.index++;
    }
  }
  return out;
}
