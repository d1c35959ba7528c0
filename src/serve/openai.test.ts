import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import OpenAI from 'openai';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { InputError } from '../errors.ts';
import { Rng } from '../engine/prng.ts';
import { trainCausalLm } from '../finetune/causal-lm.ts';
import { generate, type GenerateOptions } from '../generate/generate.ts';
import { loadTextGenerator, type LoadedTextGenerator } from '../generate/text-generator.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { openRegistry } from '../registry/registry.ts';
import { registryAliasSource } from './registry-source.ts';
import { samplingSeed } from './openai.ts';
import { retryAfterSpread } from './gate.ts';
import { createModelServer, type ServeOptions } from './server.ts';
import type { TextGenerator } from './types.ts';

const TOKEN = 'openai-test-token';
const CHATML =
  '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}';
const root = mkdtempSync(join(tmpdir(), 'tempered-openai-'));
after(() => rmSync(root, { recursive: true, force: true }));
const dirA = tinyLlamaDir(join(root, 'a'), 1, { hidden: 32, layers: 2, maxPositions: 256 });
const dirB = tinyLlamaDir(join(root, 'b'), 2, { hidden: 32, layers: 2, maxPositions: 256 });
const load = (dir: string, id: string) => loadTextGenerator(dir, { id, threads: 1, chatTemplate: CHATML });

interface Opened {
  url: string;
  close(): Promise<void>;
}

async function serve(
  t: { after(fn: () => Promise<void>): void },
  gen: TextGenerator | (() => Promise<{ key: string; gen: () => Promise<TextGenerator>; created?: number }>),
  o: Partial<ServeOptions> = {},
): Promise<Opened & { server: Awaited<ReturnType<typeof createModelServer>> }> {
  const resolveCurrent =
    typeof gen === 'function'
      ? async () => {
          const c = await gen();
          return { key: c.key, load: c.gen, ...(c.created !== undefined ? { created: c.created } : {}) };
        }
      : async () => ({ key: gen.id, load: async () => gen });
  const server = await createModelServer({ token: TOKEN, pollMs: 60_000, resolveCurrent, ...o });
  const url = await server.listen();
  t.after(() => server.close());
  return { url, server, close: () => server.close() };
}

function post(url: string, path: string, body: unknown, token = TOKEN, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    signal,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Reads a server-sent-event stream into its `data:` payloads. */
async function sse(res: Response): Promise<string[]> {
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const text = await res.text();
  assert.ok(text.endsWith('data: [DONE]\n\n'), 'the stream ends with [DONE]');
  return text
    .split('\n\n')
    .filter((b) => b !== '')
    .map((b) => {
      assert.ok(b.startsWith('data: '), `event ${JSON.stringify(b)}`);
      return b.slice(6);
    });
}

const messages = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
];

