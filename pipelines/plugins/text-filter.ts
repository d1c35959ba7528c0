/**
 * An example TEMPERED_PLUGINS module (docs/plugins.md): stage kind `text-filter` drops rows whose text
 * is shorter than `minChars` or matches `dropPattern`, keeping every other column (split groups
 * duplicates by dedupe's `_cluster`), and says how many it dropped.
 *
 *   TEMPERED_PLUGINS=pipelines/plugins/text-filter.ts npx tempered validate pipelines/plugins/sms-spam-filtered.yaml
 */
import { join } from 'node:path';
import {
  ArrowTableWriter,
  artifactRefSchema,
  describeArrowFile,
  InputError,
  MEDIA,
  readArrowBatches,
  readArrowSchema,
  stringColumn,
  takeRows,
  type ArtifactRef,
  type StageKind,
} from '../../src/plugin-api.ts';

interface Config {
  table: ArtifactRef;
  /** Filled in from the schema's `default` when the file leaves it out. */
  column: string;
  minChars?: number;
  dropPattern?: string;
}

export const textFilter: StageKind<Config> = {
  kind: 'text-filter',
  description: 'drop rows whose text is shorter than minChars or matches dropPattern',
  // Bump when what the kind computes changes. (Edits of this file miss the cache anyway: tempered adds
  // the file's hash to the version; edits of modules it imports do not.)
  codeVersion: 'text-filter-1',
  withSchema: {
    type: 'object',
    additionalProperties: false,
    required: ['table'],
    properties: {
      table: { ...artifactRefSchema, takes: ['table'], description: 'the table to filter, e.g. dedupe outputs.table' },
      column: { type: 'string', default: 'text', description: 'the text column' },
      minChars: { type: 'integer', minimum: 0, description: 'drop texts shorter than this many characters' },
      dropPattern: { type: 'string', description: 'drop texts this regular expression matches' },
    },
  },
  outputs: {
    table: { type: 'table', description: 'the rows kept, with every column of the input' },
    dropped: { type: 'number', description: 'rows dropped' },
    rows: { type: 'number', description: 'rows kept' },
  },
  // Checked by `tempered validate`, before any run: a pattern that does not compile is the file's mistake.
  check(cfg) {
    if (typeof cfg.dropPattern !== 'string') return [];
    try {
      new RegExp(cfg.dropPattern, 'u');
      return [];
    } catch (e) {
      return [{ path: ['dropPattern'], message: `not a regular expression: ${(e as Error).message}` }];
    }
  },
  async run(cfg, ctx) {
    const column = cfg.column;
    const input = await ctx.store.verify(cfg.table);
    const schema = await readArrowSchema(input);
    if (!schema.fields.some((f) => f.name === column))
      throw new InputError(`no column '${column}' in the table; it has ${schema.fields.map((f) => f.name).join(', ')}`, {
        where: 'text-filter.column',
        hint: 'name the text column with column:',
      });
    const pattern = cfg.dropPattern === undefined ? undefined : new RegExp(cfg.dropPattern, 'u');
    const outPath = join(ctx.workDir, 'table.arrow');
    const out = new ArrowTableWriter(outPath, schema);
    let seen = 0;
    try {
      for await (const batch of readArrowBatches(input)) {
        const texts = stringColumn(batch, column);
        const keep: number[] = [];
        texts.forEach((t, i) => {
          if ([...t].length >= (cfg.minChars ?? 0) && !pattern?.test(t)) keep.push(i);
        });
        out.writeRecordBatch(takeRows(batch, keep));
        seen += batch.numRows;
        ctx.progress({ message: `${seen} rows read, ${out.rows} kept` });
      }
      out.close();
    } catch (e) {
      out.abort();
      throw e;
    }
    const { rows, schema: columns } = await describeArrowFile(outPath);
    return {
      table: await ctx.store.putFile(outPath, { mediaType: MEDIA.arrow, rows, schema: columns, move: true }),
      dropped: seen - rows,
      rows,
    };
  },
};

export function stageKinds(): StageKind<any>[] {
  return [textFilter];
}
