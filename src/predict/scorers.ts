/**
 * The two kinds of RowScorer predictFile takes. A classifier is asked as `tempered serve`'s /predict asks it (the
 * same pooled predictor, src/serve/worker-pool.ts), so the labels and probabilities are the server's. A causal LM is
 * asked as `tempered generate` asks it (promptTokens, then generate), one row at a time: a row's logits in a batch
 * differ from its logits alone in the last digits, which can change a token, and each row's answer should be what
 * generate gives for that prompt.
 */
import { InputError } from '../errors.ts';
import { generate, type GenerateOptions } from '../generate/generate.ts';
import { MAX_CHARS_PER_TOKEN, promptTokens, type LoadedTextGenerator } from '../generate/text-generator.ts';
import { withSystemMessage } from '../models/chat-encoding.ts';
import type { PooledPredictor } from '../serve/worker-pool.ts';
import type { PredictInput, RowScorer, Scored } from './predict.ts';

/** Texts per classifier request: serve's default --max-batch, so a batch is one that a client of the server could send. */
export const CLASSIFIER_BATCH = 64;

/** A classifier's JSONL output keys and a language model's (its CSV columns too), known before a model loads. */
export const CLASSIFIER_KEYS: readonly string[] = ['label', 'scores'];
export const LM_KEYS: readonly string[] = ['answer', 'finishReason'];

/** A classifier's CSV columns: the label, then each label's probability. */
export function classifierColumns(labels: readonly string[]): string[] {
  return ['label', ...labels.map((l) => `p_${l}`)];
}

export function classifierScorer(p: Pick<PooledPredictor, 'labels' | 'predictEach'>, batchSize = CLASSIFIER_BATCH): RowScorer {
  return {
    batchSize,
    columns: classifierColumns(p.labels),
    keys: [...CLASSIFIER_KEYS],
    // No `conversations`: predictFile gives a classifier texts only.
    async score(texts) {
      // A text the model cannot take (token ids, type ids or length past its embedding rows) is found before onnxruntime
      // runs: that row is a bad row (--on-bad-row), and the batch's other rows are scored in the same run.
      return (await p.predictEach(texts as string[])).map(
        (r): Scored => ('unfit' in r ? { bad: r.unfit } : { values: { label: r.label, scores: r.scores } }),
      );
    },
    csvCells: (v) => [v.label as string, ...p.labels.map((l) => (v.scores as Record<string, number>)[l])].map(String),
  };
}

export interface LmScorerOptions {
  /** The text as the prompt, without the chat template. */
  raw?: boolean;
  /** A system message before each row's (replaces the one the fine-tune was trained with). */
  system?: string;
  /** Generation settings, as generate takes them (greedy at temperature 0). */
  sampling: Omit<GenerateOptions, 'onToken' | 'signal' | 'prefixCache'>;
}

export function lmScorer(gen: LoadedTextGenerator, o: LmScorerOptions): RowScorer {
  // generate takes a prompt shorter than the context. A longer one is refused by its characters before it is
  // tokenized, as serve refuses it: a hostile row of one long word would otherwise hold the run for hours.
  const maxPrompt = gen.contextLength - 1;
  return {
    batchSize: 1,
    columns: [...LM_KEYS],
    keys: [...LM_KEYS],
    conversations: true,
    async score(inputs, signal) {
      const out: Scored[] = [];
      for (const input of inputs) {
        const chars = typeof input === 'string' ? input.length : input.reduce((n, m) => n + m.content.length, 0);
        if (chars > maxPrompt * MAX_CHARS_PER_TOKEN) {
          out.push({
            bad: `the ${typeof input === 'string' ? 'prompt' : 'conversation'} has ${chars} characters, more than ${MAX_CHARS_PER_TOKEN} a token for the ${maxPrompt} tokens the model's context holds`,
          });
          continue;
        }
        if (typeof input !== 'string' && o.raw) {
          out.push({ bad: 'a conversation is asked through the chat template, which --raw leaves out; drop --raw' });
          continue;
        }
        try {
          const ids =
            typeof input === 'string'
              ? promptTokens(gen, input, o)
              : gen.encodeChat(
                  withSystemMessage(
                    input.map(({ role, content }) => ({ role, content })),
                    o.system,
                  ),
                );
          const [r] = await generate(gen.decoder, [ids], { ...o.sampling, signal });
          out.push({ values: { answer: r!.text, finishReason: r!.finishReason } });
        } catch (e) {
          // A prompt longer than the model's context is this row's problem, not the run's.
          if (e instanceof InputError && e.where?.startsWith('generate.prompts')) out.push({ bad: e.bareMessage });
          else throw e;
        }
      }
      return out;
    },
    csvCells: (v) => [v.answer as string, v.finishReason as string],
  };
}
