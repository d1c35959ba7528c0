// Entry of a worker thread that runs tempered's TypeScript: registers tsx (a thread does not inherit
// the loader `bin/tempered.js` registered), then imports the module named by `workerData.main` (a
// file URL: inference-thread-main.ts for the classifier pool, generation-thread-main.ts for generation).
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.main);
