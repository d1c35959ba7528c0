// `tempered chat` as a user runs it: a real CLI process talking to a model folder, through a pipe and in a terminal.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from '../src/generate/generate.ts';
import { loadTextGenerator } from '../src/generate/text-generator.ts';
import { tinyLlamaDir } from '../src/models/tiny.testing.ts';
import type { ChatMessage } from '../src/serve/types.ts';
import { terminalSafe } from '../cli/format.ts';
import { ingest } from '../src/data/ingest.ts';
import { BIN, runCli } from './helpers/cli.ts';

const home = mkdtempSync(join(tmpdir(), 'tempered-chat-cli-'));
after(() => rmSync(home, { recursive: true, force: true }));
const env = { TEMPERED_HOME: join(home, 'state') };
const TEMPLATE = '{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>';
const tpl = join(home, 'chat.jinja');
writeFileSync(tpl, TEMPLATE);
const dir = tinyLlamaDir(join(home, 'model'), 4, { hidden: 32, layers: 2, maxPositions: 256 });
const flags = ['--chat-template', tpl, '--max-tokens', '8', '--threads', '1'];

/**
 * The model's greedy answers to a conversation of these user messages, each computed from scratch by the library
 * over the whole conversation before it (the earlier answers included).
 */
async function answersTo(said: string[], model = dir): Promise<string[]> {
  const gen = await loadTextGenerator(model, { threads: 1, chatTemplate: TEMPLATE });
  try {
    const messages: ChatMessage[] = [];
    const answers: string[] = [];
    for (const content of said) {
      messages.push({ role: 'user', content });
      const [r] = await generate(gen.decoder, [gen.encodeChat(messages)], { maxNewTokens: 8 });
      messages.push({ role: 'assistant', content: r!.text });
      answers.push(r!.text);
    }
    return answers;
  } finally {
    await gen.close();
  }
}

test('piped messages: each answer is the model on the whole conversation so far; commands edit and save it', async () => {
  const saved = join(home, 'conversation.jsonl');
  const input = [
    'hello',
    '/history',
    'and then? \\',
    'more',
    '/undo',
    '/bogus',
    '//slash',
    `/save ${saved}`,
    `/save ${saved}`,
    '/system',
    '/system be nice',
    '/system',
    '/reset',
    '/history',
    `/save ${join(home, 'no-such-folder', 'x.json')}`,
    '/exit',
    'never read',
    '',
  ].join('\n');
  const r = await runCli(['chat', dir, ...flags], env, { input });
  // Piped input, so a script learns from the exit status that three commands failed (all the input was still read).
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /\n\[3 commands failed: exit status 1\]\n$/);

  const [e1, e2] = await answersTo(['hello', 'and then? \nmore']);
  const [, e3] = await answersTo(['hello', '/slash']);
  assert.equal(r.stdout, `${e1}\n${e2}\n${e3}\n`, 'three answers: the undone one is forgotten, /exit ends before "never read"');

  assert.match(r.stderr, /^\[chatting with .*model: context 256 tokens; \/help for commands\]/);
  assert.match(r.stderr, /\nuser: hello\nassistant: /);
  const kept = [...r.stderr.matchAll(/\[(\d+) tokens read \((\d+) of them kept from the last turn\), (\d+) new, finish length/g)];
  assert.equal(kept.length, 3);
  assert.equal(kept[0]![2], '0', 'nothing to keep before the first answer');
  assert.ok(Number(kept[1]![2]) > 0 && Number(kept[2]![2]) > 0, 'later turns reuse the cache');
  assert.match(r.stderr, /\[last exchange forgotten\]/);
  assert.match(r.stderr, /error: unknown command \/bogus; \/help lists them/);
  assert.match(r.stderr, /\[2 exchanges saved to .*conversation\.jsonl\]/);
  assert.match(r.stderr, /error: .*conversation\.jsonl exists; \/save does not overwrite/);
  assert.match(r.stderr, /\[no system message\]\n\[system message set; it applies from the next answer\]\n\[system message: "be nice"\]/);
  assert.match(r.stderr, /\[conversation forgotten\]\nsystem: be nice\n/);
  assert.match(r.stderr, /error: .*no-such-folder is not a folder; \/save writes into one that exists/);
  assert.ok(!existsSync(join(home, 'no-such-folder')), '/save made no folder');
  assert.deepEqual(JSON.parse(readFileSync(saved, 'utf8')), {
    messages: [
      { role: 'user', content: 'hello' },
      { role: 'assistant', content: e1 },
      { role: 'user', content: '/slash' },
      { role: 'assistant', content: e3 },
    ],
  });
  // One line, so the saved file is a training set of one conversation as it is.
  assert.equal(readFileSync(saved, 'utf8').split('\n').length, 2, 'one line and its newline');
  const ingested = await ingest(
    { task: 'chat', path: saved },
    { baseDir: home, outPath: join(home, 'chat.arrow'), quarantinePath: join(home, 'q.arrow') },
  );
  assert.deepEqual([ingested.rowsIn, ingested.rowsOut], [1, 1]);
});

