/**
 * `submit --sweep`: one run per combination of the values given to repeated `--param`s (a hyperparameter search by
 * grid). Every combination is planned before any is submitted, so a bad value submits nothing; with `--wait` the runs
 * go one after another, so they do not share the CPUs and each reuses the stages before train from the first.
 */
import { dirname, resolve } from 'node:path';
import { expandParamSweep } from '../../src/spec/index.ts';
import { missingSources } from '../../src/stages/ingest.ts';
import type { RunInput } from '../../workflows/types.ts';
import { actor } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { interruptedExit, loadPlanOrExit, refuseMissingSources, startAndReport } from './runs.ts';

/** More runs than this from one command is more likely a typo than a plan (and compare shows at most 8 at once). */
export const MAX_SWEEP_RUNS = 64;

export interface SweepOptions {
  params: string[];
  wait: boolean;
  json: boolean;
  noCache: boolean;
  queue?: string;
  localWorker?: boolean;
  runId?: string;
}

/** The varying `name=value`s of one run, for the lines that tell the runs apart. */
function varying(args: string[], runs: string[][]): string {
  return args.filter((a) => runs.some((r) => !r.includes(a))).join(' ');
}

export async function submitSweep(ctx: CliContext, file: string, o: SweepOptions): Promise<number> {
  if (o.runId !== undefined) throw new CliError('--run-id names one run; a --sweep submits several (each gets its own id)', 2);
  const runs = expandParamSweep(o.params);
  if (runs.length < 2)
    throw new CliError(
      '--sweep runs once per value of a parameter given more than once, and none is: e.g. --sweep --param lr=0.001 --param lr=0.003',
      2,
    );
  if (runs.length > MAX_SWEEP_RUNS)
    throw new CliError(`--sweep would submit ${runs.length} runs (every combination of the values given); at most ${MAX_SWEEP_RUNS}`, 2);
  const planned: { params: string[]; plan: RunInput['plan']; text: string }[] = [];
  for (const params of runs) planned.push({ params, ...(await loadPlanOrExit(ctx, file, params, o.json)) });
  const baseDir = dirname(resolve(file));
  // Every trial's sources, said once each: a swept parameter may name another data file than the first trial's.
  const said = new Set<string>();
  for (const [i, p] of planned.entries()) {
    const missing = (await missingSources(p.plan, baseDir, ctx.paths.root)).map((m) => `${m.stage}\n${m.message}`);
    if (missing.every((m) => said.has(m))) continue;
    for (const m of missing) said.add(m);
    console.error(`run ${i + 1} of ${planned.length} (${varying(p.params, runs)}):`);
    await refuseMissingSources(ctx, p.plan, baseDir);
  }
  // Each trial is a whole run: one that passes the gate moves the alias, in the order the trials end, not to the best.
  const deploys = planned[0]!.plan.stages.filter(
    (s) => s.uses === 'deploy' && planned.some((p) => String(p.plan.stages.find((x) => x.id === s.id)?.with.gate ?? '').trim() !== 'false'),
  );
  for (const d of deploys)
    console.error(
      `note: every run of the sweep goes through stage ${d.id}: each trial that passes its gate moves ${String(d.with.name)}@${String(d.with.alias ?? 'production')} as it ends, the last to pass keeps it, not the best; to choose yourself, make the gate a parameter (\${{ params.gate }}), sweep with --param gate=false, compare with runs --compare and promote the winner with \`tempered models promote NAME@VERSION --reason ...\``,
    );
  const client = await ctx.client({ startServer: true });
  const ids: string[] = [];
  // With --json, one document for the sweep, an array of what submit --json prints for one run (as runs --json and
  // logs --json print theirs): back to back, one per trial, no JSON.parse read them.
  const docs: unknown[] = [];
  const printDocs = () => {
    if (o.json) console.log(JSON.stringify(docs, null, 2));
  };
  let failed = 0;
  for (const [i, p] of planned.entries()) {
    if (!o.json) console.log(`\nrun ${i + 1} of ${planned.length}: ${varying(p.params, runs)}`);
    const input: RunInput = {
      plan: p.plan,
      options: { baseDir, actor: actor(), noCache: o.noCache, specFile: resolve(file), specText: p.text },
    };
    const code = await startAndReport(ctx, client, input, {
      wait: o.wait,
      json: o.json,
      queue: o.queue,
      localWorker: o.localWorker,
      onSubmitted: (id) => ids.push(id),
      onJson: (doc) => docs.push(doc),
    });
    if (interruptedExit(code)) {
      // The trials that ended (or were submitted) are said; the one being waited for goes on, as stderr says.
      printDocs();
      console.error(`stopped: ${planned.length - i - 1} run(s) of the sweep not submitted`);
      return code;
    }
    if (code !== 0) failed++;
  }
  printDocs();
  if (!o.json) {
    console.log(`\n${ids.length} runs submitted${o.wait ? `, ${ids.length - failed} succeeded` : ''}: ${ids.join(' ')}`);
    console.log(`  compare them: tempered runs --compare ${ids.join(' ')}`);
  }
  return failed === 0 ? 0 : 1;
}
