/**
 * Property tests of the JSONL and CSV readers through ingest (fast-check, fixed seeds): what is
 * written properly is read back exactly; random and adversarial bytes never crash or hang the
 * reader, and never vanish: every non-blank line is in the report's accounting.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { InputError } from '../errors.ts';
import { columnValues, readArrowBatches } from './arrow-io.ts';
import type { IngestConfig } from './config.ts';
import { ingest } from './ingest.ts';
import { sniffUnicode } from '../util/unicode-sniff.ts';
import type { IngestReport } from './report.ts';

const SEED = 20261203;
const RUNS = 60;

async function ingestBytes(
  name: string,
  bytes: Uint8Array | string,
  cfg: Omit<IngestConfig, 'path'>,
): Promise<{ report?: IngestReport; error?: InputError; rows: Record<string, unknown>[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'prop-'));
  try {
    writeFileSync(join(dir, name), bytes);
    let report: IngestReport;
    try {
      report = await ingest({ ...cfg, path: name } as IngestConfig, {
        baseDir: dir,
        outPath: join(dir, 'out.arrow'),
        quarantinePath: join(dir, 'q.arrow'),
      });
    } catch (e) {
      // Bad input may fail the file as a whole, but only ever as an input error.
      if (!(e instanceof InputError)) throw e;
      return { error: e, rows: [] };
    }
    const rows: Record<string, unknown>[] = [];
    for await (const b of readArrowBatches(join(dir, 'out.arrow'))) {
      const names = b.schema.fields.map((f) => f.name);
      const cols = names.map((n) => columnValues(b, n));
      for (let i = 0; i < b.numRows; i++) rows.push(Object.fromEntries(names.map((n, c) => [n, cols[c][i]])));
    }
    return { report, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Physical lines as the readers see them: split on \n, a final line without \n counts. */
function physicalLines(bytes: Uint8Array): string[] {
  const text = new TextDecoder('utf-8', { ignoreBOM: false }).decode(bytes);
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

function checkAccounting(r: IngestReport): void {
  const bad = Object.values(r.badRows).reduce((s, n) => s + n, 0);
  assert.equal(r.rowsIn, r.rowsOut + bad, 'every row is kept or counted bad');
  assert.ok(r.badLines <= r.linesIn && r.rowsIn <= r.linesIn);
}

const lenient = { task: 'classification', onBadRow: 'quarantine', maxBadFraction: 1 } as const;
/** Text a person could write: any Unicode, kept non-blank so the row is valid. */
const text = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }).filter((s) => s.trim() !== '' && !s.includes('\r'));
const label = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 8 }).filter((s) => !s.includes('\r'));

test('jsonl: rows written with JSON.stringify are read back exactly, in order', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.record({ text, label }), { minLength: 1, maxLength: 20 }), async (recs) => {
      const got = await ingestBytes('a.jsonl', recs.map((r) => JSON.stringify(r)).join('\n'), { task: 'classification' });
      assert.deepEqual(
        got.rows.map((r) => [r.text, r.label]),
        recs.map((r) => [r.text, r.label]),
      );
      assert.equal(got.report!.linesIn, recs.length);
    }),
    { seed: SEED, numRuns: RUNS },
  );
});

test('jsonl: any string, unpaired surrogates included, is read back exactly or refused as lone-surrogate, never altered', async () => {
  // fast-check's string units never produce a lone surrogate, so mix them in by hand.
  const piece = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 4 }),
    fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
  );
  const any = fc
    .array(piece, { minLength: 1, maxLength: 4 })
    .map((p) => p.join(''))
    .filter((s) => s.trim() !== '');
  await fc.assert(
    fc.asyncProperty(fc.array(fc.record({ text: any, label: any }), { minLength: 1, maxLength: 8 }), async (recs) => {
      const got = await ingestBytes('a.jsonl', recs.map((r) => JSON.stringify(r)).join('\n'), lenient);
      const wellFormed = (s: string) => !/\p{Cs}/u.test(s);
      const expected = recs.filter((r) => wellFormed(r.text) && wellFormed(r.label));
      assert.deepEqual(
        got.rows.map((r) => [r.text, r.label]),
        expected.map((r) => [r.text, r.label]),
      );
      assert.equal(got.report!.badRows['lone-surrogate'] ?? 0, recs.length - expected.length);
    }),
    { seed: SEED, numRuns: RUNS },
  );
});

test('csv: records quoted per RFC 4180 (commas, quotes, newlines inside) are read back exactly, lines counted', async () => {
  const quoteField = (s: string) => `"${s.replace(/"/g, '""')}"`;
  await fc.assert(
    fc.asyncProperty(fc.array(fc.record({ text, label }), { minLength: 1, maxLength: 20 }), fc.boolean(), async (recs, crlf) => {
      const eol = crlf ? '\r\n' : '\n';
      const body = ['text,label', ...recs.map((r) => `${quoteField(r.text)},${quoteField(r.label)}`)].join(eol) + eol;
      const got = await ingestBytes('a.csv', body, { task: 'classification' });
      assert.equal(got.error, undefined, got.error?.message);
      assert.deepEqual(
        got.rows.map((r) => [r.text, r.label]),
        recs.map((r) => [r.text, r.label]),
      );
      const physical = recs.reduce((n, r) => n + r.text.split('\n').length + r.label.split('\n').length - 1, 0);
      assert.equal(got.report!.linesIn, physical);
    }),
    { seed: SEED, numRuns: RUNS },
  );
});

