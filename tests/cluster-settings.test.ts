/**
 * A team's own Temporal cluster (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE), as the cluster journey of 7 Dec met it: a real
 * dev server that tempered did not start, and the settings a user gets wrong.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { BIN, runCli, startCliServer } from './helpers/cli.ts';
import { startDevServer, stopProcess } from '../infra/dev-server.ts';
import { freePort } from '../src/util/port-race.ts';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const TLS_DIR = join(FIXTURES, 'tls');

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
    // Set but empty is unset: the default namespace (it was "Failed to list workflows").
    const empty = await runCli(['runs'], { ...env, TEMPORAL_NAMESPACE: '' });
    assert.equal(empty.code, 0, empty.stderr);
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

describe('a run past its retention', () => {
  it('status, logs, cancel and resume of a run the server has deleted say so from the audit trail, not "no run"', async () => {
    const env = { TEMPORAL_ADDRESS: cluster.server.address, TEMPERED_HOME: cluster.home };
    const runId = 'retained-run';
    const sub = await runCli(['submit', join(FIXTURES, 'tiny-pipeline.yaml'), '--run-id', runId], env);
    assert.equal(sub.code, 0, sub.stderr);
    // What the namespace's retention does to a closed run; a run no worker took is deleted the same way.
    const conn = await Connection.connect({ address: cluster.server.address });
    try {
      await conn.workflowService.deleteWorkflowExecution({ namespace: 'default', workflowExecution: { workflowId: runId } });
      const client = new Client({ connection: conn });
      for (let i = 0; i < 100; i++) {
        if (
          !(await client.workflow
            .getHandle(runId)
            .describe()
            .then(
              () => true,
              () => false,
            ))
        )
          break;
        await sleep(100);
      }
    } finally {
      await conn.close();
    }
    for (const cmd of ['status', 'status --watch', 'logs', 'cancel', 'resume']) {
      // status --watch polled for ever: bounded here so that the code before the fix fails instead of hanging.
      const r = await runCli([...cmd.split(' '), runId], env, { timeoutMs: 60_000 });
      assert.equal(r.code, 1, `${cmd}: ${r.stdout}${r.stderr}`);
      assert.match(
        r.stderr,
        /run retained-run is no longer on the Temporal server \(namespace 'default' keeps a run's history for 1 day after it ends \(its retention\), or it was deleted\); the audit trail has it, submitted \S+ by /,
        cmd,
      );
      assert.match(r.stderr, /`tempered audit --run retained-run`/, cmd);
      assert.equal(
        /cannot be resumed: submit its pipeline again \(`tempered submit .*tiny-pipeline\.yaml`\)/.test(r.stderr),
        cmd === 'resume',
        cmd,
      );
    }
    // A run nobody knows is still just unknown.
    const none = await runCli(['status', 'never-was'], env);
    assert.match(none.stderr, /no run 'never-was'; list runs with `tempered runs`/);
  });
});

describe('npm run demo against a cluster', () => {
  it("runs its stages in its own process on a task queue of its own, not the team's", async () => {
    const env = { TEMPORAL_ADDRESS: cluster.server.address, TEMPERED_HOME: cluster.home };
    const r = await runCli(['demo', '--pipeline', join(FIXTURES, 'tiny-pipeline.yaml'), '--no-ui'], env, { timeoutMs: 180_000 });
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    const runId = /submitted run (\S+)/.exec(r.stdout)?.[1];
    assert.ok(runId, r.stdout);
    const conn = await Connection.connect({ address: cluster.server.address });
    try {
      const desc = await new Client({ connection: conn }).workflow.getHandle(runId).describe();
      // On 'tempered' its worker took colleagues' stages, and their workers the demo's (this checkout's data, this state folder).
      assert.match(desc.taskQueue, /^tempered-demo-/);
      assert.equal(desc.status.name, 'COMPLETED');
    } finally {
      await conn.close();
    }
  });
});

describe('a cluster behind TLS', () => {
  it("a worker whose TLS the server's certificate fails says why and which setting, though the CLI got through", async () => {
    // A TLS terminator in front of the dev server: a cluster with TLS, as a team's is.
    const proxy = await tlsTerminator('cn-only');
    try {
      const env = {
        TEMPORAL_ADDRESS: `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
        TEMPORAL_TLS_CA: join(TLS_DIR, 'ca.crt'),
        TEMPORAL_TLS_SERVER_NAME: 'localhost',
        TEMPERED_HOME: cluster.home,
      };
      const runs = await runCli(['runs'], env);
      assert.equal(runs.code, 0, runs.stderr);
      // Was tonic's debug text alone: "tonic::transport::Error(Transport, ConnectError(… NotValidForNameContext …))".
      const w = await runCli(['worker'], env);
      assert.equal(w.code, 1, w.stderr);
      assert.match(
        w.stderr,
        /the worker cannot connect to Temporal at 127\.0\.0\.1:\d+: the server's certificate does not name the host .*TEMPORAL_TLS_SERVER_NAME.* subjectAltName/,
      );
      assert.match(w.stderr, /rustls/);
    } finally {
      proxy.close();
    }
  });

  it('an address given as an IP, without TEMPORAL_TLS_SERVER_NAME, connects without DEP0123', async () => {
    const proxy = await tlsTerminator('ip');
    try {
      // The certificate names 127.0.0.1 and is its own CA: the check against the IP address still passes.
      const env = {
        TEMPORAL_ADDRESS: `127.0.0.1:${(proxy.address() as net.AddressInfo).port}`,
        TEMPORAL_TLS_CA: join(TLS_DIR, 'ip.crt'),
        TEMPERED_HOME: cluster.home,
      };
      const r = await runCli(['runs'], env);
      assert.equal(r.code, 0, r.stderr);
      // Was on every command: grpc-js sent the IP address as the TLS server name.
      assert.doesNotMatch(r.stderr, /DEP0123|ServerName to an IP address/);
    } finally {
      proxy.close();
    }
  });
});

/** A TLS terminator in front of the dev server, as a team's cluster has, with tests/fixtures/tls's `name`.crt and .key. */
async function tlsTerminator(name: string): Promise<tls.Server> {
  const proxy = tls.createServer(
    { key: readFileSync(join(TLS_DIR, `${name}.key`)), cert: readFileSync(join(TLS_DIR, `${name}.crt`)), ALPNProtocols: ['h2'] },
    (down) => {
      const up = net.connect(cluster.server.port, '127.0.0.1');
      down.pipe(up).pipe(down);
      up.on('error', () => down.destroy());
      down.on('error', () => up.destroy());
    },
  );
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return proxy;
}

