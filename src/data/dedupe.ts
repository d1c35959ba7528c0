/**
 * dedupe: removes exact duplicates (on a normalized key) and near duplicates (MinHash + LSH,
 * clustered with union-find), resolves label conflicts inside duplicate clusters by policy, and
 * writes the kept rows (with `_cluster`) plus a clusters table listing every multi-row cluster.
 *
 * Two passes over the input: the first builds per-row state (key hash map, signatures, LSH index,
 * union-find, label ids); the second streams the input again and writes the kept rows. The first
 * row of a cluster (in input order) is kept unless the conflict policy says otherwise.
 */
import { DataType, Field, Int32, Schema, makeData } from 'apache-arrow';
import { InputError } from '../errors.ts';
import { ArrowTableWriter, arrowSchema, readArrowBatches, readArrowSchema, stringColumn, takeRows } from './arrow-io.ts';
import type { DedupeConfig } from './config.ts';
import { Growable } from './growable.ts';
import { key53, LshIndex, MinHasher, estimateJaccard, optimalBands, shingleHashesScratch, type ShingleKind } from './minhash.ts';
import { makeNormalizer } from './normalize.ts';
import type { DedupeConflict, DedupeReport } from './report.ts';
import { UnionFind } from './union-find.ts';
import { setOwn } from '../util/own-key.ts';
import { resolveNear } from './dedupe-config.ts';
import { columnTemplates, TemplateShingles } from './template-shingles.ts';
import { MESSAGES, messagesText } from './conversation.ts';

export interface DedupeOptions {
  outPath: string;
  clustersPath: string;
  onProgress?: (p: { rows: number; fraction?: number }) => void;
}

export const CLUSTER_COLUMNS = arrowSchema({
  cluster_id: 'int32',
  member_row: 'int32',
  member_hash: 'utf8',
  kept: 'bool',
  reason: 'utf8',
  conflict: 'bool',
});

/** Column sets dedupe compares by default, first match wins. */
const DEFAULT_TEXT_COLUMNS = [['text'], ['text_a', 'text_b'], ['prompt', 'response'], ['messages']];

function pickColumns(schema: Schema, cfg: DedupeConfig): { text: string[]; label: string | null } {
  const names = new Set(schema.fields.map((f) => f.name));
  let text = cfg.columns;
  if (text === undefined) {
    text = DEFAULT_TEXT_COLUMNS.find((set) => set.every((c) => names.has(c)));
    if (!text)
      throw new InputError(
        `table has none of the default text columns (text | text_a+text_b | prompt+response | messages); columns are ${[...names].join(', ')}`,
        { where: 'columns', hint: 'set columns: [...]' },
      );
  }
  if (text.length === 0) throw new InputError('columns must name at least one column', { where: 'columns' });
  for (const c of text) {
    const f = schema.fields.find((x) => x.name === c);
    if (!f) throw new InputError(`column ${JSON.stringify(c)} is not in the table (${[...names].join(', ')})`, { where: 'columns' });
    if (!DataType.isUtf8(f.type))
      throw new InputError(`column ${JSON.stringify(c)} is ${f.type}, expected Utf8 text`, { where: 'columns' });
  }
  let label: string | null = cfg.labelColumn ?? (names.has('label') ? 'label' : null);
  if (cfg.labelColumn !== undefined && !names.has(cfg.labelColumn))
    throw new InputError(`labelColumn ${JSON.stringify(cfg.labelColumn)} is not in the table`, { where: 'labelColumn' });
  if (label !== null && !DataType.isUtf8(schema.fields.find((f) => f.name === label)!.type)) label = null;
  return { text, label };
}

