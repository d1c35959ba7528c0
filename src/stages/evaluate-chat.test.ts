/**
 * The evaluate stage on a chat table: each test conversation's last reply is generated after the messages before it,
 * in the chat format, and scored by exact match, ROUGE-L and chrF beside the base model, with the reply loss over every
 * trained reply. The task: "BCD" → "B" (the first letter), twice a conversation, so the second answer needs the
 * second question, not the first. Production is scored on the conversations it was not trained on. Validation refuses a
 * chat table to a classifier.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeJsonl } from '../data/conversations.testing.ts';
import { ingest } from '../data/ingest.ts';
import { Rng } from '../engine/prng.ts';
import { tuneTinyChat } from '../finetune/reversal-task.testing.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { loadSpecText } from '../spec/load.ts';
import { evaluateStage } from './evaluate.ts';
import { kindRegistry, loadStageKinds } from './stage-kinds.ts';
import { stageTestbed } from './stage-context.testing.ts';

const ARROW = 'application/vnd.apache.arrow.file';

const root = mkdtempSync(join(tmpdir(), 'eval-chat-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

/** n conversations of two exchanges, each reply the first letter of its question. */
function conversations(n: number, seed: number): { messages: { role: string; content: string }[] }[] {
  const rng = new Rng(seed);
  const word = () => Array.from({ length: 3 }, () => 'BCDFGHJK'[rng.int(8)]!).join('');
  return Array.from({ length: n }, () => {
    const [a, b] = [word(), word()];
    return {
      messages: [
        { role: 'user', content: a },
        { role: 'assistant', content: a[0]! },
        { role: 'user', content: b },
        { role: 'assistant', content: b[0]! },
      ],
    };
  });
}

/** `rows` ingested as a chat table. */
async function chatTable(name: string, rows: readonly object[]): Promise<string> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeJsonl(join(dir, 'c.jsonl'), rows);
  await ingest({ path: 'c.jsonl', task: 'chat' }, { baseDir: dir, outPath: join(dir, 't.arrow'), quarantinePath: join(dir, 'q.arrow') });
  return join(dir, 't.arrow');
}

test('evaluate on conversations: the last reply generated after the ones before it, beside the base model and production on the rows it was not trained on', async () => {
  const base = tinyLlamaDir(join(root, 'base'), 4, { hidden: 32, maxPositions: 64 });
  const outDir = join(root, 'tuned');
  const trainRows = conversations(64, 1);
  const trainPath = await chatTable('train', trainRows);
  // Full fine-tuning, 12 epochs of 8 rows, QA_TEMPLATE as the chat template (the conversations have no system message).
  await tuneTinyChat(base, trainPath, outDir, { epochs: 12 });
  const { store, ctx, read, promote } = stageTestbed(root, 'state');
  const model = await store.putTree(outDir);
  // The same model is production, registered with its training table: the test split's first 8 conversations are
  // training ones (a re-split), the last 8 new.
  await promote('letters', model, { train: await store.putFile(trainPath, { mediaType: ARROW }) });
  // One more asks a training conversation's questions with another last reply: what production was asked is the same.
  const reanswered = { messages: trainRows[8]!.messages.map((m, i) => (i === 3 ? { ...m, content: 'Z' } : m)) };
  const test = await store.putFile(await chatTable('test', [...trainRows.slice(0, 8), reanswered, ...conversations(8, 2)]), {
    mediaType: ARROW,
  });
  const out = await evaluateStage.run(
    {
      model,
      test,
      baseline: { model: 'base' },
      production: { name: 'letters' },
      generation: { maxNewTokens: 4, samples: 2 },
      threads: 2,
    },
    ctx('evaluate'),
  );
  const metrics = read(out.metrics);
  const report = read(out.report);
  if (process.env.TEMPERED_VERBOSE)
    console.log('exact_match', metrics.exact_match, 'base', metrics.baseline.exact_match, 'production', metrics.production.exact_match);
  // The loss is over both replies of each of the 17 conversations (a letter and <|endoftext|> each); one answer each.
  for (const m of [metrics, metrics.baseline]) assert.deepEqual([m.tokens, m.generated], [17 * 2 * 2, 17]);
  assert.ok(metrics.exact_match >= 0.9, `fine-tuned exact_match ${metrics.exact_match}`);
  assert.ok(metrics.baseline.exact_match <= 0.25, `base exact_match ${metrics.baseline.exact_match}`);
  assert.ok(metrics.perplexity < metrics.baseline.perplexity);
  // Production is compared on the conversations before their last reply: the 9 it was asked in training are left out.
  const p = metrics.production;
  assert.deepEqual([p.rows, p.contaminated_rows, p.decontaminated, p.generated], [8, 9, true, 8]);
  assert.equal(p.exact_match, p.candidate.exact_match, 'the same model on the same rows');
  assert.deepEqual([report.contamination.columns, report.contamination.contaminated_rows], [['messages'], 9]);
  // The samples show the conversation before the answer and the answer, as the report shows an instruction row.
  const s = report.samples[0] as { prompt: string; reference: string; output: string };
  const m = /^user: ([A-Z]{3})\nassistant: ([A-Z])\nuser: ([A-Z]{3})$/.exec(s.prompt);
  assert.ok(m, s.prompt);
  assert.equal(s.reference, m[3]![0]);
});

test('validate: a chat table is trained by causal-lm only', async () => {
  tinyLlamaDir(join(root, 'base'), 4, { hidden: 32, maxPositions: 64 });
  const reg = kindRegistry(await loadStageKinds());
  const pipeline = (task: string, evaluateWith: string) => `name: c
stages:
  ingest:
    uses: ingest
    with: { path: c.jsonl, task: chat, fields: { messages: conversation } }
  split:
    uses: split
    needs: ingest
    with:
      table: \${{ stages.ingest.outputs.table }}
  train:
    uses: train
    needs: split
    with:
      task: ${task}
      model: base
      train: \${{ stages.split.outputs.train }}
      method: full
      lr: 0.01
      epochs: 1
  evaluate:
    uses: evaluate
    needs: [train, split]
    with:
      model: \${{ stages.train.outputs.model }}
      test: \${{ stages.split.outputs.test }}
${evaluateWith}`;
  const check = (text: string) => loadSpecText(text, join(root, 'pipeline.yaml'), { ...reg, baseDir: root });
  const ok = check(pipeline('causal-lm', '      generation: { maxNewTokens: 4 }'));
  assert.ok(ok.ok, JSON.stringify(!ok.ok && ok.errors));
  const errors = (text: string) => {
    const r = check(text);
    assert.equal(r.ok, false);
    return (r as { errors: { path: string; message: string }[] }).errors.map((e) => `${e.path}: ${e.message}`).join('\n');
  };
  assert.match(
    errors(pipeline('classification', '      threads: 1')),
    /stages\.train\.with\.task: stage 'ingest' makes a chat table \(conversations\), which task classification cannot train on/,
  );
});
