/**
 * A prompt/response record as one training sequence in the model's own chat format, with the loss on
 * the assistant's reply only.
 *
 * The conversation is rendered twice with the chat template: up to the assistant's header
 * (`add_generation_prompt`), and with the reply. The first is the prompt part (system prompt, user turn,
 * role headers: all masked); what the second adds is the reply, which carries the loss up to and including
 * the end-of-turn token (so the model learns to stop). Template text after that token (SmolLM2's "\n")
 * is masked: generation stops at the end-of-turn token and never sees it. This is TRL's prompt-completion
 * masking (prompt ids = the generation-prompt rendering) except that TRL also scores that trailing text, and
 * TRL only warns where a token spans the prompt/reply boundary (here that token is scored, see below).
 *
 * A record longer than maxLength loses the end of its user message, never the template's structure or the reply:
 * cutting from the right (transformers' default) would train a long message's row on the prompt alone, teaching
 * nothing, and drop exactly the long messages' answers. A reply that does not fit even after the whole message is cut
 * marks the record `tooLong` (no tokens) for the caller to drop and count.
 */
import { InputError } from '../errors.ts';
import { addedTokenAnchors, lastAnchorWithin } from './added-token-anchors.ts';
import type { ChatMessage, ChatTemplate, RenderOptions } from './chat-template.ts';
import { replyRenderings } from './chat-template-prefixes.ts';
import { renderWithContentSpans, renderWithPlaceholders } from './chat-template-spans.ts';
import { IGNORE_INDEX, type CausalEncoding, type HfTokenizer } from './tokenizer.ts';
import { addedTokenMatches, specialTokenInSpans, tokenizeCut, tokenizeWithPlainSpans, type Span } from './tokenizer-spans.ts';

/** A chat rendering and its ids, with where the messages' contents lie in it. */
export interface ChatTokens {
  text: string;
  ids: number[];
  /** The contents' characters in `text`, tokenized as plain text; empty where they hold no special token's text. */
  spans: Span[];
}

/** The first special added token whose text `text` holds, as the tokenizer would read it; undefined when none. */
function specialTokenText(tok: HfTokenizer, text: string): string | undefined {
  const found = addedTokenMatches(tok, text).find((m) => m.token.special)?.token.content;
  if (found !== undefined || !tok.hasNormalizedSpecial) return found;
  // One matched only after normalization: as the tokenizer reads the text.
  const id = tok.tokenize(text).find((i) => tok.specialTokenIds.has(i));
  return id === undefined ? undefined : tok.decode([id], false);
}

function forgedTokenError(tok: HfTokenizer, template: ChatTemplate, content: string, where: string, why: string): InputError {
  return new InputError(
    `the message's content holds the text of the special token ${JSON.stringify(specialTokenText(tok, content) ?? '?')}, which ${why}; tokenized as the token it would end the turn and could open another with any role, so it is refused rather than read that way`,
    {
      where: `${where} (${template.source})`,
      hint: "remove or rephrase the token's text, or use a chat template that puts each message's content in unchanged (or only stripped of surrounding whitespace)",
    },
  );
}

/**
 * A conversation rendered with the chat template and tokenized the way training, evaluation, `generate`, `chat`,
 * `predict` and `serve` all tokenize one: the template's special tokens are tokens, the messages' contents are text.
 * A message holding `<|im_end|>\n<|im_start|>system\n…` gets those characters as ordinary pieces, not a turn of its
 * own (transformers' apply_chat_template + tokenizer reads them as the tokens). Content without a special token's text
 * gets exactly the ids of tokenizing the whole rendering. Where the template changes content beyond stripping its
 * whitespace, so that its place in the rendering is unknown, a content holding a special token's text is an
 * InputError naming the message (`whereMessage(i)`), and so is one the template turns into a special token's text
 * (contentMadeSpecial); so is one this tokenizer cannot keep as text
 * (tokenizer-spans.ts).
 */
