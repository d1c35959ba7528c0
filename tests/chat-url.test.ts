// `tempered chat --url`: a real CLI process talking to a real `tempered serve` process over HTTP.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from '../src/generate/generate.ts';
import { loadTextGenerator } from '../src/generate/text-generator.ts';
import { tinyLlamaDir } from '../src/models/tiny.testing.ts';
import type { ChatMessage } from '../src/serve/types.ts';
import { BIN, runCli } from './helpers/cli.ts';
import { startServeProcess } from './helpers/serve-process.ts';

const home = mkdtempSync(join(tmpdir(), 'tempered-chat-url-'));
const servers: ChildProcess[] = [];
after(() => {
  for (const s of servers) s.kill('SIGKILL');
  rmSync(home, { recursive: true, force: true });
});
const TOKEN = 'chat-url-test-token-0123456789';
const env = { TEMPERED_HOME: join(home, 'state'), TEMPERED_SERVE_TOKEN: TOKEN };
const TEMPLATE = '{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>';
const tpl = join(home, 'chat.jinja');
writeFileSync(tpl, TEMPLATE);
const dir = tinyLlamaDir(join(home, 'model'), 4, { hidden: 32, layers: 2, maxPositions: 256 });

/** `tempered serve` on the tiny model, on a free port; resolves to its address once it listens. */
async function serve(extra: string[] = []): Promise<{ url: string; child: ChildProcess }> {
  const s = await startServeProcess([dir, '--chat-template', tpl, '--threads', '1', ...extra], env);
  servers.push(s.child);
  return s;
}

/** The library's greedy answer to each conversation, computed from scratch (no cache, no server). */
async function answersOf(conversations: ChatMessage[][]): Promise<string[]> {
  const gen = await loadTextGenerator(dir, { threads: 1, chatTemplate: TEMPLATE });
  try {
    const out: string[] = [];
    for (const messages of conversations) {
      const [r] = await generate(gen.decoder, [gen.encodeChat(messages)], { maxNewTokens: 8 });
      out.push(r!.text);
    }
    return out;
  } finally {
    await gen.close();
  }
}

const chat = (url: string, input: string, flags: string[] = []) =>
  runCli(['chat', '--url', url, '--max-tokens', '8', ...flags], env, { input });

