/**
 * The example plugin of docs/plugins.md, pipelines/plugins/text-filter.ts, as a user runs it: through
 * TEMPERED_PLUGINS, the real CLI and a real dev server. validate checks its `with` (its own check
 * included); a run puts its table between dedupe and split; a kind that breaks its declared outputs
 * fails once, not retried and not cached; an edit of the module misses the cache.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli, startCliServer } from './helpers/cli.ts';

const PLUGIN = fileURLToPath(new URL('../pipelines/plugins/text-filter.ts', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../pipelines/plugins/sms-spam-filtered.yaml', import.meta.url));
let cluster: Awaited<ReturnType<typeof startCliServer>>;
let home: string;
let env: Record<string, string>;

before(async () => {
  cluster = await startCliServer('tempered-plugin-');
  home = cluster.home;
  env = {
    TEMPORAL_ADDRESS: cluster.server.address,
    TEMPERED_HOME: home,
    TEMPERED_TASK_QUEUE: 'plugin-test',
    TEMPERED_ACTOR: 'plugin-author',
    TEMPERED_PLUGINS: PLUGIN,
  };
});
after(async () => cluster?.close());

/** ingest → dedupe → filter → split over `rows` written to data.jsonl. */
function pipeline(name: string, filter: string): string {
  const file = join(home, `${name}.yaml`);
  writeFileSync(
    file,
    [
      `name: ${name}`,
      'stages:',
      '  ingest: { uses: ingest, with: { path: data.jsonl, task: classification } }',
      '  dedupe: { uses: dedupe, needs: ingest, with: { table: "${{ stages.ingest.outputs.table }}" } }',
      `  filter: { uses: ${filter}, needs: dedupe, retry: { maximumAttempts: 3, initialInterval: 100ms }, with: { table: "\${{ stages.dedupe.outputs.table }}", minChars: 12, dropPattern: "^call " } }`,
      '  split: { uses: split, needs: filter, with: { table: "${{ stages.filter.outputs.table }}", ratios: { train: 0.5, test: 0.5 }, seed: 1 } }',
      '',
    ].join('\n'),
  );
  return file;
}

type Status = {
  state: string;
  stages: {
    id: string;
    state: string;
    attempt?: number;
    outputs?: Record<string, unknown>;
    error?: { message: string; type?: string; retryState?: string };
  }[];
};
async function submit(file: string, extra: Record<string, string> = {}): Promise<Status> {
  const r = await runCli(['submit', file, '--wait', '--local-worker'], { ...env, ...extra }, { timeoutMs: 180_000 });
  const runId = /submitted run (\S+)/.exec(r.stdout)?.[1];
  assert.ok(runId, r.stdout + r.stderr);
  const st = await runCli(['status', runId!, '--json'], { ...env, ...extra });
  assert.equal(st.code, 0, st.stderr);
  return JSON.parse(st.stdout) as Status;
}
const stage = (s: Status, id: string) => s.stages.find((x) => x.id === id)!;

describe('the example plugin, text-filter', () => {
  before(() => {
    const texts = [
      'Are we still meeting for lunch tomorrow?',
      'Ok lor',
      'call 09061701461 to claim your prize now',
      'WINNER!! You have been selected for a reward',
      'k',
      'Can you bring the notes to class on Monday?',
      'Free entry in a weekly competition, text WIN',
      'See you at eight then, bring a coat',
    ];
    writeFileSync(
      join(home, 'data.jsonl'),
      texts.map((text, i) => JSON.stringify({ text, label: i % 2 ? 'spam' : 'ham' })).join('\n') + '\n',
    );
  });

  it('validates the example pipeline, and its own check points at the pattern in the file', async () => {
    const ok = await runCli(['validate', EXAMPLE], env);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /ingest → dedupe → filter → split → train → evaluate/);
    const bad = join(home, 'bad.yaml');
    writeFileSync(bad, readFileSync(pipeline('bad', 'text-filter'), 'utf8').replace('"^call "', '"(unclosed"'));
    const r = await runCli(['validate', bad], env);
    assert.equal(r.code, 2, r.stdout);
    assert.match(r.stderr, /bad\.yaml:5:\d+: error: stages\.filter\.with\.dropPattern: not a regular expression: /);
  });

  it('runs between dedupe and split; a rerun reuses it, and an edit of the module does not', async () => {
    const file = pipeline('filtered', 'text-filter');
    const first = await submit(file);
    assert.equal(first.state, 'succeeded', JSON.stringify(first.stages.map((s) => [s.id, s.state, s.error?.message])));
    const filter = stage(first, 'filter');
    // 'Ok lor' and 'k' are short; the prize text matches the pattern.
    assert.deepEqual([filter.outputs?.rows, filter.outputs?.dropped], [5, 3]);
    const split = stage(first, 'split').outputs as Record<string, { rows?: number }>;
    assert.equal((split.train?.rows ?? 0) + (split.test?.rows ?? 0), 5, 'split reads the filtered table');
    assert.equal(stage(await submit(file), 'filter').state, 'cached');
    // The same kind and codeVersion from an edited copy of the module: its file hash differs, so it runs again.
    // .mts: outside a folder whose package.json says "type": "module", a .ts file is read as CommonJS.
    const edited = join(home, 'text-filter-edited.mts');
    writeFileSync(
      edited,
      readFileSync(PLUGIN, 'utf8').replace(
        "from '../../src/plugin-api.ts'",
        `from ${JSON.stringify(fileURLToPath(new URL('../src/plugin-api.ts', import.meta.url)))}`,
      ) + '\n// edited\n',
    );
    assert.equal(stage(await submit(file, { TEMPERED_PLUGINS: edited }), 'filter').state, 'succeeded');
  });

  it('a kind whose outputs break its declaration fails at once: not retried, not cached', async () => {
    const broken = join(home, 'broken-filter.mts');
    writeFileSync(
      broken,
      readFileSync(PLUGIN, 'utf8')
        .replace(
          "from '../../src/plugin-api.ts'",
          `from ${JSON.stringify(fileURLToPath(new URL('../src/plugin-api.ts', import.meta.url)))}`,
        )
        .replace("kind: 'text-filter'", "kind: 'broken-filter'")
        .replace('      dropped: seen - rows,', "      dropped: 'some' as unknown as number,"),
    );
    const st = await submit(pipeline('broken', 'broken-filter'), { TEMPERED_PLUGINS: broken });
    assert.equal(st.state, 'failed');
    const filter = stage(st, 'filter');
    assert.equal(filter.state, 'failed');
    assert.match(
      filter.error!.message,
      /stage kind 'broken-filter' returned outputs its declaration does not allow: 'dropped' \(number\) is string "some"/,
    );
    assert.equal(filter.error!.retryState, 'NON_RETRYABLE_FAILURE', 'not retried');
    assert.equal(
      stage(await submit(pipeline('broken', 'broken-filter'), { TEMPERED_PLUGINS: broken }), 'filter').state,
      'failed',
      'nothing cached',
    );
  });
});
