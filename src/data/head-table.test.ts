import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter, readArrowBatches, columnValues } from './arrow-io.ts';
import { headTable } from './head-table.ts';

test('headTable keeps the first rows across batch boundaries, with every column and type', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'head-table-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'src.arrow');
  const w = new ArrowTableWriter(src, { text: 'utf8', n: 'int64', v: 'list<float32>' }, 4);
  for (let i = 0; i < 10; i++) w.push({ text: `row ${i}`, n: BigInt(i), v: [i, i + 0.5] });
  w.close();
  const read = async (p: string) => {
    const rows: unknown[][] = [];
    for await (const b of readArrowBatches(p)) {
      const [a, n, v] = ['text', 'n', 'v'].map((c) => columnValues(b, c));
      for (let i = 0; i < b.numRows; i++) rows.push([a![i], n![i], Array.from((v![i] as { toArray(): Float32Array }).toArray())]);
    }
    return rows;
  };
  const all = await read(src);
  assert.equal(await headTable(src, 6, join(dir, 'six.arrow')), 6);
  assert.deepEqual(await read(join(dir, 'six.arrow')), all.slice(0, 6));
  assert.equal(await headTable(src, 100, join(dir, 'all.arrow')), 10);
  assert.deepEqual(await read(join(dir, 'all.arrow')), all);
});
