/**
 * decodePayloadsIn on a failure as a worker with TEMPERED_PAYLOAD_KEY writes it (the real failure converter of
 * infra/failure-converter.cjs and the real codec), where a description's pending activity holds it as `lastFailure`:
 * the message comes back with the key, a clear failure stays as it is, and without the key the codec's error names the
 * variable. The end-to-end reads (history, status, logs) are in tests/payload-encryption.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { encodeErrorToFailure, loadDataConverter } from '@temporalio/common/lib/internal-non-workflow/index.js';
import { temporalDataConverter } from '../infra/payload-codec.ts';
import { decodePayloadsIn } from './payloads.ts';

const KEY = randomBytes(32).toString('base64');
const MESSAGE = 'no field "text" in the only row; the first row has fields: "SECRET-in-a-row"';

/** A pending activity as DescribeWorkflowExecution gives it, its last attempt failed by a worker with `env`'s key. */
async function pendingFailedBy(env: NodeJS.ProcessEnv): Promise<{ activityId: string; lastFailure: { message?: string | null } }> {
  const failure = await encodeErrorToFailure(
    loadDataConverter(temporalDataConverter(env)),
    ApplicationFailure.create({ message: MESSAGE, type: 'InputError' }),
  );
  return { activityId: 'stage-ingest', lastFailure: failure };
}

// A lazy connection: nothing here reaches a server.
const reader = (env: NodeJS.ProcessEnv) => new Client({ dataConverter: temporalDataConverter(env) });

test("a pending activity's encoded last failure reads back with the key; a clear one as it is; without the key, which variable", async () => {
  const encoded = await pendingFailedBy({ TEMPERED_PAYLOAD_KEY: KEY });
  assert.equal(encoded.lastFailure.message, 'Encoded failure');
  assert.doesNotMatch(JSON.stringify(encoded), /SECRET-in-a-row/);
  await decodePayloadsIn(reader({ TEMPERED_PAYLOAD_KEY: KEY }), [encoded]);
  assert.equal(encoded.lastFailure.message, MESSAGE);

  const clear = await pendingFailedBy({});
  await decodePayloadsIn(reader({ TEMPERED_PAYLOAD_KEY: KEY }), [clear]);
  assert.equal(clear.lastFailure.message, MESSAGE);

  await assert.rejects(
    decodePayloadsIn(reader({}), [await pendingFailedBy({ TEMPERED_PAYLOAD_KEY: KEY })]),
    /encrypted \(key id [0-9a-f]{16}\) and this process has no key: set TEMPERED_PAYLOAD_KEY/,
  );
});
