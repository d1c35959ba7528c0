/**
 * The payload encryption codec on its own: real AES-256-GCM (node:crypto) and the SDK's real JSON payload converter.
 * Round trip, tampering, an unknown or missing key, a rotated-out key, clear payloads from before the key, and keys
 * refused for their shape.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import {
  ENCRYPTED_ENCODING,
  EncryptionCodec,
  KEY_ID_METADATA,
  parsePayloadKey,
  payloadKeysFromEnv,
  PayloadKeyError,
  temporalDataConverter,
} from './payload-codec.ts';

const SECRET = { params: { hf_token: 'SECRET123' }, url: 'https://b.example/x.csv?X-Amz-Signature=SIG456' };
const keyText = () => randomBytes(32).toString('base64');
const codecOf = (env: Record<string, string>) => new EncryptionCodec(payloadKeysFromEnv(env));
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? []).toString('latin1');

test('a payload goes out encrypted under the key id and comes back as it was', async () => {
  const key = keyText();
  const codec = codecOf({ TEMPERED_PAYLOAD_KEY: key });
  const clear = defaultPayloadConverter.toPayload(SECRET);
  const [out] = await codec.encode([clear]);
  assert.equal(text(out!.metadata!.encoding), ENCRYPTED_ENCODING);
  assert.equal(text(out!.metadata![KEY_ID_METADATA]), parsePayloadKey(key, 'k').id);
  assert.ok(!text(out!.data).includes('SECRET123') && !text(out!.data).includes('SIG456'), 'no plaintext in the data');
  assert.ok(!JSON.stringify(out!.metadata).includes('json'), 'the original encoding is inside the ciphertext too');
  // A fresh nonce each time: the same value never encrypts to the same bytes.
  const [again] = await codec.encode([clear]);
  assert.notDeepEqual(Buffer.from(again!.data!), Buffer.from(out!.data!));
  const [back] = await codec.decode([out!]);
  assert.deepEqual(defaultPayloadConverter.fromPayload(back!), SECRET);
  // A hex key is the same key.
  const hex = codecOf({ TEMPERED_PAYLOAD_KEY: Buffer.from(key, 'base64').toString('hex') });
  assert.deepEqual(defaultPayloadConverter.fromPayload((await hex.decode([out!]))[0]!), SECRET);
});

test('a payload altered in the history fails authentication, never decodes to another value', async () => {
  const codec = codecOf({ TEMPERED_PAYLOAD_KEY: keyText() });
  const [out] = await codec.encode([defaultPayloadConverter.toPayload(SECRET)]);
  for (const at of [0, 20, out!.data!.length - 1]) {
    const data = Buffer.from(out!.data!);
    data[at]! ^= 1;
    await assert.rejects(codec.decode([{ ...out!, data }]), (e: Error) => {
      assert.ok(e instanceof PayloadKeyError);
      assert.match(e.message, /failed authentication \(AES-256-GCM\): it was altered in the history/);
      return true;
    });
  }
  await assert.rejects(codec.decode([{ ...out!, data: out!.data!.subarray(0, 10) }]), /too short to be encrypted data/);
});

test('an encrypted payload without the key, or under an unknown key id, is a clear error naming the variables', async () => {
  const [out] = await codecOf({ TEMPERED_PAYLOAD_KEY: keyText() }).encode([defaultPayloadConverter.toPayload(SECRET)]);
  const id = text(out!.metadata![KEY_ID_METADATA]);
  await assert.rejects(
    codecOf({}).decode([out!]),
    new RegExp(`encrypted \\(key id ${id}\\) and this process has no key: set TEMPERED_PAYLOAD_KEY`),
  );
  const other = keyText();
  await assert.rejects(
    codecOf({ TEMPERED_PAYLOAD_KEY: other }).decode([out!]),
    new RegExp(
      `encrypted with key id ${id}, which is unknown here \\(this process has ${parsePayloadKey(other, 'k').id}\\).*TEMPERED_PAYLOAD_KEYS_OLD`,
    ),
  );
});

test('after a rotation the old key, listed in TEMPERED_PAYLOAD_KEYS_OLD, still decrypts; new payloads use the new key', async () => {
  const oldKey = keyText();
  const newKey = keyText();
  const [before] = await codecOf({ TEMPERED_PAYLOAD_KEY: oldKey }).encode([defaultPayloadConverter.toPayload(SECRET)]);
  const rotated = codecOf({ TEMPERED_PAYLOAD_KEY: newKey, TEMPERED_PAYLOAD_KEYS_OLD: `${keyText()}, ${oldKey}` });
  assert.deepEqual(defaultPayloadConverter.fromPayload((await rotated.decode([before!]))[0]!), SECRET);
  const [after] = await rotated.encode([defaultPayloadConverter.toPayload(SECRET)]);
  assert.equal(text(after!.metadata![KEY_ID_METADATA]), parsePayloadKey(newKey, 'k').id);
});

test('clear payloads (runs from before the key) decode with the key set; without a key nothing is encrypted', async () => {
  const clear = defaultPayloadConverter.toPayload(SECRET);
  const [back] = await codecOf({ TEMPERED_PAYLOAD_KEY: keyText() }).decode([clear]);
  assert.deepEqual(defaultPayloadConverter.fromPayload(back!), SECRET);
  assert.deepEqual(await codecOf({}).encode([clear]), [clear]);
});

test('a key that is not 32 bytes of base64 or hex is refused, naming the variable and how to make one', () => {
  for (const bad of ['hunter2', randomBytes(16).toString('base64'), randomBytes(32).toString('hex').slice(1), '!'.repeat(44)])
    assert.throws(
      () => temporalDataConverter({ TEMPERED_PAYLOAD_KEY: bad }),
      /^Error: TEMPERED_PAYLOAD_KEY is not 32 bytes as base64 \(44 characters\) or hex \(64 digits\).*openssl rand -base64 32/,
    );
  assert.throws(
    () => temporalDataConverter({ TEMPERED_PAYLOAD_KEY: keyText(), TEMPERED_PAYLOAD_KEYS_OLD: `${keyText()},short` }),
    /TEMPERED_PAYLOAD_KEYS_OLD \(key 2 of the comma-separated list\) is not 32 bytes/,
  );
  // base64url, and with or without padding, are the same 32 bytes.
  const raw = randomBytes(32);
  const ids = [raw.toString('base64'), raw.toString('base64url'), raw.toString('hex')].map((t) => parsePayloadKey(t, 'k').id);
  assert.equal(new Set(ids).size, 1);
});