export async function dedupe(inPath: string, cfg: DedupeConfig, opts: DedupeOptions): Promise<DedupeReport> {
  const schema = await readArrowSchema(inPath);
  const { text: textCols, label: labelCol } = pickColumns(schema, cfg);
  const near = resolveNear(cfg.near);
  const exact = cfg.exact ?? true;
  const policy = cfg.conflicts ?? 'keep-first';
  if (!['keep-first', 'drop-all', 'majority'].includes(policy))
    throw new InputError(`conflicts must be 'keep-first', 'drop-all' or 'majority', got ${JSON.stringify(policy)}`, { where: 'conflicts' });
  const normalize = makeNormalizer(cfg.normalize);
  const template = near
    ? TemplateShingles.of([columnTemplates(schema, textCols, 'the table')], normalize, near.shingle, near.size)
    : TemplateShingles.NONE;

  // ---- pass 1: per-row state ----
  const uf = new UnionFind();
  const exactFirst = new Map<number, number>();
  const exactOf = new Growable<Int32Array>(Int32Array);
  const labelIds = new Growable<Int32Array>(Int32Array);
  const labelNames: string[] = [];
  const labelIndex = new Map<string, number>();
  const hasher = near ? new MinHasher(near.numPerm, near.seed) : null;
  let lsh = near ? new LshIndex(near.bands, near.rows, near.numPerm) : null;
  // 16-bit signatures: half the memory of the largest per-row state, see minhash.ts `Signatures`.
  const sigs = new Growable<Uint16Array>(Uint16Array, near ? near.numPerm * 1024 : 1);
  const rowOfSig = new Growable<Int32Array>(Int32Array);
  let nearCandidates = 0,
    nearVerified = 0;

  let row = 0;
  for await (const batch of readArrowBatches(inPath)) {
    // A chat table's conversations are compared as their text (role: content lines), not as JSON.
    const cols = textCols.map((c) => (c === MESSAGES ? stringColumn(batch, c).map(messagesText) : stringColumn(batch, c)));
    const labels = labelCol ? stringColumn(batch, labelCol) : null;
    for (let i = 0; i < batch.numRows; i++, row++) {
      uf.add();
      let key = normalize(cols[0][i]);
      for (let c = 1; c < cols.length; c++) key += '\u0000' + normalize(cols[c][i]);
      if (labels) {
        let id = labelIndex.get(labels[i]);
        if (id === undefined) {
          id = labelNames.length;
          labelNames.push(labels[i]);
          labelIndex.set(labels[i], id);
        }
        labelIds.push(id);
      }
      if (exact) {
        const k = key53(key);
        const first = exactFirst.get(k);
        if (first !== undefined) {
          exactOf.push(first);
          uf.union(first, row);
          continue; // same key, same signature: nothing new for LSH
        }
        exactFirst.set(k, row);
      }
      exactOf.push(row);
      // Not every column empty, and something left once a prompt template's own shingles are out: a row that is all
      // template has nothing of its own to compare, and is matched, like an empty row, by its exact key only.
      const shingles = near && key.length > cols.length - 1 ? template.strip(shingleHashesScratch(key, near.shingle, near.size)) : null;
      if (near && shingles && shingles.length > 0) {
        const sigId = rowOfSig.length;
        rowOfSig.push(row);
        sigs.reserve(near.numPerm);
        hasher!.signature(shingles, sigs.data, sigId * near.numPerm);
        sigs.length += near.numPerm;
        const me = row;
        lsh!.insert(sigs.data, sigId, (other) => {
          const otherRow = rowOfSig.data[other];
          if (uf.find(otherRow) === uf.find(me)) return true;
          nearCandidates++;
          if (estimateJaccard(sigs.data, other, sigId, near.numPerm) >= near.threshold) {
            nearVerified++;
            uf.union(otherRow, me);
            return true;
          }
          return false;
        });
      }
    }
    opts.onProgress?.({ rows: row });
  }
  const n = row;
  exactFirst.clear();
  // Signatures and the LSH index are no longer needed; let them go before pass 2.
  sigs.data = new Uint16Array(0);
  lsh = null;

  // ---- clusters and policy ----
  const root = new Int32Array(n);
  const size = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    root[i] = uf.find(i);
    size[root[i]]++;
  }
  const clusterId = new Int32Array(n);
  let nextId = 0,
    clusters = 0,
    largest = n > 0 ? 1 : 0;
  for (let i = 0; i < n; i++) {
    if (root[i] === i) {
      clusterId[i] = nextId++;
      if (size[i] > 1) {
        clusters++;
        largest = Math.max(largest, size[i]);
      }
    }
  }
  /** Kept row per root (-1: whole cluster dropped); only roots of multi-row clusters differ from themselves. */
  const keptOf = new Int32Array(n);
  for (let i = 0; i < n; i++) keptOf[i] = root[i];
  // A cluster is 'exact' when every member has its root's normalized key.
  const clusterNear = new Uint8Array(n);
  for (let i = 0; i < n; i++) if (exactOf.data[i] !== exactOf.data[root[i]]) clusterNear[root[i]] = 1;
  const conflictRoot = new Uint8Array(n);
  const conflicts: DedupeConflict[] = [];
  let conflictCount = 0;
  if (labelCol) {
    const perCluster = new Map<number, Map<number, { count: number; first: number }>>();
    for (let i = 0; i < n; i++) {
      if (size[root[i]] < 2) continue;
      let m = perCluster.get(root[i]);
      if (!m) perCluster.set(root[i], (m = new Map()));
      const l = labelIds.data[i];
      const e = m.get(l);
      if (e) e.count++;
      else m.set(l, { count: 1, first: i });
    }
    for (const [r, m] of perCluster) {
      if (m.size < 2) continue;
      conflictRoot[r] = 1;
      conflictCount++;
      let kept: number;
      let tie = false;
      if (policy === 'drop-all') kept = -1;
      else if (policy === 'keep-first') kept = r;
      else {
        // The label most members carry. Without one (a text labelled billing once and technical once, the usual
        // disagreement of two annotators) the cluster goes, as drop-all would: keeping the label that came first in
        // the file trained on a guess.
        const top = Math.max(...[...m.values()].map((e) => e.count));
        const leaders = [...m.values()].filter((e) => e.count === top);
        tie = leaders.length > 1;
        kept = tie ? -1 : leaders[0]!.first;
      }
      keptOf[r] = kept;
      if (conflicts.length < 20) {
        const labels: Record<string, number> = {};
        for (const [l, e] of [...m].sort((a, b) => (labelNames[a[0]] < labelNames[b[0]] ? -1 : 1))) setOwn(labels, labelNames[l]!, e.count);
        conflicts.push({
          cluster: clusterId[r],
          reason: clusterNear[r] ? 'near' : 'exact',
          labels,
          kept: kept === -1 ? null : labelNames[labelIds.data[kept]],
          ...(tie ? { tie: true } : {}),
        });
      }
    }
  }
  // ---- pass 2: write ----
  // The writer keeps a field's prompt template and nothing else of its metadata.
  const outFields = schema.fields.filter((f) => f.name !== '_cluster');
  const outSchema = new Schema([...outFields, new Field('_cluster', new Int32(), false)]);
  const out = new ArrowTableWriter(opts.outPath, outSchema);
  let clustersOut: ArrowTableWriter | null = null;
  let exactRemoved = 0,
    nearRemoved = 0,
    conflictsRemoved = 0,
    rowsOut = 0;
  try {
    clustersOut = new ArrowTableWriter(opts.clustersPath, CLUSTER_COLUMNS);
    const hasHash = schema.fields.some((f) => f.name === '_hash' && DataType.isUtf8(f.type));
    let base = 0;
    for await (const batch of readArrowBatches(inPath)) {
      const keep: number[] = [];
      const hashes = hasHash ? stringColumn(batch, '_hash') : null;
      for (let i = 0; i < batch.numRows; i++) {
        const g = base + i,
          r = root[g],
          kept = keptOf[r];
        const isKept = kept === g;
        let reason: 'exact' | 'near' = exactOf.data[g] === exactOf.data[kept === -1 ? r : kept] ? 'exact' : 'near';
        if (isKept) {
          keep.push(i);
          reason = clusterNear[r] ? 'near' : 'exact';
        } else if (conflictRoot[r] && (kept === -1 || labelIds.data[g] !== labelIds.data[kept])) conflictsRemoved++;
        else if (reason === 'exact') exactRemoved++;
        else nearRemoved++;
        if (size[r] > 1)
          clustersOut.push({
            cluster_id: clusterId[r],
            member_row: g,
            member_hash: hashes ? hashes[i] : '',
            kept: isKept,
            reason,
            conflict: conflictRoot[r] === 1,
          });
      }
      if (keep.length > 0) {
        const ids = new Int32Array(keep.length);
        for (let k = 0; k < keep.length; k++) ids[k] = clusterId[root[base + keep[k]]];
        out.writeRecordBatch(
          takeRows(batch, keep, out.schema, [makeData({ type: new Int32(), length: ids.length, nullCount: 0, data: ids })]),
        );
        rowsOut += keep.length;
      }
      base += batch.numRows;
      opts.onProgress?.({ rows: base, fraction: n > 0 ? base / n : 1 });
    }
    out.close();
    clustersOut.close();
  } catch (e) {
    out.abort();
    clustersOut?.abort();
    throw e;
  }
  return {
    kind: 'dedupe',
    rowsIn: n,
    rowsOut,
    exactRemoved,
    nearRemoved,
    conflictsRemoved,
    clusters,
    largestCluster: largest,
    conflicts,
    conflictCount,
    nearCandidates,
    nearVerified,
    templateShingles: template.size,
  };
}
