/**
 * `tempered` command line. Exit codes: 0 success, 1 a run or operation failed, 2 bad usage or an
 * invalid pipeline file.
 */
import type { CliContext } from './context.ts';
import { HelpRequested, UsageError } from './args.ts';
import { CliError, commandRun } from './errors.ts';
import { tmpdir } from 'node:os';
import { InputError } from '../src/errors.ts';
import { diskFullError, diskFullHint, isDiskFull, lowSpaceNote } from '../src/util/disk-full.ts';
import { stateDir } from '../infra/state.ts';
import { withServerAnswer } from '../client/server-answer.ts';

type Command = (ctx: CliContext, argv: string[]) => Promise<number>;

// Each command's module loads only when that command runs: Temporal's client and worker, Arrow and
// onnxruntime take seconds to load, which `validate` and `--help` never need.
const runs = () => import('./commands/runs.ts');
const COMMANDS: Record<string, { run: () => Promise<Command>; help: string }> = {
  validate: {
    run: async () => {
      const { validateCmd } = await import('./commands/validate.ts');
      return (_ctx, argv) => validateCmd(argv);
    },
    help: 'check a pipeline file and show its plan',
  },
  setup: {
    run: async () => {
      const { setupCmd } = await import('./commands/setup.ts');
      return (_ctx, argv) => setupCmd(argv);
    },
    help: 'install the pinned Temporal CLI and SeaweedFS; --gpu: onnxruntime CUDA build + CUDA 13 libraries (1.3 GB)',
  },
  submit: { run: async () => (await runs()).submitCmd, help: 'start a run of a pipeline (--wait to follow it)' },
  status: { run: async () => (await runs()).statusCmd, help: 'show a run, stage by stage' },
  runs: { run: async () => (await runs()).runsCmd, help: 'list recent runs' },
  resume: {
    run: async () => (await runs()).resumeCmd,
    help: 'rerun a failed run: finished stages are reused, training continues from its checkpoint',
  },
  cancel: { run: async () => (await runs()).cancelCmd, help: 'cancel a run' },
  logs: { run: async () => (await runs()).logsCmd, help: "a run's activity timeline (attempts, failures)" },
  worker: { run: async () => (await import('./commands/worker.ts')).workerCmd, help: 'run a worker (stages execute here)' },
  server: {
    run: async () => (await import('./commands/server.ts')).serverCmd,
    help: 'start|stop|status of the embedded Temporal dev server',
  },
  models: {
    run: async () => (await import('./commands/models.ts')).modelsCmd,
    help: 'list, show, diff, promote and roll back registered models',
  },
  serve: {
    run: async () => (await import('./commands/serve.ts')).serveCmd,
    help: 'serve a registered model over HTTP (hot-swaps when its alias moves); language models answer the OpenAI API',
  },
  generate: {
    run: async () => (await import('./commands/generate.ts')).generateCmd,
    help: "stream a language model's answer to a prompt (a registered model or a model source)",
  },
  predict: {
    run: async () => (await import('./commands/predict.ts')).predictCmd,
    help: "score a JSONL or CSV file's rows with a model into a JSONL or CSV file: a classifier's labels and probabilities, a language model's answers",
  },
  chat: {
    run: async () => (await import('./commands/chat.ts')).chatCmd,
    help: 'talk to a language model in the terminal, turn after turn (a registered model or a model source)',
  },
  audit: {
    run: async () => (await import('./commands/audit.ts')).auditCmd,
    help: 'read or --verify the audit trail (who ran what, on which data)',
  },
  schedule: {
    run: async () => (await import('./commands/schedule.ts')).scheduleCmd,
    help: 'retrain on a timetable (Temporal Schedules): create|list|describe|pause|unpause|trigger|backfill|update|delete',
  },
  ui: {
    run: async () => (await import('./commands/ui.ts')).uiCmd,
    help: 'the web dashboard: runs, live training curves, evaluations, models, audit, schedules (--port, --host)',
  },
  demo: { run: async () => (await import('./commands/demo.ts')).demoCmd, help: 'run the example pipeline end to end' },
  cache: {
    run: async () => (await import('./commands/cache.ts')).cacheCmd,
    help: "prune this host's cache of the shared store (TEMPERED_STORE) to TEMPERED_CACHE_MAX_GB, as a worker does",
  },
  db: {
    run: async () => (await import('./commands/db.ts')).dbCmd,
    help: 'migrate: bring the shared PostgreSQL database (TEMPERED_DATABASE_URL) up to this release, once per upgrade that needs it; status: whether it needs to (read only)',
  },
  'import-home': {
    run: async () => (await import('./commands/import-home.ts')).importHomeCmd,
    help: 'move a one-machine TEMPERED_HOME (registry, audit chain, artifacts, stage cache) into the shared TEMPERED_STORE and TEMPERED_DATABASE_URL; --dry-run',
  },
  store: {
    run: async () => (await import('./commands/store.ts')).storeCmd,
    help: 'gc: delete the artifacts nothing keeps (registry, recent stage-cache records) once older than --older-than days; a dry run unless --collect',
  },
};

