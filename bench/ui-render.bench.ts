/**
 * How long the dashboard's run page takes to show a 10,000-step training history, in Debian's chromium:
 * from navigation start to every curve drawn (uPlot canvases present, the loss chart holding all points).
 *
 * The history is a real Arrow artifact in a real store plus a real progress log, read by the server's
 * own trainingCurves(); the run's status (which would come from Temporal) is a fixed stage list served
 * through playwright's request routing, so no 10,000-step training has to run first.
 *
 *   nice node --import tsx bench/ui-render.bench.ts [steps=10000] [rounds=5]
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { ArrowTableWriter } from '../src/data/arrow-io.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { appendProgressPoint, progressLogPath } from '../src/store/progress-log.ts';
import { FilePoints } from '../src/store/progress-points.ts';
import { MEDIA } from '../src/types.ts';
import { trainingCurves } from '../ui/data.ts';
import { createUiServer } from '../ui/server.ts';
import type { RunStatus } from '../workflows/types.ts';
import { chromiumPath } from '../tests/helpers/browser.ts';

const steps = Number(process.argv[2] ?? 10_000);
const rounds = Number(process.argv[3] ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'ui-bench-'));
const paths = statePaths(dir);
const store = new ArtifactStore(paths.store);

// A plausible history: decaying noisy loss, linear decay lr, validation every 100 steps.
const idx = Array.from({ length: steps }, (_, i) => i);
const historyPath = join(dir, 'history.arrow');
const w = new ArrowTableWriter(historyPath, {
  step: 'int32',
  epoch: 'int32',
  loss: 'float64',
  lr: 'float64',
  grad_norm: 'float64',
  val_loss: 'float64',
  val_accuracy: 'float64',
  val_f1_macro: 'float64',
});
const val = (i: number, v: number) => ((i + 1) % 100 === 0 ? v : Number.NaN);
w.writeBatch({
  step: idx.map((i) => i + 1),
  epoch: idx.map((i) => Math.floor(i / 1000)),
  loss: idx.map((i) => 2 * Math.exp(-i / 2000) + 0.1 * Math.abs(Math.sin(i * 1.7))),
  lr: idx.map((i) => 1e-3 * (1 - i / steps)),
  grad_norm: idx.map((i) => 1 + 0.5 * Math.abs(Math.cos(i * 0.37))),
  val_loss: idx.map((i) => val(i, 2 * Math.exp(-i / 2500))),
  val_accuracy: idx.map((i) => val(i, 1 - 0.5 * Math.exp(-i / 2500))),
  val_f1_macro: idx.map((i) => val(i, 1 - 0.55 * Math.exp(-i / 2500))),
});
w.close();
const history = await store.putFile(historyPath, { mediaType: MEDIA.arrow, rows: steps, move: true });
const log = progressLogPath(paths.progress, 'bench-run', 'exec-1', 'train');
for (const i of idx)
  appendProgressPoint(log, { attempt: 1, t: i, metrics: { step: i + 1, loss: 1, lr: 1e-3, samplesPerSec: 100 + (i % 50) } });

const now = new Date().toISOString();
const stage = (id: string, uses: string, needs: string[], outputs: Record<string, unknown> = {}) => ({
  id,
  uses,
  needs,
  state: 'succeeded' as const,
  attempt: 1,
  startedAt: now,
  endedAt: now,
  outputs,
});
const status: RunStatus = {
  runId: 'bench-run',
  name: 'bench',
  specHash: 'x'.repeat(64),
  state: 'succeeded',
  startedAt: now,
  endedAt: now,
  actor: 'bench',
  params: {},
  stages: [
    stage('ingest', 'ingest', []),
    stage('split', 'split', ['ingest']),
    stage('train', 'train', ['split'], { history, steps }),
    stage('evaluate', 'evaluate', ['train', 'split']),
  ],
};

const t0 = performance.now();
const curves = await trainingCurves(new FilePoints(paths.progress), store, 'bench-run', 'exec-1', status.stages[2]!);
const curvesJson = JSON.stringify({ stages: { train: curves }, states: { train: 'succeeded' } });
const serverMs = performance.now() - t0;

const found = chromiumPath();
if ('missing' in found) {
  console.error(`no browser: ${found.missing}`);
  process.exit(1);
}
const token = 'bench-token-0123456789';
const ui = await createUiServer({
  paths,
  store,
  client: async () => {
    throw new Error('the bench serves the run status itself');
  },
  token,
  actor: 'bench',
  taskQueue: 'bench',
});
const url = await ui.listen(0);
const browser = await chromium.launch({ executablePath: found.path, args: ['--disable-gpu', '--disable-dev-shm-usage'] });
const times: number[] = [];
const mainThread: number[] = [];
try {
  for (let r = 0; r < rounds; r++) {
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    await page.route('**/api/runs/bench-run', (route) =>
      route.fulfill({ json: { status, execution: 'exec-1', temporalStatus: 'COMPLETED', reports: {}, webUrl: null } }),
    );
    await page.route('**/api/runs/bench-run/curves', (route) => route.fulfill({ body: curvesJson, contentType: 'application/json' }));
    // Main-thread busy time (script, style, layout, paint) is what the page costs whatever else the machine runs.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Performance.enable');
    // Reads need no token on loopback: open the run page directly, as a link to it would.
    await page.goto(`${url}/#/run/bench-run`);
    await page.locator(`#chart-loss[data-points="${steps}"] canvas`).waitFor();
    await page.locator('#chart-samplesPerSec canvas').waitFor();
    // From navigation start: loading the page and its modules, two API calls, and drawing five charts.
    times.push((await page.evaluate('performance.now()')) as number);
    const { metrics } = await cdp.send('Performance.getMetrics');
    mainThread.push(1000 * metrics.find((m) => m.name === 'TaskDuration')!.value);
    if (process.env.BENCH_VERBOSE)
      console.log(
        times.at(-1)!.toFixed(0),
        await page.evaluate(
          `JSON.stringify(performance.getEntriesByType('resource').map((e) => [e.name.replace(location.origin, ''), Math.round(e.startTime), Math.round(e.responseEnd)]))`,
        ),
      );
    await page.close();
  }
} finally {
  await browser.close();
  await ui.close();
}
times.sort((a, b) => a - b);
console.log(
  `run page with a ${steps}-step history (${(curvesJson.length / 1024).toFixed(0)} KiB of curves JSON), ${rounds} rounds in chromium:`,
);
console.log(
  `  navigation start → all curves drawn: median ${times[Math.floor(times.length / 2)]!.toFixed(0)} ms, min ${times[0]!.toFixed(0)} ms, max ${times.at(-1)!.toFixed(0)} ms`,
);
mainThread.sort((a, b) => a - b);
console.log(
  `  renderer main thread busy (CDP TaskDuration): median ${mainThread[Math.floor(mainThread.length / 2)]!.toFixed(0)} ms, min ${mainThread[0]!.toFixed(0)} ms`,
);
console.log(`  server: reading the Arrow history and progress log into the response: ${serverMs.toFixed(0)} ms`);
