/**
 * Property tests of the pipeline parser and validator (fast-check, fixed seeds): random and
 * adversarial text, mutations of the demo pipeline and random stage graphs never crash or hang the
 * validator; a rejected file gets errors that point into it; an accepted file is never accepted
 * silently wrong: its plan orders every stage after what it needs, leaves only references to
 * upstream outputs that exist, and plans the same from a re-serialized copy of the spec.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { kindRegistry, loadStageKinds } from '../stages/stage-kinds.ts';
import { decodeSource, firstInvalidUtf8 } from './decode.ts';
import { ancestors, buildGraph } from './graph.ts';
import { checkSpecText, loadSpecText, type LoadSpecResult } from './load.ts';
import { listStageRefs } from './runtime-refs.ts';
import { registry as fixtureKinds } from './kinds.testing.ts';
import type { KindRegistry, PlannedPipeline, SpecError } from './types.ts';

const SEED = 20261203;
const RUNS = 150;
const pipelines = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'pipelines');
const demo = readFileSync(join(pipelines, 'sms-spam.yaml'), 'utf8');
const realKinds: KindRegistry = kindRegistry(await loadStageKinds());

/** Every error says what and where, inside the text it was given. */
function assertWellFormed(text: string, errors: SpecError[], file: string): void {
  assert.ok(errors.length > 0);
  const lines = text.split('\n').length;
  for (const e of errors) {
    assert.equal(e.file, file);
    assert.ok(typeof e.code === 'string' && e.code.length > 0, JSON.stringify(e));
    assert.ok(typeof e.message === 'string' && e.message.trim().length > 0, JSON.stringify(e));
    assert.ok(Number.isInteger(e.line) && e.line >= 0 && e.line <= lines + 1, `line ${e.line} of ${lines}: ${JSON.stringify(e)}`);
    assert.ok(Number.isInteger(e.column) && e.column >= 0, JSON.stringify(e));
  }
}

/** What an accepted pipeline's plan must satisfy. */
function assertConsistentPlan(plan: PlannedPipeline, reg: KindRegistry): void {
  const position = new Map(plan.stages.map((s, i) => [s.id, i]));
  const graph = buildGraph(Object.fromEntries(plan.stages.map((s) => [s.id, { needs: s.needs }])));
  for (const [i, s] of plan.stages.entries()) {
    const kind = reg.kinds.get(s.uses);
    assert.ok(kind, `stage ${s.id} uses unknown kind ${s.uses}`);
    for (const n of s.needs) assert.ok(position.get(n)! < i, `${s.id} is planned before its need ${n}`);
    assert.ok(!JSON.stringify(s.with).includes('${{ params.'), `a parameter reference survived planning in ${s.id}`);
    for (const r of listStageRefs(s.with)) {
      assert.ok(ancestors(graph, s.id).has(r.stage), `${s.id} reads ${r.stage}, which is not upstream`);
      const upstream = reg.kinds.get(plan.stages[position.get(r.stage)!]!.uses)!;
      assert.ok(Object.hasOwn(upstream.outputs, r.output), `${r.stage} has no output ${r.output}`);
    }
  }
}

function check(text: string, reg: KindRegistry, file = 'p.yaml'): LoadSpecResult {
  const r = loadSpecText(text, file, { ...reg });
  if (!r.ok) assertWellFormed(text, r.errors, file);
  else {
    assertConsistentPlan(r.plan, reg);
    // The same spec written out again plans to the same thing.
    const again = loadSpecText(stringify(r.spec), 'again.yaml', { ...reg });
    assert.ok(again.ok, `re-serialized spec was rejected: ${JSON.stringify(!again.ok && again.errors)}`);
    assert.equal(again.plan.specHash, r.plan.specHash);
  }
  const c = checkSpecText(text, file, { ...reg });
  if (!c.ok) assertWellFormed(text, c.errors, file);
  return r;
}

