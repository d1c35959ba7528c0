/**
 * `tempered validate`, and the planning `submit` and `demo` share. Only the spec library and the
 * stage kinds' contracts load here (no Temporal, no onnxruntime), so validate answers at once.
 */
import { formatSpecErrors, loadSpec, parseParamOverrides } from '../../src/spec/index.ts';
import type { KindRegistry, PlannedPipeline } from '../../src/spec/types.ts';
import type { AnyStageKind } from '../../src/stages/types.ts';
import { kindRegistry, loadStageKinds } from '../../src/stages/stage-kinds.ts';
import { parse } from '../args.ts';
import { CliError } from '../errors.ts';

/** Loads and plans a spec, printing every error and failing with exit code 2 when there are any. */
export async function planOrExit(ctx: { registry: KindRegistry }, file: string, params: string[], json: boolean): Promise<PlannedPipeline> {
  return (await loadPlanOrExit(ctx, file, params, json)).plan;
}

/** planOrExit, with the file's text as it was read and planned (what a submitted run's audit record keeps). */
export async function loadPlanOrExit(
  ctx: { registry: KindRegistry },
  file: string,
  params: string[],
  json: boolean,
): Promise<{ plan: PlannedPipeline; text: string }> {
  const parsed = parseParamOverrides(params);
  const res =
    parsed.errors.length > 0
      ? { ok: false as const, errors: parsed.errors }
      : await loadSpec(file, {
          kinds: ctx.registry.kinds,
          knownButUnavailable: ctx.registry.knownButUnavailable,
          paramOverrides: parsed.overrides,
        });
  if (!res.ok) {
    if (json) console.log(JSON.stringify({ ok: false, errors: res.errors }, null, 2));
    else console.error(formatSpecErrors(res.errors));
    throw new CliError(`${res.errors.length} error${res.errors.length === 1 ? '' : 's'} in ${file}`, 2);
  }
  return { plan: res.plan, text: res.text };
}

/** Needs no CLI context: main runs it before (and instead of) creating one. */
export async function validateCmd(argv: string[]): Promise<number> {
  const usage = 'tempered validate <file> [--param k=v ...] [--json]';
  const { values, positionals } = parse(argv, { param: { type: 'string', multiple: true }, json: { type: 'boolean' } }, usage);
  if (positionals.length !== 1) throw new CliError(`validate takes one pipeline file\nusage: ${usage}`, 2);
  const kinds = await loadStageKinds();
  const plan = await planOrExit({ registry: kindRegistry(kinds) }, positionals[0]!, values.param ?? [], !!values.json);
  if (values.json) console.log(JSON.stringify({ ok: true, plan: asRun(plan, kinds) }, null, 2));
  else
    console.log(
      `ok: pipeline '${plan.name}', ${plan.stages.length} stages in order ${plan.stages.map((s) => s.id).join(' → ')} (spec ${plan.specHash.slice(0, 12)})`,
    );
  return 0;
}

/**
 * The plan as the workflow runs it: a stage of a kind whose outputs are never reused (register, deploy,
 * a plugin's side effect) shows `cache: false` whatever the file says, since it acts on every run. The
 * spec hash is left as planned: folding the kind's answer into the plan itself would change the hash
 * of every pipeline with such a stage once, and `skipIfUnchanged` schedules would see a change.
 */
function asRun(plan: PlannedPipeline, kinds: ReadonlyMap<string, AnyStageKind>): PlannedPipeline {
  return { ...plan, stages: plan.stages.map((s) => (kinds.get(s.uses)?.cacheable === false ? { ...s, cache: false } : s)) };
}
