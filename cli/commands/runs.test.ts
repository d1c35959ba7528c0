/** `tempered runs` refuses what it cannot list by, before it connects: no server is started here. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../tests/helpers/cli.ts';
import { runWaitingNote } from './runs.ts';

test('runs --limit takes a whole number from 1, and runs takes no run id: anything else is a usage error (exit 2), not "no runs yet"', async () => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-runs-usage-'));
  // Nothing listens there: a command that got as far as connecting would fail with exit 1, not 2.
  const env = { TEMPERED_HOME: home, TEMPORAL_ADDRESS: '127.0.0.1:9' };
  try {
    for (const limit of ['x', '0', '2.5', '']) {
      const r = await runCli(['runs', '--limit', limit], env);
      assert.equal(r.code, 2, `--limit '${limit}': ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        new RegExp(
          `^tempered: --limit takes how many runs to list, a whole number from 1, not '${limit.replace('.', '\\.')}'\\nusage: tempered runs`,
        ),
      );
    }
    const compared = await runCli(['runs', '--compare', 'a', 'b', '--limit', '3'], env);
    assert.equal(compared.code, 2, compared.stdout + compared.stderr);
    assert.match(compared.stderr, /^tempered: runs --compare takes no --limit: it compares the runs named\n/);
    const id = await runCli(['runs', 'some-run-id'], env);
    assert.equal(id.code, 2, id.stdout + id.stderr);
    assert.match(id.stderr, /^tempered: runs takes no run id \(`tempered status some-run-id` shows one run\)/);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

// submit --wait on the dev server read its first status before its own worker polled, and told the user to start a
// worker (`tempered worker --queue tempered`) that the command itself runs.
test("a run no worker has picked up says how to start one, unless this process's own worker serves its queue", () => {
  assert.equal(
    runWaitingNote('tempered'),
    "  waiting: no worker has picked this run up yet; it starts when a worker serving task queue 'tempered' runs (`tempered worker --queue tempered`)",
  );
  assert.equal(runWaitingNote('tempered', 'tempered'), undefined);
  assert.match(runWaitingNote('gpu', 'tempered') ?? '', /`tempered worker --queue gpu`/);
  assert.equal(runWaitingNote(''), undefined);
});
