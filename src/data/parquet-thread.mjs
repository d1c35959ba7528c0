// Decodes a Parquet file in a worker thread for read-records.ts (plain JavaScript, so the thread
// needs no TypeScript loader). hyparquet trusts the counts inside a file: a corrupt page header can
// make it loop for hours or allocate without bound, which on the worker's main thread would stop
// heartbeats and cancellation. Here a hang or a blown heap ends this thread only.
import { parentPort, workerData } from 'node:worker_threads';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';

const message = (e) => String(e?.message ?? e);
let file, metadata;
try {
  file = await asyncBufferFromFile(workerData.path);
  metadata = await parquetMetadataAsync(file);
  parentPort.postMessage({
    type: 'meta',
    total: Number(metadata.num_rows),
    groups: metadata.row_groups.map((g) => ({ rows: Number(g.num_rows), bytes: Number(g.total_compressed_size ?? 0) })),
  });
} catch (e) {
  parentPort.postMessage({ type: 'error', phase: 'metadata', message: message(e) });
}
parentPort.on('message', async ({ rowStart, rowEnd }) => {
  try {
    parentPort.postMessage({ type: 'rows', rows: await parquetReadObjects({ file, metadata, rowStart, rowEnd }) });
  } catch (e) {
    parentPort.postMessage({ type: 'error', phase: 'rows', message: message(e) });
  }
});
