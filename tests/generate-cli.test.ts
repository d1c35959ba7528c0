// `tempered generate` as a user runs it: a real CLI process, a model folder, tokens streamed to stdout.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../src/audit/log.ts';
import { Decoder } from '../src/generate/decoder.ts';
import { generate } from '../src/generate/generate.ts';
import { tinyLlamaDir } from '../src/models/tiny.testing.ts';
import { BIN, runCli } from './helpers/cli.ts';

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
