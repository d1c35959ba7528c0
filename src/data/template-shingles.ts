/**
 * A prompt template's own shingles. An instruction table stores rendered prompts: the constant text of ingest's
 * `promptTemplate` around each row's input. That text's shingles are in every row, so under a long template two
 * different short inputs pass for near duplicates (`cool ?` and `horrible .` under instruct.yaml's sentiment
 * question). ingest records the template on the `prompt` column (field metadata PROMPT_TEMPLATE_METADATA), dedupe
 * and split keep it, and near-duplicate detection (dedupe, the contamination check) leaves out exactly the shingles
 * that lie wholly in the template's text. The template is read from the table, never guessed from its rows: a
 * cluster of near copies looks like a template to any guess, and a guess depends on which rows it samples.
 *
 * Which shingles those are is found by rendering a row's compared text twice, with two placeholder characters the
 * template does not hold as inputs, through the very normalisation and shingling a row goes through: a shingle found
 * in both renderings touches no input. Then again with the placeholders between spaces: an input that starts or ends
 * with a space makes the template's neighbouring word a whole word. A row whose optional `[[ … ]]` sections were
 * dropped joins the text around them, so each combination of sections is rendered (all of them up to
 * MAX_SECTIONS_COMBINED sections; beyond, all kept and all dropped only).
 *
 * What is compared is then the inputs, not the template, and that can make two rows nearer as well as farther apart:
 * a row that kept an optional section loses that section's text, as one that dropped it never had it (two rows that
 * differ only in whether they have a short context are then near duplicates, as their inputs alone are); so do rows
 * whose input starts or ends with a space, beside ones whose input does not. With char shingles, a character the
 * normalisation changes by what follows it (a Greek final sigma, a combining mark) can leave a few template shingles
 * at a boundary unstripped. A row's text that equals some of the template's (an input quoting it) loses those
 * shingles too: the same text is the same shingle.
 */
import { DataType, type Schema } from 'apache-arrow';
import { InputError } from '../errors.ts';
import { PROMPT_TEMPLATE_METADATA } from './arrow-io.ts';
import { shingleHashesScratch, type ShingleKind } from './minhash.ts';
import { isTemplateError, parseTemplate, type ParsedTemplate } from './prompt-template.ts';

/** Optional sections whose every combination is rendered: 2^4 renderings at most. */
export const MAX_SECTIONS_COMBINED = 4;

/**
 * Placeholder inputs: two characters the template does not hold, so that no window of one rendering that holds a
 * placeholder is found in the other; then the same between spaces. Private-use characters: every normalisation step
 * keeps them, and a word of text holds them only when made to.
 */
function placeholders(t: ParsedTemplate): Array<readonly [string, string]> {
  const used = new Set<number>();
  for (const s of t.sections) for (const p of s.pieces) if (typeof p === 'string') for (const c of p) used.add(c.codePointAt(0)!);
  // The BMP's private-use area and plane 15's: 6,400 + 65,534 code points, more than a template's 65,536 characters.
  const free: string[] = [];
  for (let cp = 0xe000; free.length < 2; cp = cp === 0xf8ff ? 0xf0000 : cp + 1) if (!used.has(cp)) free.push(String.fromCodePoint(cp));
  const [x, y] = free as [string, string];
  return [
    [x, y],
    [` ${x} `, ` ${y} `],
  ];
}

/**
 * The templates recorded on a table's `columns` (by position in `columns`; null where a column has none), parsed. An
 * InputError naming the table and column when one is not a template ingest would accept.
 */
export function columnTemplates(schema: Schema, columns: readonly string[], table: string): (ParsedTemplate | null)[] {
  return columns.map((name) => {
    const f = schema.fields.find((x) => x.name === name);
    const t = f?.metadata.get(PROMPT_TEMPLATE_METADATA);
    if (f === undefined || t === undefined) return null;
    const where = `${table}: column ${JSON.stringify(name)}'s ${PROMPT_TEMPLATE_METADATA} metadata`;
    const hint = 'the metadata is what ingest wrote; a table written elsewhere should leave it out';
    if (!DataType.isUtf8(f.type) && !DataType.isLargeUtf8(f.type))
      throw new InputError(`${where} is on a ${f.type} column, not text`, { where, hint });
    const parsed = parseTemplate(t);
    if (isTemplateError(parsed)) throw new InputError(`${where} is not a prompt template: ${parsed.message}`, { where, hint });
    return parsed;
  });
}

