import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { Field, Schema, Utf8 } from 'apache-arrow';
import { ArrowTableWriter, columnValues, PROMPT_TEMPLATE_METADATA, readArrowBatches, readArrowSchema } from './arrow-io.ts';
import type { DedupeConfig } from './config.ts';
import { dedupe } from './dedupe.ts';
import { formatDataReport } from './report.ts';
import { ingest } from './ingest.ts';
import { Rng } from './rng.ts';
import { split } from './split.ts';
import { datasetsDir } from './datasets-dir.ts';

async function readAll(path: string): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  for await (const b of readArrowBatches(path)) {
    const names = b.schema.fields.map((f) => f.name);
    const cols = names.map((n) => columnValues(b, n));
    for (let i = 0; i < b.numRows; i++) rows.push(Object.fromEntries(names.map((n, c) => [n, cols[c][i]])));
  }
  return rows;
}

function table(rows: { text: string; label: string }[]): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'dedupe-'));
  const path = join(dir, 'in.arrow');
  const w = new ArrowTableWriter(path, { text: 'utf8', label: 'utf8', _hash: 'utf8' }, 3);
  rows.forEach((r, i) => w.push({ ...r, _hash: `h${i}` }));
  w.close();
  return { dir, path };
}

async function run(rows: { text: string; label: string }[], cfg: DedupeConfig) {
  const { dir, path } = table(rows);
  const report = await dedupe(path, cfg, { outPath: join(dir, 'out.arrow'), clustersPath: join(dir, 'clusters.arrow') });
  return { report, dir, kept: await readAll(join(dir, 'out.arrow')), clusters: await readAll(join(dir, 'clusters.arrow')) };
}

const variants = [
  'Find the file now', // 0
  'ﬁnd the ﬁle now', // 1: ligatures (NFKC)
  'Ｆｉｎｄ ｔｈｅ ｆｉｌｅ ｎｏｗ', // 2: full-width (NFKC)
  'find\u200B the fi\u2060le now\uFEFF', // 3: zero-width chars
  'FIND THE FILE NOW', // 4: case
  '  find   the\tfile now ', // 5: whitespace
  'something else entirely', // 6
  'find the file later', // 7: different text
];

test('exact duplicates on the normalized key, with a clusters table', async () => {
  const { report, kept, clusters } = await run(
    variants.map((text) => ({ text, label: 'a' })),
    { near: false },
  );
  assert.equal(report.rowsIn, 8);
  assert.equal(report.exactRemoved, 5);
  assert.equal(report.rowsOut, 3);
  assert.equal(report.clusters, 1);
  assert.equal(report.largestCluster, 6);
  assert.deepEqual(
    kept.map((r) => r.text),
    [variants[0], variants[6], variants[7]],
  );
  assert.deepEqual(
    kept.map((r) => r._cluster),
    [0, 1, 2],
  ); // dense ids in order of first appearance
  assert.deepEqual(
    clusters.map((c) => [c.cluster_id, c.member_row, c.member_hash, c.kept, c.reason]),
    [
      [0, 0, 'h0', true, 'exact'],
      [0, 1, 'h1', false, 'exact'],
      [0, 2, 'h2', false, 'exact'],
      [0, 3, 'h3', false, 'exact'],
      [0, 4, 'h4', false, 'exact'],
      [0, 5, 'h5', false, 'exact'],
    ],
  );
});

test('switching normalization steps off un-merges exactly the matching variants', async () => {
  const off = await run(
    variants.map((text) => ({ text, label: 'a' })),
    { near: false, normalize: { nfkc: false, casefold: false, whitespace: false, zeroWidth: false } },
  );
  assert.equal(off.report.exactRemoved, 0);
  const noZw = await run(
    variants.map((text) => ({ text, label: 'a' })),
    { near: false, normalize: { zeroWidth: false } },
  );
  assert.equal(noZw.report.exactRemoved, 4); // only row 3 stays apart
  const noCase = await run(
    variants.map((text) => ({ text, label: 'a' })),
    { near: false, normalize: { casefold: false } },
  );
  // Without case folding: 0 ('Find…') stands with none; 1,2 ('fi'/'Ｆ'…) → 'ﬁnd'→'find', 'Ｆｉｎｄ'→'Find' so 2 joins 0; 3,5 join 1.
  assert.deepEqual(
    noCase.kept.map((r) => r.text),
    [variants[0], variants[1], variants[4], variants[6], variants[7]],
  );
  assert.equal(noCase.report.exactRemoved, 3);
});