test('bad flags and models without a template fail before the first message; a message too long for the context does not end the chat', async () => {
  const usage = await runCli(['chat'], env);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /usage: tempered chat/);
  const bad = await runCli(['chat', dir, '--temperature', 'hot'], env);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--temperature must be a number/);
  // Values that are numbers but not usable: refused at once, not at every message while the chat exits 0.
  for (const [flag, value, said] of [
    ['--top-p', '5', /tempered: --top-p must be in \(0, 1\], got 5/],
    ['--max-tokens', '0', /tempered: --max-tokens must be a positive integer, got 0/],
  ] as const) {
    const r = await runCli(['chat', dir, ...flags, flag, value], env, { input: 'hello\n' });
    assert.equal(r.code, 2, `${flag} ${value}: ${r.stderr}`);
    assert.match(r.stderr, said);
    assert.equal(r.stdout, '');
  }
  const noTemplate = await runCli(['chat', dir], env, { input: 'hello\n' });
  assert.equal(noTemplate.code, 2);
  assert.match(noTemplate.stderr, /no chat template/);
  assert.equal(noTemplate.stdout, '');

  const small = tinyLlamaDir(join(home, 'small'), 4, { hidden: 32, layers: 2, maxPositions: 64 });
  const r = await runCli(['chat', small, ...flags], env, { input: `${'x'.repeat(100)}\nhi\n` });
  // The chat went on to answer "hi"; the message it could not answer makes the exit status 1 (input from a pipe).
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /\n\[1 message not answered: exit status 1\]\n$/);
  assert.match(
    r.stderr,
    /error: message: the conversation with this message alone is \d+ tokens; the model's context is 64 .*\(send a shorter message\)/,
  );
  assert.equal(r.stdout, `\n${(await answersTo(['hi'], small))[0]}\n`);
});

test('input that ends inside a message continued with \\ still gets its answer', async () => {
  const r = await runCli(['chat', dir, ...flags], env, { input: 'hello\nsecond \\\nline \\' });
  assert.equal(r.code, 0, r.stderr);
  const [e1, e2] = await answersTo(['hello', 'second \nline ']);
  assert.equal(r.stdout, `${e1}\n${e2}\n`);
  // A command continued to the end of input is still a command.
  const command = await runCli(['chat', dir, ...flags], env, { input: 'hello\n/reset \\' });
  assert.equal(command.code, 0, command.stderr);
  assert.equal(command.stdout, `${e1}\n`);
  assert.match(command.stderr, /\[conversation forgotten\]/);
});

test('/save: a name near the length limit, a folder, a link to nothing; no message names the side file', async () => {
  const folder = mkdtempSync(join(home, 'save-'));
  const long = join(folder, `${'c'.repeat(235)}.json`); // 240 bytes, under the 255 a name may have
  mkdirSync(join(folder, 'sub'));
  const dangling = join(folder, 'dangling.json');
  symlinkSync(join(folder, 'nowhere.json'), dangling);
  const input = [
    `/save ${long}`,
    `/save ${join(folder, 'sub')}/`,
    `/save ${join(folder, 'sub')}`,
    `/save ${join(folder, 'new')}/`,
    `/save ${dangling}`,
    '',
  ].join('\n');
  const r = await runCli(['chat', dir, ...flags], env, { input });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`\\[0 exchanges saved to .*${'c'.repeat(235)}\\.json\\]`));
  assert.deepEqual(JSON.parse(readFileSync(long, 'utf8')), { messages: [] });
  assert.match(r.stderr, /error: .*\/sub\/ names a folder; \/save needs a file name \(e\.g\. .*\/sub\/conversation\.jsonl\)/);
  assert.match(r.stderr, /error: .*\/sub names a folder; \/save needs a file name/);
  assert.match(r.stderr, /error: .*\/new\/ names a folder; \/save needs a file name/);
  assert.match(r.stderr, /error: .*dangling\.json exists \(as a link\); \/save does not overwrite, give another name/);
  assert.match(r.stderr, /\[4 commands failed: exit status 1\]/);
  assert.doesNotMatch(r.stderr, /\.tmp|tempered-save|ENOENT|EEXIST|ENAMETOOLONG/, 'no message names the side file or a bare errno');
  assert.ok(!existsSync(join(folder, 'nowhere.json')), 'nothing was written through the link');
  assert.deepEqual(readdirSync(folder).sort(), [`${'c'.repeat(235)}.json`, 'dangling.json', 'sub'], 'no side file left behind');
  assert.deepEqual(readdirSync(join(folder, 'sub')), []);
});

