/**
 * When a run's status says "no worker has picked this run up yet": not while a worker of its queue polls and the run,
 * just submitted, is being taken (submit --wait's first status read said it on 3 of 6 runs in the cluster journey of
 * 7 Dec), but at once where no worker polls, and once the first task has waited a while where one is listed but takes
 * nothing (a dead worker stays listed for minutes). A real dev server; the listed poller is a real PollWorkflowTaskQueue
 * call, abandoned before the run starts, so that nothing takes its task and the test decides nothing by racing a worker.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { firstTaskWaits, getRunStatus, submitRun, TAKEN_SOON_MS } from '../client/runs.ts';
import { startDevServer, stopProcess, type DevServerHandle } from '../infra/dev-server.ts';
import { plannedPipeline } from './helpers/plans.ts';

let dir: string;
let server: DevServerHandle;
let conn: Connection;
let client: Client;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'first-task-wait-'));
  server = await startDevServer({
    dbFile: join(dir, 'temporal.db'),
    logFile: join(dir, 'server.log'),
    headless: true,
    // One partition, so that the test's one poll is on the partition DescribeTaskQueue lists (a worker polls several).
    dynamicConfig: ['matching.numTaskqueueReadPartitions=1', 'matching.numTaskqueueWritePartitions=1'],
  });
  conn = await Connection.connect({ address: server.address });
  client = new Client({ connection: conn });
});
after(async () => {
  await conn?.close();
  if (server) await stopProcess(server.pid);
  rmSync(dir, { recursive: true, force: true });
});

const submit = (queue: string) =>
  submitRun(
    client,
    {
      plan: plannedPipeline('first-task', [{ id: 'only', uses: 'probe', needs: [], with: { value: 'x' } }]),
      options: { baseDir: dir, actor: 'test', noCache: true },
    },
    { taskQueue: queue },
  );

describe("a run's first workflow task", () => {
  it('where a worker of its queue is listed, waits only once it has been queued a while', async () => {
    const queue = 'first-task-listed';
    // A worker's poll, given up before the run starts: the queue lists a poller that takes nothing.
    const ctl = new AbortController();
    const poll = conn
      .withAbortSignal(ctl.signal, () =>
        conn.withDeadline(Date.now() + 60_000, () =>
          conn.workflowService.pollWorkflowTaskQueue({ namespace: 'default', taskQueue: { name: queue }, identity: 'first-task-test' }),
        ),
      )
      .catch(() => undefined);
    for (let i = 0; ; i++) {
      const listed = await conn.workflowService.describeTaskQueue({ namespace: 'default', taskQueue: { name: queue }, taskQueueType: 1 });
      if (listed.pollers?.length) break;
      assert.ok(i < 100, 'the poll was never listed');
      await sleep(100);
    }
    ctl.abort();
    await poll;
    const startedAt = Date.now();
    const h = await submit(queue);
    try {
      // Read at the moment its first task was queued, and just past TAKEN_SOON_MS after, whatever the machine's load:
      // the 'not yet' half is checked on every run, not only where the status read below comes soon enough.
      const events = (await client.workflow.getHandle(h.workflowId).fetchHistory()).events ?? [];
      const queuedAt = events.filter((e) => e.workflowTaskScheduledEventAttributes).pop()?.eventTime;
      assert.ok(queuedAt?.seconds, 'no first workflow task in the history');
      const at = Number(queuedAt.seconds) * 1000 + Math.floor((queuedAt.nanos ?? 0) / 1e6);
      assert.equal(await firstTaskWaits(client, queue, events, at), false, 'said waiting at once');
      assert.equal(await firstTaskWaits(client, queue, events, at + TAKEN_SOON_MS + 1), true, 'never said it waits');
      const st = await getRunStatus(client, h.workflowId);
      // The same through getRunStatus, where the read came soon enough; later on a loaded machine the run has waited.
      if (Date.now() - startedAt < TAKEN_SOON_MS) assert.equal(st.waitingForWorker, undefined, 'said waiting at once');
      assert.equal(st.state, 'running');
      await sleep(TAKEN_SOON_MS + 200);
      const later = await getRunStatus(client, h.workflowId);
      assert.equal(later.waitingForWorker, queue, 'never said it waits');
      assert.equal(later.stages[0]!.state, 'pending');
    } finally {
      await h.terminate('test done');
    }
  });

  it('where no worker polls its queue, waits at once', async () => {
    const h = await submit('first-task-nobody');
    try {
      assert.equal((await getRunStatus(client, h.workflowId)).waitingForWorker, 'first-task-nobody');
    } finally {
      await h.terminate('test done');
    }
  });
});
