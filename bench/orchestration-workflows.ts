/** The bare baseline of bench/orchestration.bench.ts: a workflow that runs a trivial activity n times in a row. */
import { proxyActivities } from '@temporalio/workflow';

const { echo } = proxyActivities<{ echo(x: number): Promise<number> }>({ startToCloseTimeout: '1 minute' });

export async function bareChain(n: number): Promise<number> {
  let x = 0;
  for (let i = 0; i < n; i++) x = await echo(x + 1);
  return x;
}
