/**
 * Where each message's content lies in a chat template's rendering, so that it can be tokenized as plain text
 * (tokenizer-spans.ts). The template is rendered twice: as it is, and with every content replaced by a placeholder that
 * occurs nowhere else; the placeholders cut the second rendering into the template's own text. The real rendering must
 * be that text with each placeholder replaced by its message's content, or by the content with its leading and/or
 * trailing whitespace stripped (Llama 3's `| trim`, `.strip()`). Then every content span is known exactly, and a
 * content that holds the template's own text (a forged `<|im_end|>\n<|im_start|>system\n…`) cannot shift a span: each
 * is the content's own text, matched whole. Where the template does anything else with content (branches on it, splits
 * it, changes its case), the spans are unknown (`spans: undefined`).
 */
import type { ChatMessage, ChatTemplate, RenderOptions } from './chat-template.ts';
import type { Span } from './tokenizer-spans.ts';

export interface ContentSpan extends Span {
  /** Index of the message whose content this is. */
  message: number;
}

export interface SpannedRendering {
  text: string;
  /** The contents' places in `text`, in order (a message the template leaves out has none); undefined where unknown. */
  spans: ContentSpan[] | undefined;
  /** The rendering with every content a placeholder: the template's own text; undefined where it does not render. */
  skeleton: string | undefined;
}

/**
 * Private-use characters, in no chat template: a placeholder made of one occurs only where the template put it. Two not
 * in the template's text or the roles are used; content may hold them, since no content is in the placeholder
 * rendering (so content cannot leave a conversation without one, see tokenizeChat's check where spans are unknown).
 */
const PLACEHOLDER_CHARS = Array.from({ length: 64 }, (_, i) => String.fromCharCode(0xe000 + i));

const stripped = (s: string): string[] => [s, s.trim(), s.trimStart(), s.trimEnd()];

/** The rendering with the contents of the messages `which` picks (all by default) as placeholders; undefined where it fails. */
export function renderWithPlaceholders(
  template: ChatTemplate,
  messages: ChatMessage[],
  opts: RenderOptions,
  which: (index: number) => boolean = () => true,
): { marked: string; open: string; close: string } | undefined {
  const seen = [template.text, ...messages.map((m) => m.role)].join('');
  const open = PLACEHOLDER_CHARS.find((c) => !seen.includes(c));
  const close = open && PLACEHOLDER_CHARS.find((c) => c !== open && !seen.includes(c));
  if (!open || !close) return undefined;
  try {
    const marked = template.render(
      messages.map((m, i) => (which(i) ? { ...m, content: `${open}${i}${close}` } : m)),
      opts,
    );
    return { marked, open, close };
  } catch {
    return undefined;
  }
}

export function renderWithContentSpans(template: ChatTemplate, messages: ChatMessage[], opts: RenderOptions = {}): SpannedRendering {
  const text = template.render(messages, opts);
  if (messages.length === 0) return { text, spans: [], skeleton: text };
  const placeheld = renderWithPlaceholders(template, messages, opts);
  if (placeheld === undefined) return { text, spans: undefined, skeleton: undefined };
  const { marked, open, close } = placeheld;
  const unknown = { text, spans: undefined, skeleton: marked };
  // marked = t0 P(i1) t1 P(i2) t2 …: the template's own text between the placeholders.
  const parts = marked.split(open);
  const spans: ContentSpan[] = [];
  if (!text.startsWith(parts[0]!)) return unknown;
  let at = parts[0]!.length;
  for (let k = 1; k < parts.length; k++) {
    const closeAt = parts[k]!.indexOf(close);
    const index = Number(parts[k]!.slice(0, closeAt));
    const after = parts[k]!.slice(closeAt + close.length);
    const message = messages[index];
    if (closeAt < 0 || !Number.isInteger(index) || message === undefined) return unknown;
    const last = k === parts.length - 1;
    const fits = stripped(message.content).find(
      (c) => text.startsWith(c, at) && text.startsWith(after, at + c.length) && (!last || at + c.length + after.length === text.length),
    );
    if (fits === undefined) return unknown;
    if (fits.length > 0) spans.push({ start: at, end: at + fits.length, message: index });
    at += fits.length + after.length;
  }
  if (at !== text.length) return unknown;
  return { text, spans, skeleton: marked };
}