test('random and adversarial text never crashes the validator, and errors point into it', () => {
  const yamlish = fc.string({
    unit: fc.constantFrom(
      'name: p\n',
      'stages:\n',
      '  a:\n',
      '    uses: ingest\n',
      '    needs: [a]\n',
      '    with: {',
      '}',
      '[',
      ']',
      '${{',
      '}}',
      'params.',
      'stages.',
      '.outputs.',
      '&x ',
      '*x',
      '!!set ',
      '!!binary ',
      '? ',
      '- ',
      ': ',
      '"',
      "'",
      '#',
      '\t',
      '\n',
      ' ',
      '\u0000',
      '\ufeff',
      '\u2028',
      'é',
      '.inf',
      '0x1F',
      '~',
      '<<: ',
      '%YAML 1.2\n',
      '---\n',
      '...\n',
    ),
    maxLength: 40,
  });
  fc.assert(
    fc.property(fc.oneof(yamlish, fc.string({ unit: 'binary', maxLength: 200 }), fc.json()), (text) => {
      check(text, fixtureKinds);
      // The same text in a .json file goes through the strict JSON parser first.
      check(text, fixtureKinds, 'p.json');
    }),
    { seed: SEED, numRuns: RUNS * 4 },
  );
});

test('edits of the demo pipeline are either rejected with located errors or planned consistently', () => {
  const TOKENS = [
    ' ',
    '\n',
    ':',
    '-',
    '  ',
    '${{ ',
    ' }}',
    'stages.',
    'params.',
    '"',
    '[',
    ']',
    '{',
    '}',
    'needs: [deploy]',
    'ingest',
    'outputs.',
    '0',
    '#',
  ];
  const edit = fc.oneof(
    fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 30 }) }),
    fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: fc.constantFrom(...TOKENS) }),
    fc.record({ op: fc.constant('swap-lines' as const), at: fc.nat(), other: fc.nat() }),
    fc.record({ op: fc.constant('dup-line' as const), at: fc.nat() }),
  );
  let accepted = 0;
  fc.assert(
    fc.property(fc.array(edit, { minLength: 1, maxLength: 3 }), (edits) => {
      let text = demo;
      for (const e of edits) {
        if (e.op === 'delete') {
          const at = e.at % text.length;
          text = text.slice(0, at) + text.slice(at + e.len);
        } else if (e.op === 'insert') {
          const at = e.at % (text.length + 1);
          text = text.slice(0, at) + e.text + text.slice(at);
        } else {
          const lines = text.split('\n');
          const i = e.at % lines.length;
          if (e.op === 'dup-line') lines.splice(i, 0, lines[i]!);
          else {
            const j = e.other % lines.length;
            [lines[i], lines[j]] = [lines[j]!, lines[i]!];
          }
          text = lines.join('\n');
        }
      }
      if (check(text, realKinds, join(pipelines, 'sms-spam.yaml')).ok) accepted++;
    }),
    { seed: SEED, numRuns: RUNS },
  );
  // Comments and blank lines make some edits harmless; if none were, the mutations test nothing but rejection.
  assert.ok(accepted > 0);
});

