/**
 * A model file is hostile until checked: its external-data entries may not lead out of the model's
 * folder (by `..`, an absolute path or a symlink), nor declare a span that is not the tensor's size
 * or lies past the end of the data file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { onnx as OnnxNs } from 'onnx-proto';
import { InputError } from '../errors.ts';
import { GraphBuilder } from './builder.ts';
import { encodeModel, loadModel } from './proto.ts';

const { onnx } = createRequire(import.meta.url)('onnx-proto') as { onnx: typeof OnnxNs };

const big = Float32Array.from({ length: 600 }, (_, i) => i);

function modelBytes(location: string): Uint8Array {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', [600]);
  g.output(g.op('Add', [x, g.initializer('big', big, [600])]), 'y');
  return encodeModel(g.build(), { external: { location, offsets: new Map([['big', 0]]) } });
}

function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'ext-'));
  mkdirSync(join(dir, 'model'));
  writeFileSync(join(dir, 'secret.bin'), Buffer.from(big.buffer));
  return dir;
}

const refused = (e: unknown) => e instanceof InputError && e.message.includes("outside the model's folder");

test("external data outside the model's folder is refused: .., absolute paths, symlinks", () => {
  const dir = setup();
  const m = join(dir, 'model', 'm.onnx');
  writeFileSync(m, modelBytes('../secret.bin'));
  assert.throws(() => loadModel(m), refused);
  writeFileSync(m, modelBytes(join(dir, 'secret.bin')));
  assert.throws(() => loadModel(m), refused);
  symlinkSync(join(dir, 'secret.bin'), join(dir, 'model', 'link.bin'));
  writeFileSync(m, modelBytes('link.bin'));
  assert.throws(() => loadModel(m), refused);
  // The same bytes beside the model load.
  writeFileSync(join(dir, 'model', 'm.onnx.data'), Buffer.from(big.buffer));
  writeFileSync(m, modelBytes('m.onnx.data'));
  assert.deepEqual(loadModel(m).graph.initializers.get('big')!.data, big);
});

test('an external span that is not the tensor size, or runs past the file, is refused before allocating', () => {
  const dir = setup();
  const m = join(dir, 'model', 'm.onnx');
  writeFileSync(join(dir, 'model', 'm.onnx.data'), Buffer.from(big.buffer));
  const tamper = (edit: Record<string, string>) => {
    const p = onnx.ModelProto.decode(modelBytes('m.onnx.data'));
    const t = p.graph!.initializer!.find((i) => i.name === 'big')!;
    t.externalData = t.externalData!.map((e) => ({ key: e.key, value: edit[e.key!] ?? e.value }));
    writeFileSync(m, onnx.ModelProto.encode(p).finish());
  };
  tamper({ length: String(1e15) });
  assert.throws(
    () => loadModel(m),
    (e: unknown) => e instanceof InputError && /needs 2400 bytes/.test(e.message),
  );
  tamper({ offset: '100' });
  assert.throws(
    () => loadModel(m),
    (e: unknown) => e instanceof InputError && /wants bytes 100-2500 .* which has 2400/.test(e.message),
  );
  tamper({ offset: '-8' });
  assert.throws(() => loadModel(m), InputError);
});

test('initializers whose sizes do not fit their data, and files that are no ONNX model, are input errors naming the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'onnx-hostile-'));
  const write = (name: string, initializer: OnnxNs.ITensorProto) => {
    const path = join(dir, name);
    writeFileSync(path, onnx.ModelProto.encode({ irVersion: 8, graph: { name: 'g', initializer: [initializer] } }).finish());
    return path;
  };
  const cases: [string, OnnxNs.ITensorProto, RegExp][] = [
    ['huge.onnx', { name: 'w', dataType: 1, dims: [2e9] }, /holds 0 values, but its 2000000000 shape needs 2000000000/],
    ['short.onnx', { name: 'w', dataType: 1, dims: [1000], rawData: new Uint8Array(8) }, /holds 8 bytes, but its 1000 float32 needs 4000/],
    ['negative.onnx', { name: 'w', dataType: 1, dims: [-1] }, /has dims \[-1\], which no tensor of a model has/],
    ['overflow.onnx', { name: 'w', dataType: 1, dims: [2 ** 25, 2 ** 25] }, /has dims \[33554432, 33554432\]/],
    ['few.onnx', { name: 'w', dataType: 1, dims: [3], floatData: [1] }, /holds 1 values, but its 3 shape needs 3/],
  ];
  for (const [name, init, re] of cases)
    assert.throws(
      () => loadModel(write(name, init)),
      (e: unknown) => e instanceof InputError && e.where === join(dir, name) && re.test(e.message),
      name,
    );
  for (const [name, bytes] of [
    ['garbage.onnx', Buffer.from('this is not a protobuf message at all, just text')],
    ['empty.onnx', Buffer.alloc(0)],
  ] as const) {
    writeFileSync(join(dir, name), bytes);
    assert.throws(
      () => loadModel(join(dir, name)),
      (e: unknown) => e instanceof InputError && e.where === join(dir, name) && /not a valid ONNX model/.test(e.message),
      name,
    );
  }
});
