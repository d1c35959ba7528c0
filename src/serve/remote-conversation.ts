/**
 * A conversation with a model served elsewhere, over the OpenAI chat API: `tempered serve` on another machine
 * (a GPU box, say) or any OpenAI-compatible server. The server keeps no conversation: every turn sends the
 * conversation so far, and `tempered serve`'s prompt cache then computes only the new turn (it reports the rest
 * as `usage.prompt_tokens_details.cached_tokens`). Spoken through the official `openai` client, which brings
 * the streaming, the retries of busy (429) and failing (5xx) answers, and the error shapes. Knows nothing of
 * terminals.
 */
import { randomUUID } from 'node:crypto';
import OpenAI from 'openai';
import { InputError } from '../errors.ts';
import type { ChatMessage } from './types.ts';
import { ChatServerError, ChatTurns, type ChatSession, type ConversationOptions, type Reply } from '../generate/conversation.ts';

export interface RemoteChatOptions {
  /** The server's address, e.g. http://gpu-box:8080 (the OpenAI API's /v1 is added when missing). */
  url: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token: string;
  /** The model to ask for; default: the first (for `tempered serve`, the only) model the server lists. */
  model?: string;
  sampling: ConversationOptions;
  /** How often a busy or failing answer is tried again (with backoff) before a turn fails. Default 2. */
  maxRetries?: number;
}

export class RemoteConversation extends ChatTurns implements ChatSession {
  /**
   * This conversation's prompt-cache scope (OpenAI's `prompt_cache_key`): the server keeps a thread's KV cache for
   * requests of one scope only, and requests that name none share one, where another client's could learn from
   * `cached_tokens` what this one began with (src/serve/README.md, prompt cache).
   */
  private readonly cacheKey = `tempered-chat-${randomUUID()}`;

  private constructor(
    private readonly client: OpenAI,
    /** The model's name, as requests name it. */
    readonly model: string,
    /** What the server says it serves (`tempered serve`: name@version). */
    readonly served: string,
    readonly baseURL: string,
    private readonly opts: ConversationOptions,
    system?: string,
  ) {
    super(system);
  }

  /** Connects and learns which model answers; a wrong address, token or model name fails here, before the first message. */
  static async connect(o: RemoteChatOptions, system?: string): Promise<RemoteConversation> {
    const baseURL = apiBase(o.url);
    checkApiRanges(o.sampling);
    const client = new OpenAI({ baseURL, apiKey: o.token, maxRetries: o.maxRetries ?? 2 });
    let models: { id: string; version?: unknown }[];
    try {
      models = (await client.models.list()).data as { id: string; version?: unknown }[];
    } catch (e) {
      throw asTurnError(e, baseURL);
    }
    const found = o.model === undefined ? models[0] : models.find((m) => m.id === o.model || m.version === o.model);
    if (!found)
      throw new InputError(
        o.model === undefined
          ? `${baseURL} serves no model (GET /models listed none)`
          : `${baseURL} does not serve ${JSON.stringify(o.model)}; it serves ${models.map((m) => JSON.stringify(m.id)).join(', ') || 'nothing'}`,
        { where: 'model', hint: 'leave the model out to talk to the one the server serves' },
      );
    return new RemoteConversation(
      client,
      found.id,
      typeof found.version === 'string' ? found.version : found.id,
      baseURL,
      o.sampling,
      system,
    );
  }

  /**
   * The answer to `text`, streamed through `onToken`, kept as in Conversation.reply. The server measures the
   * conversation in tokens and refuses one that no longer fits its context (400 context_length_exceeded), so
   * the oldest exchanges are left out on its word: half of them at a time, which leaves room for the next turns
   * (each exchange left out changes the conversation's start, and the server's cache then holds nothing of it).
   * When no exchange is left to leave out but the answer's room (`max_tokens`) is what does not fit, the
   * server is left to size the answer to the room the context has.
   */
  async reply(text: string, io: { onToken?: (e: { text: string }) => void | Promise<void>; signal?: AbortSignal } = {}): Promise<Reply> {
    const asked = [...this.turns, { role: 'user', content: text }];
    let dropped = 0;
    let maxTokens: number | undefined = this.opts.maxNewTokens;
    for (;;) {
      try {
        const r = await this.ask(this.shown(asked, dropped), maxTokens, io);
        this.answered(asked, dropped, r.text, r.finishReason);
        return { ...r, droppedExchanges: dropped };
      } catch (e) {
        if (!(e instanceof OpenAI.APIError && e.status === 400 && e.code === 'context_length_exceeded')) throw asTurnError(e, this.baseURL);
        const left = (asked.length - 1) / 2 - dropped;
        if (left > 0) dropped += Math.ceil(left / 2);
        else if (maxTokens !== undefined && e.param !== 'messages') maxTokens = undefined;
        else
          throw new InputError(`the server refused the message even alone: ${apiMessage(e)}`, {
            where: 'message',
            hint: `send a shorter message${this.system !== undefined ? ' or set a shorter system message (/system)' : ''}`,
          });
      }
    }
  }

