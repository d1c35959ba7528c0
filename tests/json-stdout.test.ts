/**
 * `--json` puts JSON alone on stdout: what else a local worker's stages write there (a plugin's console.log, a
 * library's own output in the stage's child process) goes to stderr. A line there broke every caller that parses the
 * JSON (tests/payload-encryption.test.ts saw the SDK core's log line once, under load: infra/runtime.test.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, startCliServer } from './helpers/cli.ts';

const PLUGIN = `export function stageKinds() {
  return [
    {
      kind: 'chatty',
      description: 'writes to stdout, as a debugging line of its author does',
      codeVersion: 'chatty-1',
      // In a child process of its own, as the built-in kinds that do the work (train, evaluate) run.
      isolation: { module: import.meta.url },
      withSchema: { type: 'object', additionalProperties: false, properties: {} },
      outputs: { n: { type: 'number', description: 'one' } },
      async run() {
        console.log('\\x1b[33mchatty\\x1b[0m: a line on stdout');
        return { n: 1 };
      },
    },
    {
      kind: 'chatty-inline',
      description: 'the same, in the worker itself',
      codeVersion: 'chatty-inline-1',
      withSchema: { type: 'object', additionalProperties: false, properties: {} },
      outputs: { n: { type: 'number', description: 'one' } },
      async run() {
        console.log('\\x1b[33mchatty-inline\\x1b[0m: a line on stdout');
        return { n: 1 };
      },
    },
  ];
}
`;

let cluster: Awaited<ReturnType<typeof startCliServer>>;
before(async () => {
  cluster = await startCliServer('tempered-json-stdout-');
});
after(async () => cluster?.close());

test('submit --wait --local-worker --json prints JSON alone on stdout, what its stages print going to stderr (in a child process or inline)', async () => {
  const plugin = join(cluster.home, 'chatty.mts');
  writeFileSync(plugin, PLUGIN);
  const file = join(cluster.home, 'chatty.yaml');
  writeFileSync(file, 'name: chatty\nstages:\n  talk: { uses: chatty, with: {} }\n  inline: { uses: chatty-inline, with: {} }\n');
  const env = {
    TEMPORAL_ADDRESS: cluster.server.address,
    TEMPERED_HOME: cluster.home,
    TEMPERED_TASK_QUEUE: 'json-stdout',
    TEMPERED_PLUGINS: plugin,
  };
  const r = await runCli(['submit', file, '--wait', '--local-worker', '--json'], env, { timeoutMs: 180_000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal((JSON.parse(r.stdout) as { state: string }).state, 'succeeded', r.stdout);
  assert.match(r.stderr, /chatty\S*: a line on stdout/);
  assert.match(r.stderr, /chatty-inline\S*: a line on stdout/);
});
