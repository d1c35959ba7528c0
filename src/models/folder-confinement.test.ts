import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { checkModelFolder } from './folder-confinement.ts';
import { resolveModelSource } from './sources.ts';

/** A folder `model/` that resolves as a safetensors model (the check runs before anything is parsed), and a folder beside it. */
function fixture(t: { after: (fn: () => void) => void }) {
  const root = mkdtempSync(join(tmpdir(), 'tempered-folder-confinement-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const model = join(root, 'model');
  const outside = join(root, 'secrets');
  mkdirSync(model);
  mkdirSync(outside);
  writeFileSync(join(model, 'config.json'), '{}');
  writeFileSync(join(model, 'model.safetensors'), '');
  writeFileSync(join(outside, 'docker-config.json'), '{"auths":{"registry":{"auth":"c2VjcmV0"}}}');
  return { root, model, outside, cache: join(root, 'cache') };
}

const refused = (pattern: RegExp) => (e: unknown) => e instanceof InputError && pattern.test(e.message);
const noRoots = { TEMPERED_HOME: '', TEMPERED_DATA_ROOTS: '' };

test('a link in a model folder that leads out of it is refused, naming the link and its target, before anything is read', async (t) => {
  const f = fixture(t);
  symlinkSync(join(f.outside, 'docker-config.json'), join(f.model, 'tokenizer_config.json'));
  assert.throws(
    () => checkModelFolder(f.model, { env: noRoots }),
    refused(/tokenizer_config\.json is a symlink to .*secrets\/docker-config\.json, outside the model folder/),
  );
  const saved = { home: process.env.TEMPERED_HOME, roots: process.env.TEMPERED_DATA_ROOTS };
  delete process.env.TEMPERED_HOME;
  delete process.env.TEMPERED_DATA_ROOTS;
  try {
    await assert.rejects(resolveModelSource(f.model, { cacheDir: f.cache }), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.equal(e.where, f.model);
      assert.match(e.hint ?? '', /cp -L.*TEMPERED_DATA_ROOTS/);
      return true;
    });
  } finally {
    if (saved.home !== undefined) process.env.TEMPERED_HOME = saved.home;
    if (saved.roots !== undefined) process.env.TEMPERED_DATA_ROOTS = saved.roots;
  }
  // In a subfolder too, and through a linked folder that leads out.
  rmSync(join(f.model, 'tokenizer_config.json'));
  mkdirSync(join(f.model, '1_Pooling'));
  symlinkSync(join(f.outside, 'docker-config.json'), join(f.model, '1_Pooling', 'config.json'));
  assert.throws(() => checkModelFolder(f.model, { env: noRoots }), refused(/1_Pooling\/config\.json is a symlink/));
  rmSync(join(f.model, '1_Pooling'), { recursive: true });
  symlinkSync(f.outside, join(f.model, 'extra'));
  assert.throws(() => checkModelFolder(f.model, { env: noRoots }), refused(/extra is a symlink to .*secrets, outside/));
  // The worker may allow the folder it leads into.
  checkModelFolder(f.model, { env: { TEMPERED_DATA_ROOTS: f.outside } });
  checkModelFolder(f.model, { env: { TEMPERED_HOME: f.root } });
  // A GGUF file may be a link to anywhere (the model cache links to the file the user named), a device may not.
  rmSync(join(f.model, 'extra'));
  writeFileSync(join(f.outside, 'tiny.gguf'), 'GGUF');
  symlinkSync(join(f.outside, 'tiny.gguf'), join(f.model, 'tiny.gguf'));
  checkModelFolder(f.model, { env: noRoots });
  symlinkSync('/dev/zero', join(f.model, 'zero.gguf'));
  assert.throws(() => checkModelFolder(f.model, { env: noRoots }), refused(/zero\.gguf leads to \/dev\/zero, a device/));
});

test('links that stay inside the folder, and a Hugging Face cache snapshot linking into its blobs, are read as before', async (t) => {
  const f = fixture(t);
  mkdirSync(join(f.model, 'weights'));
  writeFileSync(join(f.model, 'weights', 'real.json'), '{}');
  symlinkSync('weights/real.json', join(f.model, 'tokenizer_config.json'));
  symlinkSync('..', join(f.model, 'weights', 'up')); // a loop back to the folder is not walked into
  symlinkSync('nowhere.json', join(f.model, 'broken.json'));
  checkModelFolder(f.model, { env: noRoots });
  const resolved = await resolveModelSource(f.model, { cacheDir: f.cache });
  assert.deepEqual(
    resolved.identity.files.map((x) => x.name),
    ['config.json', 'model.safetensors', 'tokenizer_config.json'],
  );

  const repo = join(f.root, 'hub', 'models--org--tiny');
  const snap = join(repo, 'snapshots', 'abc123');
  mkdirSync(join(repo, 'blobs'), { recursive: true });
  mkdirSync(snap, { recursive: true });
  for (const [name, blob] of [
    ['config.json', 'b1'],
    ['model.safetensors', 'b2'],
  ]) {
    writeFileSync(join(repo, 'blobs', blob!), name === 'config.json' ? '{}' : '');
    symlinkSync(`../../blobs/${blob}`, join(snap, name!));
  }
  checkModelFolder(snap, { env: noRoots });
  symlinkSync(join(f.outside, 'docker-config.json'), join(snap, 'tokenizer.json'));
  assert.throws(() => checkModelFolder(snap, { env: noRoots }), refused(/tokenizer\.json is a symlink to .*outside the model folder/));
});

test('a named pipe in a model folder, or a link to a device, is refused instead of hanging the reader', (t) => {
  const f = fixture(t);
  execFileSync('mkfifo', [join(f.model, 'tokenizer.json')]);
  assert.throws(() => checkModelFolder(f.model, { env: noRoots }), refused(/tokenizer\.json is a named pipe, not a file/));
  rmSync(join(f.model, 'tokenizer.json'));
  symlinkSync('/dev/zero', join(f.model, 'vocab.txt'));
  assert.throws(
    () => checkModelFolder(f.model, { env: { TEMPERED_DATA_ROOTS: '/dev' } }),
    refused(/vocab\.txt leads to \/dev\/zero, a device, not a file/),
  );
});

test("an ONNX file's folder is checked only for the files read beside it", (t) => {
  const f = fixture(t);
  writeFileSync(join(f.model, 'model.onnx'), '');
  symlinkSync(f.outside, join(f.model, 'unrelated'));
  checkModelFolder(f.model, { names: ['model.onnx', 'model.onnx.data', 'tokenizer.json'], env: noRoots });
  symlinkSync(join(f.outside, 'docker-config.json'), join(f.model, 'tokenizer.json'));
  assert.throws(
    () => checkModelFolder(f.model, { names: ['model.onnx', 'model.onnx.data', 'tokenizer.json'], env: noRoots }),
    refused(/tokenizer\.json is a symlink/),
  );
});

test('a folder nested deeper than the walk goes is refused, not left unchecked', (t) => {
  const f = fixture(t);
  let d = f.model;
  for (let i = 0; i <= 8; i++) mkdirSync((d = join(d, `d${i}`)));
  symlinkSync('/etc/passwd', join(d, 'tokenizer.json'));
  assert.throws(() => checkModelFolder(f.model, { env: noRoots }), refused(/nests folders deeper than 8 \(d0\/d1\/.*d8\)/));
});