export function tokenizeChat(
  tok: HfTokenizer,
  template: ChatTemplate,
  messages: ChatMessage[],
  opts: RenderOptions,
  whereMessage: (index: number) => string,
): ChatTokens {
  const { text, spans, skeleton } = renderWithContentSpans(template, messages, opts);
  if (spans !== undefined) {
    // Nothing special in the contents: the library's own ids, and no spans for the callers to carry.
    if (!specialTokenInSpans(tok, text, spans)) return { text, ids: tok.tokenize(text), spans: [] };
    const ids = tokenizeCut(tok, text, spans);
    if (ids !== undefined) return { text, ids, spans };
  }
  let bad = messages.findIndex((m) => specialTokenText(tok, m.content) !== undefined);
  // A special token read across a content's edge (its first characters the content's last) is refused too.
  if (bad < 0 && spans !== undefined) bad = spans.find((s) => specialTokenInSpans(tok, text, [s]))?.message ?? -1;
  if (bad < 0) {
    const ids = tok.tokenize(text);
    const made = spans === undefined ? contentMadeSpecial(tok, template, messages, opts, ids, skeleton) : -1;
    if (made < 0) return { text, ids, spans: [] };
    throw new InputError(
      `the message's content, as this chat template changes it, holds the text of a special token that the template itself does not write there; tokenized as the token it could end the turn and open another with any role, so it is refused rather than read that way`,
      {
        where: `${whereMessage(made)} (${template.source})`,
        hint: "rephrase the message, or use a chat template that puts each message's content in unchanged (or only stripped of surrounding whitespace)",
      },
    );
  }
  throw forgedTokenError(
    tok,
    template,
    messages[bad]!.content,
    whereMessage(bad),
    spans === undefined
      ? 'this chat template changes content in a way its place in the rendering cannot be told from'
      : 'this tokenizer cannot keep as text',
  );
}

/**
 * Where the template changes content so that its place in the rendering is unknown: the message whose content, as the
 * template renders it, brings a special token the template does not write with that content a placeholder (`<|IM_END|>`
 * through `| lower`, which holds no special token's text itself); -1 when none, or when the template cannot be rendered
 * with placeholders (then nothing can be compared). Counted per special token, so a template that leaves a turn out
 * for some content is not refused.
 */
function contentMadeSpecial(
  tok: HfTokenizer,
  template: ChatTemplate,
  messages: ChatMessage[],
  opts: RenderOptions,
  ids: readonly number[],
  skeleton: string | undefined,
): number {
  if (skeleton === undefined) return -1;
  const counts = (xs: readonly number[]) => {
    const n = new Map<number, number>();
    for (const id of xs) if (tok.specialTokenIds.has(id)) n.set(id, (n.get(id) ?? 0) + 1);
    return n;
  };
  const own = counts(tok.tokenize(skeleton));
  const more = (xs: readonly number[]) => [...counts(xs)].some(([id, n]) => n > (own.get(id) ?? 0));
  if (!more(ids)) return -1;
  // The message: the fewest first contents that, given as they are (the rest placeholders), bring a special token more.
  // A binary search, so an error costs a few renderings, not one per message.
  let lo = 1,
    hi = messages.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const r = renderWithPlaceholders(template, messages, opts, (i) => i >= mid);
    if (r !== undefined && more(tok.tokenize(r.marked))) hi = mid;
    else lo = mid + 1;
  }
  return lo - 1;
}

/** The ids of a text that is all content: no special token read in it (see tokenizeChat). */
function plainIds(tok: HfTokenizer, text: string, template: ChatTemplate, where: string): number[] {
  const ids = tokenizeWithPlainSpans(tok, text, text.length === 0 ? [] : [{ start: 0, end: text.length }]);
  if (ids === undefined) throw forgedTokenError(tok, template, text, where, 'this tokenizer cannot keep as text');
  return ids;
}

/** The spans that overlap [from, to), clipped to it and counted from `from`. */
function spansWithin(spans: readonly Span[], from: number, to: number): Span[] {
  const out: Span[] = [];
  for (const s of spans) {
    const start = Math.max(s.start, from),
      end = Math.min(s.end, to);
    if (start < end) out.push({ start: start - from, end: end - from });
  }
  return out;
}

/**
 * The messages as the template is given them: a system message first only where the conversation has none, so a
 * conversation's own system message is what it was trained and asked with. Training, evaluation and predict all ask
 * this way, so they render the same prompt.
 */
export function withSystemMessage<M extends ChatMessage>(messages: readonly M[], system: string | undefined): (M | ChatMessage)[] {
  return system !== undefined && messages[0]?.role !== 'system' ? [{ role: 'system', content: system }, ...messages] : [...messages];
}

export interface ChatEncodingOptions {
  template: ChatTemplate;
  /** A system message before the user's; none by default (the template may add its own default). */
  system?: string;
  /** The token that ends the assistant's turn; default the tokenizer's eos_token (`<|im_end|>` for SmolLM2). */
  endOfTurn?: string;
  /** Longer records lose the end of the user's message (then masked template text after the end-of-turn token). */
  maxLength?: number;
}

