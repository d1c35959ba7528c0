/**
 * "On which data": the ingest stage's audit record names the raw files it read (path, sha256, size),
 * read back from the report it stored, not only the Arrow table made of them. Real files, a real store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore } from '../store/artifact-store.ts';
import { AUDIT_SOURCE_FILES, ingestStage, sourceFilesAudit } from './ingest.ts';
import { testStageContext } from './stage-context.testing.ts';

const sha = (b: string) => createHash('sha256').update(b).digest('hex');

test("ingest's audit names every source file it read with its sha256 and size, from the stored report", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'ingest-audit-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'data'));
  const files = {
    'data/a.jsonl': '{"text":"good day","label":"pos"}\n{"text":"bad day","label":"neg"}\n',
    'data/b.jsonl': '{"text":"fine film","label":"pos"}\n',
  };
  for (const [p, text] of Object.entries(files)) writeFileSync(join(root, p), text);
  const store = new ArtifactStore(join(root, 'store'));
  const cfg = { path: 'data', format: 'jsonl' as const, task: 'classification' as const };
  const outputs = await ingestStage.run(cfg, testStageContext({ root, store, baseDir: root, stageId: 'ingest' }));
  const audit = await ingestStage.audit!(cfg, outputs, { store });
  const sources = Object.entries(files).map(([path, text]) => ({ path, sha256: sha(text), bytes: Buffer.byteLength(text) }));
  assert.deepEqual(audit, {
    dataHashes: Object.fromEntries(sources.map((s) => [`source:${s.path}`, s.sha256])),
    details: { sources, dataHash: outputs.dataHash },
  });
});

test('a folder of more files than a record lists names the first ones and how many there were', () => {
  const sourceFiles = Array.from({ length: AUDIT_SOURCE_FILES + 5 }, (_, i) => ({
    path: `d/${i}.jsonl`,
    sha256: sha(String(i)),
    bytes: i,
  }));
  const audit = sourceFilesAudit({ sourceFiles, dataHash: 'h'.repeat(64) });
  assert.equal(Object.keys(audit.dataHashes!).length, AUDIT_SOURCE_FILES);
  assert.equal((audit.details!.sources as unknown[]).length, AUDIT_SOURCE_FILES);
  assert.equal(audit.details!.sourceFiles, AUDIT_SOURCE_FILES + 5);
  assert.equal(audit.details!.dataHash, 'h'.repeat(64));
  // A hostile file name stays a key of its own.
  const odd = sourceFilesAudit({ sourceFiles: [{ path: '__proto__', sha256: sha('x'), bytes: 1 }], dataHash: 'h' });
  assert.deepEqual(Object.keys(odd.dataHashes!), ['source:__proto__']);
});