function plantedRows(seed: number, n: number, len = 40) {
  const rng = new Rng(seed);
  const rows: { text: string; label: string }[] = [];
  const partner = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    if (i % 4 === 3) {
      const src = i - 1 - rng.int(3);
      const w = rows[src].text.split(' ');
      w[rng.int(w.length)] = 'edited'; // ~0.9 Jaccard over 3-word shingles of 40 words
      rows.push({ text: w.join(' '), label: rows[src].label });
      partner.set(i, src);
    } else rows.push({ text: Array.from({ length: len }, () => 'w' + rng.int(20000)).join(' '), label: rng.next() < 0.5 ? 'x' : 'y' });
  }
  return { rows, partner };
}

test('near duplicates: planted pairs are clustered, unrelated rows are not', async () => {
  const { rows, partner } = plantedRows(9, 200);
  const { report, kept, clusters } = await run(rows, { near: { threshold: 0.7, seed: 1 } });
  assert.equal(report.nearRemoved, 50);
  assert.equal(report.exactRemoved, 0);
  assert.equal(report.rowsOut, 150);
  const keptIdx = new Set(kept.map((r) => Number(String(r._hash).slice(1))));
  for (const [dup, src] of partner) {
    assert.ok(!keptIdx.has(dup), `planted duplicate ${dup} was kept`);
    const cd = clusters.find((c) => c.member_row === dup)!,
      cs = clusters.find((c) => c.member_row === src)!;
    assert.equal(cd.cluster_id, cs.cluster_id);
    assert.equal(cd.reason, 'near');
  }
  assert.equal(clusters.length, 100); // 50 pairs, nothing else
});

test('near detection uses the seed but finds the same planted pairs across seeds', async () => {
  // 80 words with one edit: Jaccard ~0.93, far enough above 0.8 that LSH misses are ~1e-4 per pair.
  const { rows } = plantedRows(2, 120, 80);
  for (const seed of [0, 1, 2]) {
    const { report } = await run(rows, { near: { seed } });
    assert.equal(report.nearRemoved, 30, `seed ${seed}`);
  }
  const char = await run(rows, { near: { shingle: 'char', size: 5 } });
  assert.equal(char.report.nearRemoved, 30);
});

const conflictRows = [
  { text: 'win a prize now', label: 'ham' },
  { text: 'WIN a prize now', label: 'spam' },
  { text: 'win a  prize now', label: 'spam' },
  { text: 'unique row', label: 'ham' },
];

test('label conflicts: keep-first, drop-all, majority', async () => {
  const first = await run(conflictRows, { near: false, conflicts: 'keep-first' });
  assert.deepEqual(
    first.kept.map((r) => [r.text, r.label]),
    [
      ['win a prize now', 'ham'],
      ['unique row', 'ham'],
    ],
  );
  assert.deepEqual([first.report.exactRemoved, first.report.conflictsRemoved, first.report.conflictCount], [0, 2, 1]);
  assert.deepEqual(first.report.conflicts, [{ cluster: 0, reason: 'exact', labels: { ham: 1, spam: 2 }, kept: 'ham' }]);
  assert.ok(first.clusters.every((c) => c.conflict === true));

  const drop = await run(conflictRows, { near: false, conflicts: 'drop-all' });
  assert.deepEqual(
    drop.kept.map((r) => r.text),
    ['unique row'],
  );
  assert.equal(drop.report.conflictsRemoved, 3);
  assert.equal(drop.report.conflicts[0].kept, null);

  const maj = await run(conflictRows, { near: false, conflicts: 'majority' });
  assert.deepEqual(
    maj.kept.map((r) => [r.text, r.label, r._cluster]),
    [
      ['WIN a prize now', 'spam', 0],
      ['unique row', 'ham', 1],
    ],
  );
  assert.deepEqual([maj.report.exactRemoved, maj.report.conflictsRemoved], [1, 1]);
  for (const r of [first, drop, maj])
    assert.equal(r.report.rowsIn, r.report.rowsOut + r.report.exactRemoved + r.report.nearRemoved + r.report.conflictsRemoved);
});

