/**
 * Payloads read from Temporal's raw protos (a history, a description's pending activities), which the SDK hands over
 * as stored: encrypted where TEMPERED_PAYLOAD_KEY encrypted them (infra/payload-codec.ts). The client's own codecs
 * decode them here first, as the SDK does for results, queries and memos, so the payload converter reads JSON, and a
 * process without the key gets the codec's error saying so instead of `Unknown encoding: binary/encrypted`.
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Payload } from '@temporalio/common';

type History = Awaited<ReturnType<WorkflowHandle['fetchHistory']>>;

async function decodeOne(client: Client, payload: Payload): Promise<Payload> {
  let ps = [payload];
  // Codecs encode in order and so decode in reverse, as the SDK does.
  for (const codec of [...client.options.loadedDataConverter.payloadCodecs].reverse()) ps = await codec.decode(ps);
  return ps[0]!;
}

function isPayload(v: unknown): v is Payload {
  if (!v || typeof v !== 'object' || ArrayBuffer.isView(v)) return false;
  const meta = (v as Payload).metadata;
  return !!meta && typeof meta === 'object' && ArrayBuffer.isView(meta.encoding);
}

/**
 * Decodes, in place, every payload inside `root` (a history, an event, a pending activity): found by shape, a
 * metadata map with an `encoding`, which is what makes a Payload and nothing else in Temporal's protos.
 */
export async function decodePayloadsIn(client: Client, root: unknown): Promise<void> {
  if (client.options.loadedDataConverter.payloadCodecs.length === 0 || !root || typeof root !== 'object') return;
  const holder = root as Record<string, unknown>;
  for (const key of Object.keys(holder)) {
    const v = holder[key];
    if (isPayload(v)) holder[key] = await decodeOne(client, v);
    else if (v && typeof v === 'object' && !ArrayBuffer.isView(v)) await decodePayloadsIn(client, v);
  }
}

/** The history of a run (of one execution of it, with `execution`) with its payloads decoded. */
export async function fetchDecodedHistory(client: Client, runId: string, execution?: string): Promise<History> {
  const history = await client.workflow.getHandle(runId, execution).fetchHistory();
  await decodePayloadsIn(client, history);
  return history;
}

/** The value of one payload taken from a raw proto: decoded by the client's codecs, then converted. */
export async function payloadValue<T>(client: Client, payload: Payload | null | undefined): Promise<T | undefined> {
  if (!payload) return undefined;
  return client.options.loadedDataConverter.payloadConverter.fromPayload<T>(await decodeOne(client, payload));
}
