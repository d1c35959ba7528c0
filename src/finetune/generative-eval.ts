/**
 * Generated answers for evaluation: every test prompt rendered as the model saw prompts in training (its chat
 * template, or its prompt template), decoded greedily with the KV cache in batches of similar length, and
 * scored against the references (exact match, ROUGE-L, chrF: src/eval/generative.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { readArrowBatches, stringColumn } from '../data/arrow-io.ts';
import type { Device } from '../engine/runtime.ts';
import {
  generativeScores,
  repeatFinder,
  type AnswerBreakdown,
  type AnswerNormalization,
  type GenerativeRowScore,
  type GenerativeScores,
} from '../eval/generative.ts';
import { Decoder } from '../generate/decoder.ts';
import { generate, type FinishReason } from '../generate/generate.ts';
import { LmLossAccumulator, responseLoss, tokenNll, type ResponseLoss } from '../eval/metrics.ts';
import { encodeChatExample, encodeConversation, endOfTurnId, tokenizeChat, withSystemMessage } from '../models/chat-encoding.ts';
import { loadChatTemplate } from '../models/chat-template.ts';
import { conversationText, evaluatedPart, MESSAGES, readConversation, type ConversationMessage } from '../data/conversation.ts';
import { LLAMA_FAMILY, isLlamaFamily } from '../models/llama.ts';
import { DEFAULT_PROMPT_TEMPLATE, IGNORE_INDEX, type CausalEncoding, type HfTokenizer, type PromptTemplate } from '../models/tokenizer.ts';
import type { ChatOptions } from './causal-lm.ts';
import { unfitMessage } from './token-ids.ts';

/** How a prompt becomes the model's input: a chat template, else a prompt template (default: DEFAULT_PROMPT_TEMPLATE). */
export interface LmRendering {
  template?: PromptTemplate;
  chat?: ChatOptions;
}

interface CausalManifest {
  task?: string;
  maxLength?: number;
  template?: PromptTemplate | null;
  chat?: { template: string; system: string | null; endOfTurn: string | null } | null;
}

/** The rendering and training length a tempered causal-LM export was trained with; undefined for a base model folder. */
export function trainedRendering(modelDir: string): (LmRendering & { maxLength?: number }) | undefined {
  const path = join(modelDir, 'tempered-model.json');
  if (!existsSync(path)) return undefined;
  const m = JSON.parse(readFileSync(path, 'utf8')) as CausalManifest;
  return {
    template: m.template ?? undefined,
    chat: m.chat ? { template: m.chat.template, system: m.chat.system ?? undefined, endOfTurn: m.chat.endOfTurn ?? undefined } : undefined,
    maxLength: m.maxLength,
  };
}

/** The model_type of a model folder's config.json (generation needs the LLaMA family: llama, mistral, qwen2). */
export function modelType(modelDir: string): string | undefined {
  const path = join(modelDir, 'config.json');
  if (!existsSync(path)) return undefined;
  const t = (JSON.parse(readFileSync(path, 'utf8')) as { model_type?: unknown }).model_type;
  return typeof t === 'string' ? t : undefined;
}

/**
 * The first `maxRows` prompt/response pairs of a table (all of them without maxRows). A chat table (a messages column,
 * no prompt column) gives each row's conversation up to its last trained reply in `conversations` (evaluatedPart): that
 * reply is the reference, and `prompts` holds the conversation before it as `role: content` lines, to show in reports.
 */
