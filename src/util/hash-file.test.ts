import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { sha256File } from './hash-file.ts';

test('sha256File hashes files of every size around its read boundaries, and rejects a missing file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'hash-file-'));
  try {
    const MiB = 1 << 20;
    for (const size of [0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB, Math.floor(2.5 * MiB)]) {
      const data = randomBytes(size);
      const path = join(dir, `f${size}`);
      writeFileSync(path, data);
      assert.deepEqual(await sha256File(path), { sha256: createHash('sha256').update(data).digest('hex'), bytes: size }, `size ${size}`);
    }
    await assert.rejects(sha256File(join(dir, 'missing')), { code: 'ENOENT' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