/** Commands that need no context (state folders, Temporal client, stage kinds). */
const CONTEXT_FREE = new Set(['validate', 'setup']);

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  const rows = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(width)}  ${c.help}`);
  return `usage: tempered <command> [options]\n\ncommands:\n${rows.join('\n')}\n\nEnvironment: TEMPORAL_ADDRESS (use a cluster instead of the embedded dev server), TEMPORAL_NAMESPACE,\nTEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY/TEMPORAL_TLS_CA, TEMPORAL_API_KEY, TEMPERED_HOME (state folder), TEMPERED_ACTOR, TEMPERED_UI_TOKEN,\nTEMPERED_STORE (s3://bucket/prefix; with AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), TEMPERED_DATABASE_URL\n(postgres://…), TEMPERED_DATA_ROOTS. All of them: the README's Configuration table.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    // Asked for, the help is the command's output; for a bare `tempered`, it is the usage error's text (stderr, exit 2).
    (name ? console.log : console.error)(help());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`tempered: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  const run = await cmd.run();
  try {
    if (CONTEXT_FREE.has(name)) return await run(undefined as never, rest);
    const ctx = await (await import('./context.ts')).createContext();
    try {
      return await run(ctx, rest);
    } finally {
      await ctx.close();
    }
  } catch (e) {
    if (!(e instanceof HelpRequested)) throw e;
    console.log(e.message);
    return 0;
  }
}

/**
 * Exits once stdout and stderr have taken everything written: to a pipe they write asynchronously, and
 * process.exit() then dropped all but the first 64 KiB (`tempered audit --json | jq` read cut JSON, with
 * exit status 0). A reader that went away (`| head`) ends the wait too.
 */
function exitWhenWritten(code: number): void {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.destroyed || !stream.writable) done();
    else stream.write('', () => done());
  }
}

const isEntry = process.argv[1] && /(cli\/main\.ts|bin\/tempered(\.js)?)$/.test(process.argv[1]);
if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => exitWhenWritten(code),
    (e: unknown) => {
      const err = e as Error;
      if (err instanceof CliError || err instanceof UsageError) {
        console.error(`tempered: ${err.message}`);
        exitWhenWritten(err instanceof CliError ? err.exitCode : 2);
        return;
      }
      // The state folder and the temp folder: where a command writes.
      const folders = [stateDir(), tmpdir()];
      if (isDiskFull(err)) {
        const full = diskFullError(err, folders, { hint: diskFullHint(commandRun.id) });
        console.error(`tempered: ${full.message}\n  ${full.hint}`);
      } else {
        console.error(`tempered: ${err.message === undefined ? String(err) : withServerAnswer(err)}`);
        if (err instanceof InputError && err.hint) console.error(`  ${err.hint}`);
        const note = lowSpaceNote(folders, commandRun.id);
        if (note) console.error(`  ${note}`);
      }
      if (process.env.TEMPERED_DEBUG) console.error(err.stack);
      // An input error is the user's to fix, said with what to do; its stack trace would help nobody.
      else if (!(err instanceof InputError)) console.error('(set TEMPERED_DEBUG=1 for the stack trace)');
      exitWhenWritten(1);
    },
  );
}
