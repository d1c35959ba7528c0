/**
 * tokenizer.json regexes are hostile input: @huggingface/tokenizers compiles every `{"Regex": …}` pattern
 * (Split and Replace pre-tokenizers, Replace normalizers, Replace decoders) into a JavaScript RegExp, a
 * backtracking engine, so `(a+)+$` in a downloaded tokenizer.json would hang a training worker or
 * `tempered serve` on a 30-character text. Every such pattern is checked before the library sees it:
 * known pre-tokenizer patterns (the table below) pass at once, any other is compiled exactly as the
 * library compiles it and analysed by regex-safety.ts; a pattern that can backtrack exponentially or
 * polynomially is refused with an InputError naming the file and the pattern's JSON path.
 */
import { createHash } from 'node:crypto';
import * as tokenizers from '@huggingface/tokenizers';
import { InputError } from '../errors.ts';
import { CheckBudget, regexVerdict, type RegexVerdict } from './regex-safety.ts';

/** Longer patterns are refused before the library compiles them (its Oniguruma rewrite is not linear in the length). */
const MAX_PATTERN_CHARS = 4096;
/** `{"Regex": …}` patterns one tokenizer.json may hold (real ones: at most a handful). */
export const MAX_PATTERNS = 64;
/** `\b` and `\B` one pattern may hold: the library rewrites each into ~280 characters of lookarounds, in time linear in its output (2048 took 1.9 s). */
const MAX_WORD_BOUNDARIES = 32;

/** GPT-2's split (RoBERTa, GPT-J, OLMo, StarCoder and the SmolLM GGUF split after `\p{N}`). */
const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/** cl100k (GPT-4) as Llama-3, Phi-4, OLMo-2, GLM-4 write it; Qwen2/2.5/3 take digits one by one. */
const LLAMA3 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 = LLAMA3.replace('\\p{N}{1,3}', '\\p{N}');
/** o200k (GPT-4o, gpt-oss, Llama-4, Phi-4-mini). */
const O200K =
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** Mistral's Tekken (Mistral-Nemo, Mistral-Small): o200k without the contractions, digits one by one. */
const TEKKEN =
  '[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
/** DeepSeek-V3 / R1: three Splits in turn. */
const DEEPSEEK_V3 = [
  '\\p{N}{1,3}',
  '[一-龥\u3040-ゟ゠-ヿ]+',
  '[!"#$%&\'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
];

/**
 * Patterns whose verdict is known (regex-safety.ts finds each safe: tokenizer.test.ts checks it), so
 * tokenizers of these families load without the analysis (its first run in a process scans Unicode
 * properties over every code point: ~0.1–0.4 s each). Anything else is analysed.
 */
export const KNOWN_SAFE_PATTERNS: ReadonlySet<string> = new Set([
  GPT2,
  LLAMA3,
  QWEN2,
  O200K,
  TEKKEN,
  ...DEEPSEEK_V3,
  '\\p{N}', // SmolLM / StarCoder digits (llama.cpp's split for them)
  ' ', // Gemma's Split on spaces
  ' {2,}', // SentencePiece conversions (T5, NLLB): runs of spaces → one
  ' ?[^(\\s|[.,!?…。，、।۔،])]+', // BLOOM
]);

/** The library's own compilation of a pattern (its Oniguruma → JavaScript rewrite included). */
// Exported by the library at run time; its .d.ts re-exports lack the extensions NodeNext needs to see them.
const { SplitPreTokenizer } = tokenizers as unknown as { SplitPreTokenizer: new (config: object) => { pattern: RegExp | null } };

export function compilePattern(regex: string): RegExp | null {
  return new SplitPreTokenizer({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }).pattern;
}

function explain(v: Exclude<RegexVerdict, { kind: 'safe' }>): string {
  switch (v.kind) {
    case 'exponential':
      return `can take exponential time on some texts: ${v.reason}`;
    case 'polynomial':
      return `can take polynomial time on some texts: ${v.reason}`;
    case 'too-complex':
      return `is too complex to check for slow matching (${v.reason})`;
    case 'unsupported':
      return `uses a construct that tempered does not check for slow matching: ${v.reason}`;
  }
}

const quote = (s: string) => JSON.stringify(s.length > 120 ? `${s.slice(0, 117)}...` : s);

/**
 * Refuses a pattern the library would compile to a RegExp that can backtrack super-linearly, unless the check
 * only reached one of its limits and the pattern's hash is in `trusted`. `budget`: the checker's work for the whole file (one for all its patterns).
 */