export interface ChatEncoding extends CausalEncoding {
  /** The record was longer than maxLength: its user message was cut (see promptTokensCut) or its trailing template text. */
  truncated: boolean;
  /** Tokens cut from the end of the user's message (counted in the message's own tokenization); 0 when it is whole. */
  promptTokensCut: number;
  /** The template and the whole reply do not fit maxLength even with the message cut to nothing: no tokens, drop the record. */
  tooLong: boolean;
  /** Tokens carrying loss (labels ≠ IGNORE_INDEX): the whole reply and its end-of-turn token; 0 when tooLong. */
  lossTokens: number;
}

/** The end-of-turn token's id, or an InputError saying how to name one. */
export function endOfTurnId(tok: HfTokenizer, endOfTurn: string | undefined): number {
  if (endOfTurn === undefined) {
    if (tok.eosId === undefined)
      throw new InputError("the tokenizer has no eos_token to end the assistant's turn", {
        where: 'endOfTurn',
        hint: 'name the end-of-turn token (e.g. <|im_end|>, <|eot_id|>, <end_of_turn>)',
      });
    return tok.eosId;
  }
  const id = tok.inner.token_to_id(endOfTurn);
  if (id === undefined || id === null)
    throw new InputError(`end-of-turn token ${JSON.stringify(endOfTurn)} is not in the vocabulary`, { where: 'endOfTurn' });
  return id;
}

/**
 * `where` names the record in errors (e.g. `train.arrow: row 12`). Every record is checked on its own: a template
 * whose reply rendering does not extend its prompt rendering, or that does not end the reply with the
 * end-of-turn token, is an input error rather than silently mislabelled rows.
 */
export function encodeChatExample(
  tok: HfTokenizer,
  prompt: string,
  response: string,
  o: ChatEncodingOptions,
  where = 'record',
): ChatEncoding {
  const eot = endOfTurnId(tok, o.endOfTurn);
  const encode = (userText: string) => locateReply(tok, userText, response, eot, o, where);
  let r = encode(prompt);
  const max = o.maxLength;
  // Scored tokens end at the end-of-turn token; what follows is masked template text that may go.
  if (max === undefined || r.end < max) return finish(r, max, 0);
  const own = plainIds(tok, prompt, o.template, `${where}: prompt`);
  let keep = own.length - (r.end + 1 - max);
  while (keep > 0) {
    // A prefix of the message's tokens decodes to a prefix of its text (byte-level BPE), less a split character.
    const cutText = tok.decode(own.slice(0, keep), false).replace(/\uFFFD+$/u, '');
    r = encode(cutText);
    if (r.end < max) return finish(r, max, own.length - keep);
    // Re-tokenized in place the cut text can merge differently: cut again by what is still over.
    keep -= Math.max(1, r.end + 1 - max);
  }
  return { inputIds: [], attentionMask: [], labels: [], truncated: true, promptTokensCut: own.length, tooLong: true, lossTokens: 0 };
}

interface LocatedReply {
  ids: number[];
  /** First scored token. */
  start: number;
  /** The end-of-turn token closing the reply (the last scored token). */
  end: number;
}

function locateReply(tok: HfTokenizer, prompt: string, response: string, eot: number, o: ChatEncodingOptions, where: string): LocatedReply {
  const convo = withSystemMessage([{ role: 'user', content: prompt }], o.system);
  const messages = [...convo, { role: 'assistant', content: response }];
  const whereMessage = (i: number) =>
    `${where}: ${i === messages.length - 1 ? 'response' : messages[i]!.role === 'system' ? 'chat.system' : 'prompt'}`;
  const { text: head, ids: headIds } = tokenizeChat(tok, o.template, convo, { addGenerationPrompt: true }, whereMessage);
  const { text: full, ids } = tokenizeChat(tok, o.template, messages, { addGenerationPrompt: false }, whereMessage);
  if (!full.startsWith(head)) {
    throw new InputError(
      'the chat template renders the conversation with the reply differently from the conversation before it, so the reply cannot be located',
      {
        where: `${where} (${o.template.source})`,
        hint: 'use a template whose add_generation_prompt rendering is a prefix of the rendering with the assistant turn',
      },
    );
  }
  // Where the reply starts in token space: normally right after the prompt's tokens. When a token spans the
  // boundary (the header's "\n" merging with a reply that starts with spaces, a "A: " header before a word),
  // the prompt's ids are not a prefix; that token holds reply text, so it is scored (it is what the model must emit).
  let start = 0;
  while (start < headIds.length && start < ids.length && ids[start] === headIds[start]) start++;
  return { ids, start, end: replyEnd(tok, ids, start, eot, `${where} (${o.template.source})`) };
}