export async function readPromptResponses(
  table: string,
  o: { promptColumn?: string; responseColumn?: string; maxRows?: number } = {},
): Promise<{ prompts: string[]; references: string[]; conversations?: ConversationMessage[][] }> {
  const pc = o.promptColumn ?? 'prompt';
  const rc = o.responseColumn ?? 'response';
  const prompts: string[] = [],
    references: string[] = [];
  const limit = o.maxRows ?? Infinity;
  let conversations: ConversationMessage[][] | undefined;
  for await (const b of readArrowBatches(table)) {
    if (prompts.length >= limit) break;
    if (!b.getChild(pc) && b.getChild(MESSAGES)) {
      conversations ??= [];
      const cells = stringColumn(b, MESSAGES);
      for (let i = 0; i < cells.length && prompts.length < limit; i++) {
        const whole = readConversation(cells[i]!);
        if (typeof whole === 'string')
          throw new InputError(`row ${prompts.length}: column ${MESSAGES} holds no conversation: ${whole}`, { where: table });
        const c = evaluatedPart(whole);
        prompts.push(conversationText(c.slice(0, -1)));
        references.push(c.at(-1)!.content);
        conversations.push(c);
      }
      continue;
    }
    for (const c of [pc, rc])
      if (!b.getChild(c))
        throw new InputError(`the table has no column ${JSON.stringify(c)} (columns: ${b.schema.fields.map((f) => f.name).join(', ')})`, {
          where: table,
        });
    const p = stringColumn(b, pc),
      r = stringColumn(b, rc);
    for (let i = 0; i < p.length && prompts.length < limit; i++) {
      if (typeof p[i] !== 'string' || typeof r[i] !== 'string')
        throw new InputError(`row ${prompts.length} has no ${typeof p[i] !== 'string' ? pc : rc}`, { where: table });
      prompts.push(p[i]!);
      references.push(r[i]!);
    }
  }
  return { prompts, references, ...(conversations ? { conversations } : {}) };
}

/**
 * Whether any (normalised) reference answer of a table repeats (repeatFinder), read a batch at a time from its
 * response column (a chat table: each conversation's last trained reply) and stopping at the first repeat: a label set
 * stops within its first rows, and a free-form one keeps its distinct answers, never its prompts, in memory. A row the
 * evaluation would refuse is passed over here: it is refused, naming it, where it is evaluated.
 */
export async function tableReferencesRepeat(
  table: string,
  normalization: AnswerNormalization = {},
  o: { promptColumn?: string; responseColumn?: string } = {},
): Promise<boolean> {
  const repeats = repeatFinder(normalization);
  for await (const b of readArrowBatches(table)) {
    if (!b.getChild(o.promptColumn ?? 'prompt') && b.getChild(MESSAGES)) {
      for (const cell of stringColumn(b, MESSAGES)) {
        const whole = typeof cell === 'string' ? readConversation(cell) : 'no conversation';
        const reply = typeof whole === 'string' ? undefined : evaluatedPart(whole).at(-1);
        if (reply && repeats(reply.content)) return true;
      }
      continue;
    }
    if (!b.getChild(o.responseColumn ?? 'response')) continue;
    for (const r of stringColumn(b, o.responseColumn ?? 'response')) if (typeof r === 'string' && repeats(r)) return true;
  }
  return false;
}

export interface GenerateAnswersOptions {
  /** A tempered causal-LM export or a base model folder (LLaMA family). */
  model: string;
  prompts: string[];
  /**
   * Chat tables: each row's whole conversation (readPromptResponses). The answer is generated after the messages before
   * its last one, in the chat format (the model's own template without chat settings); `prompts` only name the rows.
   */
  conversations?: readonly (readonly ConversationMessage[])[];
  /** Default: the model's own (its manifest), else the default prompt template. */
  rendering?: LmRendering;
  /** Most new tokens per answer. */
  maxNewTokens: number;
  /** Prompts decoded together (sorted by length so a batch pads little). Default 8. */
  batchSize?: number;
  /** Strings that end an answer (cut before them), besides the end-of-turn / EOS tokens. */
  stop?: string[];
  device?: Device;
  threads?: number;
  signal?: AbortSignal;
  /** After each batch: answers done so far. */
  onProgress?: (done: number, total: number) => void;
}

export interface GeneratedAnswers {
  outputs: string[];
  finishReasons: FinishReason[];
  /** Prompts cut from the left to fit the context with maxNewTokens to spare. */
  truncatedPrompts: number;
}

