/**
 * A worker takes the pipeline file's folder from whoever submitted the run (src/data/roots.ts dataRoots): on a cluster,
 * without TEMPERED_DATA_ROOTS, it reads local inputs under any folder a submitter names. It says so when it starts, with
 * the setting that confines it; with the setting, it says which folders it reads from instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { dataRootsNote } from '../cli/commands/worker.ts';
import { startCliServer, startCliWorker, stopCliWorker } from './helpers/cli.ts';

test('a worker on a cluster says at start where it reads local inputs from, and how to confine it', async (t) => {
  const { server, home, close } = await startCliServer('worker-roots-note-');
  t.after(close);
  const data = join(home, 'data');
  mkdirSync(data);
  const started = async (name: string, roots: string) => {
    const logFile = join(home, `${name}.log`);
    const w = await startCliWorker(
      ['--queue', `roots-${name}`],
      { TEMPORAL_ADDRESS: server.address, TEMPERED_HOME: join(home, name), TEMPERED_DATA_ROOTS: roots },
      { logFile },
    );
    await stopCliWorker(w);
    return readFileSync(logFile, 'utf8');
  };
  const open = await started('open', '');
  assert.match(
    open,
    /worker: note: TEMPERED_DATA_ROOTS is not set, so this worker reads a pipeline's local inputs under whatever folder the submitter's pipeline file names[^\n]*set TEMPERED_DATA_ROOTS on it/,
  );
  assert.equal(open.match(/TEMPERED_DATA_ROOTS is not set/g)?.length, 1, 'one line');
  const gone = join(home, 'not-mounted');
  const confined = await started('confined', `${data}:${gone}`);
  assert.doesNotMatch(confined, /TEMPERED_DATA_ROOTS is not set/);
  assert.ok(confined.includes(`worker: local inputs are read only under ${data}, ${gone} (TEMPERED_DATA_ROOTS)`), confined);
  assert.ok(confined.includes(`${gone} does not exist on this host, so allows nothing`), confined);
  // One machine (the embedded dev server, no shared store): the pipeline folders are its user's, nothing to say.
  assert.equal(dataRootsNote({ cluster: false }, {}), undefined);
});
