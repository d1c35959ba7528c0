/**
 * Opt-in quality parity bench (not part of npm test): does a model fine-tuned by tempered come out as
 * good as the one Hugging Face transformers (+ PEFT) gives with the same data and hyperparameters?
 *
 *   node --import tsx bench/quality.bench.ts [--data sst2,sms_spam,PATH] [--methods lora,full,head] [--seeds 3 | --seeds 1,2 | --seeds 2,]
 *        [--train-rows N] [--test-rows N] [--epochs E] [--lr X] [--threads 2] [--ref-threads N] [--dropout P] [--group-by-length true|false]
 *        [--side both|tempered|reference] [--out DIR]
 *
 * For each dataset: tempered's own ingest → dedupe → split (library calls, split seed 0, 80/10/10) writes
 * the split files; optionally a seeded subsample of the train (and test) split (--train-rows/--test-rows).
 * Then for each method and training seed, tempered (trainClassifier + evaluateClassifier) and the
 * reference (bench/quality_reference.py: transformers Trainer, PEFT for LoRA, in bench/.venv) train on
 * those same rows with the same hyperparameters and are scored on the same test rows. Prints per-seed
 * and mean ± sd macro-F1 and accuracy, the difference, and whether tempered's mean macro-F1 is within the
 * target (≥ reference mean − 0.5 points). Results also go to DIR/results.json.
 *
 * Recipe (the demo's, from issue 20): all-MiniLM-L6-v2, mean pooling, 3 epochs, batch 16, warmup 6%,
 * linear decay, clip 1, weight decay 0.01, maxLength 64; LoRA r=8 α=16 on query/value of every layer at
 * lr 2e-3, full fine-tuning at lr 5e-5, head-only at lr 5e-3. The model's own dropout (config.json: 0.1)
 * on both sides unless --dropout sets every rate on both; --group-by-length sets tempered's batching
 * (default: tempered's default; the reference never groups, as Trainer's default).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { dedupe, ingest, split } from '../src/data/index.ts';
import { datasetsDir } from '../src/data/datasets-dir.ts';
import { Rng } from '../src/engine/prng.ts';
import { trainClassifier } from '../src/finetune/classifier.ts';
import { evaluateClassifier, readLabeledTexts } from '../src/finetune/evaluate.ts';
import { writeTextTable } from '../src/finetune/synthetic-text.testing.ts';
import { DEFAULT_MODEL, resolveModelSource } from '../src/models/sources.ts';
import { referenceEnv, reexecWithMallocTuning } from './common.ts';

reexecWithMallocTuning();

const { values: a } = parseArgs({
  options: {
    data: { type: 'string', default: 'sst2,sms_spam' },
    methods: { type: 'string', default: 'lora,full,head' },
    seeds: { type: 'string', default: '3' },
    'train-rows': { type: 'string' },
    'test-rows': { type: 'string' },
    epochs: { type: 'string', default: '3' },
    lr: { type: 'string' },
    threads: { type: 'string', default: '2' },
    'ref-threads': { type: 'string' },
    dropout: { type: 'string' },
    'group-by-length': { type: 'string' },
    side: { type: 'string', default: 'both' },
    out: { type: 'string', default: '.tempered/bench-quality' },
  },
});

type Method = 'lora' | 'full' | 'head';
const LR: Record<Method, number> = { lora: 2e-3, full: 5e-5, head: 5e-3 };
const RECIPE = {
  epochs: Number(a.epochs),
  batchSize: 16,
  warmupRatio: 0.06,
  weightDecay: 0.01,
  clipNorm: 1,
  maxLength: 64,
  lora: { r: 8, alpha: 16 },
};
const threads = Number(a.threads);
// On a loaded machine PyTorch's OpenMP threads spin against each other; quality does not depend on it.
const refThreads = Number(a['ref-threads'] ?? a.threads);
// A count (3: seeds 0, 1, 2) or a list (1,2; one seed alone as 2,) so an unfinished matrix can be
// completed cell by cell. Empty items are dropped: Number('') is 0, which would add seed 0 unasked.
const seeds = a.seeds.includes(',')
  ? a.seeds
      .split(',')
      .filter((s) => s.trim() !== '')
      .map(Number)
  : Array.from({ length: Number(a.seeds) }, (_, i) => i);
if (seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error(`--seeds ${a.seeds}: give a count (3) or a list of seeds (1,2)`);
const dropout = a.dropout === undefined ? undefined : Number(a.dropout);
const groupByLength = a['group-by-length'] === undefined ? undefined : a['group-by-length'] === 'true';
const work = resolve(a.out);
const python = resolve('bench/.venv/bin/python');

interface Score {
  f1: number;
  acc: number;
  sec: number;
}

function mean(xs: number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}
function sd(xs: number[]): number {
  const m = mean(xs);
  return xs.length < 2 ? 0 : Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / (xs.length - 1));
}
const pct = (x: number) => (100 * x).toFixed(2);

/** tempered's data stages up to the split, then the optional subsample; returns the folder of split files. */
async function prepare(source: string): Promise<{ name: string; dir: string; labels: string[] }> {
  const known: Record<string, string> = { sst2: 'sst2', sms_spam: 'sms_spam/sms_spam.jsonl' };
  const path = known[source] ? join(datasetsDir(), known[source]!) : resolve(source);
  if (!existsSync(path)) throw new Error(`dataset ${source}: ${path} does not exist`);
  const name = known[source] ? source : basename(path).replace(/\.[^.]+$/, '');
  const dir = join(work, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await ingest(
    { path, task: 'classification', onBadRow: 'quarantine' },
    { baseDir: '/', outPath: join(dir, 'ingested.arrow'), quarantinePath: join(dir, 'quarantine.arrow') },
  );
  await dedupe(join(dir, 'ingested.arrow'), {}, { outPath: join(dir, 'deduped.arrow'), clustersPath: join(dir, 'clusters.arrow') });
  await split(join(dir, 'deduped.arrow'), { seed: 0 }, { outDir: dir });
  const labels = [...new Set((await readLabeledTexts(join(dir, 'train.arrow'))).labels)].sort();
  // Subsamples (seeded) and the JSONL copies the reference reads: the same rows in the same order.
  for (const [part, limit] of [
    ['train', a['train-rows']],
    ['validation', undefined],
    ['test', a['test-rows']],
  ] as const) {
    const t = await readLabeledTexts(join(dir, `${part}.arrow`));
    let rows = t.texts.map((text, i) => ({ text, label: t.labels[i]! }));
    if (limit && Number(limit) < rows.length)
      rows = Array.from(new Rng(1234).permutation(rows.length).subarray(0, Number(limit)), (i) => rows[i]!);
    writeTextTable(join(dir, `${part}-used.arrow`), rows);
    writeFileSync(join(dir, `${part}.jsonl`), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  }
  writeFileSync(join(dir, 'labels.json'), JSON.stringify(labels));
  return { name, dir, labels };
}

async function runTempered(
  modelDir: string,
  data: { dir: string; labels: string[] },
  method: Method,
  seed: number,
  lr: number,
): Promise<Score> {
  const run = join(data.dir, `tempered-${method}-${seed}`);
  rmSync(run, { recursive: true, force: true });
  const t0 = performance.now();
  await trainClassifier({
    modelDir,
    train: join(data.dir, 'train-used.arrow'),
    labels: data.labels,
    method,
    lora: method === 'lora' ? RECIPE.lora : undefined,
    lr,
    epochs: RECIPE.epochs,
    batchSize: RECIPE.batchSize,
    schedule: 'linear',
    warmupRatio: RECIPE.warmupRatio,
    weightDecay: RECIPE.weightDecay,
    clipNorm: RECIPE.clipNorm,
    seed,
    maxLength: RECIPE.maxLength,
    pooling: 'mean',
    device: 'cpu',
    threads,
    checkpointDir: join(run, 'ck'),
    checkpointEvery: 0,
    outDir: join(run, 'model'),
    dropout,
    groupByLength,
    onProgress: (m) => {
      if (m.step % 50 === 0) console.log(`    tempered ${method} seed ${seed}: step ${m.step}/${m.totalSteps}, loss ${m.loss.toFixed(4)}`);
    },
  });
  const sec = (performance.now() - t0) / 1000;
  const { metrics } = await evaluateClassifier({ modelFolder: join(run, 'model'), table: join(data.dir, 'test-used.arrow'), threads });
  rmSync(run, { recursive: true, force: true });
  return { f1: metrics.macro.f1, acc: metrics.accuracy, sec };
}

function runReference(modelDir: string, data: { dir: string }, method: Method, seed: number, lr: number): Score {
  const args = [
    'bench/quality_reference.py',
    '--model',
    modelDir,
    '--data',
    data.dir,
    '--method',
    method,
    '--seed',
    String(seed),
    '--lr',
    String(lr),
    '--epochs',
    String(RECIPE.epochs),
    '--batch',
    String(RECIPE.batchSize),
    '--warmup-ratio',
    String(RECIPE.warmupRatio),
    '--weight-decay',
    String(RECIPE.weightDecay),
    '--clip',
    String(RECIPE.clipNorm),
    '--max-length',
    String(RECIPE.maxLength),
    '--lora-r',
    String(RECIPE.lora.r),
    '--lora-alpha',
    String(RECIPE.lora.alpha),
    '--threads',
    String(refThreads),
    ...(dropout === undefined ? [] : ['--dropout', String(dropout)]),
  ];
  const r = spawnSync(python, args, { encoding: 'utf8', env: referenceEnv(), maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`reference failed (${r.status}):\n${r.stderr.slice(-3000)}`);
  const line = r.stdout.trim().split('\n').at(-1)!;
  const out = JSON.parse(line) as { f1_macro: number; accuracy: number; train_sec: number };
  return { f1: out.f1_macro, acc: out.accuracy, sec: out.train_sec };
}

async function main() {
  const sides = a.side === 'both' ? ['tempered', 'reference'] : [a.side!];
  if (sides.includes('reference') && !existsSync(python)) {
    console.log(
      'bench/.venv/bin/python is missing: the reference needs torch, transformers, peft and scikit-learn there (ln -s an existing venv, or python3 -m venv bench/.venv && bench/.venv/bin/pip install torch transformers peft scikit-learn accelerate)',
    );
    process.exit(2);
  }
  const model = await resolveModelSource(DEFAULT_MODEL, { cacheDir: process.env.TEMPERED_MODEL_CACHE ?? resolve('.tempered/models') });
  const results: unknown[] = [];
  console.log(
    `quality parity: ${DEFAULT_MODEL}, ${RECIPE.epochs} epochs, batch ${RECIPE.batchSize}, maxLength ${RECIPE.maxLength}, threads ${threads}, seeds ${seeds.join(',')}` +
      `${dropout === undefined ? '' : `, dropout ${dropout}`}${groupByLength === undefined ? '' : `, groupByLength ${groupByLength}`}${a['train-rows'] ? `, train rows ≤ ${a['train-rows']}` : ''}${a['test-rows'] ? `, test rows ≤ ${a['test-rows']}` : ''}`,
  );
  for (const source of a.data!.split(',')) {
    const data = await prepare(source);
    const counts = await Promise.all(
      ['train', 'test'].map(async (p) => (await readLabeledTexts(join(data.dir, `${p}-used.arrow`))).texts.length),
    );
    console.log(`\n${data.name}: ${counts[0]} train rows, ${counts[1]} test rows, labels ${data.labels.join(', ')}`);
    for (const method of a.methods!.split(',') as Method[]) {
      const lr = a.lr ? Number(a.lr) : LR[method];
      const t: Score[] = [],
        r: Score[] = [];
      for (const seed of seeds) {
        if (sides.includes('tempered')) t.push(await runTempered(model.dir, data, method, seed, lr));
        if (sides.includes('reference')) r.push(runReference(model.dir, data, method, seed, lr));
        const fmt = (s?: Score) => (s ? `F1 ${pct(s.f1)} acc ${pct(s.acc)} (${s.sec.toFixed(0)} s)` : '-');
        console.log(`  ${method.padEnd(4)} lr ${lr} seed ${seed}: tempered ${fmt(t.at(-1))} | reference ${fmt(r.at(-1))}`);
      }
      const summary = (s: Score[]) =>
        s.length
          ? {
              f1: mean(s.map((x) => x.f1)),
              f1Sd: sd(s.map((x) => x.f1)),
              acc: mean(s.map((x) => x.acc)),
              accSd: sd(s.map((x) => x.acc)),
              sec: mean(s.map((x) => x.sec)),
            }
          : undefined;
      const ts = summary(t),
        rs = summary(r);
      const line = (x?: ReturnType<typeof summary>) =>
        x ? `F1 ${pct(x.f1)} ± ${pct(x.f1Sd)}, acc ${pct(x.acc)} ± ${pct(x.accSd)}, ${x.sec.toFixed(0)} s` : '-';
      console.log(`  ${method.padEnd(4)} mean: tempered ${line(ts)} | reference ${line(rs)}`);
      if (ts && rs)
        console.log(
          `  ${method.padEnd(4)} difference (tempered − reference): F1 ${(100 * (ts.f1 - rs.f1)).toFixed(2)} points, acc ${(100 * (ts.acc - rs.acc)).toFixed(2)} points → ${ts.f1 >= rs.f1 - 0.005 ? 'within target' : 'BELOW TARGET'} (≥ reference − 0.5)`,
        );
      results.push({
        dataset: data.name,
        method,
        lr,
        seeds,
        tempered: t,
        reference: r,
        dropout,
        groupByLength,
        trainRows: counts[0],
        testRows: counts[1],
      });
      writeFileSync(join(work, 'results.json'), JSON.stringify(results, null, 2));
    }
  }
}

await main();