/** The prompt's token ids exactly as training put them before the response. */
export function promptIds(
  tok: HfTokenizer,
  modelDir: string,
  prompt: string,
  r: LmRendering,
  conversation?: readonly ConversationMessage[],
): number[] {
  if (conversation) {
    const chat = r.chat ?? {};
    const template = loadChatTemplate(modelDir, chat.template);
    // As training rendered it (encodeConversation): chat.system only where the conversation has no system message.
    const before = withSystemMessage(
      conversation.slice(0, -1).map(({ role, content }) => ({ role, content })),
      chat.system,
    );
    const added = before.length - (conversation.length - 1);
    const where = (i: number) => (i < added ? 'chat.system' : `test conversation, message ${i - added}`);
    return tokenizeChat(tok, template, before, { addGenerationPrompt: true }, where).ids;
  }
  if (r.chat) {
    const template = loadChatTemplate(modelDir, r.chat.template);
    const convo = withSystemMessage([{ role: 'user', content: prompt }], r.chat.system);
    const where = (i: number) => (convo[i]!.role === 'system' ? 'chat.system' : 'test prompt');
    return tokenizeChat(tok, template, convo, { addGenerationPrompt: true }, where).ids;
  }
  const tpl = r.template ?? DEFAULT_PROMPT_TEMPLATE;
  const ids = tok.tokenize(tpl.prompt.split('{prompt}').join(prompt));
  return (tpl.addBos ?? tok.addBosDefault) && tok.bosId !== undefined ? [tok.bosId, ...ids] : ids;
}

function requireLlama(model: string): void {
  const type = modelType(model);
  if (!isLlamaFamily(type))
    throw new InputError(
      `generation needs a LLaMA-family model (model_type ${LLAMA_FAMILY.map((t) => JSON.stringify(t)).join(', ')}); ${model} is ${JSON.stringify(type)}`,
      {
        where: 'evaluate.generation',
        hint: 'remove generation to score this model by response loss and perplexity only',
      },
    );
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('evaluation was aborted');
}

/** Greedy answers (deterministic: argmax, first on ties) to every prompt, in the prompts' order. */
export async function generateAnswers(o: GenerateAnswersOptions): Promise<GeneratedAnswers> {
  requireLlama(o.model);
  const decoder = await Decoder.load(o.model, { device: o.device, threads: o.threads });
  try {
    return await answersOn(decoder, o);
  } finally {
    await decoder.close();
  }
}

/** Conversations are always in the chat format: the model's own template and end-of-turn token unless set. */
function withChat(r: LmRendering, conversations: unknown): LmRendering {
  return conversations && !r.chat ? { ...r, chat: {} } : r;
}

async function answersOn(decoder: Decoder, o: GenerateAnswersOptions): Promise<GeneratedAnswers> {
  const rendering = withChat(o.rendering ?? trainedRendering(o.model) ?? {}, o.conversations);
  const tok = decoder.tokenizer;
  if (!tok) throw new InputError('the model folder has no tokenizer.json', { where: o.model });
  // With a chat template the turn ends with its end-of-turn token, which need not be the model's EOS.
  const eos = rendering.chat ? [...new Set([...decoder.eosTokenIds, endOfTurnId(tok, rendering.chat.endOfTurn)])] : decoder.eosTokenIds;
  const room = decoder.maxPositions - o.maxNewTokens;
  if (room < 1)
    throw new InputError(`maxNewTokens ${o.maxNewTokens} leaves no room for a prompt in a context of ${decoder.maxPositions}`, {
      where: 'evaluate.generation.maxNewTokens',
    });
  let truncatedPrompts = 0;
  const ids = o.prompts.map((p, i) => {
    const t = promptIds(tok, o.model, p, rendering, o.conversations?.[i]);
    if (t.length <= room) return t;
    truncatedPrompts++;
    return t.slice(t.length - room);
  });
  const order = ids.map((_, i) => i).sort((a, b) => ids[a]!.length - ids[b]!.length || a - b);
  const outputs = new Array<string>(ids.length);
  const finishReasons = new Array<FinishReason>(ids.length);
  const bs = o.batchSize ?? 8;
  for (let s = 0; s < order.length; s += bs) {
    if (o.signal?.aborted) throw abortError(o.signal);
    const rows = order.slice(s, s + bs);
    const res = await generate(
      decoder,
      rows.map((i) => ids[i]!),
      { maxNewTokens: o.maxNewTokens, eosTokenIds: eos, stop: o.stop, seed: 0, signal: o.signal },
    );
    res.forEach((r, k) => {
      outputs[rows[k]!] = r.text;
      finishReasons[rows[k]!] = r.finishReason;
    });
    o.onProgress?.(Math.min(s + bs, order.length), order.length);
  }
  if (o.signal?.aborted) throw abortError(o.signal);
  return { outputs, finishReasons, truncatedPrompts };
}

/**
 * Each record as training encoded it (chat template or prompt template, cut at maxLength), so the loss is over the
 * same response tokens evaluateCausalLm and training score.
 */
