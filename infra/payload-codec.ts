/**
 * Opt-in encryption of everything tempered hands Temporal as a payload (a run's input: its plan with source URLs and
 * params; each stage's request and result; heartbeats; memos; query answers), so that whoever reads the namespace's
 * history reads ciphertext. Temporal's own answer: a PayloadCodec in the data converter, which runs in the client and
 * in the worker outside the workflow sandbox, so workflow code and replay are untouched.
 *
 * The construction is the one Temporal's samples use in every language (samples-typescript `encryption`, and the Go,
 * Python and .NET ones): AES-256-GCM over the serialized Payload proto, a fresh random 96-bit nonce per payload, the
 * data `nonce ‖ ciphertext ‖ 16-byte tag`, metadata `encoding: binary/encrypted` and `encryption-key-id`. Keeping to
 * it lets those samples' codec server decode tempered's payloads for the Web UI given the key and its id.
 *
 * Keys: TEMPERED_PAYLOAD_KEY encrypts (and decrypts); TEMPERED_PAYLOAD_KEYS_OLD, comma-separated, only decrypt, for
 * the histories written before a rotation. A key's id is derived from the key (a truncated SHA-256), so no id needs
 * configuring and two processes with one key always agree on it.
 *
 * The codec is installed even without a key: it then encrypts nothing, but a payload it meets encrypted fails with an
 * error that says which variable to set, not the payload converter's `Unknown encoding: binary/encrypted`.
 * Payloads that are not encrypted (runs from before the key was set) pass through either way.
 *
 * A failure's message and stack trace are not payloads: with a key, temporalDataConverter also names the failure
 * converter that moves them into one (infra/failure-converter.cjs), so they are encrypted too.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { DataConverter, Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';

const PayloadProto = proto.temporal.api.common.v1.Payload;

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A payload that cannot be decrypted here: no key, an unknown key id, or one that fails authentication. */
export class PayloadKeyError extends Error {
  override name = 'PayloadKeyError';
}

export interface PayloadKey {
  id: string;
  key: Buffer;
}

/** The id a key goes by in each payload's metadata: the first 8 bytes of its SHA-256, in hex (reveals nothing usable of a random 256-bit key). */
export function payloadKeyId(key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

/**
 * 32 bytes from `text`, written as 64 hex digits or as base64 (`openssl rand -base64 32`; base64url too). `what` names
 * where it came from, for the error.
 */
export function parsePayloadKey(text: string, what: string): PayloadKey {
  const t = text.trim();
  let key: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(t)) key = Buffer.from(t, 'hex');
  else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) key = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (!key || key.length !== KEY_BYTES) {
    const shape = !t ? 'is empty' : `is not 32 bytes as base64 (44 characters) or hex (64 digits): it has ${t.length} characters`;
    throw new Error(
      `${what} ${shape}; make a key with \`openssl rand -base64 32\` and give every worker, CLI, dashboard and schedule process the same one`,
    );
  }
  return { id: payloadKeyId(key), key };
}

export interface PayloadKeys {
  /** Encrypts new payloads; undefined: payloads go out in clear. */
  current?: PayloadKey;
  /** Decrypt only: keys rotated out whose histories may still be read. */
  old: PayloadKey[];
}

/** The keys from TEMPERED_PAYLOAD_KEY and TEMPERED_PAYLOAD_KEYS_OLD; a malformed one is an error naming its variable. */
export function payloadKeysFromEnv(env: NodeJS.ProcessEnv = process.env): PayloadKeys {
  const current = env.TEMPERED_PAYLOAD_KEY ? parsePayloadKey(env.TEMPERED_PAYLOAD_KEY, 'TEMPERED_PAYLOAD_KEY') : undefined;
  const old = (env.TEMPERED_PAYLOAD_KEYS_OLD ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s, i) => parsePayloadKey(s, `TEMPERED_PAYLOAD_KEYS_OLD (key ${i + 1} of the comma-separated list)`));
  return { current, old };
}

function metadataText(p: Payload, key: string): string | undefined {
  const v = p.metadata?.[key];
  return v ? dec.decode(v) : undefined;
}