test('majority drops a conflict without a majority instead of keeping the label that came first', async () => {
  // Two annotators disagreeing on one ticket, twice: 1:1 and 2:2. Both were kept with the first row's label (billing),
  // so the order of the file chose what the model learns; 2:1 still keeps the majority.
  const rows = [
    { text: 'charged twice and the app crashes', label: 'billing' },
    { text: 'Charged twice and the app crashes', label: 'technical' },
    { text: 'refund please, login broken', label: 'billing' },
    { text: 'refund please, login broken', label: 'technical' },
    { text: 'refund please, login broken ', label: 'technical' },
    { text: 'Refund please, login broken', label: 'billing' },
    { text: 'win a prize now', label: 'spam' },
    { text: 'WIN a prize now', label: 'ham' },
    { text: 'win a  prize now', label: 'spam' },
    { text: 'unique row', label: 'ham' },
  ];
  const maj = await run(rows, { near: false, conflicts: 'majority' });
  assert.deepEqual(
    maj.kept.map((r) => [r.text, r.label]),
    [
      ['win a prize now', 'spam'],
      ['unique row', 'ham'],
    ],
  );
  assert.deepEqual(
    maj.report.conflicts.map((c) => [c.labels, c.kept, c.tie]),
    [
      [{ billing: 1, technical: 1 }, null, true],
      [{ billing: 2, technical: 2 }, null, true],
      [{ ham: 1, spam: 2 }, 'spam', undefined],
    ],
  );
  assert.deepEqual([maj.report.exactRemoved, maj.report.conflictsRemoved], [1, 7]);
  assert.equal(maj.report.rowsIn, maj.report.rowsOut + maj.report.exactRemoved + maj.report.nearRemoved + maj.report.conflictsRemoved);
  assert.match(formatDataReport(maj.report), /cluster 0 \(exact\): billing 1, technical 1 → dropped \(no majority\)/);
});

test('config errors name the field and leave nothing behind', async () => {
  const { dir, path } = table([{ text: 'a', label: 'b' }]);
  const o = { outPath: join(dir, 'o.arrow'), clustersPath: join(dir, 'c.arrow') };
  await assert.rejects(dedupe(path, { columns: ['nope'] }, o), (e: unknown) => e instanceof InputError && e.where === 'columns');
  await assert.rejects(
    dedupe(path, { near: { bands: 20, rows: 10 } }, o),
    (e: unknown) => e instanceof InputError && e.where === 'near.bands',
  );
  await assert.rejects(
    dedupe(path, { near: { threshold: 0 } }, o),
    (e: unknown) => e instanceof InputError && e.where === 'near.threshold',
  );
  await assert.rejects(dedupe(path, { labelColumn: 'x' }, o), (e: unknown) => e instanceof InputError && e.where === 'labelColumn');
  assert.deepEqual(readdirSync(dir), ['in.arrow']);
});

