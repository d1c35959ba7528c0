/**
 * A shared store's and a shared database's instance ids against real servers (SeaweedFS, two PostgreSQL servers, a
 * folder): what a run's workers are checked by (activities/backends.ts). One store or database reached under other
 * names has one id; another server's of the same name has another; first askers racing agree on one.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { InputError } from '../src/errors.ts';
import { databaseInstanceId } from '../src/db/instance-id.ts';
import { postgresUnavailable, startPostgres, type TestPostgres } from '../src/db/postgres.testing.ts';
import { FolderBackend } from '../src/store/folder-backend.ts';
import { INSTANCE_KEY, storeInstanceId } from '../src/store/instance-id.ts';
import type { ObjectBackend } from '../src/store/object-backend.ts';
import { S3Backend } from '../src/store/s3-backend.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let s3: TestS3;
useTestS3((h) => (s3 = h));
// The folder stores' folders, removed after the file's tests.
const scratch = mkdtempSync(join(tmpdir(), 'instance-id-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

describe('store instance id', () => {
  for (const [name, pair] of [
    [
      'folder',
      (): [ObjectBackend, ObjectBackend, ObjectBackend] => {
        const dir = mkdtempSync(join(scratch, 'folder-'));
        // The share as another host mounts it: the same folder by another path.
        return [new FolderBackend(dir), new FolderBackend(`${dir}/.`), new FolderBackend(mkdtempSync(join(scratch, 'folder-')))];
      },
    ],
    [
      'SeaweedFS S3',
      (): [ObjectBackend, ObjectBackend, ObjectBackend] => {
        const url = s3.freshUrl();
        // The same server by another endpoint spelling, as a host with its own DNS name for it would reach it.
        const other = new S3Backend(url, {
          env: { ...s3.env, AWS_ENDPOINT_URL: s3.env.AWS_ENDPOINT_URL!.replace('127.0.0.1', 'localhost') },
        });
        return [s3.backend(url), other, s3.backend()];
      },
    ],
  ] as const)
    it(`${name}: one store by either name has one id, written once by racing first askers; another store has another`, async () => {
      const [store, sameByOtherName, another] = pair();
      const first = await Promise.all([1, 2, 3, 4, 5].map((i) => storeInstanceId(i % 2 ? store : sameByOtherName)));
      assert.match(first[0]!, UUID);
      assert.deepEqual(new Set(first), new Set([first[0]]), 'every racing asker got the one id');
      assert.equal(await storeInstanceId(sameByOtherName), first[0]);
      const theirs = await storeInstanceId(another);
      assert.match(theirs, UUID);
      assert.notEqual(theirs, first[0]);
    });

  it('a marker that is not one is an input error naming it, not an id', async () => {
    for (const text of ['not json', '{"instanceId": "x"}', '{"instanceId": 7}', 'null']) {
      const b = s3.backend();
      await b.putBytes(INSTANCE_KEY, Buffer.from(text), { ifAbsent: false });
      await assert.rejects(
        storeInstanceId(b),
        (e: unknown) =>
          e instanceof InputError &&
          e.message.includes(`${b.url}/instance.json is not a tempered store marker`) &&
          /put back \{"instanceId": "<id>"\} with the id that the workers' start line names/.test(e.hint ?? ''),
        text,
      );
    }
  });
});

describe('database instance id', { skip: postgresUnavailable() }, () => {
  let one: TestPostgres, two: TestPostgres;
  before(async () => {
    [one, two] = await Promise.all([startPostgres(), startPostgres()]);
    // A database of one name on each server, as two teams' clusters would have.
    for (const server of [one, two]) {
      const c = new pg.Client({ connectionString: server.url('postgres') });
      await c.connect();
      await c.query('CREATE DATABASE tempered_team');
      await c.end();
    }
  });
  after(async () => {
    await Promise.all([one?.stop(), two?.stop()]);
  });

  it('one database by another URL has one id, agreed by racing first askers; a same-named one on another server has another', async () => {
    const url = one.url('tempered_team');
    const byOtherHost = url.replace('127.0.0.1', 'localhost');
    assert.notEqual(byOtherHost, url);
    const first = await Promise.all([1, 2, 3, 4].map((i) => databaseInstanceId(i % 2 ? url : byOtherHost)));
    assert.match(first[0]!, UUID);
    assert.deepEqual(new Set(first), new Set([first[0]]));
    const elsewhere = await databaseInstanceId(two.url('tempered_team'));
    assert.match(elsewhere, UUID);
    assert.notEqual(elsewhere, first[0]);
    assert.equal(await databaseInstanceId(url), first[0], 'kept');
  });
});
