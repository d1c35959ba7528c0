/**
 * A team's own Temporal cluster (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE), as the cluster journey of 7 Dec met it: a real
 * dev server that tempered did not start, and the settings a user gets wrong.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, startCliServer } from './helpers/cli.ts';

let cluster: Awaited<ReturnType<typeof startCliServer>>;

before(async () => {
  cluster = await startCliServer('tempered-cluster-settings-');
});
after(async () => {
  await cluster?.close();
});

describe('a cluster of its own', () => {
  it('a namespace the server lacks is said as such, naming TEMPORAL_NAMESPACE, by every command', async () => {
    const env = { TEMPORAL_ADDRESS: cluster.server.address, TEMPORAL_NAMESPACE: 'ml-tema', TEMPERED_HOME: cluster.home };
    // status said "no run 'x'", the worker printed the server's raw status, server status said "reachable" (exit 0).
    for (const args of [['status', 'some-run'], ['worker'], ['server', 'status']]) {
      const r = await runCli(args, env);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      const said = r.stdout + r.stderr;
      assert.match(
        said,
        /namespace 'ml-tema' \(TEMPORAL_NAMESPACE\) does not exist on the Temporal server at .* \(TEMPORAL_ADDRESS\), which has 'default'/,
        args.join(' '),
      );
      assert.match(said, /temporal operator namespace create --namespace ml-tema/, args.join(' '));
      assert.doesNotMatch(said, /no run|Status \{|^reachable/m, args.join(' '));
    }
  });
});
