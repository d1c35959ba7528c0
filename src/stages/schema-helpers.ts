/** JSON Schema pieces shared by stage kinds' `with` schemas. */

/** An artifact reference, as produced by `${{ stages.<id>.outputs.<table> }}`. */
export const artifactRefSchema = {
  type: 'object',
  required: ['uri', 'sha256', 'bytes'],
  properties: {
    uri: { type: 'string', pattern: '^artifact://sha256/[0-9a-f]{64}$' },
    sha256: { type: 'string' },
    bytes: { type: 'integer' },
    mediaType: { type: 'string' },
    rows: { type: 'integer' },
    schema: { type: 'object' },
  },
  description: 'an artifact reference; write ${{ stages.<id>.outputs.<name> }}',
} as const;

/** Adds input-table properties (required) to a data library's config schema. */
export function withInputs(schema: object, inputs: Record<string, object>): object {
  const s = schema as { properties?: Record<string, unknown>; required?: string[] };
  return { ...schema, properties: { ...inputs, ...(s.properties ?? {}) }, required: [...Object.keys(inputs), ...(s.required ?? [])] };
}
