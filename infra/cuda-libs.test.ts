/**
 * The `setup --gpu` installer on a small real wheel (six 1.17.0 from PyPI, 11 KB, in fixtures/),
 * served over HTTP the way PyPI's JSON API serves it: the pinned hash refuses a tampered download and
 * installs nothing, a rerun downloads nothing, a damaged installed file is replaced. The real CUDA
 * wheels (1.3 GB) are never downloaded here; their pins are checked for shape and coverage.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import AdmZip from 'adm-zip';
import { CUDA_WHEELS_X64, installCudaLibs, ORT_GPU_VERSION, type LibraryWheel } from './cuda-libs.ts';
import { pipTagArgs } from './pypi-wheel.ts';
import { CUDA_MANIFEST, cudaLibDir, npmOrtVersion, readCudaInstall } from '../src/engine/cuda.ts';

const FILE = 'six-1.17.0-py2.py3-none-any.whl';
const REAL = readFileSync(join(import.meta.dirname, 'fixtures', FILE));
const SIX: LibraryWheel = {
  project: 'six',
  version: '1.17.0',
  file: FILE,
  // From PyPI (pip download six==1.17.0).
  sha256: '4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274',
  bytes: REAL.length,
  members: [{ path: 'six.py' }, { path: 'six-1.17.0.dist-info/LICENSE', as: 'LICENSE.six' }],
};

let server: Server;
let base = '';
let served = REAL;
let downloads = 0;

before(async () => {
  server = createServer((req, res) => {
    if (req.url === '/pypi/six/json') {
      res.setHeader('content-type', 'application/json');
      // PyPI answers with URLs relative to the JSON document.
      return res.end(JSON.stringify({ releases: { '1.17.0': [{ filename: FILE, url: `../../files/${FILE}` }] } }));
    }
    if (req.url === `/files/${FILE}`) {
      downloads++;
      return res.end(served);
    }
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
after(() => server.close());

/** Temp folders of the tests, all removed once they ran. */
const scratches: string[] = [];
function scratch(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratches.push(dir);
  return dir;
}
after(() => {
  for (const d of scratches) rmSync(d, { recursive: true, force: true });
});

const install = (dir: string) =>
  installCudaLibs(dir, { wheels: [SIX], index: (p) => `${base}/pypi/${p}/json`, pip: false, log: () => {}, what: 'test' });

test('installs the pinned wheel once; a rerun downloads nothing; a damaged file is replaced', async () => {
  served = REAL;
  const dir = scratch('tempered-cudalibs-');
  const first = await install(dir);
  assert.deepEqual(first.downloaded, [FILE]);
  const six = readFileSync(join(cudaLibDir(dir), 'six.py'));
  assert.match(six.toString(), /Utilities for writing code that runs on Python 2 and 3/);
  assert.deepEqual(Object.keys(first.manifest.files).sort(), ['LICENSE.six', 'six.py']);
  assert.equal(first.manifest.files['six.py']!.sha256, createHash('sha256').update(six).digest('hex'));
  assert.ok('manifest' in readCudaInstall(dir));
  assert.deepEqual(readdirSync(dir).sort(), [CUDA_MANIFEST, 'lib', 'wheels'], 'the downloaded wheel and temp files are gone');

  const before = downloads;
  const again = await install(dir);
  assert.equal(downloads, before, 'no download on a rerun');
  assert.deepEqual(again.kept, [FILE]);
  assert.deepEqual(again.manifest, first.manifest);

  writeFileSync(join(cudaLibDir(dir), 'six.py'), six.toString().replace('Python 2', 'Python 9'));
  const repaired = await install(dir);
  assert.equal(downloads, before + 1);
  assert.deepEqual(repaired.downloaded, [FILE]);
  assert.deepEqual(readFileSync(join(cudaLibDir(dir), 'six.py')), six);
});

test('a tampered wheel is refused: nothing is installed and no partial file stays', async () => {
  const tampered = Buffer.from(REAL);
  tampered[tampered.length - 100] ^= 1;
  served = tampered;
  try {
    const dir = scratch('tempered-cudalibs-');
    await assert.rejects(install(dir), /six-1\.17\.0-py2\.py3-none-any\.whl: wheel hash mismatch: expected sha256 4721f391.*refusing it/);
    assert.equal(existsSync(join(dir, CUDA_MANIFEST)), false);
    assert.deepEqual(readdirSync(cudaLibDir(dir)), []);
    assert.deepEqual(readdirSync(dir).sort(), ['lib', 'wheels']);
    assert.match((readCudaInstall(dir) as { problem: string }).problem, /not installed/);
  } finally {
    served = REAL;
  }
});

