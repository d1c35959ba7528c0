/**
 * Payloads read from Temporal's raw protos (a history, a description's pending activities), which the SDK hands over
 * as stored: encrypted where TEMPERED_PAYLOAD_KEY encrypted them (infra/payload-codec.ts). The client's own codecs
 * decode them here first, as the SDK does for results, queries and memos, so the payload converter reads JSON, and a
 * process without the key gets the codec's error saying so instead of `Unknown encoding: binary/encrypted`.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { DefaultEncodedFailureAttributes, Payload, PayloadCodec } from '@temporalio/common';

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

async function decodeWith(codecs: PayloadCodec[], payload: Payload): Promise<Payload> {
  let ps = [payload];
  // Codecs encode in order and so decode in reverse, as the SDK does.
  for (const codec of [...codecs].reverse()) ps = await codec.decode(ps);
  return ps[0]!;
}

function decodeOne(client: Client, payload: Payload): Promise<Payload> {
  return decodeWith(client.options.loadedDataConverter.payloadCodecs, payload);
}

function isPayload(v: unknown): v is Payload {
  if (!v || typeof v !== 'object' || ArrayBuffer.isView(v)) return false;
  const meta = (v as Payload).metadata;
  return !!meta && typeof meta === 'object' && ArrayBuffer.isView(meta.encoding);
}

/**
 * Decodes, in place, every payload inside `root` (a history, an event, a pending activity): found by shape, a
 * metadata map with an `encoding`, which is what makes a Payload and nothing else in Temporal's protos. A failure whose
 * message and stack trace the failure converter moved into its `encodedAttributes` (TEMPERED_PAYLOAD_KEY) gets them
 * back, so that a reader of `message` reads the error, not "Encoded failure"; without the key that payload, like every
 * other, fails with the codec's error naming the variable to set. A clear failure (a run from before) is left as is.
 */
export async function decodePayloadsIn(client: Client, root: unknown): Promise<void> {
  if (!root || typeof root !== 'object') return;
  const holder = root as Record<string, unknown>;
  for (const key of Object.keys(holder)) {
    const v = holder[key];
    if (isPayload(v)) holder[key] = await decodeOne(client, v);
    else if (v && typeof v === 'object' && !ArrayBuffer.isView(v)) await decodePayloadsIn(client, v);
  }
  if (isPayload(holder.encodedAttributes)) openFailure(client, holder);
}

/** A failure's message and stack trace from its decoded `encodedAttributes`, as the SDK's DefaultFailureConverter reads them. */
function openFailure(client: Client, failure: Record<string, unknown>): void {
  const attrs = client.options.loadedDataConverter.payloadConverter.fromPayload<Partial<DefaultEncodedFailureAttributes>>(
    failure.encodedAttributes as Payload,
  );
  if (!attrs || typeof attrs !== 'object') return;
  if (typeof attrs.message === 'string') failure.message = attrs.message;
  if (typeof attrs.stack_trace === 'string') failure.stackTrace = attrs.stack_trace;
}

/** The history of a run (of one execution of it, with `execution`) with its payloads decoded. */
export async function fetchDecodedHistory(client: Client, runId: string, execution?: string): Promise<History> {
  const history = await client.workflow.getHandle(runId, execution).fetchHistory();
  await decodePayloadsIn(client, history);
  return history;
}
