// `tempered generate` as a user runs it: a real CLI process, a model folder, tokens streamed to stdout.
import { test, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import { Decoder } from '../src/generate/decoder.ts';
import { generate } from '../src/generate/generate.ts';
import { tinyLlamaDir } from '../src/models/tiny.testing.ts';
import { loopbackHub } from '../src/models/loopback-hub.testing.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { terminalSafe } from '../cli/format.ts';
import { BIN, runCli, runCliInProcess, runCliOnTerminal } from './helpers/cli.ts';

const home = mkdtempSync(join(tmpdir(), 'tempered-generate-cli-'));
after(() => rmSync(home, { recursive: true, force: true }));
const dir = tinyLlamaDir(join(home, 'model'), 4, { hidden: 32, layers: 2, maxPositions: 128 });
const env = { TEMPERED_HOME: join(home, 'state') };

test('tempered generate streams the same text the library generates; bad flags exit 2', async () => {
  const dec = await Decoder.load(dir, { threads: 1 });
  const [ref] = await generate(dec, [dec.tokenizer!.encode('Once upon').inputIds], { maxNewTokens: 12, temperature: 0.8, seed: 5 });
  await dec.close();
  const r = await runCli(
    ['generate', dir, 'Once upon', '--raw', '--max-tokens', '12', '--temperature', '0.8', '--seed', '5', '--threads', '1'],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${ref!.text}\n`);
  assert.match(r.stderr, /\d+ prompt tokens, 12 new, finish length/);

  // Chat mode needs a template: the tiny model has none, so the error says how to give one.
  const noTemplate = await runCli(['generate', dir, 'hi'], env);
  assert.equal(noTemplate.code, 2);
  assert.match(noTemplate.stderr, /no chat template/);
  const tpl = join(home, 'chat.jinja');
  writeFileSync(tpl, '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant] ');
  const chat = await runCli(['generate', dir, 'hi', '--chat-template', tpl, '--max-tokens', '3'], env);
  assert.equal(chat.code, 0, chat.stderr);
  assert.match(chat.stderr, /\[.*: \d+ prompt tokens, 3 new, finish length/);

  const bad = await runCli(['generate', dir, 'x', '--temperature', 'hot'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--temperature must be a number/);
  const usage = await runCli(['generate', dir], env);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: tempered generate/);

  // A fine-tuned classifier's folder: said so, with the route that answers it (it said "supports the LLaMA family").
  const clf = join(home, 'classifier');
  mkdirSync(clf, { recursive: true });
  writeFileSync(join(clf, 'tempered-model.json'), JSON.stringify({ task: 'classification', labels: ['ham', 'spam'] }));
  const classifier = await runCli(['generate', clf, 'hi'], env);
  assert.equal(classifier.code, 1, classifier.stderr);
  assert.match(
    classifier.stderr,
    /is a classifier \(task classification\); generate answers with a language model\. Serve it with `tempered serve .*classifier` and POST \/predict/,
  );
});

test('terminalSafe: control characters become visible escapes; text, newlines and tabs stay', () => {
  assert.equal(
    terminalSafe('a\x1b]0;pwned\x07b\x1b[2Jc\x00d\x7fe\x9bf\x80\x9f\rg\bh\n\ti ü€😀 \u00a0'),
    'a\\u001b]0;pwned\\u0007b\\u001b[2Jc\\u0000d\\u007fe\\u009bf\\u0080\\u009f\\u000dg\\u0008h\n\ti ü€😀 \u00a0',
  );
  assert.equal(terminalSafe('plain text\n'), 'plain text\n');
});

// A model's output could drive the terminal (ESC and OSC sequences, NUL): on a terminal it is shown escaped, in a pipe exact.
test(
  'tempered generate escapes control characters of the answer on a terminal and writes them as they are to a pipe',
  { skip: !existsSync('/usr/bin/script') && 'needs util-linux script for a terminal' },
  async () => {
    // A seed whose sampled answer has an ESC in it (this tiny model writes random bytes).
    const dec = await Decoder.load(dir, { threads: 1 });
    const ids = dec.tokenizer!.encode('Once upon').inputIds;
    let seed = 0;
    let text = '';
    for (; seed < 100; seed++) {
      text = (await generate(dec, [ids], { maxNewTokens: 12, temperature: 1, seed }))[0]!.text;
      if (text.includes('\x1b')) break;
    }
    await dec.close();
    assert.ok(text.includes('\x1b'), 'a seed whose answer has an ESC');
    const args = [
      'generate',
      dir,
      'Once upon',
      '--raw',
      '--max-tokens',
      '12',
      '--temperature',
      '1',
      '--seed',
      String(seed),
      '--threads',
      '1',
    ];
    const piped = await runCli(args, env);
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stdout, `${text}\n`, 'a pipe gets the exact text');

    const { code, out } = await runCliOnTerminal(args, env);
    assert.equal(code, 0, out);
    // The terminal turns each \n into \r\n; nothing else of the answer reaches it raw.
    assert.ok(out.includes(terminalSafe(text).replace(/\n/g, '\r\n')), `escaped answer in ${JSON.stringify(out)}`);
    assert.doesNotMatch(out, /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/, 'no raw control character');
  },
);

test('generate: a prompt on stdin with -; a prompt argument over 16 KiB is refused before onnxruntime could crash on it', async () => {
  const dec = await Decoder.load(dir, { threads: 1 });
  const prompt = dec.tokenizer!.encode('Once upon\nthere').inputIds;
  const [ref] = await generate(dec, [prompt], { maxNewTokens: 6 });
  await dec.close();
  const flags = ['--raw', '--max-tokens', '6', '--threads', '1'];
  // One final line break is dropped, as a shell drops it from $(...): `echo "..." | tempered generate MODEL -`.
  const stdin = await runCli(['generate', dir, '-', ...flags], env, { input: 'Once upon\nthere\n' });
  assert.equal(stdin.code, 0, stdin.stderr);
  assert.equal(stdin.stdout, `${ref!.text}\n`);
  assert.match(stdin.stderr, new RegExp(`: ${prompt.length} prompt tokens, 6 new`));

  // 30 KB on the command line crashed onnxruntime (SIGSEGV, exit 139, no message): now refused at once.
  const long = 'a'.repeat(30_000);
  const refused = await runCli(['generate', dir, long, ...flags], env);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(
    refused.stderr,
    /the prompt is 30000 bytes, over the 16 KiB .* pass it on stdin with -, e\.g\. tempered generate MODEL - < prompt\.txt/,
  );
  // Bytes, not characters: 6,000 three-byte characters are 18,000 bytes.
  const wide = await runCli(['generate', dir, '€'.repeat(6000), ...flags], env);
  assert.equal(wide.code, 2, wide.stderr);
  assert.match(wide.stderr, /the prompt is 18000 bytes/);
  // The same prompt on stdin: the model loads and reads it (this one is only too long for the tiny model's context).
  const onStdin = await runCli(['generate', dir, '-', ...flags], env, { input: long });
  assert.equal(onStdin.code, 2, onStdin.stderr);
  assert.match(onStdin.stderr, /tempered: the prompt has 30000 tokens; the model's context is 128/);
  // Another long argument would crash it as well.
  const system = await runCli(['generate', dir, 'hi', '--system', long, ...flags], env);
  assert.equal(system.code, 2, system.stderr);
  assert.match(system.stderr, /the command line is \d+ bytes, over the 20 KiB .*its longest argument has 30000 bytes/);
});

/**
 * Runs each command in this process on a model that is not there, so an error about a flag shows the flag was
 * checked first; returns the cases that did not exit 2 with the expected message (all of them, for the report).
 */
async function refusedBeforeTheModel(cases: [string[], RegExp][]): Promise<string[]> {
  const wrong: string[] = [];
  for (const [args, said] of cases) {
    let r;
    try {
      r = await runCliInProcess(args, { ...env, TEMPERED_SERVE_TOKEN: 'flags-test-token-xxxxxxxxxxxxxxxx' });
    } catch (e) {
      r = { code: 'threw', stderr: (e as Error).message };
    }
    if (r.code !== 2 || !said.test(r.stderr)) wrong.push(`${args.join(' ')}: exit ${r.code}, ${JSON.stringify(r.stderr)}`);
  }
  return wrong;
}
const none = join(home, 'no-such-model');
/** The same flags given to generate and chat. */
const generateAndChat = (flags: string[], said: RegExp): [string[], RegExp][] => [
  [['generate', none, 'hi', ...flags], said],
  [['chat', none, ...flags], said],
];

test('generate and chat check the sampling flags before loading the model, and name the flag, not the option', async () => {
  const cases = [
    generateAndChat(['--top-p', '5'], /^--top-p must be in \(0, 1\], got 5$/),
    generateAndChat(['--top-k', '1.5'], /^--top-k must be an integer >= 0, got 1\.5$/),
    generateAndChat(['--max-tokens', '0'], /^--max-tokens must be a positive integer, got 0$/),
    generateAndChat(['--temperature=-1'], /^--temperature must be a number >= 0, got -1$/),
    generateAndChat(['--repetition-penalty', '0'], /^--repetition-penalty must be a number from 0\.01 to 100 \(1 is off\), got 0$/),
    generateAndChat(['--repetition-penalty', '1e-39'], /^--repetition-penalty must be a number from 0\.01 to 100 \(1 is off\), got 1e-39$/),
    generateAndChat(['--seed', '0.5'], /^--seed must be an integer, got 0\.5$/),
  ].flat();
  // --raw skips the chat template: a system message or a template with it would be ignored without a word.
  for (const flags of [
    ['--system', 'be brief'],
    ['--chat-template', '/dev/null'],
  ])
    cases.push([['generate', 'no-such-model', 'hi', '--raw', ...flags], /--.* applies to the chat template, which --raw skips/]);
  assert.deepEqual(await refusedBeforeTheModel(cases), []);
});

test('--threads is a whole number from 1 to 256 in generate, chat and serve', async () => {
  const cases = ['0', '1.5', '-1', '100000', '257', 'x'].flatMap((n): [string[], RegExp][] => {
    const said = new RegExp(`^--threads must be an integer from 1 to 256, got "${n.replace('.', '\\.')}"$`);
    return [...generateAndChat([`--threads=${n}`], said), [['serve', none, `--threads=${n}`], said]];
  });
  assert.deepEqual(await refusedBeforeTheModel(cases), []);
});

test('--chat-template: a missing file, a folder, an empty or blank file are refused, naming the file', async () => {
  const blank = join(home, 'blank.jinja');
  writeFileSync(blank, ' \n\t\n');
  const cases = [
    [home, new RegExp(`^--chat-template: ${home} is a folder; give the template's file$`)],
    ['/dev/null', /^--chat-template: \/dev\/null is empty; a chat template is a Jinja text$/],
    [blank, /^--chat-template: .*blank\.jinja is empty/],
    [join(home, 'nope.jinja'), /^--chat-template: .*nope\.jinja does not exist$/],
  ].flatMap(([file, said]): [string[], RegExp][] => [
    ...generateAndChat(['--chat-template', file as string], said as RegExp),
    [['serve', none, '--chat-template', file as string], said as RegExp],
  ]);
  assert.deepEqual(await refusedBeforeTheModel(cases), []);
});

test('serve checks its number flags before it loads anything, naming the flag', async () => {
  const cases: [string[], RegExp][] = [
    [['--port', 'abc'], /^--port must be an integer from 0 to 65535, got "abc"$/],
    [['--port', '65536'], /^--port must be an integer from 0 to 65535, got "65536"$/],
    [['--port', '80.5'], /^--port must be an integer from 0 to 65535, got "80\.5"$/],
    [['--max-tokens', 'abc'], /^--max-tokens must be a positive integer, got "abc"$/],
    [['--max-prompt-tokens', '0'], /^--max-prompt-tokens must be a positive integer, got "0"$/],
    [['--max-request-tokens', '0'], /^--max-request-tokens must be a positive integer, got "0"$/],
    [['--max-concurrent', '0'], /^--max-concurrent must be a positive integer, got "0"$/],
    [['--max-queue=-1'], /^--max-queue must be an integer >= 0, got "-1"$/],
    [['--max-batch', '1e3'], /^--max-batch must be a positive integer, got "1e3"$/],
    [['--workers', '0'], /^--workers must be a positive integer, got "0"$/],
    [['--max-queue-texts', ''], /^--max-queue-texts must be a positive integer, got ""$/],
    [['--poll-ms', '0'], /^--poll-ms must be an integer from 1 to 2147483647, got "0"$/],
    [['--poll-ms', '9999999999'], /^--poll-ms must be an integer from 1 to 2147483647, got "9999999999"$/],
    [['--stop-grace', '1.5'], /^--stop-grace must be an integer from 0 to 86400, got "1\.5"$/],
    [['--stop-grace', '86401'], /^--stop-grace must be an integer from 0 to 86400, got "86401"$/],
    [['--drain', '3601'], /^--drain must be an integer from 0 to 3600, got "3601"$/],
    [['--stream-stall', '0'], /^--stream-stall must be an integer from 1 to 86400, got "0"$/],
  ];
  assert.deepEqual(await refusedBeforeTheModel(cases.map(([flags, said]) => [['serve', none, ...flags], said])), []);
  // What they take still passes: --port 0, --max-queue 0, --threads 256 (the model is then looked for, and is not there).
  const ok = await runCliInProcess(
    ['serve', none, '--port', '0', '--max-queue', '0', '--threads', '256', '--stop-grace', '0', '--stream-stall', '30'],
    {
      ...env,
      TEMPERED_SERVE_TOKEN: 'flags-test-token-xxxxxxxxxxxxxxxx',
    },
  );
  assert.equal(ok.code, 1, ok.stderr);
  assert.match(ok.stderr, /cannot serve/);
});

test('serve NAME@latest is refused: serve follows an alias, and took @latest for production without a word', async () => {
  const r = await runCliInProcess(['serve', 'sentiment@latest'], { ...env, TEMPERED_SERVE_TOKEN: 'latest-test-token-xxxxxxxxxxxxxxxx' });
  assert.equal(r.code, 2, r.stderr);
  assert.match(
    r.stderr,
    /^serve follows an alias, and sentiment@latest is not one: serve sentiment@production \(what a bare sentiment serves\) or another alias, or a fixed version as sentiment@N; to serve the newest version, promote it/,
  );
});

// A run whose gate refused it leaves a version on no alias: the registry's error offers 'latest', and generate and chat
// took @latest for production, so asking as told failed again with "has no version or alias 'production'".
test('generate NAME@latest is the newest version; a bare NAME is production, and where none is, it says how to ask for one or promote it', async () => {
  const own = { TEMPERED_HOME: join(home, 'latest-state') };
  const paths = statePaths(own.TEMPERED_HOME);
  const tree = await new ArtifactStore(paths.store).putTree(dir);
  const reg = await openRegistry(paths.registryDb);
  try {
    await reg.registerVersion(testVersion('lm', 'a', { artifacts: [{ role: 'model', ...tree }] }));
  } finally {
    await reg.close();
  }
  const flags = ['hi', '--raw', '--max-tokens', '2', '--threads', '1'];
  const latest = await runCli(['generate', 'lm@latest', ...flags], own);
  assert.equal(latest.code, 0, latest.stderr);
  assert.match(latest.stderr, /\[lm@1: \d+ prompt tokens, 2 new/);
  const bare = await runCli(['generate', 'lm', ...flags], own);
  assert.equal(bare.code, 1, bare.stderr);
  assert.match(
    bare.stderr,
    /^tempered: lm has no production version: no run's gate promoted one .*\n {2}ask a version \(lm@latest is v1\), or promote one: tempered models promote lm@1\n$/,
  );
});

const weightsBytes = () => readFileSync(join(dir, 'model.safetensors')).length;

// A model source not in the cache was downloaded without a word: the command sat silent for minutes on a large model.
test('generate says what it downloads for a model source that is not in the cache yet, and nothing once it is', async (t) => {
  const own = { TEMPERED_HOME: join(home, 'download-state'), HF_ENDPOINT: (await loopbackHub(t, dir, 'org/tiny-llm')).url };
  const args = ['generate', 'hf:org/tiny-llm', 'hi', '--raw', '--max-tokens', '2', '--threads', '1'];
  const first = await runCli(args, own);
  assert.equal(first.code, 0, first.stderr);
  const weights = weightsBytes();
  assert.match(first.stderr, new RegExp(`^downloading hf:org/tiny-llm model\\.safetensors \\(${(weights / 1024).toFixed(1)} KiB\\)$`, 'm'));
  assert.match(first.stderr, /^downloading hf:org\/tiny-llm config\.json/m);
  const again = await runCli(args, own);
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /downloading/);
});

// serve resolved a model source without a progress callback: a model not in the cache was downloaded without a word.
test('serve says what it downloads for a model source that is not in the cache yet', async (t) => {
  const tpl = join(home, 'serve-download.jinja');
  writeFileSync(tpl, '{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>');
  const child = spawn(process.execPath, [BIN, 'serve', 'hf:org/tiny-llm', '--port', '0', '--chat-template', tpl, '--threads', '1'], {
    env: {
      ...process.env,
      TEMPERED_HOME: join(home, 'serve-download-state'),
      HF_ENDPOINT: (await loopbackHub(t, dir, 'org/tiny-llm')).url,
      TEMPERED_SERVE_TOKEN: 'serve-download-token-xxxxxxxxxxxxxx',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (/serving .* at http:\/\/\S+/.test(out)) resolve();
      });
      child.once('exit', () => reject(new Error(`serve exited: ${out}\n${err}`)));
    });
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, err);
  assert.match(err, new RegExp(`^downloading hf:org/tiny-llm model\\.safetensors \\(${(weightsBytes() / 1024).toFixed(1)} KiB\\)$`, 'm'));
  assert.match(err, /^downloading hf:org\/tiny-llm config\.json/m);
});

