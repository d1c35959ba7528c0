/** Good pipelines plan deterministically: same input, same order and hash; plans survive JSON. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { canonicalJson } from '../util/canonical-json.ts';
import { registry } from './kinds.testing.ts';
import { yaml } from './spec-errors.testing.ts';
import { loadSpec, loadSpecText, checkSpecText, checkSpec, MAX_SPEC_BYTES } from './load.ts';
import type { PlannedPipeline } from './types.ts';

const fixture = (name: string) => new URL(`./fixtures/${name}`, import.meta.url).pathname;

function plan(text: string, paramOverrides: Record<string, string> = {}): PlannedPipeline {
  const r = loadSpecText(text, 'p.yaml', { ...registry, paramOverrides });
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.errors, null, 1));
  return r.plan;
}

describe('the sentiment pipeline fixture', () => {
  test('plans in dependency order with params substituted and defaults merged', async () => {
    const r = await loadSpec(fixture('basic.yaml'), registry);
    assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.errors));
    const p = r.plan;
    assert.equal(p.name, 'sentiment-finetune');
    assert.deepEqual(p.params, { lr: 0.001, epochs: 3, dataset: 'reviews.csv' });
    assert.equal(p.concurrency, 2);
    assert.equal(p.onFailure, 'fail-fast');
    assert.deepEqual(
      p.stages.map((s) => s.id),
      ['ingest', 'dedupe', 'split', 'train', 'evaluate', 'register'],
    );
    const byId = Object.fromEntries(p.stages.map((s) => [s.id, s]));
    assert.deepEqual(byId.evaluate!.needs, ['split', 'train']);
    assert.deepEqual(byId.split!.dependents, ['train', 'evaluate']);
    assert.deepEqual(byId.register!.dependents, []);
    // Whole-string params become typed values; embedded ones are stringified; stage outputs wait for run time.
    assert.deepEqual(byId.train!.with, { data: '${{ stages.split.outputs.train }}', lr: 0.001, epochs: 3, run: 'lr-0.001-e3' });
    assert.equal(byId.ingest!.with.source, 'data/reviews.csv');
    assert.deepEqual(byId.train!.retry, {
      maximumAttempts: 2,
      initialInterval: 2000,
      backoffCoefficient: 2,
      maximumInterval: 60000,
      nonRetryableErrorTypes: [],
    });
    assert.equal(byId.ingest!.retry.maximumAttempts, 5);
    assert.equal(byId.train!.timeout, 2 * 3600_000);
    assert.equal(byId.ingest!.timeout, 30 * 60_000);
    assert.equal(byId.train!.heartbeatTimeout, 120_000);
    assert.ok(!('heartbeatTimeout' in byId.ingest!));
    assert.equal(byId.train!.queue, 'gpu');
    assert.ok(!('queue' in byId.ingest!));
    assert.equal(byId.register!.cache, false);
    assert.equal(byId.ingest!.cache, true);
  });

  test('the JSON twin, with keys in another order, gives the same plan and hash', async () => {
    const a = await loadSpec(fixture('basic.yaml'), registry);
    const b = await loadSpec(fixture('basic.json'), registry);
    assert.ok(a.ok && b.ok);
    assert.equal(b.plan.specHash, a.plan.specHash);
    assert.deepEqual(b.plan, a.plan);
  });

  test('the hash is the sha256 of the canonical plan body', async () => {
    const r = await loadSpec(fixture('basic.yaml'), registry);
    assert.ok(r.ok);
    const { specHash, ...body } = r.plan;
    assert.match(specHash, /^[0-9a-f]{64}$/);
    assert.equal(specHash, createHash('sha256').update(canonicalJson(body)).digest('hex'));
  });

  test('loading twice gives identical plans, and the plan round-trips through JSON', async () => {
    const a = await loadSpec(fixture('basic.yaml'), registry);
    const b = await loadSpec(fixture('basic.yaml'), registry);
    assert.ok(a.ok && b.ok);
    assert.equal(JSON.stringify(a.plan), JSON.stringify(b.plan));
    assert.deepEqual(JSON.parse(JSON.stringify(a.plan)), a.plan);
  });

  test('a param override changes the config and the hash', async () => {
    const a = await loadSpec(fixture('basic.yaml'), registry);
    const b = await loadSpec(fixture('basic.yaml'), { ...registry, paramOverrides: { lr: '0.5', epochs: '10' } });
    assert.ok(a.ok && b.ok);
    const train = b.plan.stages.find((s) => s.id === 'train')!;
    assert.equal(train.with.lr, 0.5);
    assert.equal(train.with.epochs, 10);
    assert.equal(train.with.run, 'lr-0.5-e10');
    assert.notEqual(b.plan.specHash, a.plan.specHash);
  });

  test('descriptions do not change the hash; config does', () => {
    const base = `name: p\nstages:\n  ingest:\n    uses: ingest\n    with: { source: a.csv }\n`;
    const h = plan(base).specHash;
    assert.equal(plan(base.replace('name: p\n', 'name: p\ndescription: docs only\n')).specHash, h);
    assert.notEqual(plan(base.replace('a.csv', 'b.csv')).specHash, h);
    assert.notEqual(plan(base.replace('    uses', '    cache: false\n    uses')).specHash, h);
  });
});

describe('DAG shapes', () => {
  test('a diamond: one root, two branches, one join', () => {
    const text = yaml`
      name: diamond
      stages:
        join:
          uses: evaluate
          needs: [right, left]
          with:
            model: \${{ stages.left.outputs.model }}
            data: \${{ stages.right.outputs.test }}
        left:
          uses: train
          needs: root
          with: { data: "\${{ stages.root.outputs.table }}" }
        right:
          uses: split
          needs: root
          with: { table: "\${{ stages.root.outputs.table }}" }
        root:
          uses: ingest
          with: { source: a.csv }
    `;
    const p = plan(text);
    // Declared bottom-up, planned top-down; the two branches keep their file order.
    assert.deepEqual(
      p.stages.map((s) => s.id),
      ['root', 'left', 'right', 'join'],
    );
    assert.deepEqual(p.stages[0]!.dependents, ['left', 'right']);
    assert.deepEqual(p.stages[3]!.needs, ['left', 'right']);
    assert.equal(p.concurrency, 4);
    assert.deepEqual(plan(text), p);
  });

  test('a wide DAG: 60 branches fanning out and back in', () => {
    const n = 60;
    let text = 'name: wide\nconcurrency: 8\nstages:\n  src:\n    uses: ingest\n    with: { source: a.csv }\n';
    // Declare branches in a scrambled but fixed order so the plan must follow the file, not the names.
    const ids = Array.from({ length: n }, (_, i) => `b${(i * 37) % n}`);
    for (const id of ids) text += `  ${id}:\n    uses: dedupe\n    needs: src\n    with: { table: "\${{ stages.src.outputs.table }}" }\n`;
    text += `  sink:\n    uses: register\n    needs: [${[...ids].reverse().join(', ')}]\n    with: { model: "\${{ stages.${ids[5]}.outputs.table }}" }\n`;
    const p = plan(text);
    assert.deepEqual(
      p.stages.map((s) => s.id),
      ['src', ...ids, 'sink'],
    );
    assert.deepEqual(p.stages.at(-1)!.needs, ids);
    assert.deepEqual(p.stages[0]!.dependents, ids);
    assert.equal(p.concurrency, 8);
    const again = plan(text);
    assert.equal(again.specHash, p.specHash);
    assert.deepEqual(JSON.parse(JSON.stringify(p)), p);
  });

  test('a long chain plans without recursion limits', () => {
    let text = 'name: chain\nstages:\n  s0:\n    uses: ingest\n    with: { source: a.csv }\n';
    for (let i = 1; i < 2000; i++)
      text += `  s${i}: { uses: dedupe, needs: s${i - 1}, with: { table: "\${{ stages.s${i - 1}.outputs.table }}" } }\n`;
    const p = plan(text);
    assert.equal(p.stages.length, 2000);
    assert.equal(p.stages[1999]!.id, 's1999');
  });
});

describe('defaults and parameters', () => {
  test('retry, timeouts and queue come from defaults unless the stage sets them, and 1h30m is 90 minutes', () => {
    const text = yaml`
      name: p
      params:
        q: { type: string, default: cpu-big }
      onFailure: finish-independent
      defaults:
        retry: { maximumAttempts: 4, initialInterval: 500ms, backoffCoefficient: 1.5, maximumInterval: 1h30m, nonRetryableErrorTypes: [InputError] }
        timeout: 1h30m
        heartbeatTimeout: 45s
        queue: \${{ params.q }}
      stages:
        a:
          uses: ingest
          with: { source: x }
        b:
          uses: ingest
          queue: gpu
          timeout: 1d
          retry: { maximumAttempts: 1 }
          with: { source: y }
    `;
    const p = plan(text);
    const [a, b] = p.stages;
    assert.equal(p.onFailure, 'finish-independent');
    assert.deepEqual(a!.retry, {
      maximumAttempts: 4,
      initialInterval: 500,
      backoffCoefficient: 1.5,
      maximumInterval: 5_400_000,
      nonRetryableErrorTypes: ['InputError'],
    });
    assert.deepEqual(b!.retry, { ...a!.retry, maximumAttempts: 1 });
    assert.equal(a!.timeout, 5_400_000);
    assert.equal(b!.timeout, 86_400_000);
    assert.equal(a!.heartbeatTimeout, 45_000);
    assert.equal(a!.queue, 'cpu-big');
    assert.equal(b!.queue, 'gpu');
    assert.equal(plan(text, { q: 'cpu-small' }).stages[0]!.queue, 'cpu-small');
  });

  test('without defaults a stage gets a bounded retry and an hour', () => {
    const p = plan('name: p\nstages:\n  a: { uses: ingest, with: { source: x } }\n');
    assert.deepEqual(p.stages[0]!.retry, {
      maximumAttempts: 3,
      initialInterval: 1000,
      backoffCoefficient: 2,
      maximumInterval: 60000,
      nonRetryableErrorTypes: [],
    });
    assert.equal(p.stages[0]!.timeout, 3_600_000);
    assert.equal(p.concurrency, 1);
  });

  test('a long initialInterval raises the default maximumInterval with it', () => {
    const p = plan('name: p\nstages:\n  a: { uses: ingest, retry: { initialInterval: 5m }, with: { source: x } }\n');
    assert.equal(p.stages[0]!.retry.maximumInterval, 300_000);
  });

  test('parameter values are parsed by type: integer, boolean, string, number', () => {
    const text = yaml`
      name: p
      params:
        epochs: { type: integer }
        shuffle: { type: boolean, default: false }
        model: { type: string, enum: [tiny, small], default: tiny }
        lr: { type: number, default: 0.1 }
      stages:
        ingest:
          uses: ingest
          with: { source: x }
        train:
          uses: train
          needs: ingest
          with:
            data: \${{ stages.ingest.outputs.table }}
            epochs: \${{ params.epochs }}
            shuffle: \${{ params.shuffle }}
            model: \${{ params.model }}
            lr: \${{ params.lr }}
            tags: ["e\${{ params.epochs }}", "\${{ params.shuffle }}-\${{ params.model }}"]
    `;
    const p = plan(text, { epochs: '7', shuffle: 'true', model: 'small', lr: '1e-4' });
    assert.deepEqual(p.params, { epochs: 7, shuffle: true, model: 'small', lr: 0.0001 });
    assert.deepEqual(p.stages[1]!.with, {
      data: '${{ stages.ingest.outputs.table }}',
      epochs: 7,
      shuffle: true,
      model: 'small',
      lr: 0.0001,
      tags: ['e7', 'true-small'],
    });
  });

  test('a file can be checked without giving its required parameters', () => {
    const text = 'name: p\nparams:\n  src: { type: string }\nstages:\n  a: { uses: ingest, with: { source: "${{ params.src }}" } }\n';
    assert.equal(checkSpecText(text, 'p.yaml', registry).ok, true);
    assert.equal(loadSpecText(text, 'p.yaml', registry).ok, false);
    assert.equal(plan(text, { src: 'data.csv' }).stages[0]!.with.source, 'data.csv');
  });
});

describe('reading files', () => {
  test('a missing file is a SpecError, not a throw', async () => {
    const r = await loadSpec('/nonexistent/pipeline.yaml', registry);
    assert.deepEqual(r, {
      ok: false,
      errors: [
        {
          file: '/nonexistent/pipeline.yaml',
          line: 0,
          column: 0,
          path: '',
          code: 'file-not-found',
          message: 'no such file',
          hint: 'check the path; pipeline files usually live under pipelines/',
        },
      ],
    });
  });

  test('a directory is a SpecError', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spec-'));
    const r = await loadSpec(dir, registry);
    assert.equal(r.ok, false);
    assert.equal((r as { errors: Array<{ code: string }> }).errors[0]!.code, 'file-unreadable');
  });

  test('a file over MAX_SPEC_BYTES is a SpecError naming its size, from a file or from text; one at the limit plans', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spec-'));
    const valid = readFileSync(fixture('basic.yaml'), 'utf8');
    // A comment pads the file to the size wanted without changing what it says.
    const padded = (bytes: number) => valid + '#'.repeat(bytes - Buffer.byteLength(valid) - 1) + '\n';
    const atLimit = join(dir, 'at.yaml');
    writeFileSync(atLimit, padded(MAX_SPEC_BYTES));
    assert.equal((await loadSpec(atLimit, registry)).ok, true);
    const over = join(dir, 'over.yaml');
    writeFileSync(over, padded(MAX_SPEC_BYTES + 1));
    for (const r of [
      await loadSpec(over, registry),
      await checkSpec(over, registry),
      loadSpecText(padded(MAX_SPEC_BYTES + 1), over, registry),
      checkSpecText(padded(MAX_SPEC_BYTES + 1), over, registry),
    ]) {
      assert.equal(r.ok, false);
      const [e, ...more] = (r as { errors: Array<{ code: string; file: string; message: string; hint?: string }> }).errors;
      assert.equal(more.length, 0);
      assert.equal(e!.code, 'file-too-large');
      assert.equal(e!.file, over);
      assert.match(e!.message, /^the file is 524,289 bytes; a pipeline file may have at most 524,288$/);
      assert.match(e!.hint!, /ingest source/);
    }
  });

  test('an unreadable file is a SpecError', async (t) => {
    if (process.getuid?.() === 0) return t.skip('root can read any file');
    const dir = mkdtempSync(join(tmpdir(), 'spec-'));
    const f = join(dir, 'p.yaml');
    writeFileSync(f, 'name: p\n');
    chmodSync(f, 0);
    const r = await loadSpec(f, registry);
    assert.equal((r as { errors: Array<{ code: string }> }).errors[0]!.code, 'file-unreadable');
  });
});
