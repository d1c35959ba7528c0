/**
 * The pipeline file's JSON Schema (pipelines/pipeline.schema.json, also used by editors) and the
 * ajv validators: one strict instance for our own schema, one lenient instance for the stage
 * kinds' `with` schemas, which other modules write and may annotate with extra keywords.
 */
import { readFileSync } from 'node:fs';
import Ajv2020 from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';

export const pipelineSchema: Record<string, unknown> = JSON.parse(
  readFileSync(new URL('../../pipelines/pipeline.schema.json', import.meta.url), 'utf8'),
);

let pipelineValidator: ValidateFunction | undefined;

// Each validator checks one small document per command, so ajv's code optimisation pass costs
// more than it saves (validate of the demo pipeline: 0.87 s CPU with it, 0.74 s without).
const COMPILE = { code: { optimize: false } } as const;

export function validatePipelineSchema(): ValidateFunction {
  pipelineValidator ??= new Ajv2020.default({ allErrors: true, verbose: true, strict: true, allowUnionTypes: true, ...COMPILE }).compile(
    pipelineSchema,
  );
  return pipelineValidator;
}

const withAjv = new Ajv2020.default({ allErrors: true, verbose: true, strict: false, allowUnionTypes: true, ...COMPILE });
const withValidators = new WeakMap<object, ValidateFunction>();

/** Compiled validator for a stage kind's `with` schema; a schema that does not compile is a bug in the registry, not in the user's file. */
export function withValidator(kind: string, schema: object): ValidateFunction {
  let v = withValidators.get(schema);
  if (!v) {
    try {
      v = withAjv.compile(schema);
    } catch (e) {
      throw new Error(`stage kind '${kind}' has an invalid withSchema: ${(e as Error).message}`, { cause: e });
    }
    withValidators.set(schema, v);
  }
  return v;
}
