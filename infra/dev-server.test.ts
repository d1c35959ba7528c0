/**
 * Starting the dev server when a port is taken between choosing it and binding it: that start-up is
 * tried again; any other start-up failure is not. The port race is injected by a wrapper around the
 * real Temporal CLI that fails its first start the way the server does (the server's own log line for
 * a taken HTTP API port) and runs the real CLI after that.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { startDevServer, stopProcess, TEMPORAL_CLI_MISSING } from './dev-server.ts';
import { PIPELINE_ATTRIBUTE } from '../client/pipeline-attribute.ts';
import { findTemporalCli } from './temporal-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'tempered-devserver-'));
const realCli = findTemporalCli();
const savedCliPath = process.env.TEMPORAL_CLI_PATH;
after(() => {
  if (savedCliPath === undefined) delete process.env.TEMPORAL_CLI_PATH;
  else process.env.TEMPORAL_CLI_PATH = savedCliPath;
  rmSync(dir, { recursive: true, force: true });
});

/** A CLI wrapper that counts its starts in `starts` and fails the first `failures` of them with `line`. */
function wrapper(name: string, failures: number, line: string): { path: string; starts: () => number } {
  const counter = join(dir, `${name}.starts`);
  const path = join(dir, `${name}.sh`);
  writeFileSync(
    path,
    `#!/bin/sh
echo x >> '${counter}'
if [ "$(wc -l < '${counter}')" -le ${failures} ]; then echo '${line}'; exit 1; fi
exec '${realCli}' "$@"
`,
  );
  chmodSync(path, 0o755);
  return { path, starts: () => (existsSync(counter) ? readFileSync(counter, 'utf8').trim().split('\n').length : 0) };
}

describe('dev server start-up', () => {
  // Only this one reaches the real CLI; the others fail every start in the wrapper itself.
  it(
    'tries a start-up again when a port was taken before the server bound it',
    { skip: realCli ? false : 'the Temporal CLI is not installed' },
    async () => {
      const cli = wrapper(
        'race',
        1,
        'level=ERROR msg="invoke failed" error="failed listening for HTTP API on 127.0.0.1:40000: listen tcp 127.0.0.1:40000: bind: address already in use"',
      );
      process.env.TEMPORAL_CLI_PATH = cli.path;
      const server = await startDevServer({ dbFile: join(dir, 'race.db'), logFile: join(dir, 'race.log'), headless: true });
      try {
        assert.equal(cli.starts(), 2, 'one failed start, then one that came up');
        assert.match(readFileSync(server.logFile, 'utf8'), /address already in use/, 'the retry kept the failed start in the log');
      } finally {
        await stopProcess(server.pid);
      }
    },
  );

  it(
    'registers the pipeline search attribute, and starts again on a database that has it',
    { skip: realCli ? false : 'the Temporal CLI is not installed' },
    async () => {
      delete process.env.TEMPORAL_CLI_PATH;
      const dbFile = join(dir, 'attribute.db');
      for (const start of [1, 2]) {
        const server = await startDevServer({ dbFile, logFile: join(dir, 'attribute.log'), headless: true });
        try {
          const connection = await Connection.connect({ address: server.address });
          try {
            const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
            assert.equal(
              customAttributes?.[PIPELINE_ATTRIBUTE],
              proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
              `start ${start}: ${PIPELINE_ATTRIBUTE} is a Keyword attribute`,
            );
          } finally {
            await connection.close();
          }
        } finally {
          await stopProcess(server.pid);
        }
      }
    },
  );

  it('does not try again when the server fails for another reason, and shows why', async () => {
    const cli = wrapper('broken', 99, 'level=ERROR msg="unable to open database file"');
    process.env.TEMPORAL_CLI_PATH = cli.path;
    await assert.rejects(
      startDevServer({ dbFile: join(dir, 'broken.db'), logFile: join(dir, 'broken.log'), headless: true }),
      /exited during start-up[\s\S]*unable to open database file/,
    );
    assert.equal(cli.starts(), 1);
  });

  it('gives up after a few lost port races', async () => {
    const cli = wrapper('always', 99, 'listen tcp 127.0.0.1:40000: bind: address already in use');
    process.env.TEMPORAL_CLI_PATH = cli.path;
    await assert.rejects(
      startDevServer({ dbFile: join(dir, 'always.db'), logFile: join(dir, 'always.log'), headless: true }),
      /exited during start-up[\s\S]*address already in use/,
    );
    assert.equal(cli.starts(), 4, 'the first start and three more');
  });
});

describe('without the Temporal CLI', () => {
  it('the error names `npx tempered setup`, a command that exists and installs the CLI', () => {
    assert.match(TEMPORAL_CLI_MISSING, /^the Temporal CLI is not installed; run `npx tempered setup` /);
    assert.match(TEMPORAL_CLI_MISSING, /TEMPORAL_CLI_PATH/);
    const help = execFileSync(process.execPath, [fileURLToPath(new URL('../bin/tempered.js', import.meta.url)), 'setup', '--help'], {
      encoding: 'utf8',
    });
    assert.match(help, /^usage: tempered setup\b/);
    assert.match(help, /Installs the pinned Temporal CLI/);
  });
});