export class EncryptionCodec implements PayloadCodec {
  private readonly byId: Map<string, Buffer>;

  constructor(private readonly keys: PayloadKeys) {
    this.byId = new Map([...keys.old, ...(keys.current ? [keys.current] : [])].map((k) => [k.id, k.key]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const current = this.keys.current;
    if (!current) return payloads;
    return payloads.map((p) => {
      const nonce = randomBytes(NONCE_BYTES);
      const cipher = createCipheriv('aes-256-gcm', current.key, nonce);
      const body = Buffer.concat([cipher.update(PayloadProto.encode(p).finish()), cipher.final()]);
      return {
        metadata: { encoding: enc.encode(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: enc.encode(current.id) },
        data: Buffer.concat([nonce, body, cipher.getAuthTag()]),
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => (metadataText(p, 'encoding') === ENCRYPTED_ENCODING ? this.decrypt(p) : p));
  }

  private decrypt(p: Payload): Payload {
    const id = metadataText(p, KEY_ID_METADATA) ?? '(none)';
    const key = this.byId.get(id);
    if (!key) {
      const known = [...this.byId.keys()];
      throw new PayloadKeyError(
        known.length === 0
          ? `this Temporal payload is encrypted (key id ${id}) and this process has no key: set TEMPERED_PAYLOAD_KEY to the key it was encrypted with, the one tempered's workers and clients share (or list it in TEMPERED_PAYLOAD_KEYS_OLD)`
          : `this Temporal payload is encrypted with key id ${id}, which is unknown here (this process has ${known.join(', ')}): set TEMPERED_PAYLOAD_KEY, or add to TEMPERED_PAYLOAD_KEYS_OLD, the key it was encrypted with`,
      );
    }
    const data = p.data ?? new Uint8Array();
    if (data.length < NONCE_BYTES + TAG_BYTES)
      throw new PayloadKeyError(`this Temporal payload (key id ${id}) is too short to be encrypted data: it was altered in the history`);
    const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, NONCE_BYTES));
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(data.subarray(NONCE_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    } catch {
      // GCM's tag: nothing of a payload that fails it is returned, so an altered history never decodes to a wrong value.
      throw new PayloadKeyError(
        `this Temporal payload (key id ${id}) failed authentication (AES-256-GCM): it was altered in the history, or it was encrypted under another key than the one with that id here`,
      );
    }
    return PayloadProto.decode(plain);
  }
}

const converters = new Map<string, DataConverter>();

/**
 * The failure converter that moves a failure's message and stack trace into a payload (`encodedAttributes`), which
 * the codec then encrypts: infra/failure-converter.cjs, a path because the worker bundles it into the workflow sandbox.
 */
export const ENCODING_FAILURE_CONVERTER_PATH = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

/**
 * The data converter every Temporal client and worker of tempered uses: JSON payloads through the encryption codec,
 * with the keys of `env`. Throws on a malformed key, before anything connects. One per key setting, so that a process
 * building several clients builds one codec.
 *
 * With a key to encrypt with, failures' messages and stack traces are encoded too (ENCODING_FAILURE_CONVERTER_PATH):
 * an error can quote user data. Without one they stay in clear, since nothing would encrypt them. Reading takes no
 * setting: the SDK's default failure converter, and client/payloads.ts for raw histories, open an encoded failure and
 * read a clear one as it is, so runs from before the key read as they did.
 */
export function temporalDataConverter(env: NodeJS.ProcessEnv = process.env): DataConverter {
  const setting = `${env.TEMPERED_PAYLOAD_KEY ?? ''}\n${env.TEMPERED_PAYLOAD_KEYS_OLD ?? ''}`;
  let dc = converters.get(setting);
  if (!dc) {
    const keys = payloadKeysFromEnv(env);
    dc = {
      payloadCodecs: [new EncryptionCodec(keys)],
      ...(keys.current ? { failureConverterPath: ENCODING_FAILURE_CONVERTER_PATH } : {}),
    };
    converters.set(setting, dc);
  }
  return dc;
}