test('real data: sms_spam accounting, 403 raw exact copies, byte-identical reruns', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dedupe-sms-'));
  await ingest(
    { path: 'sms_spam/sms_spam.jsonl', task: 'classification' },
    { baseDir: datasetsDir(), outPath: join(dir, 'in.arrow'), quarantinePath: join(dir, 'q.arrow') },
  );
  const raw = await dedupe(
    join(dir, 'in.arrow'),
    { near: false, normalize: { nfkc: false, casefold: false, whitespace: false, zeroWidth: false } },
    { outPath: join(dir, 'raw.arrow'), clustersPath: join(dir, 'raw.c.arrow') },
  );
  assert.deepEqual([raw.rowsOut, raw.exactRemoved, raw.clusters, raw.conflictCount], [5171, 403, 281, 0]);
  // A table without a prompt template carries no metadata at all: its bytes (and so its cache keys downstream) are as
  // before templates were recorded.
  for (const f of ['in.arrow', 'raw.arrow'])
    assert.deepEqual(
      (await readArrowSchema(join(dir, f))).fields.filter((x) => x.metadata.size > 0).map((x) => x.name),
      [],
      f,
    );
  const norm = await dedupe(
    join(dir, 'in.arrow'),
    { near: false },
    { outPath: join(dir, 'n.arrow'), clustersPath: join(dir, 'n.c.arrow') },
  );
  assert.ok(norm.exactRemoved >= 414, `normalized exact removals ${norm.exactRemoved}`); // README: 414 after trimming alone
  const outs = [];
  for (const k of ['a', 'b']) {
    const r = await dedupe(join(dir, 'in.arrow'), {}, { outPath: join(dir, `${k}.arrow`), clustersPath: join(dir, `${k}.c.arrow`) });
    assert.equal(r.rowsIn, r.rowsOut + r.exactRemoved + r.nearRemoved + r.conflictsRemoved);
    assert.ok(r.rowsOut < norm.rowsOut);
    outs.push(r);
  }
  assert.deepEqual(outs[0], outs[1]);
  assert.ok(readFileSync(join(dir, 'a.arrow')).equals(readFileSync(join(dir, 'b.arrow'))));
  assert.ok(readFileSync(join(dir, 'a.c.arrow')).equals(readFileSync(join(dir, 'b.c.arrow'))));
  const kept = await readAll(join(dir, 'a.arrow'));
  assert.equal(kept.length, outs[0].rowsOut);
  assert.equal(new Set(kept.map((r) => r._cluster)).size, kept.length);
});

test('pairs compare both texts; an empty table gives empty outputs', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dedupe-pairs-'));
  const path = join(dir, 'in.arrow');
  const w = new ArrowTableWriter(path, { text_a: 'utf8', text_b: 'utf8', label: 'utf8' });
  for (const [a, b] of [
    ['x y', 'z'],
    ['X  y', 'Z'],
    ['z', 'x y'],
    ['x y', 'w'],
  ])
    w.push({ text_a: a, text_b: b, label: 'same' });
  w.close();
  const r = await dedupe(path, { near: false }, { outPath: join(dir, 'o.arrow'), clustersPath: join(dir, 'c.arrow') });
  assert.deepEqual([r.rowsOut, r.exactRemoved], [3, 1]);
  assert.deepEqual(
    (await readAll(join(dir, 'o.arrow'))).map((x) => `${x.text_a}|${x.text_b}`),
    ['x y|z', 'z|x y', 'x y|w'],
  );

  const ePath = join(dir, 'empty.arrow');
  new ArrowTableWriter(ePath, { text: 'utf8', label: 'utf8' }).close();
  const e = await dedupe(ePath, {}, { outPath: join(dir, 'eo.arrow'), clustersPath: join(dir, 'ec.arrow') });
  assert.deepEqual([e.rowsIn, e.rowsOut, e.clusters], [0, 0, 0]);
  assert.equal((await readAll(join(dir, 'eo.arrow'))).length, 0);
});

