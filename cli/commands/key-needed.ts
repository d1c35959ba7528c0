/** How a command that cannot go on without TEMPERED_PAYLOAD_KEY says so (resume, runs --compare, schedule update and delete). */
import type { Client } from '@temporalio/client';
import { orRefused, type KeyNeed } from '../../client/payloads.ts';
import { CliError } from '../errors.ts';

/**
 * `read` through the client; where this process lacks the key, exit 1 before anything is changed, saying what the
 * command needed the key for, which key and variable (the codec's error), and `hint`: what works without the key.
 */
export function readNeedingKey<T>(client: Client, read: (c: Client) => Promise<T>, need: KeyNeed & { hint: string }): Promise<T> {
  return orRefused(client, read, need, (message) => new CliError(`${message}\n  hint: ${need.hint}`));
}
