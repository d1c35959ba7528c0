/**
 * The README's printed examples are what the CLI prints today: the `validate` errors it shows drifted when
 * `pipelines/sms-spam.yaml` grew comment lines (its gate moved from line 102 to 106, the README kept 102).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findWeed } from '../infra/seaweedfs.ts';
import { runCli } from './helpers/cli.ts';

const root = join(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The lines of the README's code block that holds `marker`, without their indentation. */
function block(marker: string): string[] {
  const blocks = readme.split(/^\s*```.*$/m).filter((_, i) => i % 2 === 1);
  const found = blocks.find((b) => b.includes(marker));
  assert.ok(found, `a code block in README.md shows ${marker}`);
  return found
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

test("validate's errors for bad-pipeline.yaml and gate-typo.yaml are printed in the README as validate prints them", async (t) => {
  const shown = block('gate-typo.yaml:');
  // The README's gate-typo.yaml: sms-spam.yaml with a gate that misspells a metric and reads production unguarded.
  const dir = mkdtempSync(join(tmpdir(), 'readme-gate-typo-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'pipelines'));
  const sms = readFileSync(join(root, 'pipelines', 'sms-spam.yaml'), 'utf8');
  const typo = sms.replace(/^(\s*gate: ).*$/m, '$1"f1_marco >= 0.95 && f1_macro >= production.f1_macro"');
  assert.notEqual(typo, sms);
  writeFileSync(join(dir, 'pipelines', 'gate-typo.yaml'), typo);
  const bad = await runCli(['validate', 'tests/fixtures/bad-pipeline.yaml'], {}, { cwd: root });
  const gate = await runCli(['validate', 'pipelines/gate-typo.yaml'], {}, { cwd: dir });
  assert.deepEqual([bad.code, gate.code], [2, 2]);
  const printed = [...bad.stderr.split('\n'), ...gate.stderr.split('\n')]
    .map((l) => l.trim())
    .filter((l) => /^(tests\/fixtures\/bad-pipeline|pipelines\/gate-typo)\.yaml:|^hint: /.test(l));
  assert.deepEqual(shown, printed);
});

// The CLI table listed some commands without flags they take (serve's --threads, generate's --chat-template, …).
test("every command, and every flag of its --help, is in the README's CLI table (schedule's flags in docs/schedules.md)", async () => {
  const table = readme.slice(readme.indexOf('\n## CLI'), readme.indexOf('\n## Benchmarks'));
  // A command may have several rows (`models …` and `models reproduce …`): its flags may be in any of them.
  const rows = new Map<string, string>();
  for (const l of table.split('\n').filter((x) => x.startsWith('| `'))) {
    const command = /^\| `([a-z][a-z-]*)/.exec(l)![1]!;
    rows.set(command, `${rows.get(command) ?? ''}${l}\n`);
  }
  const schedules = readFileSync(join(root, 'docs', 'schedules.md'), 'utf8');
  const commands = [...rows.keys()];
  // Every command `tempered --help` lists has a row (chat once had none).
  const listed = (await runCli(['--help'], {}, { cwd: root })).stdout.match(/^ {2}([a-z][a-z-]*) {2,}/gm)!.map((l) => l.trim());
  assert.ok(listed.length >= 20, `tempered --help lists its commands: ${listed.join(', ')}`);
  assert.deepEqual(
    listed.filter((c) => !rows.has(c)),
    [],
    'commands without a row in the CLI table',
  );
  const missing: string[] = [];
  for (const command of commands) {
    const help = await runCli([command, '--help'], {}, { cwd: root });
    assert.equal(help.code, 0, `${command} --help: ${help.stderr}`);
    // The usage, not the prose after it (setup's mentions pip's --no-deps).
    const usage = help.stdout.split('\n\n')[0]!;
    const flags = new Set(usage.match(/--[a-z][a-z-]*/g) ?? []);
    flags.delete('--json'); // the table's heading says it once for all
    const where = command === 'schedule' ? schedules : rows.get(command)!;
    for (const flag of flags) if (!new RegExp(`${flag}(?![a-z-])`).test(where)) missing.push(`${command} ${flag}`);
  }
  assert.deepEqual(missing, []);
});

// The deployment table's SeaweedFS line put `-logtostderr`, weed's own flag, after `mini`: weed stopped at
// `flag provided but not defined` before serving anything, so an operator copying it got no store.
test("the README's `weed … mini …` line parses: every flag is weed's or mini's, in its place", async (t) => {
  const weed = findWeed();
  if (!weed) return t.skip('SeaweedFS (weed) is not installed: npx tempered setup');
  const line = /`(weed [^`]*\bmini\b[^`]*)`/.exec(readme)?.[1];
  assert.ok(line, 'the README shows how to start SeaweedFS with weed mini');
  // `-h` after the flags: weed parses them all, then prints the usage instead of starting.
  const parsed = spawnSync(weed, [...line.split(/\s+/).slice(1), '-h'], { encoding: 'utf8', cwd: tmpdir() });
  const said = `${parsed.stdout}${parsed.stderr}`;
  assert.match(said, /weed mini/, `weed answered with mini's usage: ${said.slice(0, 300)}`);
  assert.doesNotMatch(said, /flag provided but not defined/);
});

// Hand-written JSON in a shell quote is easy to break (a missing brace, a stray quote) and nothing else reads it.
test("the README's curl examples send JSON bodies that parse, to the served name, with the token serve requires", () => {
  const lines = block('v1/chat/completions -H');
  const shell = lines.filter((l) => !l.startsWith('#')).join('\n');
  const bodies = [...shell.matchAll(/-d '([^']*)'/g)].map((m) => m[1]!);
  assert.ok(bodies.length >= 2, 'a plain and a streamed request');
  for (const body of bodies) {
    const parsed = JSON.parse(body.replace(/\n\s*/g, ' ')) as { model?: unknown; messages?: unknown };
    assert.equal(parsed.model, 'sst2-sentiment-smollm2');
    assert.ok(Array.isArray(parsed.messages) && parsed.messages.length > 0);
  }
  assert.ok(
    bodies.some((b) => /"stream": true/.test(b)),
    'a streamed one',
  );
  assert.match(shell, /^export TEMPERED_SERVE_TOKEN=/m);
  assert.ok(
    (shell.match(/-H "Authorization: Bearer \$TEMPERED_SERVE_TOKEN"/g) ?? []).length === bodies.length,
    'each request sends the token',
  );
});
