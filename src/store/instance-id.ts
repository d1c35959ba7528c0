/**
 * A shared store's identity: a random id kept in the store itself (`instance.json`), created once by whichever process
 * first asks. Two stores can share a name (`s3://tempered/team` on two clusters' servers, or two shares mounted at the
 * same path), and one store can go by two names (an alias endpoint, a share mounted elsewhere); a run's workers are
 * checked against the store the run was submitted to by this id, not by the name (activities/backends.ts).
 */
import { randomUUID } from 'node:crypto';
import { InputError } from '../errors.ts';
import { readText, type ObjectBackend } from './object-backend.ts';
import { KEY_PREFIXES } from './key-layout.ts';

export const INSTANCE_KEY = KEY_PREFIXES.instance;

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The id in a marker's text; a marker that is not one (hand-edited, truncated, a stray file) is named. */
function parseMarker(text: string, where: string): string {
  let id: unknown;
  try {
    id = (JSON.parse(text) as { instanceId?: unknown } | null)?.instanceId;
  } catch {
    // named below
  }
  if (typeof id !== 'string' || !ID.test(id))
    throw new InputError(`${where} is not a tempered store marker (it should hold {"instanceId": "<uuid>"})`, {
      where,
      hint: `put back {"instanceId": "<id>"} with the id that the workers' start line names ("store … (instance <id>)"); deleted, the next worker or submit writes a new id, and runs and schedules that recorded the old one are refused by workers started after that`,
    });
  return id;
}

/** The store's id, written create-only when it has none, so that concurrent first askers agree on one. */
export async function storeInstanceId(backend: ObjectBackend): Promise<string> {
  const where = `${backend.url.replace(/\/+$/, '')}/${INSTANCE_KEY}`;
  const existing = await readText(backend, INSTANCE_KEY, 4096);
  if (existing !== undefined) return parseMarker(existing, where);
  const mine = randomUUID();
  const body = JSON.stringify({ instanceId: mine, created: new Date().toISOString() });
  if ((await backend.putBytes(INSTANCE_KEY, Buffer.from(body), { ifAbsent: true })) === 'stored') return mine;
  const theirs = await readText(backend, INSTANCE_KEY, 4096);
  if (theirs === undefined) throw new Error(`${where} was reported present, then absent: is something deleting it?`);
  return parseMarker(theirs, where);
}
