/**
 * The mechanism `device: cuda` relies on, without a GPU or the 1.3 GB CUDA build: a process started
 * with cudaProcessEnv loads onnxruntime's core library from the CUDA folder instead of the npm one
 * (LD_LIBRARY_PATH over the binding's RUNPATH), and knows it has. The folder here holds the npm core
 * library (hard-linked) and an empty stand-in for the CUDA provider, so CUDA sessions must fail with
 * an error, never run on the CPU, while `auto` runs on the CPU.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { cudaLibDir, cudaProcessEnv } from './cuda.ts';

const npmCore = join(
  dirname(createRequire(import.meta.url).resolve('onnxruntime-node')),
  '..',
  'bin',
  'napi-v6',
  'linux',
  'x64',
  'libonnxruntime.so.1',
);

const CHILD = `
import { cudaBuildLoaded, loadedOrtCore } from ${JSON.stringify(new URL('./cuda.ts', import.meta.url).href)};
import { createSession } from ${JSON.stringify(new URL('./runtime.ts', import.meta.url).href)};
import { buildTinyEncoder } from ${JSON.stringify(new URL('./tiny-encoder.testing.ts', import.meta.url).href)};
const model = buildTinyEncoder({ vocab: 12, hidden: 8, heads: 2, intermediate: 16, layers: 1, seq: 4, classes: 2, seed: 1 });
const out = { core: loadedOrtCore(), cudaBuild: cudaBuildLoaded() };
try { await createSession(model, { device: 'cuda', threads: 1 }); out.cuda = 'created'; } catch (e) { out.cuda = e.name + ': ' + e.message; }
const auto = await createSession(model, { device: 'auto', threads: 1 });
out.auto = auto.inputNames.length;
console.log(JSON.stringify(out));
`;

test(
  'a process started with cudaProcessEnv loads the core library from the CUDA folder; cuda without a working provider is an error, auto runs on the CPU',
  { skip: process.platform !== 'linux' || process.arch !== 'x64' ? 'the npm core library path is linux-x64' : false },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'tempered-cudaproc-'));
    mkdirSync(cudaLibDir(dir));
    try {
      linkSync(npmCore, join(cudaLibDir(dir), 'libonnxruntime.so.1'));
    } catch {
      copyFileSync(npmCore, join(cudaLibDir(dir), 'libonnxruntime.so.1')); // another filesystem
    }
    writeFileSync(join(cudaLibDir(dir), 'libonnxruntime_providers_cuda.so'), '');
    const file = join(dir, 'child.mts');
    writeFileSync(file, CHILD);
    const run = (env: NodeJS.ProcessEnv) => {
      const r = spawnSync(process.execPath, ['--import', 'tsx', file], { env, encoding: 'utf8', cwd: process.cwd() });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as { core: string; cudaBuild: boolean; cuda: string; auto: number };
    };
    const plain = run(process.env);
    assert.equal(plain.core, npmCore);
    assert.equal(plain.cudaBuild, false);
    assert.match(plain.cuda, /^InputError: .*device 'cuda' is not available/);

    const cuda = run(cudaProcessEnv(dir));
    assert.equal(cuda.core, join(cudaLibDir(dir), 'libonnxruntime.so.1'));
    assert.equal(cuda.cudaBuild, true);
    assert.match(cuda.cuda, /^InputError: .*device 'cuda' is not available: .*(Failed to load|cuda)/i);
    assert.equal(cuda.auto, 2, 'auto fell back to the CPU and built the session');
  },
);
