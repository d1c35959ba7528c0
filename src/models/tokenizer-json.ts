/** Pieces of a Hugging Face `tokenizer.json` that more than one writer builds (key order kept as HF writes it). */

/** The leading fields of a tokenizer.json with no truncation, padding or normalizer. */
export function tokenizerJsonHead(added: unknown[]) {
  return { version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null };
}

/** A post-processor that wraps a sequence (and a pair) in the BOS/EOS tokens the model expects. */
export function templatePostProcessor(
  bos: string | undefined,
  eos: string | undefined,
  addBos: boolean,
  addEos: boolean,
  idOf: (token: string) => number,
): Record<string, unknown> {
  const single = [
    ...(addBos && bos ? [{ SpecialToken: { id: bos, type_id: 0 } }] : []),
    { Sequence: { id: 'A', type_id: 0 } },
    ...(addEos && eos ? [{ SpecialToken: { id: eos, type_id: 0 } }] : []),
  ];
  const specialTokens: Record<string, { id: string; ids: number[]; tokens: string[] }> = {};
  for (const t of [addBos ? bos : undefined, addEos ? eos : undefined]) if (t) specialTokens[t] = { id: t, ids: [idOf(t)], tokens: [t] };
  return {
    type: 'TemplateProcessing',
    single,
    pair: [...single, ...single.map((p) => ('Sequence' in p ? { Sequence: { id: 'B', type_id: 1 } } : p))],
    special_tokens: specialTokens,
  };
}

/**
 * A BPE model. `affix` is the continuing-subword prefix and end-of-word suffix ('' or null, as the
 * source writes them); `byteFallback` turns on both fuse_unk and byte_fallback (SentencePiece-style vocabularies).
 */
export function bpeModel(
  vocab: Record<string, number>,
  merges: unknown[],
  opts: { affix: '' | null; byteFallback: boolean },
): Record<string, unknown> {
  return {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: opts.affix,
    end_of_word_suffix: opts.affix,
    fuse_unk: opts.byteFallback,
    byte_fallback: opts.byteFallback,
    ignore_merges: false,
    vocab,
    merges,
  };
}
