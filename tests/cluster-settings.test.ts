/**
 * A team's own Temporal cluster (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE), as the cluster journey of 7 Dec met it: a real
 * dev server that tempered did not start, and the settings a user gets wrong.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

  it('a TLS setting that cannot work names its variable and what it should hold, before connecting', async () => {
    const notPem = join(cluster.home, 'cert.der');
    writeFileSync(notPem, Buffer.from([0x30, 0x82, 0x01, 0x0a]));
    const missing = join(cluster.home, 'no-such.pem');
    const base = { TEMPORAL_ADDRESS: cluster.server.address, TEMPERED_HOME: cluster.home };
    const cases: [Record<string, string>, RegExp][] = [
      // Was a bare "ENOENT: no such file or directory, open '…'".
      [
        { TEMPORAL_TLS_CERT: missing, TEMPORAL_TLS_KEY: missing },
        /TEMPORAL_TLS_CERT=.*no-such\.pem: cannot read it \(no such file\); set it to the path of the client certificate \(PEM\)/,
      ],
      // Was OpenSSL's "PEM routines::no start line" inside "cannot reach Temporal".
      [{ TEMPORAL_TLS_CERT: notPem, TEMPORAL_TLS_KEY: notPem }, /TEMPORAL_TLS_CERT=.*cert\.der is not PEM/],
      [{ TEMPORAL_TLS_CA: notPem }, /TEMPORAL_TLS_CA=.*cert\.der is not PEM.*the CA certificate/],
      // Was read as off: the connection went out in plain text.
      [{ TEMPORAL_TLS: 'yes' }, /TEMPORAL_TLS=yes: say true or false/],
    ];
    for (const [env, said] of cases) {
      const r = await runCli(['runs'], { ...base, ...env });
      assert.equal(r.code, 1, `${JSON.stringify(env)}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, said, JSON.stringify(env));
      assert.doesNotMatch(r.stderr, /ENOENT|PEM routines|cannot reach/, JSON.stringify(env));
    }
  });
});
