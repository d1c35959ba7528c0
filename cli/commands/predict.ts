/**
 * `tempered predict MODEL --input FILE --output FILE`: scores every row of a JSONL or CSV file with a registered model
 * (or a model source, for language models) into a JSONL or CSV file, and records it in the audit log. The work is
 * src/predict's; this reads the flags, resolves and loads the model as serve and generate do, shows progress and
 * turns Ctrl-C into a clean stop (no output file).
 */
import { resolve } from 'node:path';
import { modelHashOf } from '../../src/audit/model-hash.ts';
import { removeAtomicTemps } from '../../src/data/atomic.ts';
import { ENCODINGS } from '../../src/data/lines.ts';
import { InputError } from '../../src/errors.ts';
import { loadTextGenerator } from '../../src/generate/text-generator.ts';
import { readManifest } from '../../src/finetune/predictor.ts';
import {
  checkPredictPaths,
  outputFormat,
  predictFile,
  refuseIdFieldClash,
  type PredictReport,
  type RowScorer,
} from '../../src/predict/predict.ts';
import { CLASSIFIER_BATCH, CLASSIFIER_KEYS, classifierColumns, classifierScorer, LM_KEYS, lmScorer } from '../../src/predict/scorers.ts';
import { loadPooledPredictor } from '../../src/serve/worker-pool.ts';
import { actor, parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { printable } from '../format.ts';
import { checkedSampling, cliInputError, refuseRawWithTemplate, resolveModelRef, SAMPLING_FLAGS, samplingFromFlags } from './generate.ts';
import { exportedTask, intFlag, readChatTemplate } from './serve.ts';

const USAGE =
  'tempered predict <name[@version|@alias] | model source> --input FILE (.jsonl, .csv, .tsv) --output FILE (.jsonl, or .csv) [--force]\n' +
  '  [--text-field F (text; prompt for language models, which also answer {"messages": [...]} rows)] [--id-field id]\n' +
  '  [--on-bad-row fail|skip] [--threads N] [--encoding windows-1252|latin1|iso-8859-15|windows-1250|windows-1251|utf-16]\n' +
  '  classifiers: [--batch-size 64]\n' +
  '  language models: [--max-tokens 128] [--temperature 0] [--top-p P] [--top-k K] [--repetition-penalty R] [--seed N] [--stop STR]...\n' +
  '    [--system TEXT] [--raw] [--chat-template FILE]\n' +
  '    (--max-new-tokens: the old name of --max-tokens, deprecated; it still works)';

/**
 * Flags that only a causal LM takes: given with a classifier, they would be ignored without a word. Derived from
 * generate's, so that a sampling flag added there is refused here too rather than taken and ignored.
 */
const LM_FLAGS = [...Object.keys(SAMPLING_FLAGS).filter((f) => f !== 'threads'), 'max-new-tokens', 'raw'];

export async function predictCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      ...SAMPLING_FLAGS,
      // generate's and chat's --max-tokens, under the name predict had first.
      'max-new-tokens': { type: 'string' },
      input: { type: 'string' },
      output: { type: 'string' },
      force: { type: 'boolean' },
      'text-field': { type: 'string' },
      'id-field': { type: 'string' },
      'on-bad-row': { type: 'string' },
      encoding: { type: 'string' },
      'batch-size': { type: 'string' },
      raw: { type: 'boolean' },
    },
    USAGE,
  );
  if (positionals.length !== 1) throw new CliError(`predict takes one model\nusage: ${USAGE}`, 2);
  const [ref] = positionals as [string];
  if (values.input === undefined || values.output === undefined)
    throw new CliError(`predict needs --input FILE and --output FILE\nusage: ${USAGE}`, 2);
  const onBadRow = values['on-bad-row'] ?? 'fail';
  if (onBadRow !== 'fail' && onBadRow !== 'skip')
    throw new CliError(`--on-bad-row must be fail or skip, got ${JSON.stringify(onBadRow)}`, 2);
  const encoding = values.encoding;
  if (encoding !== undefined && !(ENCODINGS as readonly string[]).includes(encoding))
    throw new CliError(
      `--encoding must be one of ${ENCODINGS.join(', ')} (an ingest stage's encoding: takes the same), got ${JSON.stringify(encoding)}`,
      2,
    );
  refuseRawWithTemplate(values);
  // Every flag is checked before a model is looked up or loaded.
  const maxNew = maxTokensFlag(values);
  const batchSize = intFlag('batch-size', values['batch-size'], 1, 1024);
  const { sampling, threads } = samplingFromFlags({ ...values, 'max-tokens': maxNew === undefined ? undefined : String(maxNew) }, 128);
  checkedSampling(sampling);
  const chatTemplate = readChatTemplate(values['chat-template']);
  const idField = values['id-field'] ?? 'id';
  const flagError = (check: () => void) => {
    try {
      check();
    } catch (e) {
      throw e instanceof InputError ? new CliError(`predict: ${e.message}${e.hint ? `\n  ${e.hint}` : ''}`, 2) : e;
    }
  };
  flagError(() => checkPredictPaths({ input: values.input!, output: values.output!, overwrite: values.force }));
  // `row` whatever the model; the model's own columns once its kind and labels are read, still before it loads.
  flagError(() => refuseIdFieldClash(idField, []));

  const model = await resolveModelRef(ctx, ref);
  const classifier = exportedTask(model.dir) === 'classification';
  const csvOut = outputFormat(values.output) === 'csv';
  flagError(() =>
    refuseIdFieldClash(idField, classifier ? (csvOut ? classifierColumns(readManifest(model.dir).labels) : CLASSIFIER_KEYS) : LM_KEYS),
  );
  if (classifier) {
    const lmOnly = LM_FLAGS.filter((f) => values[f as keyof typeof values] !== undefined);
    if (lmOnly.length > 0)
      throw new CliError(
        `${model.id} is a classifier: ${lmOnly.map((f) => `--${f}`).join(', ')} ${lmOnly.length === 1 ? 'applies' : 'apply'} to language models only`,
        2,
      );
  } else if (batchSize !== undefined)
    throw new CliError(
      `${model.id} is a language model, which predict asks one row at a time (as generate does): --batch-size applies to classifiers only`,
      2,
    );

  let scorer: RowScorer;
  let modelHash = model.version ? modelHashOf(model.version.artifacts) : undefined;
  let close: () => Promise<void> | void;
  if (classifier) {
    // serve's /predict path: the same pool, tokenizer, pooling, maxLength and batching of a request's texts. With
    // onnxruntime's CPU memory arena, which serve leaves off so that a long-lived server gives a large request's peak
    // back: a run that ends soon has nothing to give back, and the arena only places buffers (the same numbers, which
    // tests/predict-cli.test.ts checks against serve's pool without it). The demo classifier on sms_spam, in one
    // process, 7 Dec 05:25, load about 5: 37.5 rows/s without the arena, 80.1 with it.
    const pool = await loadPooledPredictor(model.dir, { threads, workers: 1, memArena: true });
    modelHash ??= pool.id;
    scorer = classifierScorer(pool, batchSize ?? CLASSIFIER_BATCH);
    close = () => pool.close();
  } else {
    const gen = await loadTextGenerator(model.dir, { id: model.id, threads, chatTemplate });
    scorer = lmScorer(gen, { raw: values.raw, system: values.system, sampling });
    close = () => gen.close();
  }

  const output = resolve(values.output);
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals === 1) {
      console.error(`\npredict: ${signal}: stopping; nothing is written to ${printable(values.output!)} (${signal} again ends at once)`);
      controller.abort(new CliError(`interrupted (${signal}); nothing was written to ${printable(values.output!)}`, 130));
      return;
    }
    // The library removes its temp file once the step running ends; ending now, this process removes it itself.
    removeAtomicTemps(output);
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const started = performance.now();
  const progress = progressLine(started);
  let report: PredictReport;
  try {
    report = await predictFile({
      input: values.input,
      output: values.output,
      scorer,
      textField: values['text-field'] ?? (classifier ? 'text' : 'prompt'),
      encoding: encoding as (typeof ENCODINGS)[number] | undefined,
      idField,
      onBadRow,
      overwrite: values.force,
      signal: controller.signal,
      onProgress: progress.update,
      beforeCommit: async (r) => {
        // Who scored which file with which model, and where the predictions went; no output without its record.
        await (
          await ctx.auditLog().get()
        ).append({
          action: 'model.predicted',
          subject: model.id,
          model: model.id,
          actor: actor(),
          ...(modelHash !== undefined ? { modelHash } : {}),
          dataHashes: { input: r.input.sha256 },
          details: {
            task: classifier ? 'classification' : 'causal-lm',
            input: resolve(values.input!),
            inputBytes: r.input.bytes,
            rows: r.rows,
            badRows: r.badRows,
            output,
            outputSha256: r.output.sha256,
            ...(model.revision !== undefined ? { revision: model.revision } : {}),
            ...(classifier ? {} : { generation: { ...sampling, raw: values.raw === true, system: values.system ?? null } }),
          },
        });
      },
    });
  } catch (e) {
    progress.end();
    if (controller.signal.aborted) throw controller.signal.reason;
    if (e instanceof InputError && e.where?.startsWith('generate.')) throw cliInputError(e);
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await close();
  }
  progress.end();
  const secs = (performance.now() - started) / 1000;
  console.error(
    `predict: ${report.rows} rows of ${printable(values.input)} → ${printable(values.output)} with ${printable(model.id)} in ${secs.toFixed(1)} s (${(report.rows / secs).toFixed(1)} rows/s)` +
      (report.badRows > 0
        ? `; ${report.badRows} bad rows left out (${Object.entries(report.badReasons)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}), first: ${report.firstBadRows.map((b) => `line ${b.line}: ${printable(b.detail)}`).join('; ')}`
        : ''),
  );
  for (const w of report.warnings ?? []) console.error(`predict: warning: ${printable(w)}`);
  return 0;
}