test('near dedupe agrees with brute-force Jaccard on real text (sms_spam, first 1500 rows)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dedupe-bf-'));
  const src = join(dir, 'src.jsonl');
  writeFileSync(
    src,
    readFileSync(join(datasetsDir(), 'sms_spam', 'sms_spam.jsonl'), 'utf8')
      .split('\n')
      .slice(0, 1500)
      .join('\n'),
  );
  await ingest(
    { path: 'src.jsonl', task: 'classification' },
    { baseDir: dir, outPath: join(dir, 'in.arrow'), quarantinePath: join(dir, 'q.arrow') },
  );
  const threshold = 0.7;
  await dedupe(
    join(dir, 'in.arrow'),
    { exact: false, near: { shingle: 'char', size: 5, threshold, seed: 4 } },
    { outPath: join(dir, 'o.arrow'), clustersPath: join(dir, 'c.arrow') },
  );
  const rows = await readAll(join(dir, 'in.arrow'));
  const { makeNormalizer } = await import('./normalize.ts');
  const { shingleHashes } = await import('./minhash.ts');
  const norm = makeNormalizer();
  const sets = rows.map((r) => Uint32Array.from(new Set(shingleHashes(norm(String(r.text)), 'char', 5))).sort());
  const jac = (a: Uint32Array, b: Uint32Array) => {
    let i = 0,
      j = 0,
      inter = 0;
    while (i < a.length && j < b.length) {
      if (a[i] === b[j]) {
        inter++;
        i++;
        j++;
      } else if (a[i] < b[j]) i++;
      else j++;
    }
    return inter / (a.length + b.length - inter);
  };
  const clusterOf = new Map<number, number>();
  for (const c of await readAll(join(dir, 'c.arrow'))) clusterOf.set(c.member_row as number, c.cluster_id as number);
  const same = (a: number, b: number) => clusterOf.has(a) && clusterOf.get(a) === clusterOf.get(b);
  let pairsAbove = 0,
    found = 0,
    falsePairs = 0;
  for (let a = 0; a < sets.length; a++) {
    for (let b = a + 1; b < sets.length; b++) {
      const j = jac(sets[a], sets[b]);
      if (j >= 0.85) {
        pairsAbove++;
        if (same(a, b)) found++;
      }
      // Directly linked clusters can chain, but two rows far below threshold in one cluster with
      // nothing between them would be a false link: count pairs in one 2-member cluster.
      if (j < 0.5 && same(a, b) && [...clusterOf.values()].filter((x) => x === clusterOf.get(a)).length === 2) falsePairs++;
    }
  }
  assert.ok(pairsAbove > 50, `only ${pairsAbove} high-similarity pairs`);
  assert.ok(found / pairsAbove >= 0.98, `recall on pairs with Jaccard ≥ 0.85: ${found}/${pairsAbove}`);
  assert.equal(falsePairs, 0);
});

test('label conflicts name labels such as __proto__ as their own keys', async () => {
  const rows = [
    { text: 'same text', label: '__proto__' },
    { text: 'same text', label: 'ham' },
  ];
  const r = await run(rows, { near: false, conflicts: 'keep-first' });
  assert.deepEqual(Object.entries(r.report.conflicts[0]!.labels).sort(), [
    ['__proto__', 1],
    ['ham', 1],
  ]);
});

/** Ingests `rows` (JSONL records) as instruction rows under `promptTemplate`, in a fresh folder. */
async function ingestInstruction(rows: Record<string, string>[], promptTemplate: string) {
  const dir = mkdtempSync(join(tmpdir(), 'dedupe-tpl-'));
  writeFileSync(join(dir, 'src.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n'));
  await ingest(
    { path: 'src.jsonl', task: 'instruction', promptTemplate, fields: { response: 'label' } },
    { baseDir: dir, outPath: join(dir, 'in.arrow'), quarantinePath: join(dir, 'q.arrow') },
  );
  return { dir, path: join(dir, 'in.arrow') };
}

/** The same rows without the template ingest recorded: what dedupe compared before it read one. */
async function withoutTemplate(path: string, dir: string): Promise<string> {
  const out = join(dir, 'plain.arrow');
  const w = new ArrowTableWriter(out, { prompt: 'utf8', response: 'utf8', _source: 'utf8', _row: 'int32', _hash: 'utf8' });
  for (const r of await readAll(path)) w.push(r);
  w.close();
  return out;
}

const SENTIMENT = 'Is the sentiment of this movie review positive or negative? Answer with one word.\n\n{text}';

