/**
 * A loaded causal LM as the server and the CLI use it: decoder, tokenizer and chat template together.
 * Chat templates are the model's own Jinja (tokenizer_config.json `chat_template`) or one given
 * explicitly, rendered by @huggingface/jinja as transformers' apply_chat_template does
 * (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`), then tokenized without added specials.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { InputError } from '../errors.ts';
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

/** The chat_template of tokenizer_config.json: a string, or a list of named templates ('default' is used). */
function templateOf(dir: string): string | undefined {
  const path = join(dir, 'tokenizer_config.json');
  if (!existsSync(path)) return undefined;
  const t = (JSON.parse(readFileSync(path, 'utf8')) as { chat_template?: unknown }).chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const d = t.find((x) => (x as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    if (typeof d?.template === 'string') return d.template;
  }
  return undefined;
}

function tokenText(dir: string, key: string): string {
  const path = join(dir, 'tokenizer_config.json');
  if (!existsSync(path)) return '';
  const v = (JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>)[key];
  return typeof v === 'string' ? v : typeof (v as { content?: unknown })?.content === 'string' ? (v as { content: string }).content : '';
}

export async function loadTextGenerator(dir: string, opts: TextGeneratorOptions = {}): Promise<LoadedTextGenerator> {
  const source = opts.chatTemplate ?? templateOf(dir);
  let template: Template | null = null;
  if (source !== undefined) {
    try {
      template = new Template(source);
    } catch (e) {
      throw new InputError(`the chat template does not parse: ${(e as Error).message}`, { where: opts.chatTemplate !== undefined ? 'chatTemplate' : join(dir, 'tokenizer_config.json: chat_template') });
    }
  }
  const decoder = await Decoder.load(dir, opts);
  const tok = decoder.tokenizer;
  if (!tok) {
    await decoder.close();
    throw new InputError('tokenizer.json not found: a text generator needs the tokenizer', { where: dir });
  }
  const bos = tokenText(dir, 'bos_token'), eos = tokenText(dir, 'eos_token');
  const renderChat = (messages: ChatMessage[]): string => {
    if (!template) throw new InputError('this model has no chat template (tokenizer_config.json chat_template); give one explicitly, or use /v1/completions with a plain prompt', { where: 'chatTemplate' });
    return template.render({ messages, add_generation_prompt: true, bos_token: bos, eos_token: eos });
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
