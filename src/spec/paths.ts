/**
 * Two spellings of a location in the pipeline document: JSON pointers (`/stages/train/needs/0`,
 * what ajv reports and what the position map is keyed by) and human paths
 * (`stages.train.needs[0]`, what people read in error messages).
 */

export type Segment = string | number;

export function toPointer(segments: readonly Segment[]): string {
  return segments.map((s) => '/' + String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

export function fromPointer(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function toHumanPath(segments: readonly Segment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (PLAIN_KEY.test(s)) out += out === '' ? s : '.' + s;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

/** Segments of a pointer, with array indices turned into numbers by looking at the data. */
export function typedSegments(pointer: string, root: unknown): Segment[] {
  const out: Segment[] = [];
  let node: unknown = root;
  for (const raw of fromPointer(pointer)) {
    if (Array.isArray(node) && /^\d+$/.test(raw)) {
      out.push(Number(raw));
      node = node[Number(raw)];
    } else {
      out.push(raw);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[raw] : undefined;
    }
  }
  return out;
}

export function humanPathOfPointer(pointer: string, root: unknown): string {
  return toHumanPath(typedSegments(pointer, root));
}
