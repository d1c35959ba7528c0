/**
 * Fixtures for the schedule tests: small labelled JSONL files, pipeline files that ingest them and
 * hand the table to a probe stage (optionally slow), polling helpers, and the `tempered schedule`
 * command run in a child process.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const COMMAND = fileURLToPath(new URL('../../src/cli/commands/schedule.ts', import.meta.url));
const CONTEXT = fileURLToPath(new URL('../../src/cli/context.ts', import.meta.url));
const ARGS = fileURLToPath(new URL('../../src/cli/args.ts', import.meta.url));

/** Whether `tempered schedule` is wired into the CLI entry point yet. */
export function cliHasScheduleCommand(): boolean {
  return /['"]?schedule['"]?\s*:\s*\{/.test(readFileSync(MAIN, 'utf8'));
}

/**
 * Runs `tempered schedule <args>`: through the real entry point (bin/tempered.js) once main.ts
 * routes `schedule`; until then through the same command function with main's error handling, so
 * the command is exercised as a user runs it either way.
 */
export function runScheduleCli(args: string[], env: Record<string, string | undefined>, opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  if (cliHasScheduleCommand()) return runCli(['schedule', ...args], env, opts);
  const script = `
    const { createContext, CliError } = await import(${JSON.stringify(CONTEXT)});
    const { UsageError } = await import(${JSON.stringify(ARGS)});
    const { scheduleCmd } = await import(${JSON.stringify(COMMAND)});
    const ctx = await createContext();
    let code;
    try { code = await scheduleCmd(ctx, JSON.parse(process.env.SCHEDULE_ARGS)); }
    catch (e) {
      console.error('tempered: ' + e.message);
      code = e instanceof CliError ? e.exitCode : e instanceof UsageError ? 2 : 1;
    } finally { await ctx.close(); }
    process.exit(code);`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, ...env, SCHEDULE_ARGS: JSON.stringify(args) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tempered schedule ${args.join(' ')} timed out\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 120_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

export { BIN };
