#!/usr/bin/env node
// Runs the test files named, two at a time, in the order named, and reports TAP as `node --test` does.
// `node --test` sorts the files it is given by name, so scripts/run-tests.mjs could not choose the
// order; the API keeps it. Started with `--import tsx`, which the files' processes inherit.
import { run } from 'node:test';
import { tap } from 'node:test/reporters';

const stream = run({ files: process.argv.slice(2), concurrency: 2, timeout: 600_000 });
// As `node --test` decides its exit status: any failed test that is not a todo.
stream.on('test:fail', (data) => {
  if (!data.todo) process.exitCode = 1;
});
stream.compose(tap).pipe(process.stdout);