test('random stage graphs with random references validate or are rejected, never crash, and plan in dependency order', () => {
  const ids = ['a', 'b', 'c', 'd', 'e'];
  const kinds = [...fixtureKinds.kinds.keys(), 'deploy', 'nope'];
  const ref = fc.oneof(
    fc
      .tuple(fc.constantFrom(...ids), fc.constantFrom('table', 'model', 'report', 'accuracy', 'nope'))
      .map(([s, o]) => `\${{ stages.${s}.outputs.${o} }}`),
    fc.constantFrom('${{ params.lr }}', '${{ params.nope }}', '${{ bad }}', '${{ stages.a.outputs', 'plain', ''),
  );
  const stage = fc.record(
    {
      uses: fc.constantFrom(...kinds),
      needs: fc.oneof(fc.constantFrom(...ids), fc.uniqueArray(fc.constantFrom(...ids, 'zz'), { maxLength: 3 })),
      with: fc.dictionary(
        fc.constantFrom('source', 'table', 'data', 'model', 'lr', 'note', 'threshold', 'extra'),
        fc.oneof(ref, fc.double({ noNaN: true, min: -2, max: 2 }), fc.boolean(), fc.constant(null)),
        { maxKeys: 4 },
      ),
      cache: fc.boolean(),
    },
    { requiredKeys: ['uses'] },
  );
  const pipeline = fc.record({
    name: fc.constantFrom('p', 'a-b', ''),
    params: fc.constant({ lr: { type: 'number', default: 0.1 } }),
    stages: fc.dictionary(fc.constantFrom(...ids), stage, { minKeys: 1, maxKeys: 5 }),
  });
  // Mostly valid graphs too: each stage reads outputs of earlier stages, now and then the wrong
  // output, a stage that is not upstream, or a need on a later stage (possibly a cycle).
  const ARTIFACT_FIELDS: Record<string, string[]> = {
    ingest: [],
    dedupe: ['table'],
    split: ['table'],
    train: ['data'],
    evaluate: ['model', 'data'],
    register: ['model'],
  };
  const validish = fc
    .array(
      fc.record({
        kind: fc.constantFrom(...Object.keys(ARTIFACT_FIELDS)),
        pick: fc.nat(),
        extra: fc.array(fc.nat({ max: 4 }), { maxLength: 2 }),
        mistake: fc.nat({ max: 11 }),
      }),
      { minLength: 1, maxLength: 5 },
    )
    .map((list) => {
      const stages: Record<string, { uses: string; needs: string[]; with: Record<string, unknown> }> = {};
      list.forEach((x, i) => {
        const earlier = ids
          .slice(0, i)
          .filter((id) =>
            Object.keys(fixtureKinds.kinds.get(stages[id]!.uses)!.outputs).some((o) =>
              ['table', 'artifact'].includes(fixtureKinds.kinds.get(stages[id]!.uses)!.outputs[o]!.type),
            ),
          );
        const kind = earlier.length ? x.kind : 'ingest';
        const w: Record<string, unknown> = kind === 'ingest' ? { source: 'a.csv' } : {};
        const needs = new Set(x.extra.filter((j) => j < i).map((j) => ids[j]!));
        for (const field of ARTIFACT_FIELDS[kind]!) {
          const from = earlier[(x.pick + field.length) % earlier.length]!;
          const outs = Object.entries(fixtureKinds.kinds.get(stages[from]!.uses)!.outputs)
            .filter(([, o]) => o.type === 'table' || o.type === 'artifact')
            .map(([n]) => n);
          const out = x.mistake === 1 ? 'nope' : outs[x.pick % outs.length]!;
          w[field] = `\${{ stages.${from}.outputs.${out} }}`;
          if (x.mistake !== 0) needs.add(from);
        }
        if (kind === 'train') w.lr = '${{ params.lr }}';
        if (x.mistake === 2 && i + 1 < list.length) needs.add(ids[i + 1]!);
        stages[ids[i]!] = { uses: kind, needs: [...needs], with: w };
      });
      // Every later stage may point back at an earlier one: close a cycle now and then.
      const last = list[list.length - 1]!;
      if (last.mistake === 3 && list.length > 1) stages[ids[0]!]!.needs.push(ids[list.length - 1]!);
      return { name: 'p', params: { lr: { type: 'number', default: 0.1 } }, stages };
    });
  let graphsAccepted = 0;
  fc.assert(
    fc.property(fc.oneof(pipeline, validish, validish), fc.boolean(), (p, asJson) => {
      if (check(asJson ? JSON.stringify(p, null, 1) : stringify(p), fixtureKinds, asJson ? 'p.json' : 'p.yaml').ok) graphsAccepted++;
    }),
    { seed: SEED, numRuns: RUNS * 2 },
  );
  assert.ok(graphsAccepted > RUNS / 4, `only ${graphsAccepted} of ${RUNS * 2} graphs were valid; the generator tests little but rejection`);
});

test('the UTF-8 check agrees with a strict decoder on random bytes, and locates the first bad byte', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 16 }), (a, b) => {
      // Mostly valid text around random bytes, so both outcomes are common.
      const bytes = Uint8Array.from([...Buffer.from('name: é\n'), ...a, ...Buffer.from('\n€'), ...b]);
      let strictOk = true;
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        strictOk = false;
      }
      const at = firstInvalidUtf8(bytes);
      assert.equal(at === bytes.length, strictOk);
      if (!strictOk) {
        new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, at)); // the part before is valid
        const r = decodeSource(bytes, 'x.yaml');
        assert.ok(!r.ok && r.error.code === 'bad-encoding' && r.error.line >= 1 && r.error.column >= 1);
      }
    }),
    { seed: SEED, numRuns: RUNS * 4 },
  );
});