export function responseEncodings(
  tok: HfTokenizer,
  modelDir: string,
  prompts: readonly string[],
  references: readonly string[],
  r: LmRendering & { maxLength: number },
  conversations?: readonly (readonly ConversationMessage[])[],
): CausalEncoding[] {
  const chat = r.chat && { template: loadChatTemplate(modelDir, r.chat.template), system: r.chat.system, endOfTurn: r.chat.endOfTurn };
  // A conversation's loss is over every trained reply, as training and evaluateCausalLm score it; a row whose first
  // trained reply does not fit has no tokens, and is counted as unscored.
  if (conversations) return conversations.map((c, i) => encodeConversation(tok, c, { ...chat!, maxLength: r.maxLength }, `test row ${i}`));
  return prompts.map((p, i) =>
    chat
      ? encodeChatExample(tok, p, references[i]!, { ...chat, maxLength: r.maxLength }, `test row ${i}`)
      : tok.encodePromptResponse(p, references[i]!, { template: r.template, maxLength: r.maxLength }),
  );
}

/**
 * Mean NLL over response tokens, teacher-forced on the KV-cache decoder: one pass over each row's tokens before its
 * first scored token, then one token per step through the response. Equal to evaluateCausalLm's full-sequence
 * forward up to float rounding, without a second graph of the model; for short answers it costs little more than
 * the prompt pass.
 */
export async function responseLossOn(
  decoder: Decoder,
  encodings: readonly CausalEncoding[],
  maxLength: number,
  batchSize = 8,
): Promise<ResponseLoss> {
  const rows = encodings
    .map((e) => {
      const first = e.labels.findIndex((l) => l !== IGNORE_INDEX);
      let last = e.labels.length - 1;
      while (last >= 0 && e.labels[last] === IGNORE_INDEX) last--;
      return { ids: e.inputIds, labels: e.labels, first, last };
    })
    // A row truncation left without a response token scores nothing (as in evaluateCausalLm): it is counted, not scored;
    // position 0 is never a target.
    .filter((r) => r.first > 0);
  const unscoredRows = encodings.length - rows.length;
  rows.sort((a, b) => a.first - b.first);
  const V = decoder.config.vocabSize;
  const acc = new LmLossAccumulator();
  const padId = decoder.tokenizer?.padId ?? 0;
  for (let s = 0; s < rows.length; s += batchSize) {
    const batch = rows.slice(s, s + batchSize);
    const B = batch.length;
    const P = Math.max(...batch.map((r) => r.first));
    const ids = new BigInt64Array(B * P).fill(BigInt(padId));
    const pos = new BigInt64Array(B * P).fill(1n);
    let mask = new BigInt64Array(B * P);
    batch.forEach((r, b) => {
      const off = P - r.first;
      for (let j = 0; j < r.first; j++) {
        ids[b * P + off + j] = BigInt(r.ids[j]!);
        pos[b * P + off + j] = BigInt(j);
        mask[b * P + off + j] = 1n;
      }
    });
    const steps = Math.max(...batch.map((r) => r.last - r.first));
    let { logits, cache } = await decoder.run(ids, pos, mask, B, decoder.emptyCache(B, P + steps));
    for (let k = 0; ; k++) {
      // logits of row b now predict token first + k.
      batch.forEach((r, b) => {
        const t = r.first + k;
        if (t <= r.last && r.labels[t] !== IGNORE_INDEX) acc.addTokenLosses(Float64Array.of(tokenNll(logits, b * V, V, r.ids[t]!)));
      });
      if (k >= steps) break;
      const next = new BigInt64Array(B).fill(BigInt(padId));
      const stepPos = new BigInt64Array(B);
      batch.forEach((r, b) => {
        const t = r.first + k;
        if (t < r.ids.length) next[b] = BigInt(r.ids[t]!);
        stepPos[b] = BigInt(t);
      });
      const total = P + k + 1;
      const grown = new BigInt64Array(B * total);
      for (let b = 0; b < B; b++) {
        grown.set(mask.subarray(b * (total - 1), (b + 1) * (total - 1)), b * total);
        grown[b * total + total - 1] = 1n;
      }
      mask = grown;
      ({ logits, cache } = await decoder.run(next, stepPos, mask, B, cache));
    }
  }
  return responseLoss(acc, { rows: encodings.length, unscoredRows, maxLength });
}

