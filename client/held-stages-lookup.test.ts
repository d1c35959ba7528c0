/**
 * stagesRunningOn (what a waiting stage's status says it waits behind: the dashboard's run page and `status`
 * ask for it every second or so) looks through every running run for up to 3 s. A lookup cut short there was
 * not kept, so every later status waited the 3 s again; now its answer shows at once while the next lookup runs,
 * and what that lookup finds shows as soon as it ends. Temporal's client is a stand-in (listing, describe and
 * history of two running runs, one of which answers only when the test lets it); the lookup is the real one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';
import { stagesRunningOn } from './runs.ts';

test('a lookup cut short at its time limit is shown again at once while the next one runs, whose answer then shows', async (t) => {
  // A real client's connection keeps the process up while a call waits; the lookup's deadline (AbortSignal.timeout) does not.
  const connection = setInterval(() => undefined, 1_000);
  t.after(() => clearInterval(connection));
  let signal: AbortSignal | undefined;
  let listings = 0;
  // Run b (the newer) does not answer until the test lets it: the first lookup runs out of time without it.
  let letBAnswer!: () => void;
  const bAnswers = new Promise<void>((r) => (letBAnswer = r));
  const aborted = (s: AbortSignal) => new Promise<void>((r) => s.addEventListener('abort', () => r(), { once: true }));
  const holding = (started: number) => ({
    raw: { pendingActivities: [{ activityId: 'stage-train', state: 2, lastStartedTime: { seconds: started } }] },
  });
  const client = {
    withAbortSignal: async <R>(s: AbortSignal, fn: () => Promise<R>) => ((signal = s), fn()),
    workflow: {
      list: async function* () {
        listings++;
        yield { workflowId: 'a', runId: 'exec-a', startTime: new Date(1_000) };
        yield { workflowId: 'b', runId: 'exec-b', startTime: new Date(2_000) };
      },
      getHandle: (id: string) => ({
        describe: async () => {
          if (id === 'a') return holding(1);
          const s = signal!;
          await Promise.race([bAnswers, aborted(s).then(() => Promise.reject(new Error('deadline exceeded')))]);
          return holding(2);
        },
        fetchHistory: async () => ({
          events: [{ activityTaskScheduledEventAttributes: { activityId: 'stage-train', taskQueue: { name: 'gpu' } } }],
        }),
      }),
    },
  } as unknown as Client;
  const gpu = new Set(['gpu']);
  const held = async () => (await stagesRunningOn(client, gpu))?.get('gpu')?.map((h) => h.runId);

  // The first status waits out the lookup's time and shows what it found by then.
  assert.deepEqual(await held(), ['a']);
  assert.equal(listings, 1);
  const firstDeadline = signal!;
  assert.ok(firstDeadline.aborted);

  // The next one shows that answer before the lookup it starts runs out of time (before, it waited for it).
  const next = held();
  assert.equal(listings, 2, 'a new lookup runs');
  const second = signal!;
  assert.notEqual(second, firstDeadline);
  const first = await Promise.race([next, aborted(second).then(() => 'waited out the new lookup' as const)]);
  assert.deepEqual(first, ['a']);
  // Statuses meanwhile start no other lookup.
  assert.deepEqual(await held(), ['a']);
  assert.equal(listings, 2);

  // Once b answers, that lookup ends complete, and the next status shows b too.
  letBAnswer();
  let now: string[] | undefined;
  for (let i = 0; i < 200 && now?.length !== 2; i++) {
    await new Promise((r) => setTimeout(r, 10));
    now = await held();
  }
  assert.deepEqual(now, ['a', 'b']);
  assert.equal(listings, 2, 'a complete answer serves again without a new lookup');
  assert.ok(!second.aborted);
});
