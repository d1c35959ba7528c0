// Decodes a Parquet or Arrow IPC file in a worker thread for read-records.ts (plain JavaScript, so
// the thread needs no TypeScript loader). hyparquet and apache-arrow trust the counts and offsets
// inside a file: a corrupt one can make them loop for hours (hyparquet spins in its RLE decoder;
// apache-arrow re-reads the end of the file without end) or allocate without bound. On the
// worker's main thread that would stop heartbeats and cancellation; here it ends this thread only.
import { open } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { RecordBatchReader } from 'apache-arrow';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';

const message = (e) => String(e?.message ?? e);
const post = (m) => {
  try {
    parentPort.postMessage(m);
  } catch (e) {
    parentPort.postMessage({ type: 'error', phase: 'rows', message: `a value cannot be passed on: ${message(e)}` });
  }
};

if (workerData.format === 'parquet') {
  let file, metadata;
  try {
    file = await asyncBufferFromFile(workerData.path);
    metadata = await parquetMetadataAsync(file);
    post({
      type: 'meta',
      groups: metadata.row_groups.map((g) => ({ rows: Number(g.num_rows), bytes: Number(g.total_compressed_size ?? 0) })),
      names: parquetSchema(metadata).children.map((c) => c.element.name),
    });
  } catch (e) {
    post({ type: 'error', phase: 'metadata', message: message(e) });
  }
  parentPort.on('message', async ({ rowStart, rowEnd }) => {
    try {
      post({ type: 'rows', rows: await parquetReadObjects({ file, metadata, rowStart, rowEnd }) });
    } catch (e) {
      post({ type: 'error', phase: 'rows', message: message(e) });
    }
  });
} else {
  // Arrow: one record batch per request, as plain rows (Arrow's own objects cannot cross threads). Nested all the way
  // down: a list's toJSON holds its structs as Arrow rows still (a chat table's list of {role, content} messages).
  // The depth is the schema's, not the data's.
  const plain = (v) => {
    if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v;
    if (v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return v;
    const j = typeof v.toJSON === 'function' ? v.toJSON() : v;
    if (Array.isArray(j)) return j.map(plain);
    if (j === null || typeof j !== 'object') return j;
    const out = Object.create(null);
    for (const [k, x] of Object.entries(j)) out[k] = plain(x);
    return out;
  };
  let iter;
  try {
    const fh = await open(workerData.path, 'r');
    // Opened here, so the schema is read before the first batch is asked for.
    const reader = await (await RecordBatchReader.from(fh)).open();
    iter = reader[Symbol.asyncIterator]();
    post({ type: 'meta', groups: [], names: reader.schema.fields.map((f) => f.name) });
  } catch (e) {
    post({ type: 'error', phase: 'metadata', message: message(e) });
  }
  parentPort.on('message', async () => {
    try {
      const next = await iter.next();
      if (next.done) {
        post({ type: 'done' });
        return;
      }
      const batch = next.value;
      const names = batch.schema.fields.map((f) => f.name);
      const cols = names.map((n) => batch.getChild(n));
      const rows = [];
      for (let i = 0; i < batch.numRows; i++) {
        const values = Object.create(null);
        for (let c = 0; c < names.length; c++) values[names[c]] = plain(cols[c].get(i));
        rows.push(values);
      }
      post({ type: 'rows', rows });
    } catch (e) {
      post({ type: 'error', phase: 'rows', message: message(e) });
    }
  });
}