export interface EvaluateGenerativeOptions extends GenerateAnswersOptions {
  references: string[];
  exactMatch?: AnswerNormalization;
  /** Training length the records are cut to (default: the model's manifest, else 256). */
  maxLength?: number;
  /** Whether the answers are labels: tableReferencesRepeat over the whole test split (default: whether `references` repeat). */
  answersRepeat?: boolean;
  /** What errors call the rows' table (a pipeline field, say), the model, and the table's row that record `i` is. */
  tableName?: string;
  modelName?: string;
  rowOf?: (i: number) => number;
}

/**
 * Every record's token ids against the model's embedding rows before the decoder runs any: the first record holding an
 * id past them is named by its row, where onnxruntime's Gather failed at its batch (a plain error, which the evaluate
 * stage retried as transient), after the batches before it had run.
 */
function checkRecordsFitModel(o: EvaluateGenerativeOptions, encodings: readonly CausalEncoding[], vocab: number, padId: number): void {
  const hint = `the tokenizer files beside the weights (${join(o.model, 'tokenizer.json')}) are not the ones the model was trained with: put back the tokenizer files saved with these weights (tokenizer.json, tokenizer_config.json), or evaluate a model whose own they are`;
  const i = encodings.findIndex((e) => e.inputIds.some((id) => id >= vocab));
  if (i >= 0) {
    const id = encodings[i]!.inputIds.reduce((a, b) => Math.max(a, b), 0);
    throw new InputError(
      `the row is one ${o.modelName ?? o.model} cannot take: ${unfitMessage({ what: 'id', value: id, limit: vocab }, 'the row')}`,
      { where: `${o.tableName ?? 'the test rows'}: row ${(o.rowOf ?? ((r: number) => r))(i)}`, hint },
    );
  }
  if (padId >= vocab)
    throw new InputError(
      `the tokenizer pads with token id ${padId} (its pad_token, else its eos_token), but config.json's vocab_size is ${vocab}: this tokenizer is not the model's`,
      { where: join(o.model, 'tokenizer.json'), hint },
    );
}

export interface GenerativeEvaluation extends GeneratedAnswers {
  /** Over the rows that keep an answer token within maxLength; `unscoredRows` counts the others. */
  loss: ResponseLoss;
  scores: GenerativeScores;
  rows: GenerativeRowScore[];
  /** Per distinct reference answer: recall, precision, F1. */
  answers: AnswerBreakdown[];
}

/**
 * Response-token loss and generated answers with their scores, on one decoder session: what the evaluate stage
 * reports for a LLaMA-family model with `generation`.
 */
export async function evaluateGenerative(o: EvaluateGenerativeOptions): Promise<GenerativeEvaluation> {
  requireLlama(o.model);
  const trained = trainedRendering(o.model);
  const rendering = withChat(o.rendering ?? trained ?? {}, o.conversations);
  const decoder = await Decoder.load(o.model, { device: o.device, threads: o.threads });
  try {
    const tok = decoder.tokenizer;
    if (!tok) throw new InputError('the model folder has no tokenizer.json', { where: o.model });
    const maxLength = o.maxLength ?? trained?.maxLength ?? 256;
    const encodings = responseEncodings(tok, o.model, o.prompts, o.references, { ...rendering, maxLength }, o.conversations);
    checkRecordsFitModel(o, encodings, decoder.config.vocabSize, tok.padId);
    const loss = await responseLossOn(decoder, encodings, maxLength, o.batchSize);
    if (o.signal?.aborted) throw abortError(o.signal);
    const g = await answersOn(decoder, { ...o, rendering });
    return { ...g, loss, ...generativeScores(g.outputs, o.references, o.exactMatch, { answersRepeat: o.answersRepeat }) };
  } finally {
    await decoder.close();
  }
}

/** Answers and their scores against the references. */
export async function scoreGenerations(
  o: GenerateAnswersOptions & { references: string[]; exactMatch?: AnswerNormalization },
): Promise<GeneratedAnswers & { scores: GenerativeScores; rows: GenerativeRowScore[]; answers: AnswerBreakdown[] }> {
  const g = await generateAnswers(o);
  return { ...g, ...generativeScores(g.outputs, o.references, o.exactMatch) };
}
