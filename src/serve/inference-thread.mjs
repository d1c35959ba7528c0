// Entry of an inference worker thread: loads tempered's TypeScript through tsx (a thread does not
// inherit the loader `bin/tempered.js` registered), then runs inference-thread-main.ts.
import { register } from 'tsx/esm/api';

register();
await import('./inference-thread-main.ts');
