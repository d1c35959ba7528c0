#!/usr/bin/env node
// Runs the tempered CLI (`npm run demo`, `npm run tempered -- …`) in a child Node process with glibc
// malloc tuned for training (see malloc-tuning.mjs; not for `serve` and `ui`); glibc reads the setting only at process start.
// Signals a terminal or supervisor sends are passed on, and the child's exit status is ours.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withMallocTuning } from './malloc-tuning.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const child = spawn(
  process.execPath,
  [
    '--import',
    import.meta.resolve('tsx'),
    '--import',
    import.meta.resolve('./launcher-child.mjs'),
    join(root, 'cli', 'main.ts'),
    ...process.argv.slice(2),
  ],
  {
    // fd 3: a channel whose closing tells the CLI this launcher is gone, even when SIGKILLed (launcher-child.mjs).
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: withMallocTuning(process.env, process.argv.slice(2)),
  },
);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  } else process.exit(code ?? 1);
});
