/**
 * The special-token layout of a Hugging Face tokenizer, read from tokenizer.json's `post_processor`.
 *
 * @huggingface/tokenizers applies the post-processor itself but cannot truncate, and truncation must
 * happen between encoding and adding special tokens (as the Rust library does: it truncates the raw
 * sequences to max_length minus the special tokens, then adds them). So we encode without special
 * tokens, truncate, and add them here.
 */
import { InputError } from '../errors.ts';
import { checkTokenId } from './tokenizer-limits.ts';

type Piece = { special: number[]; typeId: number } | { seq: 'A' | 'B'; typeId: number };

export interface SpecialLayout {
  single: Piece[];
  pair: Piece[];
}

export interface WithSpecials {
  ids: number[];
  typeIds: number[];
  /** 1 where the token came from the text, 0 for added special tokens. */
  fromText: number[];
}

function tokenId(vocabLookup: (t: string) => number | undefined, token: unknown, where: string): number {
  if (Array.isArray(token) && typeof token[1] === 'number') return token[1];
  if (typeof token !== 'string') throw new InputError(`expected a special token, got ${JSON.stringify(token)}`, { where });
  const id = vocabLookup(token);
  if (id === undefined) throw new InputError(`special token ${JSON.stringify(token)} is not in the vocabulary`, { where });
  return id;
}

/** Reads the post-processor config; `null` or byte-level-only processors add no tokens. */
export function parseSpecialLayout(pp: unknown, vocabLookup: (t: string) => number | undefined, file = 'tokenizer.json'): SpecialLayout {
  const where = `${file}: post_processor`;
  const none: SpecialLayout = {
    single: [{ seq: 'A', typeId: 0 }],
    pair: [
      { seq: 'A', typeId: 0 },
      { seq: 'B', typeId: 1 },
    ],
  };
  if (pp === null || pp === undefined) return none;
  const p = pp as Record<string, unknown>;
  switch (p.type) {
    case 'ByteLevel':
      return none;
    case 'Sequence': {
      // Only one member may add tokens (e.g. Llama 3: ByteLevel then TemplateProcessing).
      const members = (p.processors as unknown[] | undefined) ?? [];
      const adding = members.filter((m) => (m as { type?: string }).type !== 'ByteLevel');
      if (adding.length > 1) throw new InputError('a Sequence with more than one token-adding processor is not supported', { where });
      return adding.length === 0 ? none : parseSpecialLayout(adding[0], vocabLookup, file);
    }
    case 'BertProcessing': {
      const cls = tokenId(vocabLookup, p.cls, where);
      const sep = tokenId(vocabLookup, p.sep, where);
      return {
        single: [
          { special: [cls], typeId: 0 },
          { seq: 'A', typeId: 0 },
          { special: [sep], typeId: 0 },
        ],
        pair: [
          { special: [cls], typeId: 0 },
          { seq: 'A', typeId: 0 },
          { special: [sep], typeId: 0 },
          { seq: 'B', typeId: 1 },
          { special: [sep], typeId: 1 },
        ],
      };
    }
    case 'RobertaProcessing': {
      const cls = tokenId(vocabLookup, p.cls, where);
      const sep = tokenId(vocabLookup, p.sep, where);
      return {
        single: [
          { special: [cls], typeId: 0 },
          { seq: 'A', typeId: 0 },
          { special: [sep], typeId: 0 },
        ],
        pair: [
          { special: [cls], typeId: 0 },
          { seq: 'A', typeId: 0 },
          { special: [sep, sep], typeId: 0 },
          { seq: 'B', typeId: 0 },
          { special: [sep], typeId: 0 },
        ],
      };
    }
    case 'TemplateProcessing': {
      const specials = (p.special_tokens ?? {}) as Record<string, { ids?: number[] }>;
      const parse = (tpl: unknown, which: string): Piece[] => {
        if (!Array.isArray(tpl)) throw new InputError(`TemplateProcessing.${which} must be a list`, { where });
        return tpl.map((item: Record<string, { id: string; type_id?: number }>) => {
          if (item.SpecialToken) {
            const ids = specials[item.SpecialToken.id]?.ids;
            if (!Array.isArray(ids)) throw new InputError(`special token ${item.SpecialToken.id} has no ids in special_tokens`, { where });
            ids.forEach((id, i) =>
              checkTokenId(id, `post_processor.special_tokens[${JSON.stringify(item.SpecialToken.id)}].ids[${i}]`, where),
            );
            return { special: ids, typeId: item.SpecialToken.type_id ?? 0 };
          }
          if (item.Sequence) return { seq: item.Sequence.id === 'B' ? 'B' : 'A', typeId: item.Sequence.type_id ?? 0 };
          throw new InputError(`unknown template item ${JSON.stringify(item)}`, { where });
        });
      };
      return { single: parse(p.single, 'single'), pair: parse(p.pair, 'pair') };
    }
    default:
      throw new InputError(`post_processor type ${JSON.stringify(p.type)} is not supported`, {
        where,
        hint: 'supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence',
      });
  }
}

export function specialCount(layout: SpecialLayout, pair: boolean): number {
  let n = 0;
  for (const p of pair ? layout.pair : layout.single) if ('special' in p) n += p.special.length;
  return n;
}

export function applyLayout(layout: SpecialLayout, a: number[], b?: number[]): WithSpecials {
  const ids: number[] = [];
  const typeIds: number[] = [];
  const fromText: number[] = [];
  for (const p of b === undefined ? layout.single : layout.pair) {
    const part = 'special' in p ? p.special : p.seq === 'A' ? a : b!;
    for (const id of part) {
      ids.push(id);
      typeIds.push(p.typeId);
      fromText.push('special' in p ? 0 : 1);
    }
  }
  return { ids, typeIds, fromText };
}

/**
 * Lengths after truncating a pair to `budget` tokens the way the Rust tokenizers library's
 * LongestFirst strategy does: the shorter sequence is kept whole when the longer one can absorb the
 * cut; otherwise both are cut to about half (the second gets the odd token).
 */
export function longestFirstLengths(n1: number, n2: number, budget: number): [number, number] {
  if (n1 + n2 <= budget) return [n1, n2];
  let a = n1;
  let b = n2;
  const swap = a > b;
  if (swap) [a, b] = [b, a];
  b = a > budget ? a : Math.max(a, budget - a);
  if (a + b > budget) {
    a = Math.floor(budget / 2);
    b = a + (budget % 2);
  }
  return swap ? [b, a] : [a, b];
}
