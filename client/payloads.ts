/**
 * Payloads read from Temporal's raw protos (a history, a description's pending activities), which the SDK hands over
 * as stored: encrypted where TEMPERED_PAYLOAD_KEY encrypted them (infra/payload-codec.ts). The client's own codecs
 * decode them here first, as the SDK does for results, queries and memos, so the payload converter reads JSON, and a
 * process without the key gets the codec's error saying so instead of `Unknown encoding: binary/encrypted`.
 */
import { Client, type WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter, type DefaultEncodedFailureAttributes, type Payload, type PayloadCodec } from '@temporalio/common';
import { PayloadKeyError } from '../infra/payload-codec.ts';

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
  // Read through listingClient without the key: the stand-in "Encoded failure" would read as the error itself.
  if (unreadableReason(attrs) !== undefined) {
    failure.message = ENCRYPTED_FIELD;
    failure.stackTrace = '';
    return;
  }
  if (typeof attrs.message === 'string') failure.message = attrs.message;
  if (typeof attrs.stack_trace === 'string') failure.stackTrace = attrs.stack_trace;
}

/** The history of a run (of one execution of it, with `execution`) with its payloads decoded. */
export async function fetchDecodedHistory(client: Client, runId: string, execution?: string): Promise<History> {
  const history = await client.workflow.getHandle(runId, execution).fetchHistory();
  await decodePayloadsIn(client, history);
  return history;
}

/**
 * What a reader without the key is shown for a field it cannot decrypt (a memo field, a stage's result or error): the
 * command says once, beside it, which key and which variable (unreadableReason).
 */
export const ENCRYPTED_FIELD = '(encrypted)';

/**
 * Decodes `root`'s payloads as decodePayloadsIn does; where this process lacks a key for some of them, decodes it
 * through listingClient instead, each such payload marked and each such failure message ENCRYPTED_FIELD: returns the
 * codec's error (which key, which variable) then, undefined when everything was read. What Temporal keeps in clear
 * (event types, times, activity ids, attempts, task queues) reads either way, from the one copy already fetched.
 */
export async function decodeOrMark(client: Client, root: unknown): Promise<string | undefined> {
  try {
    await decodePayloadsIn(client, root);
    return undefined;
  } catch (e) {
    if (!(e instanceof PayloadKeyError)) throw e;
    // Payloads decoded before the one that failed pass through the codec again unchanged: they are no longer encrypted.
    await decodePayloadsIn(listingClient(client), root);
    return e.message;
  }
}

/** The history of a run as fetchDecodedHistory gives it; without the key, its encrypted payloads marked (decodeOrMark). */
export async function fetchHistoryOrMarked(
  client: Client,
  runId: string,
  execution?: string,
): Promise<{ history: History; encrypted?: string }> {
  const history = await client.workflow.getHandle(runId, execution).fetchHistory();
  const encrypted = await decodeOrMark(client, history);
  return { history, ...(encrypted ? { encrypted } : {}) };
}

/**
 * `read` through the client; where a payload it reads cannot be decrypted here (PayloadKeyError), `instead` with the
 * codec's error (which key, which variable), or by default `read` again through listingClient, which marks such a
 * payload (unreadableReason) instead of failing: for a reader of what Temporal keeps in clear. With the key that is one
 * read, as before, through the caller's client. Every keyless fallback of a read (a run's status, a schedule's
 * description, a schedule's run's) goes through here.
 */
export async function orMarked<T>(
  client: Client,
  read: (c: Client) => Promise<T>,
  instead: (why: string) => Promise<T> = () => read(listingClient(client)),
): Promise<T> {
  try {
    return await read(client);
  } catch (e) {
    if (!(e instanceof PayloadKeyError)) throw e;
    return instead(e.message);
  }
}

/** What a change that cannot be made without the key (KeyNeed) is, whose payloads it needs, and why it needs them. */
export interface KeyNeed {
  /** The change, as its command or button names it: `resume run X`, `schedule update 'nightly'`. */
  what: string;
  /** Whose payloads: `the run`, `the schedule`. */
  whose: string;
  /** Why nothing short of the payloads will do: what it writes back, or keeps, of them. */
  because: string;
}

/** The refusal of a change that needs the key, naming it, why it needs the key, and the codec's error `why` (which key id, which variable). */
export function keyNeededMessage(need: KeyNeed, why: string): string {
  return `${need.what} needs the key ${need.whose} was encrypted with: ${need.because}; ${why}`;
}

/**
 * `read` through the client, for a change that cannot go on without what it reads (resume submits a run's input
 * again; schedule update writes the definition back): where this process lacks the key, `refuse` of keyNeededMessage
 * is thrown (the caller's error type: a CLI error, an HTTP answer) before anything is changed, instead of the codec's
 * bare error, which says what to set but not what it was needed for. orMarked, whose fallback is the refusal: every
 * change that needs the key says so this way.
 */
export function orRefused<T>(
  client: Client,
  read: (c: Client) => Promise<T>,
  need: KeyNeed,
  refuse: (message: string) => Error,
): Promise<T> {
  return orMarked(client, read, (why) => Promise.reject(refuse(keyNeededMessage(need, why))));
}

/** Why the description's memo is not there: the codec's error, where listingClient marked a field of it; else undefined. */
export function memoEncrypted(desc: { memo?: Record<string, unknown> }): string | undefined {
  return Object.values(desc.memo ?? {})
    .map(unreadableReason)
    .find((r) => r !== undefined);
}

/** The field a payload this process cannot decrypt reads as, in a listing: the codec's error (which key, which variable). */
const UNREADABLE = 'tempered:unreadable';

/** Why `value`, read through listingClient, is not there: the codec's error; undefined for a value that was read. */
export function unreadableReason(value: unknown): string | undefined {
  const reason = value && typeof value === 'object' ? (value as Record<string, unknown>)[UNREADABLE] : undefined;
  return typeof reason === 'string' ? reason : undefined;
}

/** The client's codecs, but a payload they cannot decrypt decodes to `{ [UNREADABLE]: why }` instead of failing. */
class UnreadableMarked implements PayloadCodec {
  constructor(private readonly codecs: PayloadCodec[]) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    for (const codec of this.codecs) payloads = await codec.encode(payloads);
    return payloads;
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.all(
      payloads.map(async (p) => {
        try {
          return await decodeWith(this.codecs, p);
        } catch (e) {
          if (!(e instanceof PayloadKeyError)) throw e;
          return defaultPayloadConverter.toPayload({ [UNREADABLE]: e.message });
        }
      }),
    );
  }
}

const listingClients = new WeakMap<Client, Client>();

/**
 * A client on `client`'s connection for listing runs: a run's memo is encrypted where TEMPERED_PAYLOAD_KEY was set,
 * and the SDK decodes every listed run's memo, so one this process has no key for failed the whole listing. Through
 * this one such a memo's fields read as `unreadableReason` values; what Temporal keeps in clear (ids, status, times,
 * search attributes) reads as ever.
 */
export function listingClient(client: Client): Client {
  let lister = listingClients.get(client);
  if (!lister) {
    lister = new Client({
      connection: client.connection,
      namespace: client.options.namespace,
      identity: client.options.identity,
      // A listing converts memos and search attributes only: tempered's payload converter is the default one.
      dataConverter: { payloadCodecs: [new UnreadableMarked(client.options.loadedDataConverter.payloadCodecs)] },
    });
    listingClients.set(client, lister);
  }
  return lister;
}
