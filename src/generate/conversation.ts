/**
 * A multi-turn conversation with a loaded language model, as `tempered chat` holds it: the turns so far,
 * an optional system message, and the KV cache of the last turn, so each answer costs a forward pass
 * over the new turn only, not the whole conversation again. Knows nothing of terminals.
 */
import { InputError } from '../errors.ts';
import type { ChatMessage } from '../serve/types.ts';
import { generate, PrefixCache, type FinishReason, type GenerateOptions, type TokenEvent } from './generate.ts';
import type { LoadedTextGenerator } from './text-generator.ts';

export type ConversationOptions = Omit<GenerateOptions, 'onToken' | 'signal' | 'prefixCache'>;

export interface Reply {
  text: string;
  finishReason: FinishReason;
  /** Tokens of the whole conversation as the model read it (undefined: a server that did not say). */
  promptTokens: number | undefined;
  /** Of those, the ones the last turn's cache held (not computed again; undefined: a server that did not say). */
  reusedTokens: number | undefined;
  newTokens: number;
  /** Earlier exchanges left out for good because the conversation no longer fitted the model's context. */
  droppedExchanges: number;
}

/** A served model could not be reached, or failed: the turn was not answered, and the conversation is as it was. */
export class ChatServerError extends Error {}

/** A conversation as `tempered chat` drives it: with a model in this process (Conversation) or a served one (RemoteConversation). */
export interface ChatSession {
  /** Replaces the model's trained system message while set. */
  system?: string;
  /** What the model is shown: the system message, if one is set, then the turns. */
  readonly messages: ChatMessage[];
  /** Exchanges (a question and its answer) so far. */
  readonly exchanges: number;
  /** Forgets the turns; the system message stays. */
  reset(): void;
  /** Forgets the last exchange; false when there is none. */
  undo(): boolean;
  /**
   * The answer to `text`, streamed through `onToken`. An answer stopped by `signal` is kept as far as it got,
   * since the user has read it; one stopped before its first character leaves no trace. A message that cannot
   * fit the model's context, even alone, is an InputError and changes nothing.
   */
  reply(text: string, io?: { onToken?: (e: { text: string }) => void | Promise<void>; signal?: AbortSignal }): Promise<Reply>;
}

/** The turns of a ChatSession and their editing, wherever the model answers. */
export abstract class ChatTurns {
  /** User and assistant messages, alternating, oldest first. */
  protected turns: ChatMessage[] = [];

  constructor(
    /** Replaces the model's trained system message (see text-generator.ts) while set. */
    public system?: string,
  ) {}

  /** What the model is shown: the system message, if one is set, then the turns. */
  get messages(): ChatMessage[] {
    return this.shown(this.turns);
  }

  /** `turns` (a new message after the conversation) as the model is shown them, the oldest `dropped` exchanges left out. */
  protected shown(turns: ChatMessage[], dropped = 0): ChatMessage[] {
    return [...(this.system !== undefined ? [{ role: 'system', content: this.system }] : []), ...turns.slice(dropped * 2)];
  }

  /**
   * The conversation after `asked` (the turns and a new message) was answered with `text`. An answer stopped before
   * its first character leaves the conversation as it was, exchanges left out included; one stopped later stays,
   * since the user has read it.
   */
  protected answered(asked: ChatMessage[], dropped: number, text: string, finishReason: FinishReason): void {
    if (!(finishReason === 'cancelled' && text === '')) this.turns = [...asked.slice(dropped * 2), { role: 'assistant', content: text }];
  }

  /** Exchanges (a question and its answer) so far. */
  get exchanges(): number {
    return this.turns.length / 2;
  }

  /** Forgets the turns; the system message stays. */
  reset(): void {
    this.turns = [];
  }

  /** Forgets the last exchange; false when there is none. */
  undo(): boolean {
    if (this.turns.length === 0) return false;
    this.turns.splice(-2, 2);
    return true;
  }
}

export class Conversation extends ChatTurns implements ChatSession {
  private readonly cache = new PrefixCache();

  constructor(
    private readonly gen: LoadedTextGenerator,
    private readonly opts: ConversationOptions,
    system?: string,
  ) {
    super(system);
  }

  /**
   * The model's answer to `text`, streamed through `onToken`. An answer stopped by `signal` is kept as far
   * as it got, since the user has read it; one stopped before its first character leaves no trace. A
   * message that cannot fit the model's context, even alone, is an InputError and changes nothing.
   */
  async reply(
    text: string,
    io: { onToken?: (e: TokenEvent) => void | Promise<void>; signal?: AbortSignal } = {},
  ): Promise<Reply & { promptTokens: number; reusedTokens: number }> {
    const asked = [...this.turns, { role: 'user', content: text }];
    const { ids, dropped } = this.fit(asked);
    const [r] = await generate(this.gen.decoder, [ids], { ...this.opts, ...io, prefixCache: this.cache });
    const answer = r!;
    this.answered(asked, dropped, answer.text, answer.finishReason);
    return {
      text: answer.text,
      finishReason: answer.finishReason,
      promptTokens: ids.length,
      reusedTokens: answer.cachedTokens,
      newTokens: answer.tokens.length,
      droppedExchanges: dropped,
    };
  }

  /**
   * The prompt's token ids, leaving out the oldest exchanges when the prompt and a full answer (`maxNewTokens`)
   * would not fit the context. Once some must go, it leaves out more, until the prompt takes at most half the
   * room the answer leaves, but never the exchange just before the new message: every exchange left out changes
   * the conversation's start, so the next turn computes it all again, and dropping one exchange a turn would do
   * that at every turn once the context is full. The newest message is never left out.
   */
  private fit(turns: ChatMessage[]): { ids: number[]; dropped: number } {
    const context = this.gen.decoder.maxPositions;
    const room = Math.min(this.opts.maxNewTokens, Math.floor(context / 2));
    const encode = (dropped: number) => this.gen.encodeChat(this.shown(turns, dropped));
    const exchanges = (turns.length - 1) / 2;
    let dropped = 0;
    let ids = encode(0);
    while (ids.length + room > context) {
      if (dropped === exchanges) {
        if (ids.length < context) return { ids, dropped };
        throw new InputError(
          `the conversation with this message alone is ${ids.length} tokens; the model's context is ${context} (max_position_embeddings)`,
          {
            where: 'message',
            hint: `send a shorter message${this.system !== undefined || this.gen.trainedSystem !== undefined ? ' or set a shorter system message (/system)' : ''}`,
          },
        );
      }
      ids = encode(++dropped);
    }
    const half = room + Math.floor((context - room) / 2);
    while (dropped > 0 && dropped < exchanges - 1 && ids.length + room > half) {
      ids = encode(++dropped);
    }
    return { ids, dropped };
  }
}