test('wheels from a local folder (a machine without internet access) are used, and hash-checked all the same', async () => {
  const dir = scratch('tempered-cudalibs-');
  const before = downloads;
  const r = await installCudaLibs(dir, {
    wheels: [SIX],
    localDir: join(import.meta.dirname, 'fixtures'),
    pip: false,
    log: () => {},
    index: () => 'http://127.0.0.1:9/',
  });
  assert.deepEqual(r.downloaded, [FILE]);
  assert.equal(downloads, before, 'nothing fetched over the network');
  assert.ok(existsSync(join(import.meta.dirname, 'fixtures', FILE)), 'the local wheel is left in place');
  const local = scratch('tempered-wheels-');
  const tampered = Buffer.from(REAL);
  tampered[10] ^= 1;
  writeFileSync(join(local, FILE), tampered);
  await assert.rejects(
    installCudaLibs(scratch('tempered-cudalibs-'), { wheels: [SIX], localDir: local, pip: false, log: () => {} }),
    /wheel hash mismatch: expected sha256 4721f391/,
  );
});

test('a RECORD with CRLF line ends, as onnxruntime-gpu 1.30.0 writes it, is read', async () => {
  const zip = new AdmZip(REAL);
  const record = zip.readAsText('six-1.17.0.dist-info/RECORD');
  zip.updateFile('six-1.17.0.dist-info/RECORD', Buffer.from(record.replace(/\r?\n/g, '\r\n')));
  const crlf = zip.toBuffer();
  served = crlf;
  try {
    const dir = scratch('tempered-cudalibs-');
    const wheel = { ...SIX, sha256: createHash('sha256').update(crlf).digest('hex'), bytes: crlf.length };
    const r = await installCudaLibs(dir, { wheels: [wheel], index: (p) => `${base}/pypi/${p}/json`, pip: false, log: () => {} });
    assert.deepEqual(Object.keys(r.manifest.files).sort(), ['LICENSE.six', 'six.py']);
  } finally {
    served = REAL;
  }
});

test('a member the RECORD does not vouch for is refused', async () => {
  const dir = scratch('tempered-cudalibs-');
  const odd: LibraryWheel = { ...SIX, members: [{ path: 'six-1.17.0.dist-info/RECORD' }] };
  await assert.rejects(
    installCudaLibs(dir, { wheels: [odd], index: (p) => `${base}/pypi/${p}/json`, pip: false, log: () => {} }),
    /RECORD lists no sha256 for six-1\.17\.0\.dist-info\/RECORD/,
  );
  assert.equal(existsSync(join(dir, CUDA_MANIFEST)), false);
});

test('the CUDA pins: hex sha256 per wheel, and every library the CUDA provider needs', () => {
  const names = CUDA_WHEELS_X64.flatMap((w) => w.members.map((m) => m.as ?? m.path.split('/').pop()!));
  for (const need of [
    'libonnxruntime.so.1',
    'libonnxruntime_providers_shared.so',
    'libonnxruntime_providers_cuda.so',
    'libcudart.so.13',
    'libcublas.so.13',
    'libcublasLt.so.13',
    'libcurand.so.10',
    'libcudnn.so.9',
  ])
    assert.ok(names.includes(need), need);
  for (const w of CUDA_WHEELS_X64) {
    assert.match(w.sha256, /^[0-9a-f]{64}$/, w.file);
    assert.ok(w.file.startsWith(`${w.project.replace(/-/g, '_')}-${w.version}-`), w.file);
  }
  assert.deepEqual(pipTagArgs(CUDA_WHEELS_X64[0]!.file), [
    '--platform',
    'manylinux_2_28_x86_64',
    '--python-version',
    '3.11',
    '--implementation',
    'cp',
    '--abi',
    'cp311',
  ]);
});

test('a server sending more than the pinned wheel holds is cut off at its size, and nothing stays', async () => {
  served = Buffer.concat([REAL, Buffer.alloc(4 * 1024 * 1024)]);
  try {
    const dir = scratch('tempered-cudalibs-');
    await assert.rejects(install(dir), new RegExp(`sent more than the ${REAL.length} bytes of ${FILE.replace(/\./g, '\\.')}; refusing it`));
    assert.deepEqual(readdirSync(dir).sort(), ['lib', 'wheels'], 'no partial download left');
  } finally {
    served = REAL;
  }
});

