/**
 * A loaded causal LM as the server and the CLI use it: decoder, tokenizer and chat template together.
 * Chat templates are the model's own Jinja or one given explicitly (src/models/chat-template.ts, as
 * transformers' apply_chat_template renders them), then tokenized without added specials, as transformers does.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { MODEL_MANIFEST } from '../finetune/export.ts';
import { tokenizeChat } from '../models/chat-encoding.ts';
import { loadChatTemplate, type ChatTemplate } from '../models/chat-template.ts';
import { loadTokenizer, type HfTokenizer } from '../models/tokenizer.ts';
import type { ChatMessage, TextGenerator } from '../serve/types.ts';
import { Decoder, type DecoderOptions } from './decoder.ts';
import { generate, type GenerateOptions } from './generate.ts';

/**
 * Characters a token that no prompt of real text averages: English runs about 4.5, indented code 4.7,
 * column-aligned tables 10–12, markdown tables with wide rules 15.5 (SmolLM2). Single tokens are longer
 * (its longest is a newline and 80 spaces), but a prompt that averages more than this over the whole
 * limit would be almost nothing but such runs. A prompt of more characters than this many times the tokens
 * it may have is refused before it is tokenized (serve's requests, predict's rows): BPE takes time
 * superlinear in a word's length (SmolLM2: one word of 64 KB in 1.5 s, of 256 KB in 8.2 s).
 */
export const MAX_CHARS_PER_TOKEN = 32;

export interface TextGeneratorOptions extends DecoderOptions {
  /** Reported in responses, e.g. `name@version`. Default: the folder. */
  id?: string;
  /** A Jinja chat template that replaces (or stands in for a missing) tokenizer_config.json chat_template. */
  chatTemplate?: string;
}

export interface LoadedTextGenerator extends TextGenerator, PromptEncoder {
  encode(text: string): number[];
  encodeChat(messages: ChatMessage[]): number[];
  readonly decoder: Decoder;
  /** The system message the fine-tune was trained with, which a conversation without one of its own gets. */
  readonly trainedSystem?: string;
}

/**
 * Tokenization and chat rendering of a model folder, synchronous. Mostly cheap, but not for every input (one
 * 262,000-character word takes seconds), so a server runs it in a thread of its own (src/serve/encoder-thread.ts).
 */
export interface PromptEncoder {
  /** The prompt text a conversation becomes (what encodeChat tokenizes). */
  renderChat(messages: ChatMessage[]): string;
  encode(text: string): number[];
  encodeChat(messages: ChatMessage[]): number[];
}

/**
 * The chat renderer of a folder (its own template or `chatTemplate`). A model without a template still
 * serves /v1/completions; chat requests then get the loader's error.
 */
function loadChatRenderer(dir: string, chatTemplate: string | undefined, system = trainedSystemPrompt(dir)): ChatRenderer {
  let template: ChatTemplate | InputError;
  try {
    template = loadChatTemplate(dir, chatTemplate);
  } catch (e) {
    if (!(e instanceof InputError) || chatTemplate !== undefined || !/no chat template/.test(e.message)) throw e;
    template = e;
  }
  return (messages) => {
    if (template instanceof InputError) throw template;
    const added = system !== undefined && !messages.some((m) => m.role === 'system');
    return { template, messages: added ? [{ role: 'system', content: system }, ...messages] : messages, added: added ? 1 : 0 };
  };
}

/** The template and the messages it renders (the trained system message first where the conversation has none). */
type ChatRenderer = (messages: ChatMessage[]) => { template: ChatTemplate; messages: ChatMessage[]; added: number };

/**
 * The system message a fine-tune was trained (and evaluated) with, from its manifest: a conversation
 * that brings none gets it, so the model is asked as it learned to answer. One that brings its own
 * system message keeps it.
 */
function trainedSystemPrompt(dir: string): string | undefined {
  const path = join(dir, MODEL_MANIFEST);
  if (!existsSync(path)) return undefined;
  let manifest: { chat?: { system?: unknown } | null };
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as typeof manifest;
  } catch (e) {
    throw new InputError(`not valid JSON (${(e as Error).message})`, { where: path, cause: e });
  }
  const system = manifest.chat?.system;
  return typeof system === 'string' ? system : undefined;
}

function promptEncoder(chat: ChatRenderer, tok: HfTokenizer): PromptEncoder {
  return {
    renderChat: (messages) => {
      const { template, messages: all } = chat(messages);
      return template.render(all, { addGenerationPrompt: true });
    },
    encode: (text) => tok.encode(text).inputIds,
    // As training tokenized them: the template's special tokens are tokens, the messages' contents text (tokenizeChat).
    encodeChat: (messages) => {
      const { template, messages: all, added } = chat(messages);
      const where = (i: number) => (i < added ? 'the trained system message' : `messages[${i - added}].content`);
      return tokenizeChat(tok, template, all, { addGenerationPrompt: true }, where).ids;
    },
  };
}

/** The encoder of a folder without its decoder (the generation pool keeps the decoder in a worker thread). */
export function loadPromptEncoder(dir: string, chatTemplate?: string): PromptEncoder {
  const renderChat = loadChatRenderer(dir, chatTemplate);
  if (!existsSync(join(dir, 'tokenizer.json')))
    throw new InputError('tokenizer.json not found: a text generator needs the tokenizer', { where: dir });
  return promptEncoder(renderChat, loadTokenizer(dir));
}

export async function loadTextGenerator(dir: string, opts: TextGeneratorOptions = {}): Promise<LoadedTextGenerator> {
  const trainedSystem = trainedSystemPrompt(dir);
  const renderChat = loadChatRenderer(dir, opts.chatTemplate, trainedSystem);
  const decoder = await Decoder.load(dir, opts);
  const tok = decoder.tokenizer;
  if (!tok) {
    await decoder.close();
    throw new InputError('tokenizer.json not found: a text generator needs the tokenizer', { where: dir });
  }
  return {
    kind: 'text-generation',
    id: opts.id ?? dir,
    contextLength: decoder.maxPositions,
    vocabSize: decoder.config.vocabSize,
    decoder,
    trainedSystem,
    ...promptEncoder(renderChat, tok),
    generate: (prompts, o: GenerateOptions) => generate(decoder, prompts, o),
    close: () => decoder.close(),
  };
}

/**
 * A one-prompt question's tokens as `tempered generate` asks it, and `tempered predict` each row: through the chat
 * template as the user's message (after `system` when given, else the fine-tune's trained system message), or as the
 * text alone with `raw`.
 */
export function promptTokens(enc: PromptEncoder, prompt: string, o: { raw?: boolean; system?: string } = {}): number[] {
  if (o.raw) return enc.encode(prompt);
  const messages: ChatMessage[] = [
    ...(o.system !== undefined ? [{ role: 'system', content: o.system }] : []),
    { role: 'user', content: prompt },
  ];
  return enc.encodeChat(messages);
}