/**
 * The end-of-turn token closing the reply that starts at `start` of `ids`, a rendering that ends with that reply. Its
 * only one there: a reply whose text holds the token's text (`<|im_end|>` quoted in a reply about chat formats, a
 * scraped transcript) is tokenized with that token inside it, so its loss would stop there, teaching the model to end
 * its turn mid-reply, and the rest of the reply would be silently masked: an input error naming the record instead.
 */
function replyEnd(tok: HfTokenizer, ids: readonly number[], start: number, eot: number, where: string): number {
  const end = ids.indexOf(eot, start);
  const token = JSON.stringify(tok.decode([eot], false));
  if (end < 0)
    throw new InputError(`the chat template does not end the assistant's reply with the end-of-turn token ${token}`, {
      where,
      hint: 'name the token that ends an assistant turn (endOfTurn), or use a template that emits one',
    });
  if (ids.indexOf(eot, end + 1) >= 0)
    throw new InputError(
      `the assistant's reply holds the text of the end-of-turn token ${token}, which the tokenizer reads as that token: its loss would stop there and the model learn to end its turn mid-reply`,
      { where, hint: 'remove or rephrase the token text in the data' },
    );
  return end;
}

function finish({ ids, start, end }: LocatedReply, maxLength: number | undefined, promptTokensCut: number): ChatEncoding {
  const labels = ids.map((t, i) => (i >= start && i <= end ? t : IGNORE_INDEX));
  const n = maxLength === undefined ? ids.length : Math.min(ids.length, maxLength);
  const cut = labels.slice(0, n);
  return {
    inputIds: ids.slice(0, n),
    attentionMask: new Array<number>(n).fill(1),
    labels: cut,
    truncated: promptTokensCut > 0 || n < ids.length,
    promptTokensCut,
    tooLong: false,
    lossTokens: cut.reduce((c, l) => c + (l === IGNORE_INDEX ? 0 : 1), 0),
  };
}

/** A multi-turn conversation as one training sequence (see encodeConversation). */
export interface ConversationEncoding extends CausalEncoding {
  /** Longer than maxLength: later turns were left out (see turnsCut). */
  truncated: boolean;
  /** Trained assistant replies left out because they do not end within maxLength. */
  turnsCut: number;
  /** Not even the first trained reply ends within maxLength: no tokens, drop the record. */
  tooLong: boolean;
  /** Tokens carrying loss: every trained reply and its end-of-turn token. */
  lossTokens: number;
}

/**
 * A conversation (system?, user, assistant, user, assistant, …) in the model's chat format, with the loss on every
 * assistant message whose weight is not 0, each up to and including its end-of-turn token; everything else (system and
 * user turns, role headers, weight-0 replies, template text after an end-of-turn token) is masked.
 *
 * encodeChatExample's two renderings, once per trained reply: the conversation before it with the generation prompt,
 * then with it; each must be a prefix of the next and of the whole conversation's rendering, which is what is
 * tokenized. For most templates both are read off one marked rendering of the whole conversation instead of rendered
 * (chat-template-prefixes.ts): rendered reply by reply, a conversation of n replies cost n renderings of ever longer
 * beginnings. A template that renders earlier turns differently once more follow (one that drops past reasoning, say)
 * is an input error naming the record and the message, not silently misplaced labels. transformers'
 * `return_assistant_tokens_mask` needs `{% generation %}` markers few templates have; this needs none. The renderings
 * are tokenized from their turn's opening added token only (added-token-anchors.ts): tokenized whole, a conversation of
 * n replies cost n tokenizations of ever longer prefixes.
 *
 * Over maxLength, the conversation keeps its first turns up to the end of the last trained reply that ends within
 * maxLength, and leaves out what follows (`turnsCut` replies): a reply is never cut in half, and a cut reply never
 * teaches the model to stop mid-sentence. When even the first trained reply does not fit, the record is `tooLong`.
 * `o.system` is used only when the conversation has no system message of its own.
 */
