import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { ArrowTableWriter, columnValues, describeArrowFile, readArrowBatches, type ColumnSpec } from './arrow-io.ts';

const spec: ColumnSpec = {
  text: 'utf8',
  n: 'int32',
  big: 'int64',
  x: 'float32',
  ok: 'bool',
  ids: 'list<int32>',
  emb: { fixedSizeList: 'float32', size: 3 },
};

function writeSample(path: string, rows: number, batchRows: number) {
  const w = new ArrowTableWriter(path, spec, batchRows);
  for (let i = 0; i < rows; i++) {
    w.push({
      text: `row ${i} ✓`,
      n: i,
      big: 2 ** 40 + i,
      x: i / 4,
      ok: i % 3 === 0,
      ids: Array.from({ length: i % 4 }, (_, k) => k + i),
      emb: [i, -i, 0.5],
    });
  }
  return w.close();
}

test('writes every column type and reads it back in batches', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-io-'));
  const path = join(dir, 't.arrow');
  const res = writeSample(path, 10, 4);
  assert.equal(res.rows, 10);
  assert.deepEqual(await describeArrowFile(path), {
    rows: 10,
    schema: { text: 'Utf8', n: 'Int32', big: 'Int64', x: 'Float32', ok: 'Bool', ids: 'List<Int32>', emb: 'FixedSizeList[3]<Float32>' },
  });
  const sizes: number[] = [];
  const texts: unknown[] = [],
    bigs: unknown[] = [],
    ids: number[][] = [];
  for await (const b of readArrowBatches(path)) {
    sizes.push(b.numRows);
    texts.push(...columnValues(b, 'text'));
    bigs.push(...columnValues(b, 'big'));
    ids.push(...columnValues(b, 'ids').map((v) => Array.from(v as Iterable<number>)));
  }
  assert.deepEqual(sizes, [4, 4, 2]);
  assert.equal(texts[7], 'row 7 ✓');
  assert.equal(bigs[9], 2 ** 40 + 9);
  assert.deepEqual(ids[7], [7, 8, 9]);
  // Readable by the stock reader too: this is the real Arrow IPC file format.
  const t = tableFromIPC(readFileSync(path));
  assert.equal(t.numRows, 10);
  assert.equal(t.getChild('emb')!.get(2)!.toArray()[1], -2);
});

test('identical input gives byte-identical files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-io-'));
  writeSample(join(dir, 'a.arrow'), 1000, 128);
  writeSample(join(dir, 'b.arrow'), 1000, 128);
  assert.ok(readFileSync(join(dir, 'a.arrow')).equals(readFileSync(join(dir, 'b.arrow'))));
});

test('zero-row table is a valid file with its schema; missing folders are created', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-io-'));
  const path = join(dir, 'new', 'sub', 'empty.arrow');
  new ArrowTableWriter(path, { a: 'utf8', b: 'int32' }).close();
  assert.deepEqual(await describeArrowFile(path), { rows: 0, schema: { a: 'Utf8', b: 'Int32' } });
});

test('abort and failed rows leave nothing behind', () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-io-'));
  const w = new ArrowTableWriter(join(dir, 'x.arrow'), spec, 2);
  w.push({ text: 'a', n: 1, big: 1, x: 1, ok: true, ids: [], emb: [1, 2, 3] });
  assert.throws(() => w.push({ text: 'a', n: 1 }), /missing column big/);
  w.abort();
  assert.deepEqual(readdirSync(dir), []);
  const w2 = new ArrowTableWriter(join(dir, 'y.arrow'), { emb: { fixedSizeList: 'float32', size: 3 } }, 1);
  assert.throws(() => w2.push({ emb: 'not a list' }));
  w2.abort();
  assert.deepEqual(readdirSync(dir), []);
});

test('takeRows gathers rows of every column type, from sliced batches too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arrow-io-'));
  const path = join(dir, 't.arrow');
  writeSample(path, 10, 10);
  const { takeRows } = await import('./arrow-io.ts');
  for await (const b of readArrowBatches(path)) {
    const pick = [9, 0, 4, 4];
    const t = takeRows(b, pick);
    for (const name of Object.keys(spec)) {
      const want = columnValues(b, name).map(String);
      assert.deepEqual(
        columnValues(t, name).map(String),
        pick.map((i) => want[i]),
        name,
      );
    }
    const sliced = b.slice(3, 8);
    const s = takeRows(sliced, [4, 0]);
    assert.deepEqual(columnValues(s, 'text'), ['row 7 ✓', 'row 3 ✓']);
    assert.deepEqual(columnValues(s, 'big'), [2 ** 40 + 7, 2 ** 40 + 3]);
  }
});
