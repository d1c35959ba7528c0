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
 */
import { InputError } from '../errors.ts';
import type { ChatMessage, ChatTemplate } from './chat-template.ts';
import { IGNORE_INDEX, type CausalEncoding, type HfTokenizer } from './tokenizer.ts';

export interface ChatEncodingOptions {
  template: ChatTemplate;
  /** A system message before the user's; none by default (the template may add its own default). */
  system?: string;
  /** The token that ends the assistant's turn; default the tokenizer's eos_token (`<|im_end|>` for SmolLM2). */
  endOfTurn?: string;
  /** Longer sequences are cut from the right (as transformers/TRL truncate); see `ChatEncoding.truncated`. */
  maxLength?: number;
}

export interface ChatEncoding extends CausalEncoding {
  /** The sequence was longer than maxLength and lost its end (possibly the end-of-turn token). */
  truncated: boolean;
  /** Tokens carrying loss (labels ≠ IGNORE_INDEX). 0 when truncation cut the whole reply. */
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
  const convo: ChatMessage[] = [
    ...(o.system !== undefined ? [{ role: 'system', content: o.system }] : []),
    { role: 'user', content: prompt },
  ];
  const head = o.template.render(convo, { addGenerationPrompt: true });
  const full = o.template.render([...convo, { role: 'assistant', content: response }], { addGenerationPrompt: false });
  if (!full.startsWith(head)) {
    throw new InputError(
      'the chat template renders the conversation with the reply differently from the conversation before it, so the reply cannot be located',
      {
        where: `${where} (${o.template.source})`,
        hint: 'use a template whose add_generation_prompt rendering is a prefix of the rendering with the assistant turn',
      },
    );
  }
  const headIds = tok.tokenize(head);
  const ids = tok.tokenize(full);
  // Where the reply starts in token space: normally right after the prompt's tokens. When a token spans the
  // boundary (the header's "\n" merging with a reply that starts with spaces, a "A: " header before a word),
  // the prompt's ids are not a prefix; that token holds reply text, so it is scored (it is what the model must emit).
  let start = 0;
  while (start < headIds.length && start < ids.length && ids[start] === headIds[start]) start++;
  const end = ids.indexOf(eot, start);
  if (end < 0) {
    throw new InputError(
      `the chat template does not end the assistant's reply with the end-of-turn token ${JSON.stringify(tok.decode([eot], false))}`,
      {
        where: `${where} (${o.template.source})`,
        hint: 'name the token that ends an assistant turn (endOfTurn), or use a template that emits one',
      },
    );
  }
  const labels = ids.map((t, i) => (i >= start && i <= end ? t : IGNORE_INDEX));
  const n = o.maxLength === undefined ? ids.length : Math.min(ids.length, o.maxLength);
  const cut = labels.slice(0, n);
  return {
    inputIds: ids.slice(0, n),
    attentionMask: new Array<number>(n).fill(1),
    labels: cut,
    truncated: n < ids.length,
    lossTokens: cut.reduce((c, l) => c + (l === IGNORE_INDEX ? 0 : 1), 0),
  };
}
