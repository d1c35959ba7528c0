/**
 * `tempered audit --action` knows the actions by AUDIT_ACTIONS: every action the source writes is in it, and an
 * action neither in it nor in the trail is a usage error, not an empty listing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AUDIT_ACTIONS, openAudit } from '../../src/audit/log.ts';
import { runCliInProcess as runCli } from '../../tests/helpers/cli.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** Where tempered's code is (not its tests, benches or scripts). */
const CODE = ['activities', 'cli', 'client', 'infra', 'src', 'ui', 'workflows'];
/** The first word of every action (AUDIT_ACTIONS): a literal of that shape elsewhere is checked as one. */
const PREFIXES = [...new Set(AUDIT_ACTIONS.map((a) => a.split('.')[0]!))];
/**
 * Literals of an action's shape that are not actions: a field a message names (`where: 'serve.token'`), a tensor
 * name (file names, `model.onnx`, are told by their extension). One written newly is either an action, to add to
 * AUDIT_ACTIONS, or belongs here.
 */
const NOT_ACTIONS = new Set(['serve.token', 'serve.workers', 'model.norm', 'model.source', 'model.vocab', 'model.classes']);
const FILE_NAME = /\.(onnx|gguf|safetensors|bin|json|jsonl|csv|db)$/;

function codeFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' ? [] : codeFiles(path);
    return /\.(ts|cjs|mjs)$/.test(e.name) && !/\.(test|testing|bench)\.ts$/.test(e.name) ? [path] : [];
  });
}

/** The actions `file` writes: literals of an action's shape; `schedule.${change}` is each ScheduleChange. */
function writtenActions(text: string, scheduleChanges: string[]): string[] {
  // Comments name actions too (and fields, in backticks), without writing them.
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|\s)\/\/.*$/gm, '');
  const shape = new RegExp(`['\`"]((?:${PREFIXES.join('|')})\\.[a-z][a-z_]*)['\`"]`, 'g');
  const found = [...code.matchAll(shape)].map((m) => m[1]!).filter((a) => !NOT_ACTIONS.has(a) && !FILE_NAME.test(a));
  if (code.includes('`schedule.${change}`')) found.push(...scheduleChanges.map((c) => `schedule.${c}`));
  return found;
}

test('every action the source writes is in AUDIT_ACTIONS', () => {
  const schedules = readFileSync(join(ROOT, 'client/schedules.ts'), 'utf8');
  const union = /export type ScheduleChange = ([^;]+);/.exec(schedules);
  assert.ok(union, 'client/schedules.ts: export type ScheduleChange = …; (the schedule actions) not found');
  const scheduleChanges = [...union[1]!.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]!);
  const missing: string[] = [];
  const seen = new Set<string>();
  for (const file of CODE.flatMap((d) => codeFiles(join(ROOT, d)))) {
    for (const action of writtenActions(readFileSync(file, 'utf8'), scheduleChanges)) {
      seen.add(action);
      if (!(AUDIT_ACTIONS as readonly string[]).includes(action)) missing.push(`${action} (${relative(ROOT, file)})`);
    }
  }
  assert.deepEqual(missing, [], 'actions written but not in AUDIT_ACTIONS (src/audit/log.ts)');
  // The scan finds what it should: the run gate's and every schedule change's actions.
  for (const a of ['run.triggered', 'run.skipped_unchanged', 'schedule.paused', 'schedule.backfilled', 'model.not_promoted'])
    assert.ok(seen.has(a), `${a} not found in the source`);
});

test('audit --action names an action tempered records or one the trail holds; another is a usage error (exit 2)', async (t) => {
  const home = mkdtempSync(join(tmpdir(), 'tempered-audit-actions-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  const env = { TEMPERED_HOME: home };
  const log = await openAudit(join(home, 'audit.db'));
  await log.append({ action: 'schedule.paused', subject: 'nightly' });
  await log.append({ action: 'plugin.exported', subject: 'x' });
  await log.close();

  for (const [action, near] of [
    ['bogus', undefined],
    ['run.cancel', 'run.cancelled'],
  ] as const) {
    const r = await runCli(['audit', '--action', action], env);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`--action '${action.replace('.', '\\.')}' is no action the audit trail records`));
    if (near) assert.match(r.stderr, new RegExp(`did you mean '${near.replace('.', '\\.')}'\\?`));
    assert.match(r.stderr, /the actions: run\.submitted, .*schedule\.paused.*\nusage: tempered audit/);
  }
  // Recorded by tempered, or by an extension (in the trail, not in the list): listed.
  for (const [action, subject] of [
    ['schedule.paused', 'nightly'],
    ['plugin.exported', 'x'],
  ]) {
    const r = await runCli(['audit', '--action', action!, '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      (JSON.parse(r.stdout) as { subject: string }[]).map((x) => x.subject),
      [subject],
    );
  }
});
