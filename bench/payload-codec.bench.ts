/**
 * What TEMPERED_PAYLOAD_KEY costs a payload, with the real codec (infra/payload-codec.ts) and the SDK's JSON converter:
 *
 *   nice node --import tsx bench/payload-codec.bench.ts [pipeline=pipelines/instruct.yaml] [rounds=2000]
 *
 * Payloads: the run input `tempered submit` starts the pipeline with (its plan), and a stage's request (the first
 * stage's resolved config). Each is converted to a payload, encoded and decoded back, `rounds` times; printed per
 * payload: microseconds with the key and without it (the codec then passes payloads through), and bytes before and
 * after. A stage moves a handful of payloads (its request, its result, a heartbeat or two, the status query's
 * answer), so its cost is a few times these figures; against a stage's round trip through Temporal (about 20 ms on a
 * quiet machine, README *Benchmarks*) it is what to compare.
 *
 * Then a stage's failure (an ApplicationFailure with ingest's 250-character missing-field message and its stack), the
 * way a worker writes it and a client reads it back (errorToFailure, encode; decode, failureToError): without the key
 * the message stays in clear, with it the failure converter moves message and stack into a payload the codec
 * encrypts (infra/failure-converter.cjs). A failure is written once per failed attempt.
 */
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { ApplicationFailure, defaultPayloadConverter, type LoadedDataConverter, type Payload } from '@temporalio/common';
import {
  decodeOptionalFailureToOptionalError,
  encodeErrorToFailure,
  loadDataConverter,
} from '@temporalio/common/lib/internal-non-workflow/index.js';
import { EncryptionCodec, payloadKeysFromEnv, temporalDataConverter } from '../infra/payload-codec.ts';
import { loadSpec } from '../src/spec/index.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';

const file = resolve(process.argv[2] ?? 'pipelines/instruct.yaml');
const rounds = Number(process.argv[3] ?? 2000);
const reg = kindRegistry(await loadStageKinds());
const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable });
if (!res.ok) throw new Error(`${file}: ${JSON.stringify(res.errors)}`);
const values: Record<string, unknown> = {
  'run input': { plan: res.plan, options: { baseDir: dirname(file), actor: 'bench' } },
  "a stage's request": { stage: res.plan.stages[0], baseDir: dirname(file), actor: 'bench', runId: 'bench-run' },
};

const keyed = new EncryptionCodec(payloadKeysFromEnv({ TEMPERED_PAYLOAD_KEY: randomBytes(32).toString('base64') }));
const plain = new EncryptionCodec(payloadKeysFromEnv({}));

async function perPayloadUs(codec: EncryptionCodec, value: unknown): Promise<{ us: number; bytes: number }> {
  let bytes = 0;
  const once = async () => {
    const [out] = await codec.encode([defaultPayloadConverter.toPayload(value)]);
    bytes = out!.data!.length;
    const [back] = await codec.decode([out as Payload]);
    defaultPayloadConverter.fromPayload(back!);
  };
  for (let i = 0; i < 200; i++) await once();
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) await once();
  return { us: ((performance.now() - t0) * 1000) / rounds, bytes };
}

console.log(`payload codec: ${file}, ${rounds} rounds; per payload: convert, encode, decode, convert back`);
for (const [name, value] of Object.entries(values)) {
  // Alternating, twice each, so that a busy machine weighs on both sides alike.
  const off: number[] = [];
  const on: number[] = [];
  let sizes = { clear: 0, encrypted: 0 };
  for (let r = 0; r < 2; r++) {
    const a = await perPayloadUs(plain, value);
    const b = await perPayloadUs(keyed, value);
    off.push(a.us);
    on.push(b.us);
    sizes = { clear: a.bytes, encrypted: b.bytes };
  }
  const f = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  console.log(`  ${name.padEnd(18)} ${sizes.clear} bytes → ${sizes.encrypted} encrypted; without key ${f(off)} µs, with key ${f(on)} µs`);
}

const failure = ApplicationFailure.create({
  type: 'InputError',
  nonRetryable: true,
  message:
    'fields.text: no field "text" (the text column\'s default; set fields.text to read another field) in the only row of bad.jsonl (missing-field 1); the first row (bad.jsonl:1) has fields: "FAILSECRET789rowtext"',
  details: [{ hint: 'set fields.text to the field meant', code: 'missing-field' }],
});

async function perFailureUs(dc: LoadedDataConverter): Promise<number> {
  const once = async () => {
    const back = await decodeOptionalFailureToOptionalError(dc, await encodeErrorToFailure(dc, failure));
    if (back?.message !== failure.message) throw new Error(`the failure read back says ${back?.message}`);
  };
  for (let i = 0; i < 200; i++) await once();
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) await once();
  return ((performance.now() - t0) * 1000) / rounds;
}

const clearDc = loadDataConverter(temporalDataConverter({}));
const keyedDc = loadDataConverter(temporalDataConverter({ TEMPERED_PAYLOAD_KEY: randomBytes(32).toString('base64') }));
const off: number[] = [];
const on: number[] = [];
for (let r = 0; r < 2; r++) {
  off.push(await perFailureUs(clearDc));
  on.push(await perFailureUs(keyedDc));
}
const f = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
console.log(
  `  ${"a stage's failure".padEnd(18)} written and read back; without key ${f(off)} µs, with key (message encrypted) ${f(on)} µs`,
);
