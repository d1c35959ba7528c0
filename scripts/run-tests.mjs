#!/usr/bin/env node
// Runs every *.test.ts with node's built-in test runner (through tsx). Extra arguments are passed
// on, e.g. `npm test -- --test-name-pattern=cache` or a list of files. --test-force-exit: a test
// file that leaves a handle open (a socket, a timer) must not hang the whole suite. Two files at a
// time: the integration files spend most of their time waiting on Temporal and child processes.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const SKIP = new Set(['node_modules', '.git', '.tempered', 'bench']);

function find(dir, out = []) {
  for (const name of readdirSync(dir)) {
    if (SKIP.has(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

const args = process.argv.slice(2);
const files = args.some((a) => a.endsWith('.ts')) ? [] : find(root).sort();
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-force-exit', '--test-concurrency=2', '--test-timeout=600000', ...args, ...files],
  { cwd: root, stdio: 'inherit', env: { ...process.env, TEMPERED_TESTING: '1' } },
);
process.exit(r.status ?? 1);
