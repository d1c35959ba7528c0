/**
 * listRuns reads as many runs from Temporal's listing as it shows: a stand-in client counts the
 * executions handed over page by page, as the SDK's list does, with the server's default page (1,000)
 * when none is asked for.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';
import { listRuns } from './runs.ts';

const SERVER_DEFAULT_PAGE = 1000;

function standIn(total: number, pipelineOf: (i: number) => string) {
  const seen = { pages: 0, executions: 0, pageSizes: [] as (number | undefined)[] };
  const client = {
    workflow: {
      list(opts: { query?: string; pageSize?: number }) {
        seen.pageSizes.push(opts.pageSize);
        const page = opts.pageSize ?? SERVER_DEFAULT_PAGE;
        return (async function* () {
          for (let start = 0; start < total; start += page) {
            // A page arrives whole: every execution on it is decoded, shown or not.
            seen.pages++;
            const batch = Array.from({ length: Math.min(page, total - start) }, (_, k) => start + k);
            seen.executions += batch.length;
            for (const i of batch)
              yield {
                workflowId: `run-${i}`,
                runId: `exec-${i}`,
                status: { name: 'COMPLETED' },
                startTime: new Date(1_700_000_000_000 - i * 1000),
                closeTime: new Date(1_700_000_000_000 - i * 1000 + 500),
                memo: { pipeline: pipelineOf(i), actor: 'ann' },
              };
          }
        })();
      },
    },
  };
  return { client: client as unknown as Client, seen };
}

describe('listRuns reads a bounded page', () => {
  it('20 runs of 3,000 read one page of 20, not the server default of 1,000', async () => {
    const { client, seen } = standIn(3000, () => 'p');
    const runs = await listRuns(client, 20);
    assert.equal(runs.length, 20);
    assert.deepEqual(seen.pageSizes, [20]);
    assert.equal(seen.executions, 20);
  });

  it('a pipeline filter (matched in the memo) reads pages of 200 until it has enough', async () => {
    // Every 10th run is of the pipeline asked for: 20 of them are in the first 200.
    const { client, seen } = standIn(3000, (i) => (i % 10 === 0 ? 'nightly-spam' : 'other'));
    const runs = await listRuns(client, 20, { pipeline: 'SPAM' });
    assert.equal(runs.length, 20);
    assert.ok(runs.every((r) => r.pipeline === 'nightly-spam'));
    assert.equal(seen.executions, 200);
  });

  it('the dashboard limit of 500 is one page of 500', async () => {
    const { client, seen } = standIn(3000, () => 'p');
    assert.equal((await listRuns(client, 500)).length, 500);
    assert.deepEqual(seen.pageSizes, [500]);
    assert.equal(seen.pages, 1);
  });
});