test('csv: a quote left open in one quoted row costs that line alone: every other row is read back exactly', async () => {
  const quoteField = (s: string) => `"${s.replace(/"/g, '""')}"`;
  // One line per row. A text may not begin with ',' or '"': after an open quote, a next line
  // '",…' or '"""…' could close it validly, and two lines that parse as one record are one
  // record; CSV cannot tell them apart.
  const oneLine = text.filter((s) => !s.includes('\n') && !/^[,"]/.test(s));
  const rowLabel = label.filter((s) => !s.includes('\n'));
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ text: oneLine, label: rowLabel }), { minLength: 1, maxLength: 20 }),
      fc.nat(),
      async (recs, k) => {
        const broken = k % recs.length;
        // The label's closing quote is dropped: its quote stays open to the end of the line.
        const lines = recs.map((r, i) => `${quoteField(r.text)},${quoteField(r.label).slice(0, i === broken ? -1 : undefined)}`);
        const got = await ingestBytes('a.csv', ['text,label', ...lines].join('\n') + '\n', lenient);
        assert.equal(got.error, undefined, got.error?.message);
        assert.deepEqual(
          got.rows.map((r) => [r.text, r.label, r._row]),
          recs.flatMap((r, i) => (i === broken ? [] : [[r.text, r.label, i + 2]])),
        );
        const report = got.report!;
        assert.deepEqual(
          [report.rowsIn, report.linesIn, report.badLines, report.badRows],
          [recs.length, recs.length, 1, { 'csv-syntax': 1 }],
        );
      },
    ),
    { seed: SEED, numRuns: RUNS },
  );
});

test('the UTF-16/UTF-32 check never refuses UTF-8 text: any string without NUL', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 600 }), (s) => {
      fc.pre(!s.includes('\0'));
      assert.equal(sniffUnicode(new TextEncoder().encode(s)), null);
    }),
    { seed: SEED, numRuns: RUNS * 10 },
  );
});

test('jsonl: random bytes never crash the reader, and every non-blank line is a row (kept or bad)', async () => {
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc
      .array(
        fc.constantFrom(
          '{',
          '}',
          '"text"',
          ':',
          '"x"',
          ',',
          '"label"',
          '\n',
          '\r\n',
          ' ',
          '\\',
          '[',
          ']',
          'null',
          '\u2028',
          '\uFEFF',
          '\xff',
        ),
        { maxLength: 80 },
      )
      .map((t) => new TextEncoder().encode(t.join(''))),
  );
  await fc.assert(
    fc.asyncProperty(bytes, async (b) => {
      const got = await ingestBytes('a.jsonl', b, lenient);
      const nonBlank = physicalLines(b).filter((l) => l.trim() !== '').length;
      if (got.error) {
        // A file fails as a whole only when it holds no row, or when its start says it is no JSON Lines: one JSON
        // array (its first line opens one), or gzip (its magic number) that does not inflate.
        const first =
          physicalLines(b)
            .find((l) => l.trim() !== '')
            ?.trim() ?? '';
        const array = (first === '[' || first.startsWith('[{')) && /one JSON array/.test(got.error.message);
        const gzip = b[0] === 0x1f && b[1] === 0x8b && /gzip/.test(got.error.message);
        assert.ok(nonBlank === 0 || array || gzip, `only an empty file, an array or gzip may fail as a whole: ${got.error.message}`);
        return;
      }
      checkAccounting(got.report!);
      assert.equal(got.report!.rowsIn, nonBlank);
      assert.equal(got.report!.linesIn, nonBlank);
    }),
    { seed: SEED, numRuns: RUNS * 2 },
  );
});

test('csv: adversarial quoting never crashes or hangs the reader, and no non-blank line vanishes', { timeout: 120_000 }, async () => {
  const token = fc.constantFrom('"', '""', ',', '\n', '\r\n', 'a', ' ', 'text', 'label', '"a,b"', '\t', '\xff');
  const bytes = fc.oneof(
    fc.array(token, { maxLength: 60 }).map((t) => new TextEncoder().encode(t.join(''))),
    fc.uint8Array({ maxLength: 200 }),
  );
  await fc.assert(
    fc.asyncProperty(bytes, fc.boolean(), async (b, withHeader) => {
      const content = withHeader ? Buffer.concat([Buffer.from('text,label\n'), b]) : b;
      const got = await ingestBytes('a.csv', content, {
        ...lenient,
        header: withHeader,
        ...(withHeader ? {} : { columns: ['text', 'label'] }),
      });
      const lines = physicalLines(content);
      // A line of commas alone is blank too: every field empty, no row.
      const nonBlank = lines.filter((l) => l.replaceAll(',', '').trim() !== '').length;
      if (got.error) {
        // The whole file fails only for its header, or when it holds no row.
        assert.ok(/header|no rows found|file is empty/.test(got.error.message), got.error.message);
        return;
      }
      checkAccounting(got.report!);
      // Every non-blank line but the header belongs to exactly one record: nothing is swallowed.
      assert.ok(got.report!.linesIn >= nonBlank - (withHeader ? 1 : 0), `${got.report!.linesIn} lines accounted of ${nonBlank} non-blank`);
      assert.ok(got.report!.linesIn <= lines.length);
    }),
    { seed: SEED, numRuns: RUNS * 2 },
  );
});

test('jsonl: deeply nested and very long values are bad rows, not crashes', async () => {
  const deep = '['.repeat(200_000);
  const nested = `{"text":${'['.repeat(5000)}${']'.repeat(5000)},"label":"x"}`;
  const got = await ingestBytes('a.jsonl', [deep, nested, '{"text":"ok","label":"y"}'].join('\n'), lenient);
  assert.deepEqual(got.report!.badRows, { 'invalid-json': 1, 'not-string': 1 });
  assert.equal(got.report!.rowsOut, 1);
});
