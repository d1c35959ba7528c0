/**
 * A loaded causal LM as the server and the CLI use it: decoder, tokenizer and chat template together.
 * Chat templates are the model's own Jinja or one given explicitly (src/models/chat-template.ts, as
 * transformers' apply_chat_template renders them), then tokenized without added specials, as transformers does.
 */
import { InputError } from '../errors.ts';
import { loadChatTemplate, type ChatTemplate } from '../models/chat-template.ts';
import type { ChatMessage, TextGenerator } from '../serve/types.ts';
import { Decoder, type DecoderOptions } from './decoder.ts';
import { generate, type GenerateOptions } from './generate.ts';

export interface TextGeneratorOptions extends DecoderOptions {
  /** Reported in responses, e.g. `name@version`. Default: the folder. */
  id?: string;
  /** A Jinja chat template that replaces (or stands in for a missing) tokenizer_config.json chat_template. */
  chatTemplate?: string;
}

export interface LoadedTextGenerator extends TextGenerator {
  readonly decoder: Decoder;
  /** The prompt text a conversation becomes (what encodeChat tokenizes). */
  renderChat(messages: ChatMessage[]): string;
}

export async function loadTextGenerator(dir: string, opts: TextGeneratorOptions = {}): Promise<LoadedTextGenerator> {
  // A model without a template still serves /v1/completions; chat requests then get the loader's error.
  let template: ChatTemplate | InputError;
  try {
    template = loadChatTemplate(dir, opts.chatTemplate);
  } catch (e) {
    if (!(e instanceof InputError) || opts.chatTemplate !== undefined || !/no chat template/.test(e.message)) throw e;
    template = e;
  }
  const decoder = await Decoder.load(dir, opts);
  const tok = decoder.tokenizer;
  if (!tok) {
    await decoder.close();
    throw new InputError('tokenizer.json not found: a text generator needs the tokenizer', { where: dir });
  }
  const renderChat = (messages: ChatMessage[]): string => {
    if (template instanceof InputError) throw template;
    return template.render(messages, { addGenerationPrompt: true });
  };
  return {
    kind: 'text-generation',
    id: opts.id ?? dir,
    contextLength: decoder.maxPositions,
    decoder,
    renderChat,
    encode: (text) => tok.encode(text).inputIds,
    encodeChat: (messages) => tok.tokenize(renderChat(messages)),
    generate: (prompts, o: GenerateOptions) => generate(decoder, prompts, o),
    close: () => decoder.close(),
  };
}