/** Renders `t` with `fill` for every field, keeping the optional sections whose bit is set in `kept`. */
function render(t: ParsedTemplate, kept: number, fill: string): string {
  let out = '';
  let optional = 0;
  for (const s of t.sections) {
    if (s.optional && !(kept & (1 << optional++))) continue;
    for (const p of s.pieces) out += typeof p === 'string' ? p : fill;
  }
  return out;
}

/** The combinations of optional sections rendered, as bit masks of the kept ones. */
function combinations(t: ParsedTemplate): number[] {
  const n = t.sections.filter((s) => s.optional).length;
  if (n <= MAX_SECTIONS_COMBINED) return Array.from({ length: 1 << n }, (_, m) => m);
  // Bit masks stop at 31 sections, and kept & (1 << i) wraps past it: "all kept" is every bit set instead.
  return [-1, 0];
}

function sortedUnique(a: Uint32Array): Uint32Array {
  a.sort();
  let m = 0;
  for (let i = 0; i < a.length; i++) if (i === 0 || a[i] !== a[i - 1]) a[m++] = a[i]!;
  return a.subarray(0, m);
}

/** Hashes in both sorted sets. */
function intersect(a: Uint32Array, b: Uint32Array, into: number[]): void {
  for (let i = 0, j = 0; i < a.length && j < b.length; ) {
    if (a[i]! < b[j]!) i++;
    else if (a[i]! > b[j]!) j++;
    else {
      into.push(a[i]!);
      i++;
      j++;
    }
  }
}

/** The template shingles of a set of tables, and `strip` to leave them out of a row's shingles. */
export class TemplateShingles {
  static readonly NONE = new TemplateShingles(new Uint32Array(0));
  private scratch = new Uint32Array(0);

  /** `hashes`: sorted, distinct. */
  private constructor(private readonly hashes: Uint32Array) {}

  /**
   * The template shingles of rows compared as dedupe compares them: each text column normalised, joined by U+0000,
   * shingled. `tables`: for each table whose rows are compared, each compared column's template (columnTemplates).
   */
  static of(
    tables: ReadonlyArray<ReadonlyArray<ParsedTemplate | null>>,
    normalize: (s: string) => string,
    shingle: ShingleKind,
    size: number,
  ): TemplateShingles {
    const found: number[] = [];
    const shingles = (text: string) => sortedUnique(shingleHashesScratch(text, shingle, size).slice());
    for (const templates of tables)
      templates.forEach((t, col) => {
        if (!t) return;
        for (const kept of combinations(t))
          for (const fills of placeholders(t)) {
            const [a, b] = fills.map((fill) =>
              shingles(templates.map((_, c) => normalize(c === col ? render(t, kept, fill) : fill)).join('\u0000')),
            );
            intersect(a!, b!, found);
          }
      });
    return found.length === 0 ? TemplateShingles.NONE : new TemplateShingles(sortedUnique(Uint32Array.from(found)));
  }

  /** Distinct template shingles. */
  get size(): number {
    return this.hashes.length;
  }

  has(h: number): boolean {
    const a = this.hashes;
    let lo = 0,
      hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (a[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return lo < a.length && a[lo] === h;
  }

  /**
   * `shingles` without the template's, in order: `shingles` itself when there is no template, else a view of a buffer
   * of this object's, valid until its next call. May be empty: a row that is all template has nothing of its own.
   */
  strip(shingles: Uint32Array): Uint32Array {
    if (this.hashes.length === 0) return shingles;
    if (this.scratch.length < shingles.length) this.scratch = new Uint32Array(Math.max(shingles.length, 2 * this.scratch.length));
    let m = 0;
    for (let i = 0; i < shingles.length; i++) if (!this.has(shingles[i]!)) this.scratch[m++] = shingles[i]!;
    return this.scratch.subarray(0, m);
  }
}
