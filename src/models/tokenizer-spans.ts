/**
 * Tokenizing a text in which some character spans are plain text: the special added tokens (`<|im_start|>`,
 * `<|im_end|>`, `<|eot_id|>`: tokenizer.json `special: true`) are recognized only outside them. A chat rendering's
 * message contents are such spans (chat-encoding.ts `tokenizeChat`), so a message that holds `<|im_end|>` cannot end its
 * turn and open another with a role of its choosing: its characters become the ordinary pieces `<|`, `im`, `_`, ….
 * Added tokens that are not special (`<think>`, `<tool_call>` in some models) are words the model writes in its
 * replies; they are read in content too, as transformers' `split_special_tokens=True` reads them.
 *
 * @huggingface/tokenizers cuts a text at its added tokens first (a trie, the longest token at each character), then
 * normalizes, pre-tokenizes and encodes each piece on its own. This hands its own `encode` the cuts: the special tokens
 * outside the spans, each as a marker string that cannot occur in the text and that maps to the token, and every other
 * added token as the library cuts it. Everything after the cut (lstrip/rstrip, the normalizer, the pieces' order, which
 * Metaspace's prepend_scheme "first" reads) is the library's. With no spans the ids are the library's, id for id
 * (tokenizer-spans.test.ts checks it on random text).
 */
import type { HfTokenizer, RawAddedToken } from './tokenizer.ts';

/** Characters [start, end) of a text. */
export interface Span {
  start: number;
  end: number;
}

/** An added token the tokenizer cuts the text at. */
export interface AddedTokenMatch {
  pos: number;
  token: RawAddedToken;
}

/** Whether [pos, end) overlaps one of the spans (sorted, not empty, not overlapping each other). */
export function overlapsSpan(spans: readonly Span[], pos: number, end: number): boolean {
  let lo = 0,
    hi = spans.length;
  // The first span that ends after pos.
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (spans[mid]!.end <= pos) lo = mid + 1;
    else hi = mid;
  }
  const s = spans[lo];
  return s !== undefined && s.start < end;
}

/**
 * The added tokens the tokenizer cuts `text` at, in order: at each character the longest token that starts there, as
 * the library's trie finds them; with `plain` spans, a special token that overlaps one is not a token there (and the
 * search goes on at the next character, as the library's does after a miss).
 */
export function addedTokenMatches(tok: HfTokenizer, text: string, plain: readonly Span[] = []): AddedTokenMatch[] {
  const out: AddedTokenMatch[] = [];
  const byFirst = tok.addedTokensByFirstChar;
  if (byFirst.size === 0) return out;
  for (let i = 0; i < text.length; ) {
    const candidates = byFirst.get(text[i]!);
    const hit = candidates?.find(
      (t) => text.startsWith(t.content, i) && (!t.special || plain.length === 0 || !overlapsSpan(plain, i, i + t.content.length)),
    );
    if (!hit) {
      i++;
      continue;
    }
    out.push({ pos: i, token: hit });
    i += hit.content.length;
  }
  return out;
}

/**
 * Whether the tokenizer, left to itself, would read a special token in or across one of the spans. Where a special
 * token is matched only after normalization, whether a span tokenized alone holds one.
 */
export function specialTokenInSpans(tok: HfTokenizer, text: string, spans: readonly Span[]): boolean {
  if (spans.length === 0) return false;
  if (tok.hasNormalizedSpecial && spans.some((s) => tok.tokenize(text.slice(s.start, s.end)).some((id) => tok.specialTokenIds.has(id))))
    return true;
  return addedTokenMatches(tok, text).some((m) => m.token.special && overlapsSpan(spans, m.pos, m.pos + m.token.content.length));
}

interface LibraryInternals {
  encode_text?: unknown;
  splitter_unnormalized?: { split?: unknown };
  added_tokens_map?: unknown;
}

/** Noncharacters: never in text a person writes, so a marker made of one is never a piece of the text. */
const MARKER_CHARS = Array.from({ length: 32 }, (_, i) => String.fromCharCode(0xfdd0 + i));

/**
 * The ids of `text` with the special added tokens read only outside `plain` (sorted, disjoint spans), or undefined
 * where that cannot be done exactly: a special token this tokenizer matches only after normalization (where it falls in
 * the raw text is unknown), a library without the internals this relies on, or a plain span that the model's own
 * encoding still turns into an added token. A caller then refuses the text rather than forge tokens
 * (chat-encoding.ts).
 */
export function tokenizeWithPlainSpans(tok: HfTokenizer, text: string, plain: readonly Span[]): number[] | undefined {
  // Nothing special is read in the spans: the library's own ids, whatever this module does.
  return specialTokenInSpans(tok, text, plain) ? tokenizeCut(tok, text, plain) : tok.tokenize(text);
}

/** tokenizeWithPlainSpans, always cutting the text itself (for a caller that has checked, and for the test that it cuts as the library does). */
export function tokenizeCut(tok: HfTokenizer, text: string, plain: readonly Span[]): number[] | undefined {
  if (tok.hasNormalizedSpecial) return undefined;
  const inner = tok.inner as unknown as LibraryInternals;
  if (typeof inner.encode_text !== 'function' || typeof inner.splitter_unnormalized?.split !== 'function') return undefined;
  if (!(inner.added_tokens_map instanceof Map)) return undefined;
  const marker = MARKER_CHARS.find((c) => !text.includes(c));
  if (marker === undefined) return undefined;
  const libraryMap = inner.added_tokens_map as Map<string, { id: number; special: boolean }>;
  // The library's own map less the special tokens (a piece of content that is exactly `<|im_end|>` must stay text),
  // plus a marker for each special token cut outside the spans.
  const map = new Map([...libraryMap].filter(([, t]) => !t.special));
  const specialIds = tok.specialTokenIds;
  const sections: string[] = [];
  const expected: number[] = [];
  let start = 0;
  for (const { pos, token } of addedTokenMatches(tok, text, plain)) {
    if (pos > start) sections.push(text.slice(start, pos));
    const added = libraryMap.get(token.content);
    if (added === undefined) return undefined;
    let cut = token.content;
    if (token.special) {
      cut = `${marker}${token.id}`;
      map.set(cut, added);
      // The unknown token is left out of the check below (the model writes it for text it has no pieces for), here too.
      if (specialIds.has(token.id)) expected.push(token.id);
    }
    sections.push(cut);
    start = pos + token.content.length;
  }
  if (start < text.length) sections.push(text.slice(start));
  const cutter = Object.create(tok.inner, {
    splitter_unnormalized: { value: { split: () => [...sections] } },
    added_tokens_map: { value: map },
  }) as HfTokenizer['inner'];
  const ids: number[] = cutter.encode(text, { add_special_tokens: false }).ids;
  // Every special token in the ids is one cut above, in order: none came out of a plain span.
  const got = ids.filter((id) => specialIds.has(id));
  if (got.length !== expected.length || got.some((id, i) => id !== expected[i])) return undefined;
  return ids;
}
