/**
 * `tempered demo` (what `npm run demo` runs): brings up the embedded Temporal dev server (or uses
 * TEMPORAL_ADDRESS), a worker in this process, runs the example pipeline to the end with progress
 * on the terminal, then serves the promoted model over HTTP and asks it about two example messages: a classifier
 * on /predict, a language model (`--pipeline pipelines/instruct.yaml`) on /v1/chat/completions.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { runUrl } from '../../infra/connection.ts';
import { PROJECT_ROOT } from '../../infra/state.ts';
import { waitForRun } from '../../client/runs.ts';
import type { RunStatus } from '../../workflows/types.ts';
import type { PlannedPipeline } from '../../src/spec/types.ts';
import { isTextGenerator } from '../../src/serve/types.ts';
import { actor, parse } from '../args.ts';
import type { CliContext } from '../context.ts';
import { interruptedExit, loadPlanOrExit, startAndReport } from './runs.ts';
import { startServing } from './serve.ts';
import { isTemplateError, parseTemplate } from '../../src/data/prompt-template.ts';
import { startUi } from './ui.ts';

export const DEMO_PIPELINE = resolve(PROJECT_ROOT, 'pipelines', 'sms-spam.yaml');
const EXAMPLES = [
  'WINNER!! You have been selected to receive a £900 prize reward. Call 09061701461 to claim now',
  'Are we still meeting for lunch tomorrow? I can bring the notes',
];
/** What the demo asks the instruction-tuned LM (pipelines/instruct.yaml: SST-2 review sentiment), in SST-2's lower-cased, tokenized style. */
const LM_EXAMPLES = [
  'a gorgeous , witty , seductive movie that keeps you guessing until the very end .',
  'the plot is a tired collection of clichés , and the jokes never land .',
];

/** The user message the demo sends a served language model: the pipeline's own ingest prompt template around the example. */
export function demoQuestion(plan: PlannedPipeline | undefined, example: string): string {
  const template = plan?.stages.find((s) => s.uses === 'ingest')?.with.promptTemplate;
  if (typeof template !== 'string') return example;
  const parsed = parseTemplate(template);
  if (isTemplateError(parsed)) return example; // validate refused it before the run
  // Every section of the template, with the one example text standing in for each field.
  return parsed.sections.flatMap((s) => s.pieces.map((p) => (typeof p === 'string' ? p : example))).join('');
}

async function askClassifier(url: string, token: string): Promise<void> {
  console.log(`POST ${url}/predict`);
  const res = await fetch(`${url}/predict`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: EXAMPLES }),
  });
  const body = (await res.json()) as { model: string; predictions: { label: string; scores: Record<string, number> }[] };
  console.log(`${res.status} from ${body.model}:`);
  body.predictions.forEach((p, i) =>
    console.log(`  ${p.label.padEnd(5)} ${(Math.max(...Object.values(p.scores)) * 100).toFixed(1).padStart(5)}%  ${EXAMPLES[i]}`),
  );
}

/** One chat completion per example, greedy and short: what a client of the OpenAI API would send. */
async function askLanguageModel(url: string, token: string, plan: PlannedPipeline | undefined): Promise<void> {
  console.log(`POST ${url}/v1/chat/completions`);
  for (const example of LM_EXAMPLES) {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: demoQuestion(plan, example) }], max_tokens: 8, temperature: 0 }),
    });
    const body = (await res.json()) as { model?: string; choices?: { message: { content: string } }[]; error?: { message: string } };
    const answer = body.choices?.[0]?.message.content ?? `error: ${body.error?.message ?? 'no answer'}`;
    console.log(`  ${res.status} from ${body.model ?? '?'}: ${JSON.stringify(answer.trim())}  ← ${example}`);
  }
}