describe('an address that does not answer', () => {
  it('says what is wrong with it: no such host, nothing listening, TLS on one side only', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => resolve(port));
      });
    });
    const home = { TEMPERED_HOME: cluster.home };
    // Each was "(Failed to connect before the deadline): check TEMPORAL_ADDRESS and the TLS/API-key settings", after 12-15 s.
    const [noHost, refused, keyNoTls] = await Promise.all([
      runCli(['runs'], { ...home, TEMPORAL_ADDRESS: 'no-such-host.invalid:7233' }),
      runCli(['status', 'x'], { ...home, TEMPORAL_ADDRESS: `127.0.0.1:${closed}` }),
      // TEMPORAL_API_KEY turns TLS on; the dev server speaks plain text.
      runCli(['runs'], { ...home, TEMPORAL_ADDRESS: cluster.server.address, TEMPORAL_API_KEY: 'not-a-real-key' }),
    ]);
    assert.equal(noHost.code, 1);
    assert.match(
      noHost.stderr,
      /cannot reach Temporal at no-such-host\.invalid:7233 \(could not resolve host 'no-such-host\.invalid'\): check TEMPORAL_ADDRESS\./,
    );
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      new RegExp(`\\(connection refused: nothing listens on 127\\.0\\.0\\.1:${closed}\\): check TEMPORAL_ADDRESS\\.`),
    );
    assert.equal(keyNoTls.code, 1);
    assert.match(
      keyNoTls.stderr,
      /TLS is on \(TEMPORAL_API_KEY implies it\): a server without TLS, as a dev server, never completes the handshake/,
    );
  });
});

describe('a cluster with a feature turned off', () => {
  it("says what the server answered, not only what was tried: the CLI and the dashboard's API", async () => {
    // Schedules off in the namespace, as a cluster may have them (frontend.enableSchedules).
    const dir = join(cluster.home, 'no-schedules');
    mkdirSync(dir);
    const server = await startDevServer({
      dbFile: join(dir, 'temporal.db'),
      logFile: join(dir, 'server.log'),
      headless: true,
      dynamicConfig: ['frontend.enableSchedules=false'],
    });
    const ui = { kill: () => {} } as { kill(): void };
    try {
      const env = { TEMPORAL_ADDRESS: server.address, TEMPERED_HOME: dir };
      // Was "Failed to list schedules" alone.
      const said =
        /Failed to list schedules: the Temporal server said "Schedules are disabled on this namespace\." \(PERMISSION_DENIED\); the namespace has this turned off/;
      const list = await runCli(['schedule', 'list'], env);
      assert.equal(list.code, 1, list.stderr);
      assert.match(list.stderr, said);
      const port = await freePort();
      const token = 'cluster-settings-ui-token';
      const child = spawn(process.execPath, [BIN, 'ui', '--port', String(port)], {
        env: { ...process.env, ...env, TEMPERED_UI_TOKEN: token },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      ui.kill = () => child.kill('SIGKILL');
      let out = '';
      await new Promise<void>((resolve, reject) => {
        const seen = (d: Buffer) => {
          out += d.toString();
          if (/dashboard: http/.test(out)) resolve();
        };
        child.stdout.on('data', seen);
        child.stderr.on('data', seen);
        child.once('exit', (code) => reject(new Error(`tempered ui exited ${code}: ${out}`)));
      });
      const res = await fetch(`http://127.0.0.1:${port}/api/schedules`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 500);
      assert.match(((await res.json()) as { error: string }).error, said);
    } finally {
      ui.kill();
      await stopProcess(server.pid);
    }
  });
});
