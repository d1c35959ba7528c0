/**
 * `tempered demo` (what `npm run demo` runs): brings up the embedded Temporal dev server (or uses
 * TEMPORAL_ADDRESS), a worker in this process, and runs the example pipeline to the end with
 * progress on the terminal.
 */
import { dirname, resolve } from 'node:path';
import { PROJECT_ROOT } from '../../../infra/state.ts';
import { actor, parse } from '../args.ts';
import type { CliContext } from '../context.ts';
import { planOrExit, startAndReport } from './runs.ts';

export const DEMO_PIPELINE = resolve(PROJECT_ROOT, 'pipelines', 'sms-spam.yaml');

export async function demoCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values } = parse(argv, { pipeline: { type: 'string' }, param: { type: 'string', multiple: true }, 'no-cache': { type: 'boolean' } }, 'tempered demo [--pipeline FILE] [--param k=v ...] [--no-cache]');
  const file = values.pipeline ?? DEMO_PIPELINE;
  console.log(`tempered demo: ${file}`);
  const plan = await planOrExit(ctx, file, values.param ?? [], false);
  console.log(`plan: ${plan.stages.map((s) => s.id).join(' → ')}`);
  const client = await ctx.client({ startServer: true });
  const code = await startAndReport(ctx, client, { plan, options: { baseDir: dirname(file), actor: actor(), noCache: !!values['no-cache'], specFile: file } }, { wait: true, json: false });
  return code;
}