  private async ask(
    messages: ChatMessage[],
    maxTokens: number | undefined,
    io: { onToken?: (e: { text: string }) => void | Promise<void>; signal?: AbortSignal },
  ): Promise<Omit<Reply, 'droppedExchanges'>> {
    const o = this.opts;
    // top_k and repetition_penalty are extensions tempered serve (and vLLM) take; the client passes them on as they are.
    const body = {
      model: this.model,
      messages: messages as OpenAI.ChatCompletionMessageParam[],
      stream: true as const,
      stream_options: { include_usage: true },
      prompt_cache_key: this.cacheKey,
      ...(maxTokens !== undefined ? { max_tokens: maxTokens } : {}),
      ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
      ...(o.topP !== undefined ? { top_p: o.topP } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.stop !== undefined && o.stop.length > 0 ? { stop: o.stop } : {}),
      ...(o.topK !== undefined ? { top_k: o.topK } : {}),
      ...(o.repetitionPenalty !== undefined ? { repetition_penalty: o.repetitionPenalty } : {}),
    };
    let text = '';
    let finish: Reply['finishReason'] | undefined;
    let usage: OpenAI.CompletionUsage | undefined;
    let pieces = 0;
    try {
      const stream = await this.client.chat.completions.create(body, { signal: io.signal });
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        const piece = choice?.delta?.content ?? '';
        if (piece !== '') {
          text += piece;
          pieces++;
          await io.onToken?.({ text: piece });
        }
        if (choice?.finish_reason) finish = choice.finish_reason === 'length' ? 'length' : 'stop';
        if (chunk.usage) usage = chunk.usage;
      }
    } catch (e) {
      // Stopped by the user: what arrived stands (the server stops generating when the stream closes).
      if (!io.signal?.aborted) throw e;
      finish = 'cancelled';
    }
    if (io.signal?.aborted) finish = 'cancelled';
    return {
      text,
      finishReason: finish ?? 'stop',
      promptTokens: usage?.prompt_tokens,
      reusedTokens: usage?.prompt_tokens_details?.cached_tokens,
      newTokens: usage?.completion_tokens ?? pieces,
    };
  }
}

/** The OpenAI API's base: the address as given when it names a path, with /v1 added when it names none. */
function apiBase(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`${JSON.stringify(url)} is not a URL`, { where: '--url', hint: 'e.g. http://gpu-box:8080' });
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new InputError(`${JSON.stringify(url)} is not an http(s) URL`, { where: '--url', hint: 'e.g. http://gpu-box:8080' });
  const path = u.pathname.replace(/\/+$/, '');
  return `${u.origin}${path === '' ? '/v1' : path}`;
}

/** An input error for what the user can change (the token, the model, a sampling value), a ChatServerError for the rest. */
function asTurnError(e: unknown, baseURL: string): Error {
  if (e instanceof InputError) return e;
  if (e instanceof OpenAI.APIConnectionError) return new ChatServerError(`could not reach ${baseURL}: ${rootCause(e)}`);
  if (e instanceof OpenAI.APIError && e.status !== undefined) {
    const message = apiMessage(e);
    if (e.status === 401)
      return new InputError(`${baseURL} refused the token: ${message}`, {
        where: 'TEMPERED_SERVE_TOKEN',
        hint: 'set it to the token the server was started with',
      });
    if (e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429)
      return new InputError(message, { where: e.param ?? 'request', hint: `the server answered ${e.status}${e.code ? ` ${e.code}` : ''}` });
    return new ChatServerError(`${baseURL} answered ${e.status}${e.code ? ` ${e.code}` : ''}: ${message}`);
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** The innermost reason a request failed ("connect ECONNREFUSED 127.0.0.1:8080"), where fetch says only "fetch failed". */
function rootCause(e: Error): string {
  let at: unknown = e;
  while (at instanceof Error && at.cause instanceof Error) at = at.cause;
  return (at as Error).message;
}

/**
 * The OpenAI API's ranges for what a turn sends, checked before the first message: a server would refuse every
 * message for them, one by one.
 */
function checkApiRanges(o: ConversationOptions): void {
  if (o.temperature !== undefined && !(o.temperature >= 0 && o.temperature <= 2))
    throw new InputError(`the OpenAI API takes a temperature from 0 to 2, got ${o.temperature}`, { where: '--temperature' });
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1))
    throw new InputError(`the OpenAI API takes a top_p above 0 and at most 1, got ${o.topP}`, { where: '--top-p' });
  if (o.stop !== undefined && o.stop.length > 4)
    throw new InputError(`the OpenAI API takes at most 4 stop strings, got ${o.stop.length}`, { where: '--stop' });
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed))
    throw new InputError(`a seed is an integer, got ${o.seed}`, { where: '--seed' });
}

/** What the server said, without the client's "400 " in front. */
function apiMessage(e: InstanceType<typeof OpenAI.APIError>): string {
  const said = (e.error as { message?: unknown } | undefined)?.message;
  return typeof said === 'string' ? said : e.message;
}
