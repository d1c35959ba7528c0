/**
 * Fixtures for the schedule tests: small labelled JSONL files, pipeline files that ingest them and
 * hand the table to a probe stage (optionally slow), polling helpers, and the `tempered schedule`
 * command run in a child process.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BIN, runCli, type CliResult } from './cli.ts';

/**
 * `n` classification rows, `spamShare` of them spam, with texts that differ per `variant` so two
 * files with the same label mix still hash differently.
 */
export function labelledRows(n: number, spamShare: number, variant = 'a'): string {
  const spam = Math.round(n * spamShare);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const label = i < spam ? 'spam' : 'ham';
    lines.push(JSON.stringify({ text: `${label} message ${variant}-${i}`, label }));
  }
  return lines.join('\n') + '\n';
}

export function writeData(dir: string, file: string, n: number, spamShare: number, variant = 'a'): string {
  const path = join(dir, file);
  writeFileSync(path, labelledRows(n, spamShare, variant));
  return path;
}

/** A pipeline: ingest `dataFile` (relative to the spec), then a probe stage that reads its table. */
export function writePipeline(dir: string, name: string, dataFile: string, opts: { sleepMs?: number; file?: string } = {}): string {
  const path = join(dir, opts.file ?? `${name}.yaml`);
  writeFileSync(
    path,
    [
      `name: ${name}`,
      'params:',
      '  tag:',
      '    type: string',
      '    default: v1',
      'stages:',
      '  ingest:',
      '    uses: ingest',
      '    with:',
      `      path: ${dataFile}`,
      '      task: classification',
      '  train:',
      '    uses: probe',
      '    needs: ingest',
      '    heartbeatTimeout: 30s',
      '    with:',
      "      value: '${{ params.tag }}'",
      '      inputs:',
      "        - '${{ stages.ingest.outputs.table }}'",
      ...(opts.sleepMs ? [`      sleepMs: ${opts.sleepMs}`] : []),
      '',
    ].join('\n'),
  );
  return path;
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

/** Runs `tempered schedule <args>` through the real entry point (bin/tempered.js). */
export function runScheduleCli(
  args: string[],
  env: Record<string, string | undefined>,
  opts: { timeoutMs?: number } = {},
): Promise<CliResult> {
  return runCli(['schedule', ...args], env, opts);
}

export { BIN };
