#!/usr/bin/env node
// Installs what a fresh clone lacks before `npm test` / `npm run demo`: npm packages (when
// node_modules is missing or older than package-lock.json), the pinned Temporal CLI and the pinned
// SeaweedFS binary (the S3 server the object-store tests run against).
// Plain JavaScript on purpose: it must run before any dependency is installed.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [major] = process.versions.node.split('.').map(Number);
if (major < 20) {
  console.error(`tempered needs Node.js 20 or newer; this is ${process.version}.`);
  process.exit(1);
}

const lock = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.tempered-lock-sha256');
// npm's postinstall: a user who ran `npm ci` (or `npm install`) themselves has the packages of this lock file, and
// without the stamp the first `npm run demo` would install them all again (two minutes here). Only in a checkout with
// its lock file and its own node_modules, and only when the dev packages the tests need were installed too; anywhere
// else (a packed install, hoisted dependencies) it does nothing, and never fails the install.
if (process.argv.includes('--stamp-only')) {
  const omitted = `${process.env.npm_config_omit ?? ''} ${process.env.NODE_ENV === 'production' ? 'dev' : ''}`.includes('dev');
  if (!omitted && existsSync(lock) && existsSync(dirname(stamp))) {
    try {
      writeFileSync(stamp, createHash('sha256').update(readFileSync(lock)).digest('hex') + '\n');
    } catch {
      // No stamp: the next `npm run demo` or `npm test` installs again, as before.
    }
  }
  process.exit(0);
}
const want = createHash('sha256').update(readFileSync(lock)).digest('hex');
const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
if (want !== have) {
  console.error('[setup] installing npm packages (npm ci)…');
  // onnxruntime-node would otherwise try to fetch CUDA libraries from outside the npm registry.
  const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' };
  // Under `npm run`, .npmrc's onnxruntime-node-install reaches us as this variable, which the inner
  // npm would warn about a second time ("Unknown env config"); ONNXRUNTIME_NODE_INSTALL does its job.
  delete env.npm_config_onnxruntime_node_install;
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env });
  if (r.status !== 0) {
    console.error('[setup] npm ci failed; see the output above.');
    process.exit(r.status ?? 1);
  }
  writeFileSync(stamp, want + '\n');
}

const cli = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'infra', 'temporal-cli.ts')], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
});
if (cli.status !== 0) {
  console.error('[setup] could not provide the Temporal CLI (see above).');
  process.exit(cli.status ?? 1);
}

const weed = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'infra', 'seaweedfs.ts')], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
});
if (weed.status !== 0) {
  console.error('[setup] could not provide SeaweedFS (see above).');
  process.exit(weed.status ?? 1);
}
