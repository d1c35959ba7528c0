/**
 * The Runs page's filters with the run ids `--run-id` allows (any text: a quote, a backslash, LIKE's wildcards) and
 * hostile values, against a real dev server's list query (no worker: the runs wait, listed as running). A run id prefix
 * is the query's text escaped, never cut or spliced in; a start time Temporal cannot read, or a value given twice, is
 * an InputError naming the field (a 400 on the page), not a 500.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { listRuns, submitRun, type RunFilters, type RunSummary } from '../client/runs.ts';
import { createSchedule, triggerSchedule } from '../client/schedules.ts';
import { InputError } from '../src/errors.ts';
import { plannedPipeline } from '../tests/helpers/plans.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from '../tests/helpers/temporal-env.ts';
import { listRunPage, type RunPageQuery } from './run-list.ts';

const IDS = ["o'brien-1", 'obrien-1', 'q\\x-1', '50%off-1', '50Xoff-1', 'ünï-1', 'x OR y-1'];
let env: TestEnv;
let mark: Date;

before(async () => {
  env = await startTestEnv(new Map());
  mark = new Date(Date.now() - 1000);
  for (const runId of IDS) {
    const plan = plannedPipeline('p', [{ id: 'a', uses: 'probe', needs: [], with: { value: '1' } }]);
    await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'ann' } }, { taskQueue: TEST_QUEUE, runId });
  }
  // Visibility lists a run a moment after it starts.
  for (let n = 0; n < IDS.length; await new Promise((r) => setTimeout(r, 200))) n = (await listRuns(env.client, 100)).length;
});
after(async () => env?.close());

/** Waits until visibility lists `n` runs for `filters` (and `ready` holds of them): it lists a run a moment after it starts or ends. */
async function listed(n: number, filters: RunFilters, ready: (rs: RunSummary[]) => boolean = () => true) {
  for (;;) {
    const rs = await listRuns(env.client, 100, filters);
    if (rs.length === n && ready(rs)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const ids = async (q: RunPageQuery, limit = 50) => (await listRunPage(env.client, limit, q)).runs.map((r) => r.runId).sort();
const refused = async (q: Record<string, unknown>, where: string, message: RegExp) =>
  assert.rejects(listRunPage(env.client, 50, q as RunPageQuery), (e: Error) => {
    assert.ok(e instanceof InputError, `${JSON.stringify(q)}: ${e.stack}`);
    assert.equal(e.where, where);
    assert.match(e.message, message);
    return true;
  });

describe('run id prefix', () => {
  it('matches an id holding a quote, and only it', async () => {
    assert.deepEqual(await ids({ id: "o'brien" }), ["o'brien-1"]);
    assert.deepEqual(await ids({ id: 'obrien' }), ['obrien-1']);
  });

  it('cannot widen the query', async () => {
    assert.deepEqual(await ids({ id: "x' OR WorkflowId != '" }), []);
    assert.deepEqual(await ids({ id: "' OR '1'='1" }), []);
    assert.deepEqual(await ids({ id: 'x OR y' }), ['x OR y-1']);
  });

  it("takes LIKE's wildcards and any letter as themselves", async () => {
    assert.deepEqual(await ids({ id: '50%' }), ['50%off-1']);
    assert.deepEqual(await ids({ id: '%' }), []);
    assert.deepEqual(await ids({ id: 'ün' }), ['ünï-1']);
  });

  it('says a backslash cannot be matched instead of listing none', async () => {
    await refused({ id: 'q\\' }, 'id', /backslash/);
  });
});

describe('start time', () => {
  it('filters through listRuns', async () => {
    assert.equal((await listRuns(env.client, 50, { since: mark })).length, IDS.length);
    assert.deepEqual(await listRuns(env.client, 50, { since: new Date(Date.now() + 3_600_000) }), []);
    assert.deepEqual(
      (await listRuns(env.client, 50, { since: mark, id: 'obr' })).map((r) => r.runId),
      ['obrien-1'],
    );
  });

  it('names one Temporal cannot read', async () => {
    await refused({ since: '99999999999d' }, 'since', /between the years 1 and 9999/);
    await refused({ since: '+275760-09-13T00:00:00Z' }, 'since', /between the years 1 and 9999/);
    await refused({ since: '-001000-01-01T00:00:00Z' }, 'since', /between the years 1 and 9999/);
  });
});

describe('a page', () => {
  it('says whether more match at exactly its length, one past it, and with none', async () => {
    assert.deepEqual(await listRunPage(env.client, IDS.length).then((p) => [p.runs.length, p.more]), [IDS.length, false]);
    assert.deepEqual(await listRunPage(env.client, IDS.length - 1).then((p) => [p.runs.length, p.more]), [IDS.length - 1, true]);
    assert.deepEqual(await listRunPage(env.client, 50, { id: 'none-such' }), { runs: [], more: false });
  });

  it('refuses a value given twice, naming it', async () => {
    await refused({ id: ['a', 'b'] }, 'id', /given 2 times/);
    await refused({ status: ['Running', 'Failed'] }, 'status', /given 2 times/);
  });
});

// Last: their runs are listed beside the ones above.
describe('schedule', () => {
  it("matches a schedule name holding a quote as typed, not another schedule's runs", async () => {
    const ran: Record<string, string> = {};
    for (const scheduleId of ["night'ly", 'nightly']) {
      const plan = plannedPipeline('p', [{ id: 'a', uses: 'probe', needs: [], with: { value: '1' } }]);
      const h = await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'ann', scheduleId } }, { taskQueue: TEST_QUEUE });
      ran[scheduleId] = h.workflowId;
    }
    await listed(2, { id: 'night' });
    assert.deepEqual(
      (await listRuns(env.client, 50, { schedule: "night'ly" })).map((r) => r.runId),
      [ran["night'ly"]],
    );
    assert.deepEqual(
      (await listRuns(env.client, 50, { schedule: 'nightly' })).map((r) => r.runId),
      [ran.nightly],
    );
    await refused({ schedule: 'a\\b' }, 'schedule', /schedule name holding a backslash/);
  });
});