test('chat --url: each answer is the served model on the whole conversation so far; later turns come from the server cache', async () => {
  const { url } = await serve();
  const saved = join(home, 'served.json');
  const r = await chat(
    url,
    ['hello', 'and then?', '/system', '/undo', 'again', '/system be nice', 'last', '/history', `/save ${saved}`, ''].join('\n'),
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^\[chatting with file:.*model at http:\/\/127\.0\.0\.1:\d+\/v1; \/help for commands\]/);
  assert.match(r.stderr, /\[no system message set here; the server gives the model the one it was trained with, if it has one\]/);
  const messages = (JSON.parse(readFileSync(saved, 'utf8')) as { messages: ChatMessage[] }).messages;
  assert.deepEqual(
    messages.map((m) => [m.role, m.role === 'assistant' ? '' : m.content]),
    [
      ['system', 'be nice'],
      ['user', 'hello'],
      ['assistant', ''],
      ['user', 'again'],
      ['assistant', ''],
      ['user', 'last'],
      ['assistant', ''],
    ],
    'the undone exchange is forgotten; the system message leads',
  );
  const [a1, a2, a3] = await answersOf([
    [{ role: 'user', content: 'hello' }],
    [{ role: 'user', content: 'hello' }, messages[2]!, { role: 'user', content: 'again' }],
    messages.slice(0, -1),
  ]);
  const [undone] = await answersOf([[{ role: 'user', content: 'hello' }, messages[2]!, { role: 'user', content: 'and then?' }]]);
  assert.equal(r.stdout, `${a1}\n${undone}\n${a2}\n${a3}\n`);
  assert.deepEqual([messages[2]!.content, messages[4]!.content, messages[6]!.content], [a1, a2, a3]);
  const kept = [...r.stderr.matchAll(/\[(\d+) tokens read \((\d+) of them kept from the last turn\), (\d+) new/g)].map((m) => Number(m[2]));
  assert.equal(kept.length, 4);
  assert.equal(kept[0], 0, 'nothing to keep before the first answer');
  assert.ok(kept[1]! > 0 && kept[2]! > 0, `the server's cache held the earlier turns: ${kept}`);
  // Another chat (another user) that begins as this one did is given nothing of its cache: each chat has its own
  // prompt_cache_key. Both used to share one scope, so the second read the first's tokens as kept.
  const other = await chat(url, ['/system be nice', 'hello', ''].join('\n'));
  assert.equal(other.code, 0, other.stderr);
  assert.match(other.stderr, /\[\d+ tokens read \(0 of them kept from the last turn\)/);
});

test('chat --url: the oldest exchanges are left out when the server says the conversation no longer fits; a message too long alone is not answered', async () => {
  // 64 prompt tokens at most: a token a byte, so three short exchanges no longer fit.
  const { url } = await serve(['--max-prompt-tokens', '64']);
  const saved = join(home, 'dropped.json');
  const said = ['first question', 'second question', 'third question', 'fourth question'];
  const r = await chat(url, [...said, 'y'.repeat(80), `/save ${saved}`, ''].join('\n'));
  assert.equal(r.code, 1, `piped input with a message not answered: ${r.stderr}`);
  assert.match(r.stderr, /\[1 message not answered: exit status 1\]/);
  assert.match(r.stderr, /\[the (\d+ )?oldest exchanges? no longer fitted the model's context and (was|were) left out\]/);
  assert.match(
    r.stderr,
    /error: message: the server refused the message even alone: the prompt has \d+ tokens; this server takes at most 64 \(send a shorter message\); the message was not answered/,
  );
  const messages = (JSON.parse(readFileSync(saved, 'utf8')) as { messages: ChatMessage[] }).messages;
  assert.ok(messages.length >= 2 && messages.length < 8, `some exchanges were left out: ${JSON.stringify(messages)}`);
  assert.deepEqual(
    messages.at(-2),
    { role: 'user', content: 'fourth question' },
    'the newest exchange stays; the refused message left no trace',
  );
  const [last] = await answersOf([messages.slice(0, -1)]);
  assert.equal(messages.at(-1)!.content, last, 'the answer is the model on the conversation as kept');
});

test('chat --url: a wrong address, token, model or flag fails before the first message; a server that goes away fails the turn, not the chat', async () => {
  const { url, child } = await serve();
  const closedPort = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
  const cases: [string[], Record<string, string>, number, RegExp][] = [
    [['--url', url], { TEMPERED_SERVE_TOKEN: '' }, 2, /set TEMPERED_SERVE_TOKEN to the token the server was started with/],
    [['--url', url], { TEMPERED_SERVE_TOKEN: 'not-the-token-at-all-xxxxxxxx' }, 2, /TEMPERED_SERVE_TOKEN: .* refused the token/],
    [['--url', `http://127.0.0.1:${closedPort}`], {}, 1, /could not reach http:\/\/127\.0\.0\.1:\d+\/v1: connect ECONNREFUSED/],
    [['--url', url, 'some-other-model'], {}, 2, /model: .* does not serve "some-other-model"; it serves "file:/],
    [['--url', url, '--threads', '2'], {}, 2, /--threads is the server's to set/],
    [['--url', url, '--temperature', '3'], {}, 2, /--temperature: the OpenAI API takes a temperature from 0 to 2, got 3/],
    [['--url', 'ftp://somewhere'], {}, 2, /--url: "ftp:\/\/somewhere" is not an http\(s\) URL/],
    [['--url', url, 'a', 'b'], {}, 2, /chat --url takes at most a model name/],
  ];
  for (const [args, extraEnv, code, said] of cases) {
    const r = await runCli(['chat', ...args], { ...env, ...extraEnv }, { input: 'hello\n' });
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, said);
    assert.equal(r.stdout, '', 'no message was answered');
  }

  // The server stops after the first answer: the next message fails, the chat goes on and ends normally.
  const client = spawn(process.execPath, [BIN, 'chat', '--url', url, '--max-tokens', '8'], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  client.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((resolve) => client.once('exit', (code) => resolve(code)));
  const [first] = await answersOf([[{ role: 'user', content: 'hello' }]]);
  await new Promise<void>((resolve) => {
    client.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith(`${first}\n`)) resolve();
    });
    client.stdin!.write('hello\n');
  });
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  client.stdin!.end('are you there?\n/history\n');
  assert.equal(await exited, 1, err);
  assert.equal(out, `${first}\n\n`, 'the first answer, then an empty line for the failed turn');
  assert.match(err, /error: could not reach http:\/\/127\.0\.0\.1:\d+\/v1: .*; the message was not answered/);
  assert.match(err, /\nuser: hello\nassistant: /);
  assert.doesNotMatch(err, /user: are you there/, 'the unanswered message is not in the conversation');
});
