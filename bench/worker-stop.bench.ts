/**
 * How long a `tempered worker` takes from SIGTERM to exit while its database does not answer: `frozen` (the
 * PostgreSQL server SIGSTOPped, as a hung host or a lost route: connections stay open and unanswered) or `stopped`
 * (the server shut down: connections refused). A run is in flight on the worker (a probe stage holding 3 s after a
 * tiny pipeline), and the database goes away 1.5 s after the submit, then 6 s pass before the SIGTERM.
 *
 *   node --import tsx bench/worker-stop.bench.ts [frozen|stopped]
 *
 * Before the stop deadline (cli/commands/worker.ts) and the statement timeout (src/db/postgres.ts), a frozen database
 * held the worker past 150 s (the bench gives up there).
 */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCluster } from '../tests/helpers/cluster.ts';
import { runCliInProcess } from '../tests/helpers/cli.ts';

const mode = process.argv[2] ?? 'frozen';
if (mode !== 'frozen' && mode !== 'stopped') throw new Error('usage: worker-stop.bench.ts [frozen|stopped]');
const dir = mkdtempSync(join(tmpdir(), 'worker-stop-'));
const probe = {
  TEMPERED_PLUGINS: fileURLToPath(new URL('../tests/helpers/probe-plugin.ts', import.meta.url)),
  TEMPERED_PROBE_LOG: join(dir, 'probe.log'),
};
const fixtures = fileURLToPath(new URL('../tests/fixtures/', import.meta.url));
copyFileSync(join(fixtures, 'tiny.jsonl'), join(dir, 'tiny.jsonl'));
const file = join(dir, 'p.yaml');
writeFileSync(
  file,
  readFileSync(join(fixtures, 'tiny-pipeline.yaml'), 'utf8').trimEnd() +
    "\n  hold:\n    uses: probe\n    needs: split\n    with:\n      value: x\n      inputs: ['${{ stages.split.outputs.train }}']\n      sleepMs: 3000\n",
);
const cluster = await startCluster({ workerEnv: probe });
try {
  const w = await cluster.startWorker('w', ['--queue', 'q']);
  const submitted = await runCliInProcess(['submit', file, '--queue', 'q', '--json'], {
    ...cluster.hostEnv(cluster.newHome('cli')),
    ...probe,
  });
  if (submitted.code !== 0) throw new Error(submitted.stderr);
  await sleep(1500);
  if (mode === 'frozen') cluster.pg.pause();
  else await cluster.pg.stop();
  await sleep(6000);
  const exited = new Promise<number | null>((r) => w.proc.once('exit', (c) => r(c)));
  const t0 = Date.now();
  w.proc.kill('SIGTERM');
  const code = await Promise.race([exited, sleep(150_000).then(() => 'still running after 150 s')]);
  console.log(`database ${mode}: worker exit ${code} ${((Date.now() - t0) / 1000).toFixed(1)} s after SIGTERM`);
  const said = readFileSync(join(cluster.dir, 'w.log'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('worker:'));
  console.log(said.join('\n'));
  if (mode === 'frozen') cluster.pg.resume();
} finally {
  await cluster.killWorker('w');
  await cluster.close().catch(() => undefined);
}
