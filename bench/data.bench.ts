/**
 * Data-stage benchmark (opt-in, not part of npm test):
 *
 *   node --import tsx bench/data.bench.ts [--rows N] [--ref-rows M] [--no-ref] [--dir PATH]
 *
 * Generates N synthetic rows (default 1,000,000) as JSONL with planted exact duplicates (case and
 * whitespace variants) and planted near duplicates (one word replaced), then times ingest, dedupe
 * and split, each in its own process so peak RSS is per step. Near-duplicate precision/recall is
 * measured against the planted truth. With Python available, bench/data_ref.py runs pandas
 * drop_duplicates and datasketch MinHashLSH (same shingles, numPerm, threshold) on the first M rows
 * (default min(N, 200,000)) in bench/.venv, and the table prints rows/s side by side as ratios.
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';
import { readArrowBatches, columnValues } from '../src/data/arrow-io.ts';
import { dedupe } from '../src/data/dedupe.ts';
import { ingest } from '../src/data/ingest.ts';
import { Rng } from '../src/data/rng.ts';
import { split } from '../src/data/split.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name: string, dflt?: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const flag = (name: string) => args.includes(`--${name}`);

const SYLLABLES = ['ka', 'lo', 'mi', 'ne', 'ru', 'sa', 'ti', 'vo', 'ze', 'qu', 'ban', 'dor', 'fel', 'gim', 'hus', 'jat', 'pex', 'wyn'];

function vocabulary(rng: Rng, size: number): string[] {
  const words = new Set<string>();
  while (words.size < size) {
    let w = '';
    for (let k = 1 + rng.int(3); k >= 0; k--) w += SYLLABLES[rng.int(SYLLABLES.length)];
    words.add(w);
  }
  return [...words];
}

/** Zipf-like word choice: common words repeat as in real text, rare ones keep rows distinct. */
function pickWord(rng: Rng, vocab: string[]): string {
  const u = rng.next();
  return vocab[Math.floor(vocab.length * u * u * u)];
}

interface Truth {
  exact: number[];
  near: number[];
}