async function servePrediction(ctx: CliContext, status: RunStatus, plan?: PlannedPipeline): Promise<void> {
  const deploy = status.stages.find((s) => s.uses === 'deploy' && s.outputs);
  if (!deploy?.outputs) return;
  const out = deploy.outputs as { promoted?: boolean; ref?: string; alias?: string; explanation?: string };
  if (!out.promoted) {
    console.log(`\nnot promoted: ${out.explanation}`);
    // The version is registered all the same: it can be served by its number to try it.
    if (out.ref)
      console.log(`  it is registered as ${out.ref}; try it anyway with \`TEMPERED_SERVE_TOKEN=… npx tempered serve ${out.ref}\``);
    return;
  }
  const name = String(out.ref).split('@')[0]!;
  const token = randomBytes(24).toString('hex');
  console.log(`\nserving ${name}@${out.alias} …`);
  const { server, url } = await startServing(ctx, `${name}@${out.alias}`, { token, threads: 2, logger: 'errors' });
  try {
    if (isTextGenerator(server.model.current)) {
      await askLanguageModel(url, token, plan);
      console.log(`  talk to it yourself: npx tempered chat ${name}@${out.alias}`);
    } else await askClassifier(url, token);
  } finally {
    await server.close();
  }
}

/** The task queue of the demo's run: the usual one on the embedded dev server, one of this process's own on a cluster. */
export function demoQueue(ctx: Pick<CliContext, 'settings' | 'taskQueue'>): string {
  return ctx.settings().embedded ? ctx.taskQueue : `tempered-demo-${hostname()}-${process.pid}`;
}

export async function demoCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      pipeline: { type: 'string' },
      param: { type: 'string', multiple: true },
      'no-cache': { type: 'boolean' },
      'no-ui': { type: 'boolean' },
      'ui-port': { type: 'string' },
    },
    'tempered demo [--pipeline FILE] [--param k=v ...] [--no-cache] [--no-ui] [--ui-port 8270]',
  );
  const file = values.pipeline ? resolve(values.pipeline) : DEMO_PIPELINE;
  const started = Date.now();
  console.log(`tempered demo: ${file}`);
  const { plan, text } = await loadPlanOrExit(ctx, file, values.param ?? [], false);
  console.log(`plan: ${plan.stages.map((s) => s.id).join(' → ')}`);
  const client = await ctx.client({ startServer: true });
  // The dashboard comes up first, so the run can be watched live from its first stage.
  const ui = values['no-ui']
    ? undefined
    : await startUi(ctx, { port: Number(values['ui-port'] ?? 8270), anyPortIfBusy: values['ui-port'] === undefined });
  if (ui) console.log(`dashboard: ${ui.url}`);
  let runId = '';
  const code = await startAndReport(
    ctx,
    client,
    { plan, options: { baseDir: dirname(file), actor: actor(), noCache: !!values['no-cache'], specFile: file, specText: text } },
    // The demo runs its stages here even against a cluster: it is one self-contained walk-through. There on a queue of
    // its own: on the team's queue its worker took colleagues' stages, and their workers took the demo's, which read
    // this checkout's data and register in this state folder, where the demo then looks for the model.
    { wait: true, json: false, localWorker: true, queue: demoQueue(ctx), onSubmitted: (id) => (runId = id) },
  );
  // Ctrl-C while the run went on: startAndReport said what becomes of it; nothing more to show.
  if (interruptedExit(code)) {
    await ui?.server.close();
    return code;
  }
  if (code === 0 && runId) await servePrediction(ctx, await waitForRun(client, runId), plan);
  console.log(
    `\ndemo finished in ${((Date.now() - started) / 1000).toFixed(0)} s${ctx.settings().embedded ? ' (the dev server keeps running: `npx tempered server stop`)' : ''}`,
  );
  if (ui) {
    const web = runId ? runUrl(ctx.settings(), runId) : undefined;
    // The handlers go in before the line: whoever waits for it may signal at once (Node's default action kills).
    const stopRequested = new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    console.log(
      `\ndashboard: ${ui.url}${web ? `\nweb ui:    ${web}` : ''}\nthe dashboard stays up until Ctrl-C (\`npm run demo -- --no-ui\` skips it)`,
    );
    await stopRequested;
    await ui.server.close();
  }
  return code;
}
