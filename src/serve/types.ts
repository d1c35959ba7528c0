/** What the server needs from a model; the CLI wires the real ONNX models behind it. */
import type { GenerateOptions, GenerateResult } from '../generate/generate.ts';

export interface Prediction {
  label: string;
  /** Label → probability (or score), for every label the model knows. */
  scores: Record<string, number>;
}

export interface Predictor {
  readonly kind?: 'classification';
  /** `model@version`, reported in every response and in /metrics. */
  readonly id: string;
  readonly labels: string[];
  predict(texts: string[]): Promise<Prediction[]>;
  /** Queue and batch counters, when the predictor runs off the event loop (worker-pool.ts); shown in /metrics. */
  stats?(): { queued: number; inflight: number; batches: number; rejected: number };
  /** Frees the model; called once, after every request using it has finished. */
  close(): Promise<void> | void;
}

/** One chat turn as the OpenAI API sends it (text content only). */
export interface ChatMessage {
  role: string;
  content: string;
}

/** A causal language model behind `/v1/chat/completions` and `/v1/completions`. */
export interface TextGenerator {
  readonly kind: 'text-generation';
  /** `model@version`, reported in every response and in /metrics. */
  readonly id: string;
  /** Most tokens of prompt plus output (the model's max_position_embeddings). */
  readonly contextLength: number;
  /** Token ids the model takes: 0 to vocabSize - 1 (config.json's vocab_size), what a prompt of token ids is checked against. */
  readonly vocabSize: number;
  /**
   * Prompt token ids of a plain text. A server's generator tokenizes off its thread, so may answer later; `signal`
   * (the client left) drops a prompt still waiting there.
   */
  encode(text: string, signal?: AbortSignal): number[] | Promise<number[]>;
  /** Prompt token ids of a conversation rendered with the model's chat template (assistant turn opened). */
  encodeChat(messages: ChatMessage[], signal?: AbortSignal): number[] | Promise<number[]>;
  /**
   * Generates for each prompt (token ids); see src/generate. `cacheScope`: a generator that keeps prompt caches
   * between requests reuses one only for a request of the same scope (the OpenAI API's `user`), so what one
   * scope's prompts hold never shows in another's `cached_tokens` or timing.
   */
  generate(prompts: number[][], opts: GenerateOptions & { cacheScope?: string }): Promise<GenerateResult[]>;
  close(): Promise<void> | void;
}

/** What the server can serve: a classifier (`/predict`) or a text generator (`/v1/...`). */
export type ServedModel = Predictor | TextGenerator;

export function isTextGenerator(m: ServedModel): m is TextGenerator {
  return (m as TextGenerator).kind === 'text-generation';
}

/** The version the serving alias points at now; `load` is only called when `key` changes. */
export interface CurrentModel<P extends ServedModel = ServedModel> {
  /** Changes exactly when a different model should be served, e.g. `spam-clf@3` or a hash. */
  key: string;
  load(): Promise<P>;
  /**
   * When this model was made, in Unix seconds: a registry version's registration, which is what OpenAI's `created` of a
   * model says (when it was made, not when a server took it up). Left out (a base model served as it is, whose
   * publisher's date the server does not know), `/v1/models` says when this server loaded it.
   */
  created?: number;
}

export type ResolveCurrent<P extends ServedModel = ServedModel> = () => Promise<CurrentModel<P>>;