/** Progress on stderr for a run longer than a few seconds: rows, rows/s, how much of the input is done, and the time left. */
function progressLine(started: number): { update: (p: { rows: number; fraction: number }) => void; end: () => void } {
  const tty = process.stderr.isTTY === true;
  let shownAt = started;
  let shown = false;
  return {
    update({ rows, fraction }) {
      const now = performance.now();
      if (now - shownAt < (tty ? 1000 : 10_000) || (now - started < 3000 && !shown)) return;
      shownAt = now;
      shown = true;
      const secs = (now - started) / 1000;
      const eta = fraction > 0 && fraction < 1 ? `, ETA ${duration((secs / fraction) * (1 - fraction))}` : '';
      const line = `predict: ${rows} rows, ${(rows / secs).toFixed(1)} rows/s, ${Math.round(fraction * 100)}% of the input${eta}`;
      process.stderr.write(tty ? `\r${line}\x1b[K` : `${line}\n`);
    },
    end() {
      if (tty && shown) process.stderr.write('\n');
    },
  };
}

function duration(s: number): string {
  if (s < 90) return `${Math.ceil(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** --max-tokens, or its deprecated name --max-new-tokens (with a note on stderr), checked as a positive integer. */
function maxTokensFlag(values: { 'max-tokens'?: string; 'max-new-tokens'?: string }): number | undefined {
  const old = values['max-new-tokens'];
  if (old === undefined) return intFlag('max-tokens', values['max-tokens'], 1);
  if (values['max-tokens'] !== undefined) throw new CliError('--max-new-tokens is the old name of --max-tokens: give --max-tokens only', 2);
  console.error('predict: --max-new-tokens is deprecated; it is --max-tokens now, as in generate and chat');
  return intFlag('max-new-tokens', old, 1);
}