async function generate(dir: string, n: number): Promise<void> {
  const rng = new Rng(2024);
  const vocab = vocabulary(rng, 30000);
  const out = createWriteStream(join(dir, 'data.jsonl'));
  const truth: Truth = { exact: [], near: [] };
  const recent: { text: string; label: string }[] = []; // sources for planted duplicates: earlier rows, any distance
  for (let i = 0; i < n; i++) {
    const x = rng.next();
    let text: string, label: string;
    if (x < 0.05 && recent.length > 0) {
      // exact duplicate after normalization: case and whitespace variants of an earlier row
      const src = recent[rng.int(recent.length)];
      text = rng.next() < 0.5 ? src.text.toUpperCase() : '  ' + src.text.replace(/ /g, '  ');
      label = src.label;
      truth.exact.push(i);
    } else if (x < 0.1 && recent.length > 0) {
      const src = recent[rng.int(recent.length)];
      const w = src.text.split(' ');
      w[rng.int(w.length)] = 'edited' + rng.int(1000);
      text = w.join(' ');
      label = src.label;
      truth.near.push(i);
    } else {
      const len = 40 + rng.int(21);
      const w = new Array<string>(len);
      for (let k = 0; k < len; k++) w[k] = pickWord(rng, vocab);
      text = w.join(' ');
      label = rng.next() < 0.3 ? 'pos' : 'neg';
      if (recent.length < 50000) recent.push({ text, label });
      else recent[rng.int(recent.length)] = { text, label };
    }
    if (!out.write(JSON.stringify({ text, label }) + '\n')) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  writeFileSync(join(dir, 'truth.json'), JSON.stringify(truth));
}

/** Runs one step in this process and prints its measurements as JSON (called in a child). */
async function runStep(step: string, dir: string): Promise<void> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let rows = 0;
  if (step === 'ingest') {
    const r = await ingest(
      { path: 'data.jsonl', task: 'classification' },
      { baseDir: dir, outPath: join(dir, 'ingested.arrow'), quarantinePath: join(dir, 'quarantine.arrow') },
    );
    rows = r.rowsIn;
  } else if (step === 'dedupe-exact') {
    const r = await dedupe(
      join(dir, 'ingested.arrow'),
      { near: false },
      { outPath: join(dir, 'exact.arrow'), clustersPath: join(dir, 'exact.clusters.arrow') },
    );
    rows = r.rowsIn;
  } else if (step === 'dedupe') {
    const r = await dedupe(
      join(dir, 'ingested.arrow'),
      { near: { shingle: 'word', size: 3, numPerm: 128, threshold: 0.8 } },
      { outPath: join(dir, 'deduped.arrow'), clustersPath: join(dir, 'clusters.arrow') },
    );
    rows = r.rowsIn;
    writeFileSync(join(dir, 'dedupe.json'), JSON.stringify(r));
  } else if (step === 'split') {
    const r = await split(join(dir, 'deduped.arrow'), { seed: 1 }, { outDir: dir });
    rows = r.rowsIn;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  // CPU seconds are reported beside wall time: on a shared machine they are the steadier figure.
  process.stdout.write(
    JSON.stringify({ step, rows, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, maxRssMiB: process.resourceUsage().maxRSS / 1024 }) +
      '\n',
  );
}

async function nearQuality(dir: string, n: number): Promise<{ precision: number; recall: number }> {
  const truth = JSON.parse(readFileSync(join(dir, 'truth.json'), 'utf8')) as Truth;
  const planted = new Uint8Array(n);
  for (const i of truth.near) planted[i] = 1;
  const exactPlanted = new Uint8Array(n);
  for (const i of truth.exact) exactPlanted[i] = 1;
  let removedNear = 0,
    removedNearPlanted = 0,
    plantedFound = 0;
  for await (const b of readArrowBatches(join(dir, 'clusters.arrow'))) {
    const rows = columnValues(b, 'member_row') as number[],
      kept = columnValues(b, 'kept') as boolean[],
      reason = columnValues(b, 'reason') as string[];
    for (let i = 0; i < b.numRows; i++) {
      if (kept[i]) continue;
      // A planted near row counts as found when removed at all (as near, or as an exact copy of an
      // earlier near copy); a removal reported as near is correct when the row was planted as a
      // near or exact copy (an exact copy of a row whose first copy was merged near is still a dup).
      if (planted[rows[i]]) plantedFound++;
      if (reason[i] === 'near') {
        removedNear++;
        if (planted[rows[i]] || exactPlanted[rows[i]]) removedNearPlanted++;
      }
    }
  }
  return {
    precision: removedNear === 0 ? 1 : removedNearPlanted / removedNear,
    recall: truth.near.length === 0 ? 1 : plantedFound / truth.near.length,
  };
}

function python(): string | null {
  for (const p of ['python3', 'python']) if (spawnSync(p, ['--version']).status === 0) return p;
  return null;
}

function ensureVenv(): string | null {
  const py = python();
  if (!py) {
    console.log('python not found: skipping the reference run');
    return null;
  }
  const venv = join(HERE, '.venv');
  const vpy = join(venv, 'bin', 'python');
  if (!existsSync(vpy)) {
    console.log(`creating ${venv} (pandas, datasketch) ...`);
    if (spawnSync(py, ['-m', 'venv', venv], { stdio: 'inherit' }).status !== 0) {
      console.log('venv creation failed: skipping the reference run');
      return null;
    }
  }
  if (spawnSync(vpy, ['-c', 'import pandas, datasketch'], { stdio: 'ignore' }).status !== 0) {
    if (spawnSync(vpy, ['-m', 'pip', 'install', '-q', 'pandas', 'datasketch'], { stdio: 'inherit' }).status !== 0) {
      console.log('pip install failed: skipping the reference run');
      return null;
    }
  }
  return vpy;
}

async function main() {
  const step = arg('step');
  if (step) return runStep(step, arg('dir')!);
  const n = Number(arg('rows', '1000000'));
  const refRows = Number(arg('ref-rows', String(Math.min(n, 200000))));
  const dir = arg('dir', join(tmpdir(), `tempered-data-bench-${n}`))!;
  mkdirSync(dir, { recursive: true });
  console.log(`rows ${n}, work dir ${dir}`);
  let t0 = performance.now();
  await generate(dir, n);
  console.log(`generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const results: Record<string, { rows: number; seconds: number; cpuSeconds: number; maxRssMiB: number }> = {};
  for (const s of ['ingest', 'dedupe-exact', 'dedupe', 'split']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--step', s, '--dir', dir], {
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0) throw new Error(`step ${s} failed:\n${r.stderr}`);
    results[s] = JSON.parse(r.stdout.trim().split('\n').pop()!);
  }
  t0 = performance.now();
  const q = await nearQuality(dir, n);
  const dd = JSON.parse(readFileSync(join(dir, 'dedupe.json'), 'utf8'));

  let ref: Record<string, number> | null = null;
  if (!flag('no-ref')) {
    const vpy = ensureVenv();
    if (vpy) {
      const r = spawnSync(vpy, [join(HERE, 'data_ref.py'), join(dir, 'data.jsonl'), join(dir, 'truth.json'), String(refRows)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1 << 26,
      });
      if (r.status === 0) ref = JSON.parse(r.stdout.trim().split('\n').pop()!);
      else console.log('reference run failed');
    }
  }

  const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x.toPrecision(3));
  console.log(
    '\nstep            rows/s wall   rows/CPU-s   peak RSS MiB   wall s' +
      (ref ? `   python rows/CPU-s (${refRows} rows)   ours/python (CPU)` : ''),
  );
  const refRate: Record<string, number | undefined> = ref
    ? { 'dedupe-exact': ref.exact_rows_per_cpu_s, dedupe: ref.near_rows_per_cpu_s }
    : {};
  for (const [s, r] of Object.entries(results)) {
    const rate = r.rows / r.cpuSeconds;
    const rr = refRate[s];
    console.log(
      `${s.padEnd(14)}  ${fmt(r.rows / r.seconds).padStart(11)}   ${fmt(rate).padStart(10)}   ${fmt(r.maxRssMiB).padStart(12)}   ${r.seconds.toFixed(2).padStart(6)}` +
        (rr ? `   ${fmt(rr).padStart(30)}   ${(rate / rr).toFixed(1).padStart(16)}×` : ''),
    );
  }
  console.log(
    `\ndedupe: ${dd.rowsIn} in, ${dd.rowsOut} kept, exact ${dd.exactRemoved}, near ${dd.nearRemoved}, conflicts ${dd.conflictsRemoved}, clusters ${dd.clusters}, LSH candidates ${dd.nearCandidates}, verified ${dd.nearVerified}`,
  );
  console.log(`near duplicates (planted, threshold 0.8): precision ${q.precision.toFixed(4)}, recall ${q.recall.toFixed(4)}`);
  if (ref)
    console.log(
      `python datasketch on ${refRows} rows: precision ${Number(ref.near_precision).toFixed(4)}, recall ${Number(ref.near_recall).toFixed(4)}; pandas exact removed ${ref.exact_removed}`,
    );
}

await main();