describe('order', () => {
  it('is newest started first however long the page, not the order Temporal lists ended runs in', async () => {
    // Two long runs, then a short one started after them that ends first, then one still running: Temporal lists the
    // running one, then the long ones (they ended last), then the short one.
    const start = async (runId: string) => {
      const plan = plannedPipeline('p', [{ id: 'a', uses: 'probe', needs: [], with: { value: '1' } }]);
      await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'ann' } }, { taskQueue: TEST_QUEUE, runId });
      await new Promise((r) => setTimeout(r, 5)); // start times apart
    };
    const end = (runId: string) => env.client.workflow.getHandle(runId).terminate('ended by the test');
    await start('order-long-1');
    await start('order-long-2');
    await start('order-short');
    await end('order-short');
    await end('order-long-1');
    await end('order-long-2');
    await start('order-running');
    await listed(4, { id: 'order-' }, (rs) => rs.filter((r) => r.status !== 'RUNNING').length === 3);
    const newestFirst = ['order-running', 'order-short', 'order-long-2', 'order-long-1'];
    for (let limit = 1; limit <= 4; limit++) {
      const page = await listRunPage(env.client, limit, { id: 'order-' });
      assert.deepEqual(
        page.runs.map((r) => r.runId),
        newestFirst.slice(0, limit),
        `a page of ${limit}`,
      );
      assert.equal(page.more, limit < 4);
    }
  });
});

describe("a schedule's run", () => {
  it("lists the schedule's --param values by name, a secret one hidden, as a submitted run's", async () => {
    const plan = plannedPipeline('p', [{ id: 'a', uses: 'probe', needs: [], with: { value: '1' } }]);
    await createSchedule(env.client, {
      name: 'with-params',
      taskQueue: TEST_QUEUE,
      input: { plan, options: { baseDir: env.dir, actor: 'ann', scheduleId: 'with-params' } },
      spec: {
        pipeline: 'p',
        specHash: plan.specHash,
        specUri: 'artifact://sha256/none',
        file: '/p.yaml',
        params: ['lr=0.02', 'api_token=tok-SECRET-1'],
      },
      timing: { cron: '0 3 1 1 *', overlap: 'allow-all' },
    });
    await triggerSchedule(env.client, 'with-params');
    await listed(1, { schedule: 'with-params' });
    const [run] = await listRuns(env.client, 5, { schedule: 'with-params' });
    assert.deepEqual(run?.params, { lr: '0.02', api_token: 'REDACTED' });
  });
});