test(
  'in a terminal: control characters of the answers and /history are shown escaped, not sent to the terminal',
  { skip: !existsSync('/usr/bin/script') && 'needs util-linux script for a terminal' },
  async () => {
    // A seed whose sampled first answer has an ESC in it (this tiny model writes random bytes).
    const gen = await loadTextGenerator(dir, { threads: 1, chatTemplate: TEMPLATE });
    let seed = 0;
    let text = '';
    try {
      for (; seed < 100; seed++) {
        const messages: ChatMessage[] = [{ role: 'user', content: 'hello' }];
        text = (await generate(gen.decoder, [gen.encodeChat(messages)], { maxNewTokens: 8, temperature: 1, seed }))[0]!.text;
        if (text.includes('\x1b')) break;
      }
    } finally {
      await gen.close();
    }
    assert.ok(text.includes('\x1b'), 'a seed whose answer has an ESC');
    const args = ['chat', dir, ...flags, '--temperature', '1', '--seed', String(seed)];
    // Piped: the exact bytes.
    const piped = await runCli(args, env, { input: 'hello\n/history\n' });
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stdout, `${text}\n`);
    assert.ok(piped.stderr.includes(`assistant: ${text}\n`), '/history in a pipe is exact too');

    const child = spawn('script', ['-qfec', [process.execPath, BIN, ...args].map((a) => `'${a}'`).join(' '), '/dev/null'], {
      env: { ...process.env, ...env, TERM: 'dumb' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (/you> $/.test(out)) {
        const prompts = out.match(/you> /g)!.length;
        child.stdin.write(prompts === 1 ? 'hello\r' : prompts === 2 ? '/history\r' : '/exit\r');
      }
    });
    const code = await new Promise((r) => child.once('exit', r));
    assert.equal(code, 0, out);
    const shown = terminalSafe(text).replace(/\n/g, '\r\n');
    assert.ok(out.includes(`model> ${shown}`), `the escaped answer in ${JSON.stringify(out)}`);
    assert.ok(out.includes(`assistant: ${shown}`), `the escaped answer in /history: ${JSON.stringify(out)}`);
    assert.ok(!out.includes(text), 'the raw answer never reached the terminal');
  },
);

test(
  'in a terminal: Ctrl-C stops an answer and the chat goes on; Ctrl-C at the prompt leaves',
  { skip: !existsSync('/usr/bin/script') && 'needs util-linux script for a terminal' },
  async () => {
    // A long context and answer, so the answer is still being written when Ctrl-C arrives.
    const long = tinyLlamaDir(join(home, 'long'), 4, { hidden: 32, layers: 2, maxPositions: 8192 });
    const cmd = [process.execPath, BIN, 'chat', long, '--chat-template', tpl, '--max-tokens', '8000', '--threads', '1'];
    const child = spawn('script', ['-qfec', cmd.map((a) => `'${a}'`).join(' '), '/dev/null'], {
      env: { ...process.env, ...env, TERM: 'dumb' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    const waiters: { re: RegExp; from: number; resolve: () => void }[] = [];
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      for (const w of [...waiters])
        if (w.re.test(out.slice(w.from))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const seen = (re: RegExp, what: string) => {
      const from = out.length;
      return Promise.race([
        new Promise<void>((resolve) => waiters.push({ re, from, resolve })),
        exited.then(() => assert.fail(`exited before ${what}; output: ${JSON.stringify(out)}`)),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error(`no ${what} in 120 s; output: ${JSON.stringify(out)}`)), 120_000),
        ),
      ]);
    };
    try {
      await seen(/you> /, 'the prompt');
      child.stdin.write('hello\r');
      await seen(/model> [^]{20}/, 'an answer under way');
      child.stdin.write('\x03');
      await seen(/finish stopped;[^]*you> /, 'the stopped answer and a new prompt');
      assert.doesNotMatch(out, /8000 new/, 'the answer was cut short');
      // Ctrl-C in a half-typed line drops that line, all of it.
      child.stdin.write('secret draft');
      await seen(/secret draft/, 'the typed text echoed');
      child.stdin.write('\x1b[D\x1b[D\x1b[D'); // the cursor three characters left: only what is left of it would go with Ctrl-U
      child.stdin.write('\x03');
      await seen(/\^C\r?\n[^]*you> /, 'a new prompt');
      // What is typed next is a command of its own, not the rest of the dropped line (which the model would answer).
      child.stdin.write('/system\r');
      await seen(/(\[no system message\]|model> )/, 'the command run, or an answer started');
      assert.doesNotMatch(out.slice(out.lastIndexOf('^C')), /model> /, 'the dropped text went with the next line');
      // Ctrl-C in a message continued with \ drops that message, not the chat.
      child.stdin.write('never sent \\\r');
      await seen(/\.\.\.> /, 'the continuation prompt');
      child.stdin.write('\x03');
      await seen(/\^C\r?\n[^]*you> /, 'a new prompt');
      child.stdin.write('/history\r');
      await seen(/user: hello\r?\nassistant: [^]*you> /, 'the conversation with the stopped answer in it');
      assert.doesNotMatch(
        out.slice(out.lastIndexOf('/history')),
        /never sent|secret|draft/,
        'the dropped messages are not in the conversation',
      );
      child.stdin.write('\x03');
      assert.equal(await exited, 0);
    } finally {
      child.kill('SIGKILL');
    }
  },
);