function checkPattern(regex: unknown, path: string, file: string, budget: CheckBudget, trusted: ReadonlySet<string>): void {
  if (typeof regex === 'string' && KNOWN_SAFE_PATTERNS.has(regex)) return;
  const fail = (what: string, trustable = false) =>
    new InputError(
      `${path} ${what}; JavaScript's regex engine backtracks, so such a pattern can hang tokenization. Use the model's tokenizer.json from a source you trust, or rewrite the pattern so that no repeated part can match the same text in two ways`,
      {
        where: file,
        hint: `tokenizer.json patterns are checked for catastrophic backtracking before they run (README: hostile input)${
          trustable
            ? `; this pattern passed a limit of the check, which refuses some safe patterns too: if you have read all of it (${path} in the file) and trust it, set ${TRUST_VAR}=${patternHash(regex as string)} (its sha256; comma-separated for several) on every process that loads this model, the workers and \`tempered serve\``
            : ''
        }`,
      },
    );
  if (typeof regex !== 'string') throw fail(`is ${regex === null ? 'null' : typeof regex}, not a string`);
  if (regex.length > MAX_PATTERN_CHARS)
    throw fail(`is ${regex.length} characters long, more than the ${MAX_PATTERN_CHARS} tempered checks`);
  // Escaped backslashes first, so that `\\b` (a backslash, then b) is not counted; `[\b]` is, conservatively.
  const boundaries = regex.replace(/\\\\/g, '').match(/\\[bB]/g)?.length ?? 0;
  if (boundaries > MAX_WORD_BOUNDARIES)
    throw fail(`has ${boundaries} word boundaries (\\b, \\B), more than the ${MAX_WORD_BOUNDARIES} tempered checks`);
  let re: RegExp | null;
  try {
    re = compilePattern(regex);
  } catch (e) {
    throw new InputError(`${path} ${quote(regex)} is not a valid pattern: ${(e as Error).message}`, { where: file, cause: e });
  }
  if (re === null) return;
  const v = regexVerdict(re, budget);
  if (v.kind === 'safe') return;
  // A shown ambiguity is no matter of trust: only a refusal at one of the checker's limits may be vouched for.
  if (!v.proven && trusted.has(patternHash(regex))) return;
  throw fail(`${quote(regex)} ${explain(v)}`, !v.proven);
}

/**
 * Patterns a person vouches for, by the sha256 of their text: the analysis is sound, not complete, so a
 * safe pattern it cannot prove safe (one past a limit: label-blind path counts, sizes, unmodelled syntax) would
 * otherwise keep its model out for good. A pattern shown to backtrack super-linearly cannot be vouched for. The hash names one
 * exact pattern, wherever it is found, and nothing like it.
 */
export const TRUST_VAR = 'TEMPERED_TRUSTED_PATTERNS';

export function trustedPatterns(env: NodeJS.ProcessEnv = process.env): ReadonlySet<string> {
  const hashes = (env[TRUST_VAR] ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  // A shortened or mistyped hash would trust nothing, silently, and the model would stay refused for no reason given.
  const bad = hashes.find((h) => !/^[0-9a-f]{64}$/.test(h));
  if (bad !== undefined)
    throw new InputError(`${TRUST_VAR}: '${bad}' is not a sha256 (64 hex digits)`, {
      hint: "copy the whole hash from the refusal's hint; separate several with commas",
    });
  return new Set(hashes);
}

const patternHash = (regex: string) => createHash('sha256').update(regex, 'utf8').digest('hex');

/** Objects nested deeper than this are refused (real tokenizer.json files nest 4 levels). */
const MAX_DEPTH = 64;

/**
 * Checks every `{"Regex": …}` under the normalizer, pre-tokenizer and decoder of a tokenizer.json
 * (the parts the library compiles patterns from), naming each by its JSON path.
 */
export function checkTokenizerPatterns(tokenizerJson: Record<string, unknown>, file: string): void {
  const budget = new CheckBudget();
  const trusted = trustedPatterns();
  let patterns = 0;
  const walk = (v: unknown, path: string, depth: number) => {
    if (typeof v !== 'object' || v === null) return;
    if (depth > MAX_DEPTH) throw new InputError(`${path} is nested more than ${MAX_DEPTH} levels deep`, { where: file });
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${path}[${i}]`, depth + 1));
      return;
    }
    for (const [k, x] of Object.entries(v)) {
      if (k === 'Regex') {
        if (++patterns > MAX_PATTERNS)
          throw new InputError(
            `${path}.Regex is pattern number ${patterns}: tempered checks at most ${MAX_PATTERNS} patterns in one file; use the model's tokenizer.json from a source you trust`,
            {
              where: file,
              hint: 'tokenizer.json patterns are checked for catastrophic backtracking before they run (README: hostile input)',
            },
          );
        checkPattern(x, `${path}.Regex`, file, budget, trusted);
      } else walk(x, `${path}.${k}`, depth + 1);
    }
  };
  for (const root of ['normalizer', 'pre_tokenizer', 'decoder']) walk(tokenizerJson[root], root, 0);
}
