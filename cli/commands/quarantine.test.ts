/**
 * `tempered status RUN --quarantine`: every quarantined row, past the report's first 10, read through the artifact store
 * (a real local folder, and a real SeaweedFS S3 store read from a host whose cache never held the table).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ingest } from '../../src/data/ingest.ts';
import { ArtifactStore } from '../../src/store/artifact-store.ts';
import { MEDIA, type ArtifactRef } from '../../src/types.ts';
import type { StageStatus } from '../../workflows/types.ts';
import { startTestS3, type TestS3 } from '../../tests/helpers/seaweedfs.ts';
import { printQuarantine } from './quarantine.ts';
import { CliError } from '../errors.ts';
import { runCli } from '../../tests/helpers/cli.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A real ingest that quarantines 14 rows (the report names 10), one with an escape sequence in its line. */
async function quarantineTable(store: ArtifactStore): Promise<{ ref: ArtifactRef; firstShown: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-quarantine-'));
  dirs.push(dir);
  const lines = Array.from({ length: 30 }, (_, i) =>
    i % 2 === 0 ? JSON.stringify({ text: `t${i}`, label: i % 4 === 0 ? 'a' : 'b' }) : JSON.stringify({ text: `t${i}` }),
  );
  // ESC, a C1 control and U+2028, which JSON.stringify leaves raw (a JSON-lines reader splitting on U+2028 breaks).
  lines[29] = '{"text": "\u001b[31mred\u0085\u2028", oops}';
  writeFileSync(join(dir, 'data.jsonl'), lines.join('\n'));
  const report = await ingest(
    { task: 'classification', path: 'data.jsonl', onBadRow: 'quarantine', maxBadFraction: 1 },
    { baseDir: dir, outPath: join(dir, 'out.arrow'), quarantinePath: join(dir, 'q.arrow') },
  );
  const ref = await store.putFile(join(dir, 'q.arrow'), { mediaType: MEDIA.arrow, rows: 15 });
  return { ref, firstShown: report.firstQuarantined?.length ?? 0 };
}

const stages = (ref: ArtifactRef): StageStatus[] => [
  { id: 'ingest', uses: 'ingest', needs: [], state: 'succeeded', outputs: { quarantine: ref } },
  { id: 'dedupe', uses: 'dedupe', needs: ['ingest'], state: 'succeeded', outputs: {} },
];

async function printed(store: ArtifactStore, ref: ArtifactRef, json: boolean): Promise<string[]> {
  const out: string[] = [];
  const n = await printQuarantine(store, 'r1', stages(ref), json, (l) => void out.push(l));
  assert.equal(n, 15);
  return out.join('\n').split('\n');
}

function checkRows(text: string[], json: string[]) {
  // Every row, in file order: the report stopped at 10.
  assert.equal(text[0], 'ingest: 15 quarantined row(s)');
  assert.equal(text.filter((l) => /^ {2}data\.jsonl:\d+: /.test(l)).length, 15);
  assert.equal(text[1], '  data.jsonl:2: missing-label: label field "label" is missing');
  assert.equal(text[2], '    raw: {"text":"t1"}');
  // The line's ESC is shown escaped on a terminal.
  assert.match(text.at(-1)!, /^ {4}raw: \{"text": "\\u001b\[31mred\\u0085\\u2028", oops\}$/);
  assert.ok(!text.join('\n').includes('\u001b'));
  const rows = json.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(rows.length, 15);
  assert.deepEqual(rows[0], {
    stage: 'ingest',
    file: 'data.jsonl',
    line: 2,
    reason: 'missing-label',
    detail: 'label field "label" is missing',
    raw: '{"text":"t1"}',
  });
  assert.deepEqual([rows[14]!.line, rows[14]!.reason, rows[14]!.raw], [30, 'invalid-json', '{"text": "\u001b[31mred\u0085\u2028", oops}']);
  assert.ok(!/[\u0085\u2028]/.test(json.join('\n')), 'C1 and U+2028 are escaped in the JSON lines');
}

test('every quarantined row of a local store, as text (escaped) and as JSON lines (exact)', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-qstore-'));
  dirs.push(root);
  const store = new ArtifactStore(root);
  const { ref, firstShown } = await quarantineTable(store);
  assert.equal(firstShown, 10, 'the report names 10 of the 15');
  checkRows(await printed(store, ref, false), await printed(store, ref, true));
  // Another host's local store, which never held the table: said, with the setting that reaches the run's store.
  const other = new ArtifactStore(mkdtempSync(join(tmpdir(), 'tempered-qstore-')));
  dirs.push(other.root);
  await assert.rejects(
    printed(other, ref, false),
    (e: Error) => e instanceof CliError && /not in this host's store .*TEMPERED_STORE/.test(e.message),
  );
  // A run whose ingest has not finished: nothing to print, said so.
  const out: string[] = [];
  assert.equal(
    await printQuarantine(store, 'r1', [{ id: 'ingest', uses: 'ingest', needs: [], state: 'running' }], false, (l) => void out.push(l)),
    0,
  );
  assert.match(out[0]!, /^run r1 has no quarantine table/);
});

describe('an S3 store', () => {
  let s3: TestS3 | undefined;
  before(async () => {
    s3 = await startTestS3();
  });
  after(async () => {
    await s3?.stop();
  });
  test('is read from the bucket by a host whose cache never held the table', async () => {
    const url = s3!.freshUrl();
    const { ref } = await quarantineTable(s3!.store(url));
    const reader = s3!.store(url);
    assert.equal(reader.has(ref.sha256), false);
    checkRows(await printed(reader, ref, false), await printed(s3!.store(url), ref, true));
  });
});

test('status --quarantine is a flag of status, and takes no --watch (exit 2, before any server is asked)', async () => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-qcli-'));
  dirs.push(home);
  const env = { TEMPERED_HOME: home, TEMPORAL_ADDRESS: '127.0.0.1:9' };
  const watch = await runCli(['status', 'r1', '--quarantine', '--watch'], env);
  assert.equal(watch.code, 2);
  assert.match(watch.stderr, /status --quarantine takes no --watch/);
  const help = await runCli(['status', '--help'], env);
  assert.match(help.stdout, /status <run> --quarantine \[--json\]/);
});
