/** What tests compare encoding a conversation by: the encoding, or the error's message and where it points. */
import { encodeConversation, type ConversationEncoding } from './chat-encoding.ts';
import type { ChatTemplate } from './chat-template.ts';
import type { HfTokenizer } from './tokenizer.ts';

/** `encodeConversation` of `messages` as row 1, or the error it throws as `{ error, where }`. */
export function outcome(
  tok: HfTokenizer,
  messages: { role: string; content: string; weight?: number }[],
  template: ChatTemplate,
  maxLength?: number,
): ConversationEncoding | { error: string; where: string | undefined } {
  try {
    return encodeConversation(tok, messages, { template, maxLength }, 'row 1');
  } catch (e) {
    return { error: (e as Error).message, where: (e as { where?: string }).where };
  }
}