export function encodeConversation(
  tok: HfTokenizer,
  messages: readonly { role: string; content: string; weight?: number }[],
  o: ChatEncodingOptions,
  where = 'record',
): ConversationEncoding {
  const eot = endOfTurnId(tok, o.endOfTurn);
  const withSystem: readonly { role: string; content: string; weight?: number }[] = withSystemMessage(messages, o.system);
  const plain: ChatMessage[] = withSystem.map((m) => ({ role: m.role, content: m.content }));
  const added = withSystem.length - messages.length;
  const whereMessage = (k: number) => (k < added ? `${where}, chat.system` : `${where}, message ${k - added}`);
  const rendered = tokenizeChat(tok, o.template, plain, { addGenerationPrompt: false }, whereMessage);
  const { text: whole, ids, spans } = rendered;
  // Each rendering below is a prefix of `whole` (checked): its contents are where they are in `whole`.
  const tokenizePrefix = (from: number, to: number, k: number) => {
    const got = tokenizeWithPlainSpans(tok, whole.slice(from, to), spansWithin(spans, from, to));
    if (got === undefined)
      throw forgedTokenError(tok, o.template, plain[k]!.content, whereMessage(k), 'this tokenizer cannot keep as text');
    return got;
  };
  const anchors = addedTokenAnchors(tok, whole, ids, spans);
  const turns: { start: number; end: number }[] = [];
  const max = o.maxLength ?? Infinity;
  const trained = withSystem.filter((m) => m.role === 'assistant' && m.weight !== 0).length;
  const at = (k: number) => `${whereMessage(k)} (${o.template.source})`;
  const renderings = replyRenderings(o.template, plain, whole);
  for (let k = 0; k < withSystem.length; k++) {
    const m = withSystem[k]!;
    if (m.role !== 'assistant' || m.weight === 0) continue;
    const { head, upTo, extendsHead, inWhole } = renderings(k);
    if (!extendsHead)
      throw new InputError(
        'the chat template renders the conversation with this reply differently from the conversation before it, so the reply cannot be located',
        { where: at(k), hint: 'use a template whose add_generation_prompt rendering is a prefix of the rendering with the assistant turn' },
      );
    if (!inWhole)
      throw new InputError(
        'the chat template renders the conversation up to this reply differently once later messages follow (it rewrites earlier turns), so the reply cannot be located in the whole conversation',
        {
          where: at(k),
          hint: 'use a template that renders each turn the same whatever follows, or train on each exchange as its own row',
        },
      );
    // Both renderings are prefixes of `whole`: tokenized from the last added token within the header (the turn's
    // `<|im_start|>`), their ids are `whole`'s up to it and then these (added-token-anchors.ts).
    const anchor = lastAnchorWithin(anchors, head);
    const from = anchor?.pos ?? 0,
      offset = anchor?.index ?? 0;
    const headIds = tokenizePrefix(from, head, k);
    let start = 0;
    while (start < headIds.length && offset + start < ids.length && ids[offset + start] === headIds[start]) start++;
    // A token spanning the header/reply boundary holds reply text: it is scored, as in encodeChatExample.
    start = Math.max(offset + start, (turns.at(-1)?.end ?? -1) + 1);
    const end = offset + replyEnd(tok, tokenizePrefix(from, upTo, k), start - offset, eot, at(k));
    // Tokenized with what follows, the token may merge with it: then it is not where the loss would put it.
    if (ids[end] !== eot)
      throw new InputError(
        `the chat template does not end the assistant's reply with the end-of-turn token ${JSON.stringify(tok.decode([eot], false))}`,
        { where: at(k), hint: 'name the token that ends an assistant turn (endOfTurn), or use a template that emits one' },
      );
    // Replies end in order: once one ends past maxLength, every later one does. Rendering and tokenizing stop there, so
    // a conversation of many long turns costs what its first maxLength tokens do, not its turns times its length.
    if (end >= max) break;
    turns.push({ start, end });
  }
  if (turns.length === 0)
    return { inputIds: [], attentionMask: [], labels: [], truncated: true, turnsCut: trained, tooLong: true, lossTokens: 0 };
  // Whole: up to the template's last text; cut: up to the last reply that fits (masked text after it teaches nothing).
  const n = ids.length <= max ? ids.length : turns.at(-1)!.end + 1;
  const labels = new Array<number>(n).fill(IGNORE_INDEX);
  let lossTokens = 0;
  for (const t of turns)
    for (let i = t.start; i <= t.end; i++) {
      labels[i] = ids[i]!;
      lossTokens++;
    }
  return {
    inputIds: ids.slice(0, n),
    attentionMask: new Array<number>(n).fill(1),
    labels,
    truncated: n < ids.length,
    turnsCut: trained - turns.length,
    tooLong: false,
    lossTokens,
  };
}
