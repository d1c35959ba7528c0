import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../errors.ts';
import { inStage, stageWhere } from './stage-where.ts';

const train = { id: 'train_b', kind: 'train', withSchema: { type: 'object', properties: { lora: {}, maxLength: {} } } };

describe('a stage input error names the stage', () => {
  test("a field of the stage's with becomes its path in the pipeline", () => {
    assert.equal(stageWhere('train.lora.layers', train), 'stages.train_b.with.lora.layers');
    assert.equal(stageWhere('train.maxLength', train), 'stages.train_b.with.maxLength');
    assert.equal(stageWhere('train.lora[2]', train), 'stages.train_b.with.lora[2]');
    // A row of a table field, or the field's column: before, 'stages.train_b (train.maxLength: row 8)'.
    assert.equal(stageWhere('train.maxLength: row 8', train), 'stages.train_b.with.maxLength: row 8');
    assert.equal(stageWhere('train.lora (labelColumn)', train), 'stages.train_b.with.lora (labelColumn)');
  });

  test('a setting the stage derives keeps its name, after the stage', () => {
    assert.equal(stageWhere('train.trainable.r', train), 'stages.train_b (train.trainable.r)');
  });

  test("files, rows and another kind's names are left as they are", () => {
    assert.equal(stageWhere('data/train.csv:12', train), 'data/train.csv:12');
    assert.equal(stageWhere('evaluate.generation', train), 'evaluate.generation');
    assert.equal(stageWhere('trainer.lr', train), 'trainer.lr');
    assert.equal(stageWhere(undefined, train), undefined);
  });

  test('the error keeps its message, hint and code, with the new place in front', () => {
    const e = new InputError('layers [40] are out of range', {
      where: 'train.lora.layers',
      hint: 'the model has 30 layers',
      code: 'source-missing',
    });
    const moved = inStage(e, train);
    assert.ok(moved instanceof InputError);
    assert.equal(moved.message, 'stages.train_b.with.lora.layers: layers [40] are out of range');
    assert.equal(moved.where, 'stages.train_b.with.lora.layers');
    assert.equal(moved.hint, 'the model has 30 layers');
    assert.equal(moved.code, 'source-missing');
    const file = new InputError('bad row', { where: 'data/a.csv:3' });
    assert.equal(inStage(file, train), file);
  });
});
