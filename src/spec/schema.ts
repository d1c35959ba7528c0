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

// A second instance because useDefaults writes into the data it validates: validate must see the
// file as written (its errors point at what the file says), a plugin kind's run the defaults filled in.
const defaultsAjv = new Ajv2020.default({ allErrors: true, strict: false, allowUnionTypes: true, useDefaults: true, ...COMPILE });
const defaulters = new WeakMap<object, ValidateFunction | null>();

/**
 * A copy of `config` with the `default` of each field `schema` gives one filled in where the config
 * leaves it out (ajv's useDefaults: a field of an object the config has, or that a default creates).
 * `config` itself is not changed; a schema with no `default` gives `config` back as it is.
 */
export function withDefaults<T>(kind: string, schema: object, config: T): T {
  let fill = defaulters.get(schema);
  if (fill === undefined) {
    try {
      fill = JSON.stringify(schema).includes('"default"') ? defaultsAjv.compile(schema) : null;
    } catch (e) {
      throw new Error(`stage kind '${kind}' has an invalid withSchema: ${(e as Error).message}`, { cause: e });
    }
    defaulters.set(schema, fill);
  }
  if (!fill || typeof config !== 'object' || config === null) return config;
  const copy = structuredClone(config);
  // Only the filling is wanted: whether the config is valid is validate's question, asked earlier.
  fill(copy);
  return copy;
}
