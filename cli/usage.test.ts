/** What a bare command word says: the usage as a usage error (stderr, exit 2), or as output when asked for (--help). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../tests/helpers/cli.ts';

test('a command without its subcommand is a usage error on stderr (exit 2), stdout empty; --help is output (exit 0)', async () => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-usage-'));
  // Nothing listens there: a command that got as far as connecting would fail with exit 1.
  const env = { TEMPERED_HOME: home, TEMPORAL_ADDRESS: '127.0.0.1:9' };
  try {
    const cases: [string[], RegExp][] = [
      [[], /^usage: tempered <command>/],
      [['schedule'], /^usage:\n  tempered schedule create/],
      [
        ['models'],
        /^tempered: models takes a command: list, show, pull, diff, promote, rollback, history or reproduce\nusage: tempered models list/,
      ],
      // With TEMPORAL_ADDRESS set it said tempered manages no server there, as if a start had been asked for.
      [['server'], /^tempered: server takes a command: start, stop or status\nusage: tempered server/],
    ];
    for (const [args, stderr] of cases) {
      const r = await runCli(args, env);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, '', args.join(' '));
      assert.match(r.stderr, stderr);
    }
    for (const args of [['--help'], ['schedule', '--help']]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /usage:/);
      assert.equal(r.stderr, '');
    }
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