test("under ingest's prompt template, different short inputs are not near duplicates, and near copies still are (SST-2)", async () => {
  const sst2 = readFileSync(join(datasetsDir(), 'sst2', 'train.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, string>);
  const { dir, path } = await ingestInstruction(sst2, SENTIMENT);
  const prompt = (await readArrowSchema(path)).fields.find((f) => f.name === 'prompt')!;
  assert.equal(prompt.metadata.get(PROMPT_TEMPLATE_METADATA), SENTIMENT);

  const tpl = await dedupe(path, {}, { outPath: join(dir, 'out.arrow'), clustersPath: join(dir, 'c.arrow') });
  const plain = await dedupe(
    await withoutTemplate(path, dir),
    {},
    { outPath: join(dir, 'p.out.arrow'), clustersPath: join(dir, 'p.c.arrow') },
  );
  // The review sentences alone, as a classification table: what the template should not change.
  const cdir = mkdtempSync(join(tmpdir(), 'dedupe-cls-'));
  await ingest(
    { path: 'sst2/train.jsonl', task: 'classification' },
    { baseDir: datasetsDir(), outPath: join(cdir, 'in.arrow'), quarantinePath: join(cdir, 'q.arrow') },
  );
  const sentences = await dedupe(join(cdir, 'in.arrow'), {}, { outPath: join(cdir, 'out.arrow'), clustersPath: join(cdir, 'c.arrow') });
  assert.equal(tpl.templateShingles, 12);
  assert.deepEqual(
    [tpl.rowsOut, tpl.exactRemoved, tpl.nearRemoved],
    [sentences.rowsOut, sentences.exactRemoved, sentences.nearRemoved],
    'the template changes nothing about which rows are duplicates',
  );
  assert.equal(plain.templateShingles, 0);
  // The figures the README and src/data/README.md give: 16 near removals (23,236 LSH candidates) before, none now.
  assert.deepEqual([plain.nearRemoved, plain.nearCandidates], [16, 23236]);
  assert.deepEqual([tpl.nearRemoved, tpl.nearCandidates], [0, 0]);

  // The template rides along: dedupe's output and every split file record it.
  const after = (p: string) =>
    readArrowSchema(p).then((s) => s.fields.find((f) => f.name === 'prompt')!.metadata.get(PROMPT_TEMPLATE_METADATA));
  assert.equal(await after(join(dir, 'out.arrow')), SENTIMENT);
  const parts = await split(
    join(dir, 'out.arrow'),
    { ratios: { train: 0.8, validation: 0.1, test: 0.1 }, seed: 1 },
    { outDir: join(dir, 'split') },
  );
  for (const f of Object.values(parts.files)) assert.equal(await after(f), SENTIMENT, f);
});

test('under a prompt template, planted near copies of long inputs are found as without it, and one-word inputs kept apart', async () => {
  const { rows, partner } = plantedRows(9, 200);
  // 30 different one-word messages after the planted rows: in the template's 20 words, any two share 18 of their 20
  // shingles as stored (0.9), so without the template left out they would be near duplicates of each other.
  const words = Array.from({ length: 30 }, (_, i) => ({ text: `word${i}`, label: 'x' }));
  const template = 'You are a careful assistant. Read the message below and say whether it is spam or not spam.\n\nMessage: {text}';
  const { dir, path } = await ingestInstruction([...rows, ...words], template);
  const r = await dedupe(
    path,
    { near: { threshold: 0.7, seed: 1 } },
    { outPath: join(dir, 'out.arrow'), clustersPath: join(dir, 'c.arrow') },
  );
  assert.equal(r.nearRemoved, 50);
  assert.ok(r.templateShingles > 0);
  const kept = new Set((await readAll(join(dir, 'out.arrow'))).map((x) => Number(x._row) - 1)); // _row: the 1-based line
  for (const dup of partner.keys()) assert.ok(!kept.has(dup), `planted copy ${dup} was kept`);
});

test('a prompt-template metadata that is no template fails dedupe, naming the column, and writes nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dedupe-badtpl-'));
  const path = join(dir, 'in.arrow');
  const bad = new Map([[PROMPT_TEMPLATE_METADATA, 'Answer {unclosed']]);
  const schema = new Schema([new Field('prompt', new Utf8(), false, bad), new Field('response', new Utf8(), false)]);
  const w = new ArrowTableWriter(path, schema);
  w.push({ prompt: 'Answer x', response: 'y' });
  w.close();
  await assert.rejects(
    dedupe(path, {}, { outPath: join(dir, 'out.arrow'), clustersPath: join(dir, 'c.arrow') }),
    (e: unknown) =>
      e instanceof InputError &&
      /column "prompt"'s tempered\.promptTemplate metadata is not a prompt template: unclosed "\{"/.test(e.message),
  );
  assert.deepEqual(readdirSync(dir), ['in.arrow']);
  // Near-duplicate detection off reads no template.
  await dedupe(path, { near: false }, { outPath: join(dir, 'out.arrow'), clustersPath: join(dir, 'c.arrow') });
});