test('--wheels naming a folder without the pinned file says so before the network is tried', async () => {
  const local = scratch('tempered-wheels-');
  const lines: string[] = [];
  await assert.rejects(
    installCudaLibs(scratch('tempered-cudalibs-'), {
      wheels: [SIX],
      localDir: local,
      pip: false,
      log: (m) => lines.push(m),
      index: () => 'http://127.0.0.1:9/',
    }),
    /has no six-1\.17\.0-py2\.py3-none-any\.whl \(fetch it where PyPI is reachable: pip download --no-deps six==1\.17\.0\)/,
  );
  assert.ok(lines.some((l) => l.includes(`${local} has no ${FILE}`)));
});

test('the CUDA build is pinned to the release of the npm binding; an install of another release is not usable', () => {
  assert.equal(ORT_GPU_VERSION, npmOrtVersion(), 'infra/cuda-libs.ts pins the onnxruntime-node version this checkout installs');
  const dir = scratch('tempered-cudalibs-');
  mkdirSync(cudaLibDir(dir), { recursive: true });
  writeFileSync(join(cudaLibDir(dir), 'libonnxruntime.so.1'), 'x');
  const manifest = (what: string, ortVersion?: string) =>
    writeFileSync(
      join(dir, CUDA_MANIFEST),
      JSON.stringify({
        what,
        ...(ortVersion ? { ortVersion } : {}),
        files: { 'libonnxruntime.so.1': { bytes: 1, sha256: 'x', from: 'w' } },
      }),
    );
  manifest('onnxruntime-gpu 1.29.0 with CUDA 13');
  assert.match(
    (readCudaInstall(dir) as { problem: string }).problem,
    /is onnxruntime 1\.29\.0, but this checkout's onnxruntime-node is 1\.30\.0/,
  );
  manifest('anything', '1.31.0');
  assert.match((readCudaInstall(dir) as { problem: string }).problem, /is onnxruntime 1\.31\.0/);
  manifest('anything', ORT_GPU_VERSION);
  assert.ok('manifest' in readCudaInstall(dir));
});

test('an install removes what interrupted installs left (their pid is gone), and not what a live one is writing', async () => {
  served = REAL;
  const dir = scratch('tempered-cudalibs-');
  mkdirSync(cudaLibDir(dir), { recursive: true });
  const dead = 2 ** 22 + 12345; // above the kernel's pid_max default: no such process
  const here = hostname();
  mkdirSync(join(dir, `download-${here}-${dead}-abc123`));
  writeFileSync(join(dir, `download-${here}-${dead}-abc123`, 'nvidia.whl.part'), Buffer.alloc(1024));
  writeFileSync(join(cudaLibDir(dir), `libcudnn.so.9.tmp-${here}-${dead}-0a1b2c3d`), 'x');
  const live = `download-${here}-${process.ppid}-def456`;
  // Another host's, in a shared TEMPERED_CUDA_DIR: its pid means nothing here.
  const elsewhere = `download-gpu-host-7-${dead}-aa11bb`;
  mkdirSync(join(dir, live));
  mkdirSync(join(dir, elsewhere));
  await install(dir);
  assert.deepEqual(readdirSync(dir).sort(), [CUDA_MANIFEST, live, elsewhere, 'lib', 'wheels'].sort());
  assert.deepEqual(readdirSync(cudaLibDir(dir)).sort(), ['LICENSE.six', 'six.py']);
});

test('two installs into one folder at once: the second waits, then keeps what the first installed (one download)', async () => {
  served = REAL;
  const dir = scratch('tempered-cudalibs-');
  const before = downloads;
  const said: string[] = [];
  const opts = { wheels: [SIX], index: (p: string) => `${base}/pypi/${p}/json`, pip: false, what: 'test' };
  const [a, b] = await Promise.all([
    installCudaLibs(dir, { ...opts, log: () => {} }),
    // Started a moment later, as a second terminal would be: the first holds the lock by then.
    new Promise((r) => setTimeout(r, 1)).then(() => installCudaLibs(dir, { ...opts, log: (m) => said.push(m) })),
  ]);
  assert.equal(downloads, before + 1, 'the wheel was downloaded once');
  assert.deepEqual(a.downloaded, [FILE]);
  assert.deepEqual(b.kept, [FILE]);
  assert.deepEqual(b.manifest, a.manifest);
  assert.ok(
    said.some((m) => /another install, setup --gpu \(pid \d+\) on .* is writing .*; waiting for it/.test(m)),
    said.join('\n'),
  );
  assert.deepEqual(readdirSync(dir).sort(), [CUDA_MANIFEST, 'lib', 'wheels'], 'the lock is gone with the installs');
});
