import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Field, Schema, Utf8 } from 'apache-arrow';
import { ArrowTableWriter, PROMPT_TEMPLATE_METADATA } from '../data/arrow-io.ts';
import { datasetsDir } from '../data/datasets-dir.ts';
import { gsm8kConversations, writeJsonl } from '../data/conversations.testing.ts';
import { ingest } from '../data/ingest.ts';
import { InputError } from '../errors.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { productionTraining, writeCleanRows } from './production-rows.ts';

const TEMPLATE = 'Is the sentiment of this movie review positive or negative? Answer with one word.\n\n{text}';

function reviews(file: string): string[] {
  return readFileSync(join(datasetsDir(), 'sst2', file), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => (JSON.parse(l) as { text: string }).text);
}

/** An instruction table of `texts` rendered with TEMPLATE, recording it (as ingest does) unless `template` says otherwise. */
function promptTable(path: string, texts: string[], template: string | null = TEMPLATE): string {
  const meta = template === null ? null : new Map([[PROMPT_TEMPLATE_METADATA, template]]);
  const w = new ArrowTableWriter(
    path,
    new Schema([new Field('prompt', new Utf8(), false, meta), new Field('response', new Utf8(), false)]),
  );
  for (const t of texts) w.push({ prompt: TEMPLATE.replace('{text}', t), response: 'positive' });
  w.close();
  return path;
}

test("production's test rows: the prompt template both tables record is left out of the near-duplicate check (SST-2)", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'prod-rows-'));
  const store = new ArtifactStore(join(dir, 'store'));
  const train = reviews('train.jsonl'),
    test = [...reviews('validation.jsonl'), ...reviews('test.jsonl')];
  const run = async (name: string, template: string | null, testTemplate = template) => {
    const ref = await store.putFile(promptTable(join(dir, `${name}-train.arrow`), train, template), {
      mediaType: 'application/vnd.apache.arrow.file',
    });
    const testPath = promptTable(join(dir, `${name}-test.arrow`), test, testTemplate);
    const training = await productionTraining(store, [{ name: 'train', sha256: ref.sha256 }], ['prompt'], undefined, testPath);
    assert.ok(training.checked);
    return writeCleanRows(testPath, training.seen, ['prompt'], undefined, join(dir, `${name}-clean.arrow`), training.path);
  };
  const recorded = await run('recorded', TEMPLATE);
  const unrecorded = await run('unrecorded', null);
  // SST-2's test and validation reviews hold no near copy of a training review; under the template, as stored,
  // five short ones passed for near copies of other short ones.
  assert.equal(recorded.near, 0);
  assert.equal(unrecorded.near, 5);
  assert.equal(recorded.contaminated, unrecorded.contaminated - 5);
  // One table recording it is enough (production trained before ingest recorded templates, or the other way round):
  // the template is left out of both sides.
  assert.equal((await run('train-only', TEMPLATE, null)).near, 0);
  assert.equal((await run('test-only', null, TEMPLATE)).near, 0);
});

test('a malformed template: on the training table production is scored on all rows, saying why; on the test table, an error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'prod-rows-bad-'));
  const store = new ArtifactStore(join(dir, 'store'));
  const ok = promptTable(join(dir, 'ok.arrow'), ['a fine film']);
  const bad = await store.putFile(promptTable(join(dir, 'bad.arrow'), ['a fine film'], 'no field'), {
    mediaType: 'application/vnd.apache.arrow.file',
  });
  const training = await productionTraining(store, [{ name: 'train', sha256: bad.sha256 }], ['prompt'], undefined, ok);
  assert.equal(training.checked, false);
  assert.match(
    !training.checked ? training.reason : '',
    /its training data \([0-9a-f]{12}…\): column "prompt"'s tempered\.promptTemplate metadata is not a prompt template/,
  );
  const good = await store.putFile(ok, { mediaType: 'application/vnd.apache.arrow.file' });
  await assert.rejects(
    productionTraining(
      store,
      [{ name: 'train', sha256: good.sha256 }],
      ['prompt'],
      undefined,
      promptTable(join(dir, 'bad-test.arrow'), ['x'], '{'),
    ),
    (e: unknown) =>
      e instanceof InputError &&
      /the test table: column "prompt"'s tempered\.promptTemplate metadata is not a prompt template/.test(e.message),
  );
});

test("a chat table: a test conversation asking a training conversation's first question is one production was trained on", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'prod-rows-chat-'));
  const store = new ArtifactStore(join(dir, 'store'));
  const table = async (name: string, rows: readonly object[]) => {
    writeJsonl(join(dir, `${name}.jsonl`), rows);
    const out = join(dir, `${name}.arrow`);
    await ingest({ path: `${name}.jsonl`, task: 'chat' }, { baseDir: dir, outPath: out, quarantinePath: join(dir, `${name}-q.arrow`) });
    return out;
  };
  // GSM8K: the problem, the worked answer (trained on in rows 1-3 and 5-7), the question for the number, the number.
  const all = gsm8kConversations(12);
  const train = all.slice(0, 8);
  const ref = await store.putFile(await table('train', train), { mediaType: 'application/vnd.apache.arrow.file' });
  const testPath = await table('test', [
    // Row 1's first exchange alone: training taught its worked answer after exactly this problem.
    { messages: train[1]!.messages.slice(0, 2) },
    // Row 2 whole, another number at the end: what it asks is a training conversation's last input.
    { messages: train[2]!.messages.map((m, i, a) => (i === a.length - 1 ? { ...m, content: '-1' } : m)) },
    ...all.slice(8),
  ]);
  const training = await productionTraining(store, [{ name: 'train', sha256: ref.sha256 }], ['messages'], undefined, testPath);
  assert.ok(training.checked);
  const clean = await writeCleanRows(testPath, training.seen, ['messages'], undefined, join(dir, 'clean.arrow'), training.path);
  assert.deepEqual([clean.contaminated, clean.near, clean.rows, clean.testRows], [2, 0, 4, [2, 3, 4, 5]]);
});