test('chat and completions answer in the OpenAI format; streams carry the same text', async (t) => {
  const gen = await load(dirA, 'tiny@1');
  const { url } = await serve(t, gen);
  const promptIds = gen.encodeChat(messages);
  assert.equal(
    gen.renderChat(messages),
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
  );
  const [ref] = await generate(gen.decoder, [promptIds], { maxNewTokens: 6, eosTokenIds: [] });

  const res = await post(url, '/v1/chat/completions', { model: 'tiny', messages, max_tokens: 6, temperature: 0 });
  assert.equal(res.status, 200);
  const j = (await res.json()) as any;
  assert.match(j.id, /^chatcmpl-[0-9a-f]{32}$/);
  assert.equal(j.object, 'chat.completion');
  assert.equal(typeof j.created, 'number');
  assert.equal(j.model, 'tiny@1');
  assert.equal(j.choices.length, 1);
  assert.deepEqual(j.choices[0], {
    index: 0,
    message: { role: 'assistant', content: ref!.text },
    logprobs: null,
    finish_reason: ref!.finishReason === 'length' ? 'length' : 'stop',
  });
  assert.deepEqual(j.usage, {
    prompt_tokens: promptIds.length,
    completion_tokens: ref!.tokens.length,
    total_tokens: promptIds.length + ref!.tokens.length,
    prompt_tokens_details: { cached_tokens: 0 },
  });

  // Streaming: a role chunk, content deltas that add up to the same text, a finish_reason, a usage chunk, [DONE].
  const s = await sse(
    await post(url, '/v1/chat/completions', {
      model: 'tiny@1',
      messages,
      max_tokens: 6,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  assert.equal(s.at(-1), '[DONE]');
  const chunks = s.slice(0, -1).map((d) => JSON.parse(d));
  for (const c of chunks) {
    assert.equal(c.object, 'chat.completion.chunk');
    assert.equal(c.id, chunks[0].id);
    assert.equal(c.model, 'tiny@1');
  }
  assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
  const usage = chunks.at(-1);
  assert.deepEqual(usage.choices, []);
  assert.deepEqual(usage.usage, j.usage);
  const body = chunks.slice(1, -1);
  assert.equal(body.map((c) => c.choices[0].delta.content ?? '').join(''), ref!.text);
  assert.equal(body.at(-1).choices[0].finish_reason, j.choices[0].finish_reason);
  assert.ok(body.slice(0, -1).every((c) => c.choices[0].finish_reason === null));

  // Completions: two prompts × n=2, sampled with a seed; the same request gives the same answer.
  const req = { prompt: ['The cat', 'A dog'], n: 2, max_tokens: 5, temperature: 0.9, top_p: 0.95, seed: 11 };
  const c1 = (await (await post(url, '/v1/completions', req)).json()) as any;
  const c2 = (await (await post(url, '/v1/completions', req)).json()) as any;
  assert.match(c1.id, /^cmpl-/);
  assert.equal(c1.object, 'text_completion');
  assert.deepEqual(
    c1.choices.map((c: any) => c.index),
    [0, 1, 2, 3],
  );
  assert.deepEqual(
    c1.choices.map((c: any) => c.text),
    c2.choices.map((c: any) => c.text),
  );
  assert.notEqual(c1.choices[0].text, c1.choices[1].text, 'the n choices of one prompt are different draws');
  const catIds = gen.encode('The cat'),
    dogIds = gen.encode('A dog');
  assert.equal(c1.usage.prompt_tokens, catIds.length + dogIds.length);
  assert.equal(c1.usage.completion_tokens, 20);
  // Row 2 (the dog's first draw) is what the library gives for that prompt alone at row 2 of the batch.
  const lib = await generate(gen.decoder, [catIds, catIds, dogIds, dogIds], { maxNewTokens: 5, temperature: 0.9, topP: 0.95, seed: 11 });
  assert.deepEqual(
    c1.choices.map((c: any) => c.text),
    lib.map((r) => r.text),
  );

  const cs = await sse(await post(url, '/v1/completions', { prompt: 'The cat', max_tokens: 5, temperature: 0, stream: true }));
  const cchunks = cs.slice(0, -1).map((d) => JSON.parse(d));
  assert.ok(cchunks.every((c) => c.object === 'text_completion' && c.choices.length === 1 && c.choices[0].index === 0));
  const [refCat] = await generate(gen.decoder, [catIds], { maxNewTokens: 5 });
  assert.equal(cchunks.map((c) => c.choices[0].text).join(''), refCat!.text);
  assert.equal(cchunks.at(-1).choices[0].finish_reason, refCat!.finishReason);

  // Stop strings cut the text; finish_reason is stop.
  const stop = refCat!.text.slice(1, 3);
  const stopped = (await (await post(url, '/v1/completions', { prompt: 'The cat', max_tokens: 5, temperature: 0, stop })).json()) as any;
  assert.equal(stopped.choices[0].text, refCat!.text.slice(0, refCat!.text.indexOf(stop)));
  assert.equal(stopped.choices[0].finish_reason, 'stop');

  const models = (await (await fetch(`${url}/v1/models`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as any;
  assert.deepEqual(
    models.data.map((m: any) => m.id),
    ['tiny'],
  );
});

test('a developer message is the system message (its newer OpenAI name): the same prompt, the same answer', async (t) => {
  const gen = await load(dirA, 'tiny@1');
  const { url } = await serve(t, gen);
  const ask = async (role: string) => {
    const res = await post(url, '/v1/chat/completions', {
      model: 'tiny',
      messages: [{ role, content: 'Be brief.' }, messages[1]],
      max_tokens: 6,
      temperature: 0,
    });
    assert.equal(res.status, 200);
    const j = (await res.json()) as any;
    return [j.usage.prompt_tokens, j.choices[0].message.content];
  };
  assert.deepEqual(await ask('developer'), await ask('system'));
  assert.equal((await ask('system'))[0], gen.encodeChat(messages).length);
  // Refused as the role it was sent as: an app that sent a developer message is not told of a system one.
  const res = await post(url, '/v1/chat/completions', { model: 'tiny', messages: [{ role: 'developer', content: null }, messages[1]] });
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as any).error.message, 'messages[0].content is required for a "developer" message');
});

test("OpenAI's own client works unchanged: chat and completions, streamed and not, the model list, and errors it can read", async (t) => {
  const gen = await load(dirA, 'tiny@1');
  const { url } = await serve(t, gen);
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: TOKEN, maxRetries: 0 });
  const [ref] = await generate(gen.decoder, [gen.encodeChat(messages)], { maxNewTokens: 6, eosTokenIds: [] });
  const asked = { model: 'tiny', messages: messages as OpenAI.ChatCompletionMessageParam[], max_tokens: 6, temperature: 0 };

  const whole = await client.chat.completions.create(asked);
  assert.equal(whole.choices[0]!.message.content, ref!.text);
  assert.equal(whole.usage!.completion_tokens, ref!.tokens.length);

  let streamed = '';
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of await client.chat.completions.create({ ...asked, stream: true, stream_options: { include_usage: true } })) {
    streamed += chunk.choices[0]?.delta?.content ?? '';
    usage ??= chunk.usage ?? undefined;
  }
  assert.equal(streamed, ref!.text);
  assert.equal(usage!.prompt_tokens, whole.usage!.prompt_tokens);

  const [plain] = await generate(gen.decoder, [gen.encode('Once upon')], { maxNewTokens: 5, eosTokenIds: [] });
  const completion = await client.completions.create({ model: 'tiny', prompt: 'Once upon', max_tokens: 5, temperature: 0 });
  assert.equal(completion.choices[0]!.text, plain!.text);

  assert.deepEqual(
    (await client.models.list()).data.map((m) => m.id),
    ['tiny'],
  );

  // Errors come back as the client's own error classes, with the status, code and param it reads.
  const refused = async (p: Promise<unknown>, status: number, code: string, param: string | null) => {
    const e = await p.then(
      () => assert.fail('expected an error'),
      (err: unknown) => err,
    );
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.deepEqual([e.status, e.code, e.param], [status, code, param]);
  };
  await refused(client.chat.completions.create({ ...asked, max_tokens: 5000 }), 400, 'max_tokens_exceeded', 'max_tokens');
  await refused(client.chat.completions.create({ ...asked, model: 'other' }), 404, 'model_not_found', 'model');
  await refused(new OpenAI({ baseURL: `${url}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list(), 401, 'unauthorized', null);
});

test('a completion prompt of token ids, one list or several, is generated from those ids; ids the model lacks are refused naming their place', async (t) => {
  const gen = await load(dirA, 'tiny@1');
  const { url } = await serve(t, gen, { generation: { maxPromptTokens: 64 } });
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: TOKEN, maxRetries: 0 });
  const once = gen.encode('Once upon');
  const hi = gen.encode('Hi there');
  const [a, b] = await generate(gen.decoder, [once, hi], { maxNewTokens: 4, eosTokenIds: [] });
  const one = await client.completions.create({ model: 'tiny', prompt: once, max_tokens: 4, temperature: 0 });
  assert.equal(one.choices[0]!.text, a!.text);
  assert.equal(one.usage!.prompt_tokens, once.length);
  const two = await client.completions.create({ model: 'tiny', prompt: [once, hi], max_tokens: 4, temperature: 0 });
  assert.deepEqual(
    two.choices.map((c) => [c.index, c.text]),
    [
      [0, a!.text],
      [1, b!.text],
    ],
  );
  // Streamed too.
  let streamed = '';
  for await (const c of await client.completions.create({ model: 'tiny', prompt: hi, max_tokens: 4, temperature: 0, stream: true }))
    streamed += c.choices[0]?.text ?? '';
  assert.equal(streamed, b!.text);

  const V = gen.vocabSize;
  const refused = async (prompt: unknown, code: string, param: string, message: RegExp) => {
    const res = await post(url, '/v1/completions', { prompt, max_tokens: 2 });
    const e = ((await res.json()) as { error: { code: string; param: string; message: string } }).error;
    assert.deepEqual([res.status, e.code, e.param], [400, code, param], JSON.stringify(e));
    assert.match(e.message, message);
  };
  await refused(
    [1, 2, V],
    'invalid_token_id',
    'prompt[2]',
    new RegExp(`prompt\\[2\\] is ${V}, not a token id of the served model \\(integers 0 to ${V - 1}\\)`),
  );
  await refused([[1], [3, -1]], 'invalid_token_id', 'prompt[1][1]', /prompt\[1\]\[1\] is -1/);
  await refused([1.5], 'invalid_token_id', 'prompt[0]', /prompt\[0\] is 1\.5/);
  await refused([[1], []], 'empty_prompt', 'prompt[1]', /prompt\[1\] has no tokens/);
  await refused(['Once', 7], 'invalid_request', 'prompt[1]', /a list of token ids.*prompt\[1\] is 7/);
  await refused([[1], ['x']], 'invalid_request', 'prompt[1][0]', /prompt\[1\]\[0\] is "x", not a token id/);
  await refused([{ text: 'x' }], 'invalid_request', 'prompt[0]', /prompt\[0\] is an object/);
  // A list nested 100,000 deep is named, not stringified (that overflowed the stack: a 500).
  const deep = '['.repeat(100_000) + ']'.repeat(100_000);
  for (const body of [`{"prompt": [${deep}]}`, `{"prompt": [[1, ${deep}]]}`, `{"prompt": ["a", ${deep}]}`]) {
    const res = await post(url, '/v1/completions', body);
    assert.equal(res.status, 400, body.slice(0, 30));
    assert.match(((await res.json()) as { error: { message: string } }).error.message, /is a list/);
  }
  await refused(Array(65).fill(1), 'context_length_exceeded', 'prompt', /65 tokens; this server takes at most 64/);
});

test("an app's OpenAI client: models.retrieve, a conversation sent back as the SDK returned it, and a clear refusal of what the server cannot do", async (t) => {
  const gen = await load(dirA, 'tiny@1');
  const { url } = await serve(t, gen);
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: TOKEN, maxRetries: 0 });
  const refused = async (p: Promise<unknown>, status: number, code: string, param: string | null, message?: RegExp) => {
    const e = await p.then(
      () => assert.fail('expected an error'),
      (err: unknown) => err,
    );
    assert.ok(e instanceof OpenAI.APIError, String(e));
    assert.deepEqual([e.status, e.code, e.param], [status, code, param], e.message);
    if (message) assert.match(e.message, message);
  };

  // GET /v1/models/{model}, by either name a request's `model` takes.
  assert.deepEqual(
    [await client.models.retrieve('tiny'), await client.models.retrieve('tiny@1')].map((m) => [m.id, m.object]),
    [
      ['tiny', 'model'],
      ['tiny', 'model'],
    ],
  );
  await refused(client.models.retrieve('gpt-4o'), 404, 'model_not_found', 'model');
  // `created` is when the model was made (what a registry version says), in seconds; 0 read as 1970 in apps.
  const { url: datedUrl } = await serve(t, async () => ({ key: 'tiny@1', gen: async () => gen, created: 1_767_225_600 }));
  const dated = new OpenAI({ baseURL: `${datedUrl}/v1`, apiKey: TOKEN, maxRetries: 0 });
  assert.deepEqual(
    [(await dated.models.retrieve('tiny')).created, (await dated.models.list()).data[0]!.created],
    [1_767_225_600, 1_767_225_600],
  );
  // A base model served as it is has one name, said once ("(now …)" tells a registry name's current version), and
  // no registration: its `created` is when the server loaded it.
  const beforeLoad = Math.floor(Date.now() / 1000);
  const { url: baseUrl } = await serve(t, await load(dirA, 'pypi:tiny==1'));
  const afterLoad = Math.floor(Date.now() / 1000);
  const base = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: TOKEN, maxRetries: 0 });
  const baseCreated = (await base.models.retrieve('pypi:tiny==1')).created;
  assert.ok(baseCreated >= beforeLoad && baseCreated <= afterLoad, `${beforeLoad} <= ${baseCreated} <= ${afterLoad}`);
  await refused(base.models.retrieve('gpt-4o'), 404, 'model_not_found', 'model', /this server serves "pypi:tiny==1"$/);

  // The stream helper's final message carries `refusal: null, parsed: null`; OpenAI's own assistant messages may be
  // `content: null` beside a refusal, with `tool_calls: []`. An app appends them to its conversation and sends it again.
  const hi = [{ role: 'user', content: 'Hi' }] as OpenAI.ChatCompletionMessageParam[];
  const first = await client.chat.completions.stream({ model: 'tiny', messages: hi, max_tokens: 3, temperature: 0 }).finalChatCompletion();
  const said = first.choices[0]!.message;
  assert.ok('refusal' in said && 'parsed' in said, JSON.stringify(said));
  const conversation = [
    ...hi,
    said,
    { role: 'user', content: 'Go' },
    { role: 'assistant', content: null, refusal: 'No.', tool_calls: [] },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'W' },
        { type: 'text', text: 'hy' },
      ],
    },
  ] as OpenAI.ChatCompletionMessageParam[];
  const next = await client.chat.completions.create({ model: 'tiny', messages: conversation, max_tokens: 2, temperature: 0 });
  const asText = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: said.content! },
    { role: 'user', content: 'Go' },
    { role: 'assistant', content: 'No.' },
    { role: 'user', content: 'Why' },
  ];
  assert.equal(next.usage!.prompt_tokens, gen.encodeChat(asText).length);

  // OpenAI pads stream chunks unless told `include_obfuscation: false`; this server never does, and takes the field.
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const c of await client.chat.completions.create({
    model: 'tiny',
    messages: hi,
    max_tokens: 2,
    stream: true,
    stream_options: { include_usage: true, include_obfuscation: false },
  }))
    usage ??= c.usage ?? undefined;
  assert.equal(usage?.completion_tokens, 2);

  // What asks for nothing is taken as frameworks send it.
  const idle = await client.chat.completions.create({
    model: 'tiny',
    messages: messages as OpenAI.ChatCompletionMessageParam[],
    max_tokens: 1,
    response_format: { type: 'text' },
    tools: [],
    parallel_tool_calls: false,
    store: false,
    logit_bias: {},
    service_tier: 'auto',
  });
  assert.equal(idle.choices.length, 1);

  // What the server cannot do is refused as unsupported, saying what, not as an unknown field.
  const asked = { model: 'tiny', messages: messages as OpenAI.ChatCompletionMessageParam[], max_tokens: 1 };
  await refused(
    client.chat.completions.create({ ...asked, tools: [{ type: 'function', function: { name: 'f' } }] }),
    400,
    'unsupported_parameter',
    'tools',
    /tool \(function\) calling/,
  );
  await refused(
    client.chat.completions.create({ ...asked, response_format: { type: 'json_object' } }),
    400,
    'unsupported_parameter',
    'response_format',
    /structured output/,
  );
  await refused(
    client.chat.completions.create({
      ...asked,
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] }],
    }),
    400,
    'unsupported_parameter',
    'messages[0].content[0]',
    /reads text only, and this is a "image_url" part/,
  );
  // An image on a text part is not dropped without a word.
  await refused(
    client.chat.completions.create({
      ...asked,
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'What is this?', image_url: { url: 'https://example.com/a.png' } } as never] },
      ],
    }),
    400,
    'invalid_request',
    'messages[0].content[0].image_url',
    /a "text" part takes "text" alone/,
  );
  await refused(
    client.chat.completions.create({ ...asked, messages: [...asked.messages, { role: 'tool', content: '42', tool_call_id: 'c1' }] }),
    400,
    'unsupported_parameter',
    'messages[2].role',
    /"tool" message answers a tool call/,
  );
  await refused(
    client.chat.completions.create({ ...asked, messages: [{ role: 'user', content: null } as never] }),
    400,
    'invalid_request',
    'messages[0].content',
  );
});

test("every answer carries its request id (the SDK's _request_id); a 500 names it, and so does the log line with its cause", async (t) => {
  const gen = await load(dirA, 'tiny@1');
  // Fails as a bug would (not an InputError): the client gets 500, the log the stack.
  let generated = 0;
  const broken = Object.assign(Object.create(gen) as TextGenerator, {
    generate: async () => {
      generated++;
      throw new Error('weights on fire');
    },
  });
  const { url } = await serve(t, broken, { logger: 'errors' });
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: TOKEN, maxRetries: 0 });
  const listed = await client.models.list().withResponse();
  const again = await client.models.list().withResponse();
  assert.match(listed.request_id ?? '', /^req_[0-9a-f]{32}$/);
  assert.notEqual(listed.request_id, again.request_id);
  const unauthorized = await fetch(`${url}/v1/models`);
  assert.match(unauthorized.headers.get('x-request-id') ?? '', /^req_[0-9a-f]{32}$/);

  const logged: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string | Uint8Array) => (logged.push(String(chunk)), true)) as typeof process.stderr.write;
  let failed: unknown, streamed: Response, once: unknown, retried: number;
  try {
    failed = await client.chat.completions.create({ model: 'tiny', messages, max_tokens: 2 } as never).then(
      () => assert.fail('expected a 500'),
      (e: unknown) => e,
    );
    streamed = await post(url, '/v1/chat/completions', { messages, max_tokens: 2, stream: true });
    await streamed.clone().text();
    // A client at the SDK's default retries asks once: a retry of what failed so would fail again (three generations).
    const calls = generated;
    once = await new OpenAI({ baseURL: `${url}/v1`, apiKey: TOKEN }).chat.completions
      .create({ model: 'tiny', messages, max_tokens: 2 } as never)
      .then(
        () => assert.fail('expected a 500'),
        (e: unknown) => e,
      );
    retried = generated - calls - 1;
  } finally {
    process.stderr.write = write;
  }
  assert.ok(failed instanceof OpenAI.InternalServerError, String(failed));
  assert.ok(once instanceof OpenAI.InternalServerError, String(once));
  assert.equal(retried, 0, 'the SDK retried a 500');
  const id = failed.requestID!;
  assert.match(id, /^req_[0-9a-f]{32}$/);
  assert.ok(failed.message.includes(`request ${id}`), failed.message);
  assert.ok(
    logged.some((l) => l.includes(`request ${id}`) && l.includes('weights on fire')),
    logged.join(''),
  );
  // A stream's headers carry it too, and its error event names it.
  const streamId = streamed.headers.get('x-request-id')!;
  assert.match(streamId, /^req_[0-9a-f]{32}$/);
  // The role chunk went out before the generation failed; the error follows it.
  const errors = (await sse(streamed)).filter((e) => e !== '[DONE]').map((e) => JSON.parse(e) as { error?: { message: string } });
  assert.ok(errors.at(-1)?.error?.message.includes(`request ${streamId}`), JSON.stringify(errors));
  assert.ok(
    logged.some((l) => l.includes(`request ${streamId}`) && l.includes('weights on fire')),
    logged.join(''),
  );
});

test('auth, oversized and invalid requests get OpenAI error objects', async (t) => {
  const gen = await load(dirA, 'tiny@1');
  const { url } = await serve(t, gen, { bodyLimit: 4096, generation: { maxTokens: 20, maxChoices: 4 } });
  const expectError = async (res: Response, status: number, code: string, param?: string | null) => {
    assert.equal(res.status, status);
    const j = (await res.json()) as any;
    assert.equal(j.error.code, code, JSON.stringify(j));
    assert.equal(typeof j.error.message, 'string');
    assert.equal(typeof j.error.type, 'string');
    if (param !== undefined) assert.equal(j.error.param, param);
    return j.error;
  };
  const noAuth = await post(url, '/v1/chat/completions', { messages }, '');
  assert.equal(noAuth.headers.get('www-authenticate'), 'Bearer');
  assert.equal((await expectError(noAuth, 401, 'unauthorized')).type, 'authentication_error');
  await expectError(await post(url, '/v1/completions', { prompt: 'x' }, 'wrong-token-123'), 401, 'unauthorized');
  // 300 bytes of prompt: more tokens than the 256-position context.
  await expectError(await post(url, '/v1/completions', { prompt: 'y'.repeat(300) }), 400, 'context_length_exceeded', 'prompt');
  await expectError(
    await post(url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'z'.repeat(300) }] }),
    400,
    'context_length_exceeded',
    'messages',
  );
  await expectError(await post(url, '/v1/completions', { prompt: 'x', max_tokens: 21 }), 400, 'max_tokens_exceeded', 'max_tokens');
  // A request that names no max_tokens is held to the server's cap too (it got the default of 256).
  const uncapped = (await (await post(url, '/v1/completions', { prompt: 'x' })).json()) as any;
  assert.ok(uncapped.usage.completion_tokens <= 20, JSON.stringify(uncapped.usage));
  await expectError(
    await post(url, '/v1/chat/completions', { messages, max_completion_tokens: 500 }),
    400,
    'max_tokens_exceeded',
    'max_completion_tokens',
  );
  await expectError(
    await post(url, '/v1/completions', { prompt: 'y'.repeat(240), max_tokens: 20 }),
    400,
    'context_length_exceeded',
    'max_tokens',
  );
  await expectError(await post(url, '/v1/completions', { prompt: ['a', 'b', 'c'], n: 2 }), 400, 'too_many_choices', 'n');
  await expectError(await post(url, '/v1/completions', { prompt: 'x'.repeat(5000) }), 413, 'body_too_large');
  await expectError(await post(url, '/v1/completions', { prompt: 'x', temprature: 1 }), 400, 'invalid_request', 'temprature');
  // A role it does not know lists the roles it takes: it listed "tool" and "function" too, which it refuses as unsupported.
  const badRole = await expectError(
    await post(url, '/v1/chat/completions', { messages: [{ role: 'bot', content: 'hi' }] }),
    400,
    'invalid_request',
    'messages[0].role',
  );
  assert.equal(
    badRole.message,
    'messages[0].role must be one of "system", "developer", "user", "assistant", got "bot" ("tool" and "function" are not supported: this server does no tool calling)',
  );
  const tools = await expectError(
    await post(url, '/v1/chat/completions', { messages, tools: [{ type: 'function', function: { name: 'f' } }] }),
    400,
    'unsupported_parameter',
    'tools',
  );
  assert.equal(tools.message, 'tools: this server does not support tool (function) calling; leave tools out');
  const nowhere = await fetch(`${url}/v1/nothing`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.match(
    (await expectError(nowhere, 404, 'not_found')).message,
    /this server has POST \/v1\/chat\/completions, POST \/v1\/completions, GET \/v1\/models/,
  );
  // A known path asked with the wrong method is 405 with Allow, not "no route".
  const wrongMethod = await fetch(`${url}/v1/chat/completions?x=1`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(wrongMethod.headers.get('allow'), 'POST');
  assert.equal((await expectError(wrongMethod, 405, 'method_not_allowed')).message, 'GET is not allowed on /v1/chat/completions; use POST');
  // A model name fastify cannot decode is answered before its hooks: in OpenAI's shape and with its id all the same,
  // and only to a client with the token.
  const undecodable = await fetch(`${url}/v1/models/%E0%A4%A`, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.match(undecodable.headers.get('x-request-id') ?? '', /^req_[0-9a-f]{32}$/);
  assert.match((await expectError(undecodable, 400, 'invalid_request')).message, /"\/v1\/models\/%E0%A4%A" is not valid percent-encoding/);
  const undecodableNoAuth = await fetch(`${url}/v1/models/%E0%A4%A`);
  assert.equal(undecodableNoAuth.headers.get('www-authenticate'), 'Bearer');
  await expectError(undecodableNoAuth, 401, 'unauthorized');
  const deleteModels = await fetch(`${url}/v1/models`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(deleteModels.headers.get('allow'), 'GET, HEAD');
  await expectError(deleteModels, 405, 'method_not_allowed');
  await expectError(await post(url, '/v1/completions', { prompt: 'x', temperature: 3 }), 400, 'invalid_request');
  await expectError(await post(url, '/v1/chat/completions', { messages: [{ role: 'wizard', content: 'x' }] }), 400, 'invalid_request');
  await expectError(
    await post(url, '/v1/completions', { prompt: 'x', presence_penalty: 0.5 }),
    400,
    'unsupported_parameter',
    'presence_penalty',
  );
  await expectError(await post(url, '/v1/completions', { model: 'gpt-4', prompt: 'x' }), 404, 'model_not_found', 'model');
  await expectError(await post(url, '/v1/completions', '{"prompt": '), 400, 'malformed_json');
  await expectError(await post(url, '/predict', { inputs: ['x'] }), 400, 'model_not_supported');
  // Defaults accepted as OpenAI SDKs send them.
  const ok = await post(url, '/v1/completions', {
    prompt: 'x',
    max_tokens: 2,
    presence_penalty: 0,
    frequency_penalty: 0,
    logprobs: null,
    n: 1,
    stream: false,
    user: 'u',
  });
  assert.equal(ok.status, 200);
});

test('what the shape of a request refuses is refused before its prompt is tokenized; a seed past 2^53 is reduced, not refused; a generation that rejects its options is a 400 event in a stream', async (t) => {
  const real = await load(dirA, 'tiny@1');
  let tokenized = 0;
  const gen: TextGenerator = {
    ...real,
    kind: 'text-generation',
    id: real.id,
    contextLength: real.contextLength,
    encode: (text) => (tokenized++, real.encode(text)),
    encodeChat: (m) => (tokenized++, real.encodeChat(m)),
    generate: (p, o) =>
      o.temperature === 0.5 ? Promise.reject(new InputError('temperature 0.5 is refused by this test')) : real.generate(p, o),
    close: () => real.close(),
  };
  const { url } = await serve(t, gen, { bodyLimit: 1 << 20, generation: { maxChoices: 4 } });
  const error = async (res: Response) =>
    [res.status, ((await res.json()) as { error: { code: string; message: string; param: string | null } }).error] as const;
  // 5 prompts of a context's worth of characters each: refused for their number alone.
  const [s1, e1] = await error(await post(url, '/v1/completions', { prompt: Array(5).fill('ab '.repeat(80)) }));
  assert.deepEqual([s1, e1.code], [400, 'too_many_choices']);
  // More characters than 32 a token of the 255-token limit.
  const [s2, e2] = await error(await post(url, '/v1/completions', { prompt: 'x'.repeat(255 * 32 + 1) }));
  assert.deepEqual([s2, e2.code], [400, 'context_length_exceeded']);
  assert.match(e2.message, /the prompt has 8161 characters, more than 32 a token for the 255 tokens this server takes/);
  const [s3, e3] = await error(
    await post(url, '/v1/chat/completions', { messages: [{ role: 'user', content: [{ type: 'text', text: 'y'.repeat(8161) }] }] }),
  );
  assert.deepEqual([s3, e3.code], [400, 'context_length_exceeded']);
  const [s7, e7] = await error(await post(url, '/v1/completions', { prompt: 'x', stream_options: { include_usage: true } }));
  assert.deepEqual([s7, e7.code, e7.param], [400, 'invalid_request', 'stream_options']);
  // Four prompts each under that limit, more than 32 characters a token for the 512 tokens (twice the context) a request holds.
  const [s4, e4] = await error(await post(url, '/v1/completions', { prompt: Array(4).fill('z'.repeat(4100)) }));
  assert.deepEqual([s4, e4.code], [400, 'request_too_large']);
  assert.match(e4.message, /the prompts have 16400 characters together, more than 32 a token for the 512 tokens one request may hold/);
  assert.equal(tokenized, 0, 'nothing was tokenized');
  // Prompts are tokenized one at a time: the first too long is refused before the next is tokenized.
  const [s5, e5] = await error(await post(url, '/v1/completions', { prompt: ['a '.repeat(200), 'b '.repeat(20), 'c '.repeat(20)] }));
  assert.deepEqual([s5, e5.code], [400, 'context_length_exceeded']);
  assert.equal(tokenized, 1, 'only the first prompt was tokenized');
  // Every sequence's prompt and answer together: 4 × (100 + 60) tokens is more than 512.
  const [s6, e6] = await error(await post(url, '/v1/completions', { prompt: 'd'.repeat(100), n: 4, max_tokens: 60 }));
  assert.deepEqual([s6, e6.code, e6.param], [400, 'request_too_large', 'n']);
  assert.match(e6.message, /4 sequence\(s\) of prompt and 60 new tokens hold 640 tokens together; one request may hold at most 512/);
  tokenized = 0;
  // A 64-bit seed, as OpenAI clients send (past 2^53 the JSON number has lost its low digits): the same answer each time.
  const texts: string[] = [];
  for (const seed of ['9223372036854775807', '9223372036854775807', '1e20']) {
    const res = await post(url, '/v1/completions', `{"prompt": "Hello", "max_tokens": 3, "seed": ${seed}}`);
    assert.equal(res.status, 200, seed);
    texts.push(((await res.json()) as { choices: { text: string }[] }).choices[0]!.text);
  }
  assert.equal(texts[0], texts[1]);
  for (const s of [2 ** 62, -(2 ** 60), 1e20, 2 ** 53]) assert.ok(Number.isSafeInteger(samplingSeed(s)) && samplingSeed(s) >= 0, String(s));
  assert.equal(samplingSeed(-5), -5);
  // An input error found once the stream has begun is an invalid-request event, not a server error.
  const events = await sse(await post(url, '/v1/completions', { prompt: 'Hello', temperature: 0.5, max_tokens: 2, stream: true }));
  assert.deepEqual(events.slice(-2), [
    JSON.stringify({
      error: { message: 'temperature 0.5 is refused by this test', type: 'invalid_request_error', param: null, code: 'invalid_request' },
    }),
    '[DONE]',
  ]);
});

test('a repetition_penalty whose penalized logits would leave float32 is refused naming it; the usual values are taken', async (t) => {
  const { url } = await serve(t, await load(dirA, 'tiny@1'));
  const error = async (res: Response) =>
    [res.status, ((await res.json()) as { error: { code: string; message: string; param: string | null } }).error] as const;
  // 1e-39 sent a seen token's logit to +Infinity, and sampling then drew the least likely token; 1e39, -Infinity.
  for (const penalty of [1e-39, 0.001, 1e39, 101]) {
    const [status, e] = await error(
      await post(url, '/v1/completions', { prompt: 'Hi', max_tokens: 2, temperature: 1, repetition_penalty: penalty }),
    );
    assert.deepEqual([status, e.code, e.param], [400, 'invalid_request', 'repetition_penalty'], String(penalty));
    assert.match(e.message, /repetition_penalty/);
  }
  for (const penalty of [0.01, 1.2, 100]) {
    const res = await post(url, '/v1/completions', { prompt: 'Hi', max_tokens: 2, temperature: 1, repetition_penalty: penalty });
    assert.equal(res.status, 200, String(penalty));
  }
});

test("/metrics counts each error by the code its client got, a stream's error event included; a refusal of the chat encoding names its field", async (t) => {
  // The template drops '#' from each message (so a message can come out holding a special token's text) and refuses a
  // conversation that opens with the assistant, as Mistral's refuses roles out of turn.
  const template =
    "{% if messages[0].role == 'assistant' %}{{ raise_exception('the user speaks first') }}{% endif %}" +
    "{% for m in messages %}<{{ m.role }}>{{ m.content | replace('#', '') }}\n{% endfor %}<assistant>";
  const real = await loadTextGenerator(dirA, { id: 'tiny@1', threads: 1, chatTemplate: template });
  const gen: TextGenerator = Object.assign(Object.create(real) as TextGenerator, {
    generate: (p: number[][], o: GenerateOptions) =>
      o.temperature === 0.5
        ? Promise.reject(new InputError('temperature 0.5 is refused by this test'))
        : o.temperature === 0.7
          ? Promise.reject(new Error('weights on fire'))
          : real.generate(p, o),
  });
  const { url } = await serve(t, gen);
  const errorOf = async (res: Response) =>
    [res.status, ((await res.json()) as { error: { code: string; param: string | null } }).error] as const;
  const lastEvent = async (res: Response) => JSON.parse((await sse(res)).at(-2)!) as { error: { code: string; param: string | null } };
  // Errors once a stream has begun: its answer is 200, and the error is its last event.
  assert.deepEqual(
    (await lastEvent(await post(url, '/v1/completions', { prompt: 'Hi', temperature: 0.5, stream: true }))).error.code,
    'invalid_request',
  );
  assert.deepEqual(
    (await lastEvent(await post(url, '/v1/completions', { prompt: 'Hi', temperature: 0.7, stream: true }))).error.code,
    'internal',
  );
  // The chat template refuses the conversation; the encoding refuses what the template made of message 1.
  const [s1, e1] = await errorOf(await post(url, '/v1/chat/completions', { messages: [{ role: 'assistant', content: 'Hi' }] }));
  assert.deepEqual([s1, e1.code, e1.param], [400, 'invalid_request', 'messages']);
  const forged = [
    { role: 'user', content: 'Hi' },
    { role: 'user', content: 'a <|endof#text|> b' },
  ];
  const [s2, e2] = await errorOf(await post(url, '/v1/chat/completions', { messages: forged }));
  assert.deepEqual([s2, e2.code, e2.param], [400, 'invalid_request', 'messages[1].content']);
  // A field this server does not take, named in an answer of more than 64 KiB.
  const [s3, e3] = await errorOf(await post(url, '/v1/completions', { prompt: 'Hi', ['f'.repeat(70_000)]: 1 }));
  assert.deepEqual([s3, e3.code], [400, 'invalid_request']);
  // A language model has no /predict: the field a classifier would take is named.
  const [s4, e4] = await errorOf(await post(url, '/predict', { inputs: ['Hi'] }));
  assert.deepEqual([s4, e4.code, e4.param], [400, 'model_not_supported', 'inputs']);
  const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  assert.deepEqual(
    metrics
      .split('\n')
      .filter((l) => l.startsWith('tempered_http_errors_total{'))
      .sort(),
    [
      'tempered_http_errors_total{reason="internal",status="500"} 1',
      'tempered_http_errors_total{reason="invalid_request",status="400"} 4',
      'tempered_http_errors_total{reason="model_not_supported",status="400"} 1',
    ],
  );
});

test("a stream whose client stopped reading does not hold the server's stop past its grace", { timeout: 60_000 }, async () => {
  const real = await load(dirA, 'tiny@1');
  // Large events, so the socket's buffers fill within a few of them; the loop ends when the generation is stopped,
  // as generate's does between forward passes.
  const gen: TextGenerator = Object.assign(Object.create(real) as TextGenerator, {
    generate: async (p: number[][], o: GenerateOptions) => {
      for (let i = 0; i < 1000 && !o.signal?.aborted; i++) await o.onToken?.({ row: 0, token: 1, text: 'x'.repeat(65_536) });
      return [{ tokens: [], text: '', finishReason: 'cancelled' as const, promptTokens: p[0]!.length, cachedTokens: 0 }];
    },
  });
  const server = await createModelServer({
    token: TOKEN,
    pollMs: 60_000,
    resolveCurrent: async () => ({ key: gen.id, load: async () => gen }),
    generation: { stopGraceMs: 0 },
  });
  const answers: import('node:http').ServerResponse[] = [];
  server.app.addHook('onRequest', async (_req, reply) => void answers.push(reply.raw));
  const { port } = new URL(await server.listen());
  const body = JSON.stringify({ prompt: 'Hi', max_tokens: 100, stream: true });
  const sock = connect(Number(port), '127.0.0.1');
  sock.write(
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  );
  sock.pause(); // and never reads
  sock.on('error', () => {});
  // Until the server's write waits for a drain that a client that reads nothing never gives.
  while (!answers[0]?.writableNeedDrain) await new Promise((r) => setTimeout(r, 10));
  await server.close();
  assert.ok(answers[0]!.destroyed, 'its connection was dropped');
  sock.destroy();
});

test('a stream whose client reads nothing for streamStallMs is dropped, and its generation slot freed', { timeout: 60_000 }, async (t) => {
  const real = await load(dirA, 'tiny@1');
  const gen: TextGenerator = Object.assign(Object.create(real) as TextGenerator, {
    generate: async (p: number[][], o: GenerateOptions) => {
      for (let i = 0; i < 1000 && !o.signal?.aborted; i++) await o.onToken?.({ row: 0, token: 1, text: 'x'.repeat(65_536) });
      return [{ tokens: [], text: '', finishReason: 'cancelled' as const, promptTokens: p[0]!.length, cachedTokens: 0 }];
    },
  });
  const { url, server } = await serve(t, gen, { generation: { streamStallMs: 50 } });
  const body = JSON.stringify({ prompt: 'Hi', max_tokens: 100, stream: true });
  const sock = connect(Number(new URL(url).port), '127.0.0.1');
  sock.on('error', () => {});
  sock.write(
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  );
  sock.pause(); // and never reads
  t.after(() => void sock.destroy());
  while (server.gate.active === 0) await new Promise((r) => setTimeout(r, 10));
  // The only slot comes free without the client reading a byte, and the next request is answered.
  while (server.gate.active > 0) await new Promise((r) => setTimeout(r, 10));
  const next = await post(url, '/v1/completions', { prompt: 'Hi', max_tokens: 2, temperature: 0 });
  assert.equal(next.status, 200);
});

test('a request refused for its token is answered at once and its connection closed, whatever body it was still sending', async (t) => {
  // With the error log `tempered serve` runs (fastify takes it as its logger instance).
  const { url } = await serve(t, await load(dirA, 'tiny@1'), { logger: 'errors' });
  const { port } = new URL(url);
  const got = await new Promise<{ response: string; closed: boolean }>((resolve, reject) => {
    let response = '';
    const socket = connect(Number(port), '127.0.0.1', () =>
      socket.write(
        'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n',
      ),
    );
    const timer = setTimeout(() => (socket.destroy(), resolve({ response, closed: false })), 20_000);
    socket.on('data', (d) => (response += String(d)));
    socket.on('error', reject);
    socket.on('close', () => (clearTimeout(timer), resolve({ response, closed: true })));
  });
  assert.match(got.response, /^HTTP\/1\.1 401 /);
  assert.equal(got.closed, true);
});

test('a token no client could send is refused when the server starts', async () => {
  for (const token of ['my secret token', 'tab\tseparated-token', 'naïve-token-123'])
    await assert.rejects(
      createModelServer({ token, resolveCurrent: async () => ({ key: 'k', load: async () => load(dirA, 'tiny@1') }) }),
      /the bearer token cannot be used: it (contains whitespace|has characters other than visible ASCII)/,
      token,
    );
});

test('a stop grace no timer can wait is refused when the server starts', async () => {
  for (const stopGraceMs of [-1, 1.5, 2 ** 31])
    await assert.rejects(
      createModelServer({
        token: TOKEN,
        generation: { stopGraceMs },
        resolveCurrent: async () => ({ key: 'k', load: async () => load(dirA, 'tiny@1') }),
      }),
      (e: unknown) => e instanceof InputError && e.where === 'serve.stopGraceMs' && /from 0 to 2147483647/.test(e.message),
      String(stopGraceMs),
    );
});

/** A real generator whose generations wait for `open()`: makes overlap deterministic without timing. */
function held(gen: LoadedTextGenerator) {
  let open!: () => void;
  const gateOpen = new Promise<void>((r) => {
    open = r;
  });
  let started = 0;
  const waiters: (() => void)[] = [];
  const wrapped: TextGenerator = {
    ...gen,
    kind: 'text-generation',
    id: gen.id,
    contextLength: gen.contextLength,
    vocabSize: gen.vocabSize,
    async generate(p, o) {
      started++;
      waiters.splice(0).forEach((w) => w());
      await gateOpen;
      return gen.generate(p, o);
    },
    close: () => gen.close(),
    // As generation-pool.ts's pooled generator reports (keys of its own, not a classifier pool's).
    stats: () => ({ workers: 1, running: started, waiting: 0, generations: started }),
  } as TextGenerator;
  const startedAtLeast = async (n: number) => {
    while (started < n) await new Promise<void>((r) => waiters.push(r));
  };
  return { gen: wrapped, open, startedAtLeast };
}

test('concurrent generations are bounded: the queue fills, then 429 with Retry-After', async (t) => {
  const h = held(await load(dirA, 'tiny@1'));
  t.after(() => h.open()); // a failed assertion must not leave a generation waiting forever (close would wait for it)
  const { url, server } = await serve(t, h.gen, { generation: { maxConcurrent: 1, maxQueue: 1 } });
  const first = post(url, '/v1/completions', { prompt: 'one', max_tokens: 3, temperature: 0 });
  await h.startedAtLeast(1);
  const second = post(url, '/v1/completions', { prompt: 'two', max_tokens: 3, temperature: 0 });
  while (server.gate.queued < 1) await new Promise((r) => setTimeout(r, 5));
  // The held generation has run over 1.1 s and none has ended: the one waiting starts in 2 s at the least (gate.test.ts
  // has the estimate's figures); a slower machine only makes it more, up to 30.
  await new Promise((r) => setTimeout(r, 1100));
  const third = await post(url, '/v1/chat/completions', { messages, max_tokens: 3 });
  assert.equal(third.status, 429);
  assert.ok(
    Number(third.headers.get('retry-after')) >= 2 && Number(third.headers.get('retry-after')) <= 30,
    String(third.headers.get('retry-after')),
  );
  assert.match(third.headers.get('retry-after') ?? '', /^\d+$/);
  // Retried by an SDK client (after Retry-After), unlike a 500.
  assert.equal(third.headers.get('x-should-retry'), null);
  // A burst refused at one moment is told to come back at different seconds (the SDK adds no jitter of its own), each
  // its request id's share of the spread (gate.test.ts has its bounds). 12 random ids over 3 values or more are all
  // the same once in 170,000 runs.
  const waitBefore = server.gate.estimatedWaitSeconds();
  const burst = await Promise.all(Array.from({ length: 12 }, () => post(url, '/v1/completions', { prompt: 'x', max_tokens: 3 })));
  const waitAfter = server.gate.estimatedWaitSeconds();
  const waits = burst.map((r) => {
    assert.equal(r.status, 429);
    const id = r.headers.get('x-request-id')!;
    const s = Number(r.headers.get('retry-after'));
    assert.ok(
      // The estimate grows while the held generation runs: a burst slower than a second (a loaded machine) spans more.
      Array.from({ length: waitAfter - waitBefore + 1 }, (_, k) => waitBefore + k).some((e) => retryAfterSpread(e, id) === s),
      `${s} for ${id}, wait ${waitBefore}–${waitAfter}`,
    );
    return s;
  });
  assert.ok(new Set(waits).size > 1, `all told ${waits[0]} s`);
  const err = ((await third.json()) as any).error;
  assert.equal(err.type, 'rate_limit_error');
  assert.equal(err.code, 'server_busy');
  const metrics = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  assert.match(metrics, /tempered_generations_running 1/);
  assert.doesNotMatch(metrics, /undefined/, "a classifier pool's series are absent, not undefined");
  assert.match(metrics, /tempered_generations_queued 1/);
  h.open();
  assert.equal((await first).status, 200);
  assert.equal((await second).status, 200);
  assert.equal(server.gate.active + server.gate.queued, 0);
});

test('hot swap during concurrent requests: each answers from the model it started with; the old one closes after its last request', async (t) => {
  const loadedA = await load(dirA, 'tiny@1');
  const a = held(loadedA);
  t.after(() => a.open());
  const b = await load(dirB, 'tiny@2');
  const log: string[] = [];
  const genA: TextGenerator = {
    ...a.gen,
    generate: async (p, o) => {
      const r = await a.gen.generate(p, o);
      log.push('a:done');
      return r;
    },
    close: async () => {
      log.push('a:closed');
      await a.gen.close();
    },
  };
  const refA = (await generate(loadedA.decoder, [loadedA.encode('Hello')], { maxNewTokens: 6 }))[0]!.text;
  const refB = (await generate(b.decoder, [b.encode('Hello')], { maxNewTokens: 6 }))[0]!.text;
  assert.notEqual(refA, refB);
  let current = { key: 'tiny@1', gen: async () => genA };
  const { url, server } = await serve(t, async () => current, { generation: { maxConcurrent: 4, maxQueue: 4 } });
  const ask = (stream: boolean) => post(url, '/v1/completions', { prompt: 'Hello', max_tokens: 6, temperature: 0, stream });
  const onA = [ask(false), ask(true), ask(false)];
  await a.startedAtLeast(3);
  current = { key: 'tiny@2', gen: async () => b };
  assert.equal(await server.model.pollOnce(), true);
  const bDone = await Promise.all([ask(false), ask(true)]);
  assert.deepEqual(log, [], 'model A is neither finished nor closed while its requests run');
  a.open();
  const aDone = await Promise.all(onA);
  const textOf = async (res: Response, stream: boolean) => {
    if (!stream) {
      const j = (await res.json()) as any;
      return { model: j.model, text: j.choices[0].text };
    }
    const chunks = (await sse(res)).slice(0, -1).map((d) => JSON.parse(d));
    return { model: chunks[0].model, text: chunks.map((c: any) => c.choices[0].text).join('') };
  };
  assert.deepEqual(
    await Promise.all(aDone.map((r, i) => textOf(r, i === 1))),
    [0, 1, 2].map(() => ({ model: 'tiny@1', text: refA })),
  );
  assert.deepEqual(
    await Promise.all(bDone.map((r, i) => textOf(r, i === 1))),
    [0, 1].map(() => ({ model: 'tiny@2', text: refB })),
  );
  while (!(log as string[]).includes('a:closed')) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(log, ['a:done', 'a:done', 'a:done', 'a:closed']);
});

test('a LoRA fine-tune registered as a new version is served once the alias moves to it', async (t) => {
  // Fine-tune the tiny model to repeat three letters, export it, register base and fine-tune as versions 1 and 2.
  const rng = new Rng(1);
  const prompts: string[] = [],
    responses: string[] = [];
  for (let i = 0; i < 96; i++) {
    const w = Array.from({ length: 3 }, () => 'abcdefgh'[rng.int(8)]).join('');
    prompts.push(`repeat: ${w}`);
    responses.push(w);
  }
  const train = join(root, 'train.arrow');
  const wr = new ArrowTableWriter(train, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: prompts, response: responses });
  wr.close();
  const tuned = join(root, 'tuned');
  await trainCausalLm({
    modelDir: dirA,
    train,
    template: { prompt: '{prompt}\n', addEos: true },
    method: 'lora',
    lora: { r: 8, alpha: 16 },
    lr: 3e-2,
    epochs: 8,
    batchSize: 16,
    schedule: 'linear',
    weightDecay: 0,
    clipNorm: 1,
    seed: 3,
    maxLength: 24,
    device: 'cpu',
    threads: 2,
    checkpointDir: join(root, 'ck'),
    checkpointEvery: 0,
    outDir: tuned,
  });
  const regPath = join(root, 'registry.db');
  const reg = await openRegistry(regPath);
  t.after(() => reg.close());
  for (const run of ['base', 'lora'])
    await reg.registerVersion({
      name: 'tiny',
      runId: run,
      stageId: 'register',
      specHash: 'a'.repeat(64),
      data: [],
      artifacts: [{ role: 'model', uri: run, sha256: (run === 'base' ? 'b' : 'c').repeat(64), bytes: 1 }],
    });
  await reg.setAlias('tiny', 'production', 1, { actor: 'test' });
  const dirs: Record<string, string> = { base: dirA, lora: tuned };
  const { url, server } = await serve(t, async () => {
    const cur = await registryAliasSource<TextGenerator>({
      registryPath: regPath,
      name: 'tiny',
      load: (v) => load(dirs[v.artifacts[0]!.uri]!, `${v.name}@${v.version}`),
    })();
    return { key: cur.key, gen: cur.load };
  });
  const ask = async () =>
    (await (await post(url, '/v1/completions', { model: 'tiny', prompt: 'repeat: cab\n', max_tokens: 8, temperature: 0 })).json()) as any;
  const before = await ask();
  assert.equal(before.model, 'tiny@1');
  await reg.setAlias('tiny', 'production', 2, { actor: 'test' });
  assert.equal(await server.model.pollOnce(), true);
  const afterSwap = await ask();
  assert.equal(afterSwap.model, 'tiny@2');
  // The fine-tune learned the answer's form (three of the letters, then EOS); the base model did not.
  assert.match(afterSwap.choices[0].text, /^[a-h]{3}$/);
  assert.equal(afterSwap.choices[0].finish_reason, 'stop');
  assert.doesNotMatch(before.choices[0].text, /^[a-h]{3}$/);
  // And it is exactly what the exported model (LoRA merged into model.onnx) generates through the library.
  const lib = await load(tuned, 'lib');
  t.after(() => lib.close());
  const [r] = await generate(lib.decoder, [lib.encode('repeat: cab\n')], { maxNewTokens: 8 });
  assert.equal(afterSwap.choices[0].text, r!.text);
});

test('a request its client gave up on, streamed or not, is counted as 499 in the metrics, once', async (t) => {
  // They reached no onResponse, so an operator saw neither them nor their latency.
  const h = held(await load(dirA, 'tiny@1'));
  t.after(() => h.open());
  const { url, server } = await serve(t, h.gen);
  const given = [false, true].map((stream) => {
    const ac = new AbortController();
    const body = JSON.stringify({ prompt: 'x', max_tokens: 3, stream });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` };
    const answer = fetch(`${url}/v1/completions`, { method: 'POST', headers, body, signal: ac.signal }).then((r) => r.text());
    return { ac, answer };
  });
  // One generates (held), one waits for the generation slot.
  await h.startedAtLeast(1);
  while (server.gate.queued < 1) await new Promise((r) => setTimeout(r, 5));
  for (const g of given) g.ac.abort();
  for (const g of given) await assert.rejects(g.answer, { name: 'AbortError' });
  const metrics = async () => (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
  while (!/status="499"\} 2/.test(await metrics())) await new Promise((r) => setTimeout(r, 10));
  h.open();
  while (server.gate.active + server.gate.queued > 0) await new Promise((r) => setTimeout(r, 10));
  const m = await metrics();
  assert.match(m, /tempered_http_requests_total\{route="\/v1\/completions",status="499"\} 2\n/);
  assert.doesNotMatch(m, /route="\/v1\/completions",status="200"/);
  assert.match(m, /tempered_http_request_duration_seconds_count\{route="\/v1\/completions"\} 2\n/);
});

test("a stream's tokens count in /metrics as they are sent, and stop when its client leaves; many requests at once warn of no leak", async (t) => {
  const real = await load(dirA, 'tiny@1');
  // Each stream's generation waits after its 3rd token until the test lets it go: a generation caught mid-way.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let paused = 0;
  // Tokens the generations handed the server (a row's closing event, which may be its end-of-sequence token, apart).
  let handed = 0;
  const waiters: (() => void)[] = [];
  const gen: TextGenerator = {
    ...real,
    generate: (p, o) => {
      let k = 0;
      return real.generate(p, {
        ...o,
        onToken: async (e) => {
          if (!e.finishReason) handed++;
          await o.onToken?.(e);
          if (++k === 3) {
            paused++;
            waiters.splice(0).forEach((w) => w());
            await released;
          }
        },
      });
    },
  };
  t.after(() => release());
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  t.after(() => void process.off('warning', onWarning));
  const { url, server } = await serve(t, gen, { generation: { maxConcurrent: 1, maxQueue: 16 } });
  const tokens = async () => {
    const m = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    return Number(/^tempered_generated_tokens_total\{model="tiny@1"\} (\d+)$/m.exec(m)?.[1] ?? 0);
  };
  const body = { prompt: 'Once upon', max_tokens: 20, temperature: 0, stream: true };
  const first = await post(url, '/v1/completions', body);
  while (paused < 1) await new Promise<void>((r) => waiters.push(r));
  // Three tokens made, none counted before: the counter moved only when a generation ended.
  assert.equal(await tokens(), 3);
  // Twelve more wait behind it, each listening for the server's stop: no MaxListenersExceededWarning.
  const leaving = Array.from({ length: 12 }, () => new AbortController());
  const queued = leaving.map((c) => post(url, '/v1/completions', body, TOKEN, c.signal).catch((e: Error) => e.name));
  while (server.gate.queued < 12) await new Promise((r) => setTimeout(r, 5));
  for (const c of leaving) c.abort();
  await Promise.all(queued);
  // The first's client leaves mid-way: its generation ends at its next step, and the counter stops there.
  await first.body!.cancel();
  release();
  while (server.gate.active + server.gate.queued > 0) await new Promise((r) => setTimeout(r, 5));
  const after = await tokens();
  // Exactly the tokens its generation made before it saw its client gone, each counted once.
  assert.ok(after >= 3 && after <= 5, `${after} tokens`);
  assert.equal(after, handed);
  const again = await post(url, '/v1/completions', { prompt: 'x', max_tokens: 2, temperature: 0 });
  const usage = ((await again.json()) as { usage: { completion_tokens: number } }).usage;
  assert.equal(await tokens(), after + usage.completion_tokens, 'nothing more from the abandoned generation');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(warnings, []);
});
