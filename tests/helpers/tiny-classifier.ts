/**
 * What the classification pipelines in tests read: a tiny random BERT in `<dir>/tiny-bert` and a
 * learnable synthetic text-classification set in `<dir>/data.jsonl` (`rows` rows drawn with `seed`).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { syntheticRows } from '../../src/finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../../src/models/tiny.testing.ts';

export function writeTinyClassifierInputs(dir: string, rows = 320, seed = 5): void {
  tinyBertDir(join(dir, 'tiny-bert'), 11, TINY_MINILM);
  writeFileSync(
    join(dir, 'data.jsonl'),
    syntheticRows(rows, seed)
      .map((r) => JSON.stringify(r))
      .join('\n') + '\n',
  );
}
