import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatSpecErrors } from './format.ts';
import { checkSpec, loadSpec } from './load.ts';
import { decodeSource, firstInvalidUtf8 } from './decode.ts';
import { registry } from './kinds.testing.ts';

const dir = mkdtempSync(join(tmpdir(), 'tempered-decode-'));

function fileWith(name: string, ...parts: Array<string | number[]>): string {
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p)))));
  return path;
}

test('a Latin-1 byte in a pipeline file is an error at its line and column, not a silent U+FFFD', async () => {
  // "café" written in Latin-1: 0xe9 alone is not UTF-8. Column 19 counts the characters before it (é in line 1 is one).
  const path = fileWith(
    'latin1.yaml',
    'name: pé\ndescription: caf',
    [0xe9],
    '\nstages:\n  a:\n    uses: ingest\n    with: { source: a.csv }\n',
  );
  for (const r of [await loadSpec(path, registry), await checkSpec(path, registry)]) {
    assert.equal(r.ok, false);
    const errors = (r as { errors: { code: string; line: number; column: number; message: string }[] }).errors;
    assert.deepEqual(
      errors.map((e) => [e.code, e.line, e.column]),
      [['bad-encoding', 2, 17]],
    );
    assert.match(
      formatSpecErrors(errors as never),
      /latin1\.yaml:2:17: error: invalid UTF-8 at byte 26 \(bytes e9 0a 73 74\)\n {2}hint: save the file as UTF-8/,
    );
  }
});

test('a UTF-16 file is named as such', async () => {
  const path = join(dir, 'utf16.yaml');
  writeFileSync(path, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('name: p\n', 'utf16le')]));
  const r = await loadSpec(path, registry);
  assert.equal(r.ok, false);
  assert.match((r as { errors: { message: string }[] }).errors[0]!.message, /UTF-16/);
});

test('overlong forms, surrogates and code points above U+10FFFF are refused where they start', () => {
  for (const [bytes, at] of [
    [[0x61, 0xc0, 0xaf], 1], // overlong '/'
    [[0x61, 0x62, 0xe0, 0x80, 0xaf], 2], // overlong
    [[0xed, 0xa0, 0x80], 0], // U+D800
    [[0xf4, 0x90, 0x80, 0x80], 0], // U+110000
    [[0x61, 0xe2, 0x82], 1], // truncated at the end
    [[0xe2, 0x82, 0xac, 0x80], 3], // stray continuation byte after '€'
  ] as const) {
    assert.equal(firstInvalidUtf8(Uint8Array.from(bytes)), at, bytes.join(' '));
  }
  assert.equal(firstInvalidUtf8(Buffer.from('ascii, é, €, 𝄞', 'utf8')), Buffer.byteLength('ascii, é, €, 𝄞'));
});

test('a UTF-8 file with a byte-order mark and non-ASCII text is accepted', async () => {
  const path = fileWith(
    'bom.yaml',
    [0xef, 0xbb, 0xbf],
    'name: p\ndescription: café ☕\nstages:\n  a:\n    uses: ingest\n    with: { source: a.csv }\n',
  );
  const r = await loadSpec(path, registry);
  assert.equal(r.ok, true, JSON.stringify(r));
  assert.equal((r as { spec: { description: string } }).spec.description, 'café ☕');
});

test('a UTF-16 or UTF-32 file without a byte-order mark is named too (ASCII in UTF-16 is valid UTF-8, NULs and all)', () => {
  for (const [bytes, encoding] of [
    [Buffer.from('name: p\nstages: {}\n', 'utf16le'), 'UTF-16LE'],
    [Buffer.from('name: p\nstages: {}\n', 'utf16le').swap16(), 'UTF-16BE'],
  ] as const) {
    const r = decodeSource(bytes, 'p.yaml');
    assert.equal(r.ok, false, encoding);
    const e = (r as { error: { message: string; hint?: string; code: string } }).error;
    assert.equal(e.code, 'bad-encoding');
    assert.match(
      e.message,
      new RegExp(
        `the file is UTF-16 \\(it has no byte-order mark, but its start has the NUL bytes of ${encoding} text\\); pipeline files must be UTF-8`,
      ),
    );
    assert.match(e.hint ?? '', new RegExp(`iconv -f ${encoding} -t UTF-8`));
  }
});
