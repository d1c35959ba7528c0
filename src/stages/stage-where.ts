/**
 * The library names a config field by its stage kind (`train.lora.layers`): in a pipeline with two
 * train stages that does not say which one, nor where in the file to look. A stage's input errors
 * are renamed to the field's path in the pipeline (`stages.train_b.with.lora.layers`), the path
 * `tempered validate` uses; a kind-named place that is no field of `with` (an engine setting the
 * stage derives, such as `train.trainable.r`) keeps its name after the stage's. A row of a table field
 * (`evaluate.test: row 8`) is that field's: `stages.eval.with.test: row 8`.
 */
import { InputError } from '../errors.ts';

export interface StagePlace {
  id: string;
  kind: string;
  withSchema: object;
}

export function stageWhere(where: string | undefined, stage: StagePlace): string | undefined {
  if (where === undefined || !where.startsWith(`${stage.kind}.`)) return where;
  const field = where.slice(stage.kind.length + 1);
  // The field's name ends at a dot, a bracket, or what follows it (`evaluate.test: row 8`, `evaluate.test (labelColumn)`).
  const first = /^[^.[:\s(]+/.exec(field)?.[0];
  const props = (stage.withSchema as { properties?: Record<string, unknown> }).properties;
  if (first && props && Object.prototype.hasOwnProperty.call(props, first)) return `stages.${stage.id}.with.${field}`;
  return `stages.${stage.id} (${where})`;
}

/** The same error, placed in the stage (message, where, hint, code and cause kept). */
export function inStage(err: InputError, stage: StagePlace): InputError {
  const where = stageWhere(err.where, stage);
  if (where === err.where) return err;
  const moved = new InputError(err.bareMessage, { where, hint: err.hint, code: err.code, cause: err.cause });
  moved.stack = err.stack;
  return moved;
}