test('tempered serve <model folder> answers the OpenAI chat route with the given template and stops on SIGTERM', async () => {
  const tpl = join(home, 'serve-chat.jinja');
  writeFileSync(tpl, '{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>');
  const token = 'cli-serve-token-1';
  const child = spawn(
    process.execPath,
    [BIN, 'serve', dir, '--port', '0', '--chat-template', tpl, '--threads', '1', '--max-tokens', '16'],
    {
      env: { ...process.env, ...env, TEMPERED_SERVE_TOKEN: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    let out = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /serving .* at (http:\/\/\S+)\s+\(POST \/v1\/chat\/completions/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', () => reject(new Error(`serve exited: ${out}`)));
    });
    const post = (body: unknown) =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify(body),
      });
    const res = await post({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, temperature: 0 });
    assert.equal(res.status, 200);
    const j = (await res.json()) as {
      model: string;
      usage: { prompt_tokens: number; completion_tokens: number };
      choices: { message: { content: string } }[];
    };
    // The template renders '<user>hi\n<assistant>': 20 bytes, one token each in the tiny byte-level tokenizer.
    assert.equal(j.usage.prompt_tokens, 20);
    assert.equal(j.usage.completion_tokens, 4);
    assert.equal(j.model, `file:${dir}`, "the model source's identity names the model");
    assert.equal((await post({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 17 })).status, 400, '--max-tokens is the limit');

    // The conversation's next turn, as a chat client sends it (all of it again): the first turn comes from the kept cache.
    const next = await post({
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: j.choices[0]!.message.content },
        { role: 'user', content: 'more' },
      ],
      max_tokens: 4,
      temperature: 0,
    });
    assert.equal(next.status, 200);
    const n = (await next.json()) as { usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } };
    assert.ok(
      n.usage.prompt_tokens_details.cached_tokens >= 20,
      `cached ${n.usage.prompt_tokens_details.cached_tokens} of ${n.usage.prompt_tokens}`,
    );
    const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    assert.match(
      metrics,
      new RegExp(`tempered_cached_prompt_tokens_total\\{model="file:[^"]+"\\} ${n.usage.prompt_tokens_details.cached_tokens}\\n`),
    );
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0);
  // Started and stopped are both in the audit trail, naming the source and its revision (a folder: 'local').
  const audit = await openAudit(join(env.TEMPERED_HOME, 'audit.db'));
  try {
    const serves = (await audit.query({ model: `file:${dir}` })).map((r) => [r.action, r.details.revision]);
    assert.deepEqual(serves, [
      ['serve.started', 'local'],
      ['serve.stopped', 'local'],
    ]);
  } finally {
    await audit.close();
  }
});
