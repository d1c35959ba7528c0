/**
 * Where a text's added tokens (`<|im_start|>`, `<|im_end|>`, …) fall, in characters and in its token ids.
 *
 * The tokenizer cuts a text at its added tokens before anything else and tokenizes the pieces between them on their own,
 * so the ids of any prefix of the text that holds a given added token are the text's ids up to that token followed by the
 * ids of the prefix's rest, tokenized from the token on. Chat templates open every turn with such a token: a reply is
 * located by tokenizing from the last one before it rather than from the start of the conversation, which makes a
 * conversation of n replies cost its length once instead of n times (encodeConversation).
 */
import type { HfTokenizer } from './tokenizer.ts';
import { addedTokenMatches, type Span } from './tokenizer-spans.ts';

export interface Anchor {
  /** Character offset of the added token's text. */
  pos: number;
  /** Its length in characters. */
  length: number;
  /** Its position in the text's ids. */
  index: number;
}

/**
 * The added tokens of `text` in order, matched as the tokenizer matches them (at each character the longest added token
 * that starts there), with their positions in `ids`, the text's tokenization. Empty where the matches disagree with the
 * added-token ids actually in `ids` (a token only matched after normalization, say, or a tokenizer whose addedTokenIds
 * is empty, which is how tests switch anchoring off): then nothing may be assumed and a caller tokenizes from the start. `plain`: the spans tokenized as plain text (tokenizer-spans.ts), where a special token's
 * text is not a token.
 */
export function addedTokenAnchors(tok: HfTokenizer, text: string, ids: readonly number[], plain: readonly Span[] = []): Anchor[] {
  const matches = addedTokenMatches(tok, text, plain);
  const anchors: Anchor[] = matches.map((m) => ({ pos: m.pos, length: m.token.content.length, index: -1 }));
  const matchedIds = matches.map((m) => m.token.id);
  let k = 0;
  for (let j = 0; j < ids.length; j++) {
    if (!tok.addedTokenIds.has(ids[j]!)) continue;
    if (k >= anchors.length || matchedIds[k] !== ids[j]) return [];
    anchors[k++]!.index = j;
  }
  return k === anchors.length ? anchors : [];
}

/** The last anchor lying wholly within the first `end` characters, or undefined. `anchors` are in order. */
export function lastAnchorWithin(anchors: readonly Anchor[], end: number): Anchor | undefined {
  let lo = 0,
    hi = anchors.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (anchors[mid]!.pos + anchors[mid]!.length <= end) lo = mid + 1;
    else hi = mid;
  }
  return lo === 0 ? undefined : anchors[lo - 1];
}
