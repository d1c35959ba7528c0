import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { describeValidation } from './validation-message.ts';

/** ajv's real errors, through fastify with the serving routes' options. */
async function errorsOf(body: unknown) {
  const app = Fastify({ ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true, allowUnionTypes: true } } });
  let got: Parameters<typeof describeValidation>[0] = [];
  app.setErrorHandler((err: { validation?: typeof got }, _req, reply) => ((got = err.validation ?? []), reply.send('x')));
  const message = {
    type: 'object',
    required: ['role', 'content'],
    additionalProperties: false,
    properties: { role: { enum: ['user', 'assistant'] }, content: { anyOf: [{ type: 'string' }, { type: 'array' }] } },
  };
  const schema = {
    type: 'object',
    additionalProperties: false,
    properties: {
      messages: { type: 'array', items: message },
      n: { type: ['integer', 'null'] },
      stop: { anyOf: [{ type: 'string' }, { type: 'array', maxItems: 4, items: { type: 'string' } }, { type: 'null' }] },
      prompt: { anyOf: [{ type: 'string' }, { type: 'array', minItems: 1, items: { type: 'string' } }] },
    },
  };
  app.post('/x', { schema: { body: schema } }, async () => 'ok');
  await app.inject({ method: 'POST', url: '/x', payload: body as object });
  await app.close();
  return got;
}

test('a schema failure names each field: unknown ones, shapes allowed, values allowed', async () => {
  assert.deepEqual(describeValidation(await errorsOf({ messages: [], tools: [] })), {
    message: 'tools: this server does not take this field',
    param: 'tools',
  });
  assert.deepEqual(
    describeValidation(
      await errorsOf({
        messages: [
          { role: 'assistant', content: null },
          { role: 'tool', content: 'r', tool_call_id: 'a' },
        ],
      }),
    ),
    {
      message:
        'messages[0].content must be string or array; messages[1].tool_call_id: this server does not take this field; messages[1].role must be one of "user", "assistant"',
      param: 'messages[0].content',
    },
  );
  assert.deepEqual(describeValidation(await errorsOf({ n: 'two' })), { message: 'n must be integer or null', param: 'n' });
  // A value of one branch's type is held to that branch's rules, and only those are said.
  assert.deepEqual(describeValidation(await errorsOf({ stop: ['a', 'b', 'c', 'd', 'e'] })), {
    message: 'stop must NOT have more than 4 items',
    param: 'stop',
  });
  assert.equal(describeValidation(await errorsOf({ prompt: [] })).message, 'prompt must NOT have fewer than 1 items');
  assert.equal(describeValidation(await errorsOf({ prompt: [1, 2] })).message, 'prompt[0] must be string; prompt[1] must be string');
  assert.equal(describeValidation(await errorsOf({ stop: 7 })).message, 'stop must be string or array or null');
  // A missing field is named as the param, as OpenAI's "Missing required parameter" does.
  assert.deepEqual(describeValidation(await errorsOf({ messages: [{ content: 'x' }] })), {
    message: 'messages[0].role is required',
    param: 'messages[0].role',
  });
});

test('a body with thousands of problems names the first ten and counts the rest, in one short message', async () => {
  // 5,000 unknown fields and 5,000 items of the wrong type (a megabyte holds 100,000: each error was compared with
  // every other, which held the server's thread for minutes, and the answer named all of them).
  const body: Record<string, unknown> = { messages: Array.from({ length: 5000 }, () => ({ role: 'user', content: 1 })) };
  for (let i = 0; i < 5000; i++) body[`k${i}`] = 1;
  const { message, param } = describeValidation(await errorsOf(body));
  const named = message.split('; ');
  assert.equal(named.length, 11, message.slice(0, 300));
  assert.equal(named[10], 'and 9990 more problems');
  assert.ok(message.length < 1000, `${message.length} characters`);
  assert.equal(param, 'k0');
  assert.equal(named[0], 'k0: this server does not take this field');
});
