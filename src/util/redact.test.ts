import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isSecretName, redactJson, redactSecrets, redactText, redactUrl, REDACTED } from './redact.ts';

test('redactUrl hides userinfo and credential parameters, and keeps the rest byte for byte', () => {
  const what: string[] = [];
  assert.equal(
    redactUrl(
      'https://b.s3.amazonaws.com/d/x.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F1&X-Amz-Date=1&X-Amz-Security-Token=T&X-Amz-Signature=abc',
      what,
    ),
    `https://b.s3.amazonaws.com/d/x.jsonl?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=${REDACTED}&X-Amz-Date=1&X-Amz-Security-Token=${REDACTED}&X-Amz-Signature=${REDACTED}`,
  );
  assert.deepEqual(what, ['query X-Amz-Credential', 'query X-Amz-Security-Token', 'query X-Amz-Signature']);
  assert.equal(
    redactUrl('https://u:p%40ss@h:8443/a?b=1#access_token=z&x=2'),
    `https://${REDACTED}@h:8443/a?b=1#access_token=${REDACTED}&x=2`,
  );
  assert.equal(redactUrl('https://ghp_TOKEN@github.com/o/r'), `https://${REDACTED}@github.com/o/r`);
  // Azure SAS, API keys, names that contain a secret word; other parameters and paths are left alone.
  assert.equal(
    redactUrl('https://a.blob.core.windows.net/c/f?sv=2020&sp=r&sig=S%3D'),
    `https://a.blob.core.windows.net/c/f?sv=2020&sp=r&sig=${REDACTED}`,
  );
  assert.equal(redactUrl('http://h/x?api_key=1&My-Token=2&page=3'), `http://h/x?api_key=${REDACTED}&My-Token=${REDACTED}&page=3`);
  for (const same of ['http://h/token/x?t=1', 'data/train.jsonl', 'file:///a/b', 'http://h/x?token=', `http://h/x?sig=${REDACTED}`])
    assert.equal(redactUrl(same), same);
});

test('redactText finds URLs in a spec file or a message; redactJson walks a plan and secret-named params', () => {
  const yaml = 'with:\n  path: "https://h/f.csv?token=abc"\n  other: https://u:pw@h/g.csv.\n';
  assert.equal(redactText(yaml), `with:\n  path: "https://h/f.csv?token=${REDACTED}"\n  other: https://${REDACTED}@h/g.csv.\n`);
  assert.equal(redactText('GET https://h/f?sig=1), then'), `GET https://h/f?sig=${REDACTED}), then`);
  const plan = { stages: [{ id: 'ingest', with: { path: 'https://h/f?sig=1', n: 3 } }], params: { hf_token: 'hf_x', seed: '3' } };
  const what: string[] = [];
  const out = redactJson(plan, what, { secretKeys: true });
  assert.deepEqual(out, {
    stages: [{ id: 'ingest', with: { path: `https://h/f?sig=${REDACTED}`, n: 3 } }],
    params: { hf_token: REDACTED, seed: '3' },
  });
  assert.deepEqual(what, ['stages[0].with.path: query sig', 'params.hf_token: value']);
  assert.equal(plan.stages[0]!.with.path, 'https://h/f?sig=1', 'the input is not changed');
  const clean = { a: ['http://h/x'], b: 1 };
  assert.equal(redactJson(clean), clean, 'nothing to hide: the same object');
});

test('isSecretName: whole words that name a secret, not words that contain one', () => {
  for (const name of [
    'hf_token',
    'HF_TOKEN',
    'githubToken',
    'db-password',
    'api_key',
    'apiKey',
    'AccessKey',
    'client_secret',
    'X-Amz-Security-Token',
    'key',
    'sig',
  ])
    assert.ok(isSecretName(name), name);
  for (const name of ['max_tokens', 'maxNewTokens', 'tokenizer', 'keyword', 'monkey', 'key_column', 'signal', 'seed', 'path'])
    assert.ok(!isSecretName(name), name);
});

test('redactSecrets: a secret-named param is hidden under params whatever its length, and searched for elsewhere from 6 characters', () => {
  const answer = {
    runs: [{ params: { hf_token: 'ab12', seed: 3, note: 'ab12' }, name: 'r-ab12' }],
    plan: { params: { api_key: 'longer-secret' }, stages: [{ with: { auth: 'Bearer longer-secret' } }] },
  };
  assert.deepEqual(redactSecrets(answer), {
    // 'ab12' elsewhere is left: a value that short would hide unrelated words.
    runs: [{ params: { hf_token: REDACTED, seed: 3, note: 'ab12' }, name: 'r-ab12' }],
    plan: { params: { api_key: REDACTED }, stages: [{ with: { auth: `Bearer ${REDACTED}` } }] },
  });
  // Only under `params`: elsewhere a key is a field of the data, such as a stage's `key` column.
  const stage = { with: { key: 'id' } };
  assert.equal(redactSecrets(stage), stage);
});
