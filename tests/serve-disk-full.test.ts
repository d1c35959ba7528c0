/**
 * A real `tempered serve` whose TEMPERED_HOME/serving lies on a small tmpfs: the alias moves to a version too large to
 * check out there. The swap's failure was a bare "ENOSPC: no space left on device, copyfile … -> …tmp/model.onnx" in
 * the log and in /health, naming a temp folder already removed. Now both name the serving folder's disk, what the
 * copy needed and what to do; the old version goes on answering, the load is tried again on its backoff
 * (behind.retryAt), and once the disk has room the new version is served by itself. A server that cannot copy the
 * version it starts with says so, and to start it again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openRegistry } from '../src/registry/registry.ts';
import { exportTinyClassifier } from '../src/serve/tiny-classifier.testing.ts';
import { statePaths } from '../src/state-paths.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { mountTmpfs, NO_TMPFS } from '../src/util/tmpfs.testing.ts';
import { runCli } from './helpers/cli.ts';
import { startServeProcess, type ServeProcess } from './helpers/serve-process.ts';

const TOKEN = 'serve-disk-full-token-0123456789';

test(
  'a version that does not fit in serving/: the log and /health name the disk and what to do, the old version answers, and the new one is served once there is room',
  { skip: NO_TMPFS, timeout: 300_000 },
  async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'tempered-serve-full-'));
    let server: ServeProcess | undefined;
    // One hook, the server's end first: still writing (its audit log), it left files behind the folder's removal, and
    // a failed removal kept the next hooks (its kill, the tmpfs's unmount) from running.
    t.after(async () => {
      const child = server?.child;
      if (child && child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      rmSync(root, { recursive: true, force: true });
    });
    const out = await exportTinyClassifier(root);
    // Version 2: the same model with 2 MiB more, which the serving disk has no room for.
    const out2 = join(root, 'out2');
    cpSync(out, out2, { recursive: true });
    writeFileSync(join(out2, 'extra.bin'), Buffer.alloc(2 * 1024 * 1024, 5));

    const home = join(root, 'home');
    const paths = statePaths(home);
    const store = new ArtifactStore(paths.store);
    const trees = [await store.putTree(out), await store.putTree(out2)];
    const reg = await openRegistry(paths.registryDb);
    try {
      for (const [i, tree] of trees.entries())
        await reg.registerVersion({
          name: 'spam',
          runId: `r${i + 1}`,
          stageId: 'register',
          specHash: 'a'.repeat(64),
          data: [],
          artifacts: [{ role: 'model', ...tree }],
        });
      await reg.setAlias('spam', 'production', 1, { actor: 'test' });
    } finally {
      await reg.close();
    }
    // The serving folder on a disk of its own: room for version 1 and 512 KiB more.
    const v1Bytes = readdirSync(out, { recursive: true })
      .map((f) => statSync(join(out, String(f))))
      .reduce((sum, st) => sum + (st.isFile() ? st.size : 0), 0);
    const sizeKiB = Math.ceil(v1Bytes / 1024) + 512;
    const disk = mountTmpfs(t, sizeKiB);
    symlinkSync(disk, paths.serving);

    const s = (server = await startServeProcess(['spam', '--poll-ms', '200', '--threads', '1'], {
      TEMPERED_HOME: home,
      TEMPERED_SERVE_TOKEN: TOKEN,
    }));
    type Health = {
      status: string;
      model: string;
      behind?: { phase: string; wanted: string; error: string; hint?: string; retryAt?: string };
    };
    const health = async () => (await (await fetch(`${s.url}/health`)).json()) as Health;
    const until = async (what: (h: Health) => boolean, why: string): Promise<Health> => {
      for (const deadline = Date.now() + 60_000; ; await new Promise((r) => setTimeout(r, 100))) {
        const h = await health();
        if (what(h)) return h;
        assert.ok(Date.now() < deadline, `${why}; /health: ${JSON.stringify(h)}; printed: ${s.output()}`);
      }
    };
    assert.equal((await health()).model, 'spam@1');

    const reg2 = await openRegistry(paths.registryDb);
    await reg2.setAlias('spam', 'production', 2, { actor: 'test' });
    await reg2.close();
    const behind = await until((h) => h.behind?.phase === 'load', 'the swap to spam@2 failed');
    assert.equal(behind.status, 'behind');
    assert.equal(behind.model, 'spam@1', 'the old version goes on answering');
    assert.equal(behind.behind!.wanted, 'spam@2');
    const serving = paths.serving.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    assert.match(
      behind.behind!.error,
      new RegExp(`^no space left on the disk that holds ${serving} \\(.* free of .*; this write needed \\d+\\.\\d MiB\\): ENOSPC`),
    );
    assert.match(behind.behind!.hint ?? '', /^free space on that disk .*keeps answering with the version it has.*behind\.retryAt/);
    assert.doesNotMatch(behind.behind!.hint ?? '', /tempered resume/, 'a server has no run to resume');
    assert.ok(behind.behind!.retryAt, 'the load backoff still runs');
    assert.match(
      s.output(),
      new RegExp(
        `serve: load of spam@2 failed: no space left on the disk that holds ${serving} \\(.*\\): ENOSPC[^\\n]*; still serving the version before, loading it again in \\d+ s\\n  free space on that disk`,
      ),
    );
    assert.deepEqual(
      readdirSync(disk).filter((f) => f.endsWith('.tmp')),
      [],
      'no half copy holds the space',
    );
    const predict = await fetch(`${s.url}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: '{"inputs":["hello"]}',
    });
    assert.equal(((await predict.json()) as { model: string }).model, 'spam@1');

    // Room again (version 2 is a copy of its own, 2 MiB larger than version 1): the next try, on the backoff, takes it
    // without anyone's help.
    execFileSync('mount', ['-o', `remount,size=${sizeKiB + 8192}k`, disk]);
    const ok = await until((h) => h.model === 'spam@2', 'spam@2 is served once the disk has room');
    assert.equal(ok.status, 'ok');
    assert.equal(ok.behind, undefined);

    // A server that cannot copy the version it starts with has nothing to serve: it says so, and to start again.
    const child = s.child;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    for (const f of readdirSync(disk)) rmSync(join(disk, f), { recursive: true, force: true });
    execFileSync('mount', ['-o', `remount,size=${sizeKiB}k`, disk]);
    const start = await runCli(['serve', 'spam', '--port', '0'], { TEMPERED_HOME: home, TEMPERED_SERVE_TOKEN: TOKEN });
    assert.equal(start.code, 1, start.stderr);
    assert.match(
      start.stderr,
      new RegExp(
        `^tempered: cannot serve spam@production: no space left on the disk that holds ${serving} \\(.*; this write needed \\d+\\.\\d MiB\\): ENOSPC[^\\n]*\\n  free space on that disk, or point TEMPERED_HOME at a larger one, then start \`tempered serve\` again\\.`,
      ),
    );
  },
);
