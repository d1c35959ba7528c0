import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { checkBackends } from './backends.ts';

const team = { store: 's3://tempered/team', database: 'postgres:tempered' };
const stray = { store: 'local', database: 'local' };

test("a run of this worker's store and database, or of unknown ones, passes", () => {
  checkBackends(team, { ...team }, 'r1');
  checkBackends(undefined, team, 'r1'); // submitted before runs recorded it
  checkBackends(team, undefined, 'r1'); // a worker built without them
});

test('a run of other ones is refused, naming each setting that differs: retryable for a stage, final for a local activity', () => {
  const refused = (run: typeof team, mine: typeof team, local: boolean, pattern: RegExp) =>
    assert.throws(
      () => checkBackends(run, mine, 'r2', { local }),
      (e: unknown) =>
        e instanceof ApplicationFailure &&
        e.type === 'BackendMismatch' &&
        e.nonRetryable === local &&
        // Logged by the SDK at debug level, not as a warning with its stack (the worker's one line says it).
        e.category === 'BENIGN' &&
        pattern.test(e.message),
    );
  refused(
    team,
    stray,
    false,
    /refused run r2: this worker keeps artifacts in this host's folder \(no TEMPERED_STORE\), the run in s3:\/\/tempered\/team; keeps the registry and audit log in this host's SQLite file \(no TEMPERED_DATABASE_URL\), the run in the database tempered\. Start the worker with .*a schedule's run: delete the schedule and create it again with them\); another worker of the queue takes the next attempt$/,
  );
  // A prefix typo alone: the database is the same, so only the store is named.
  refused(
    team,
    { ...team, store: 's3://tempered/tem' },
    true,
    /this worker keeps artifacts in s3:\/\/tempered\/tem, the run in s3:\/\/tempered\/team\. Start/,
  );
  refused(stray, team, false, /keeps artifacts in s3:\/\/tempered\/team, the run in this host's folder/);
  refused({ ...team, store: 'shared folder' }, team, false, /the run in a shared folder/);
});

test('a worker that lacks a shared setting the run has is told so (it stops); one that differs otherwise is not', () => {
  const told: string[] = [];
  const onLacks = (m: string) => told.push(m);
  const tryIt = (run: typeof team, mine: typeof team) => {
    told.length = 0;
    assert.throws(() => checkBackends(run, mine, 'r3', { onLacks }), ApplicationFailure);
    return told.length;
  };
  assert.equal(tryIt(team, stray), 1); // started without the exports
  assert.equal(tryIt(team, { ...team, database: 'local' }), 1);
  // The run lacks them, or names another bucket: which side is wrong is not known, so the worker keeps serving.
  assert.equal(tryIt(stray, team), 0);
  assert.equal(tryIt(team, { ...team, store: 's3://tempered/tem' }), 0);
});

test('where the names agree and both sides know the instance ids, the ids decide: two of one name are refused; an id never passes another name', () => {
  const ids = { storeId: 'a0000000-0000-4000-8000-000000000001', databaseId: 'b0000000-0000-4000-8000-000000000001' };
  const other = { storeId: 'a0000000-0000-4000-8000-000000000002', databaseId: 'b0000000-0000-4000-8000-000000000002' };
  // A copy under another name (a bucket synced from the team's, a dump restored as tempered_staging) carries the
  // original's ids, and is not the original: the names decide.
  assert.throws(
    () => checkBackends({ ...team, ...ids }, { store: 's3://staging/team', database: 'postgres:tempered_staging', ...ids }, 'r4'),
    /keeps artifacts in s3:\/\/staging\/team, the run in s3:\/\/tempered\/team; keeps the registry and audit log in the database tempered_staging, the run in the database tempered\. Start/,
  );
  // Another cluster's servers with the same bucket and database names.
  assert.throws(
    () => checkBackends({ ...team, ...ids }, { ...team, ...other }, 'r4'),
    (e: unknown) =>
      e instanceof ApplicationFailure &&
      e.type === 'BackendMismatch' &&
      e.message.includes(
        `keeps artifacts in s3://tempered/team, and the run in another store of that name (instance ${ids.storeId} there, ${other.storeId} here, as this worker's instance.json says); ` +
          `keeps the registry and audit log in the database tempered, and the run in another database of that name (instance ${ids.databaseId} there, ${other.databaseId} here, as this worker's tempered_instance row says)`,
      ),
  );
  // Only the database is another one: only it is named.
  assert.throws(
    () => checkBackends({ ...team, ...ids }, { ...team, ...ids, databaseId: other.databaseId }, 'r4'),
    (e: unknown) => e instanceof ApplicationFailure && !/artifacts/.test(e.message) && /another database of that name/.test(e.message),
  );
  // Different names and different ids: said by name, as before ids.
  assert.throws(
    () => checkBackends({ ...team, ...ids }, { ...team, store: 's3://tempered/tem', ...other, databaseId: ids.databaseId }, 'r4'),
    /keeps artifacts in s3:\/\/tempered\/tem, the run in s3:\/\/tempered\/team\. Start/,
  );
  // One side without ids (a run submitted before them, an id that could not be read): names decide.
  checkBackends(team, { ...team, ...other }, 'r4');
  checkBackends({ ...team, ...ids }, team, 'r4');
  assert.throws(() => checkBackends(team, { store: 's3://alias/team', database: 'postgres:tempered', ...ids }, 'r4'), ApplicationFailure);
});

test("two TEMPERED_HOMEs' local stores are told apart by their ids, and the refusal says so; the home's own runs pass", () => {
  // A worker of one home whose dev server went away reconnected to the address, where another home's dev server then
  // answered, and took that home's stages: both stores are 'local' by name (the disk-full journey).
  // A store folder deleted to free space (a full disk) gets a new id from the next submit: the worker reads its own
  // marker again before it refuses (KnownBackendIds, cli/commands/sharing.test.ts), so a refusal is of another home.
  const home = { ...stray, storeId: 'c0000000-0000-4000-8000-000000000001' };
  const otherHome = { ...stray, storeId: 'c0000000-0000-4000-8000-000000000002' };
  checkBackends(home, { ...home }, 'r5');
  const told: string[] = [];
  assert.throws(
    () => checkBackends(home, otherHome, 'r5', { onLacks: (m) => told.push(m) }),
    (e: unknown) =>
      e instanceof ApplicationFailure &&
      e.type === 'BackendMismatch' &&
      e.message.includes(
        `keeps artifacts in this host's folder (no TEMPERED_STORE) under its TEMPERED_HOME, and the run in another one (another TEMPERED_HOME or another host: instance ${home.storeId} there, ${otherHome.storeId} here, as this home's store/instance.json says). Start the worker with the TEMPERED_HOME`,
      ),
  );
  assert.deepEqual(told, [], 'which home is right is not known: the worker keeps serving its own');
});
