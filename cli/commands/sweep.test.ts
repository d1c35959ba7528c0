/**
 * `submit --sweep` checks every trial's local data files before it submits any: a swept parameter can name another
 * file (`--param data=a.jsonl --param data=b.jsonl`), and only the first trial's were checked. No Temporal is reached
 * (TEMPORAL_ADDRESS names a closed port): the checks come before the client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../tests/helpers/cli.ts';

test("submit --sweep warns of a trial's source file that is not there, not only the first trial's", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-sweep-sources-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'p.yaml');
  writeFileSync(
    file,
    'name: sw\nparams:\n  data:\n    type: string\n    default: a.jsonl\nstages:\n  ingest:\n    uses: ingest\n    with:\n      path: ${{ params.data }}\n      task: classification\n',
  );
  writeFileSync(join(dir, 'a.jsonl'), '{"text":"a","label":"x"}\n');
  const r = await runCli(['submit', file, '--sweep', '--param', 'data=a.jsonl', '--param', 'data=b.jsonl'], {
    TEMPERED_HOME: join(dir, 'home'),
    TEMPORAL_ADDRESS: '127.0.0.1:1',
  });
  // On a cluster a worker may see the path, so it is a warning there (the embedded server's runs are refused).
  assert.match(r.stderr, /run 2 of 2 \(data=b\.jsonl\):\nwarning: stages\.ingest\.with\.path: .*b\.jsonl/, r.stderr);
  assert.doesNotMatch(r.stderr, /a\.jsonl/, r.stderr);
});
