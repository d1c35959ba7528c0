import type { FastifySchemaValidationError } from 'fastify';

/** `/messages/0/content` → `messages[0].content`, the way OpenAI's errors name a parameter. */
function paramOf(instancePath: string, child?: string): string {
  const p = instancePath
    .replace(/\/(\d+)(?=\/|$)/g, '[$1]')
    .replace(/\//g, '.')
    .replace(/^\./, '');
  return child === undefined ? p : p ? `${p}.${child}` : child;
}

/** Problems named in one message; the rest are counted. */
const MAX_PROBLEMS = 10;

/**
 * One message for a request body that failed its schema, naming each field: ajv's own words for an
 * unknown field ("must NOT have additional properties") do not say which, and a value allowed in
 * several shapes gives one error a shape plus a summary.
 */
export function describeValidation(errors: readonly FastifySchemaValidationError[]): { message: string; param: string | null } {
  // A value allowed in several shapes (anyOf) fails each branch. When it has the type of one branch and
  // fails that branch's own rules (at its path or deeper), those rules are the message; only when it
  // has none of the types is the message the list of types.
  // Indexed once: a megabyte of unknown fields or wrong items is 100,000 errors, and a scan of all of them per error
  // (as this did) held the server's thread for minutes (20,000: 16 s).
  const alternatives = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const withDeeper = new Set<string>();
  const withOwnRule = new Set<string>();
  const types = new Map<string, string[]>();
  for (const e of errors) {
    // Only the paths of alternatives are ever asked about.
    for (let i = e.instancePath.lastIndexOf('/'); i >= 0; i = e.instancePath.lastIndexOf('/', i - 1)) {
      const above = e.instancePath.slice(0, i);
      if (alternatives.has(above)) withDeeper.add(above);
      if (i === 0) break;
    }
    if (e.keyword !== 'type' && e.keyword !== 'anyOf') withOwnRule.add(e.instancePath);
    if (e.keyword === 'type' && alternatives.has(e.instancePath)) {
      const at = types.get(e.instancePath) ?? [];
      at.push(...String(e.params.type).split(','));
      types.set(e.instancePath, at);
    }
  }
  const matchedABranch = (path: string) => withDeeper.has(path) || withOwnRule.has(path);
  const typesAt = (path: string) => types.get(path) ?? [];
  const parts = new Set<string>();
  let param: string | null = null;
  // Past the ones named, the rest are counted, not worded (one each, though two may have said the same).
  let more = 0;
  for (const e of errors) {
    const alternative = alternatives.has(e.instancePath);
    if (alternative && e.keyword === 'type') continue;
    if (e.keyword === 'anyOf' && matchedABranch(e.instancePath)) continue;
    if (parts.size >= MAX_PROBLEMS) {
      more++;
      continue;
    }
    let name = paramOf(e.instancePath);
    let text: string;
    if (e.keyword === 'additionalProperties') {
      name = paramOf(e.instancePath, String(e.params.additionalProperty));
      text = `${name}: this server does not take this field`;
    } else if (e.keyword === 'required') {
      // ajv says "body must have required property 'messages'", and names the object, not the field, as the param.
      name = paramOf(e.instancePath, String(e.params.missingProperty));
      text = `${name} is required`;
    } else if (e.keyword === 'anyOf') {
      text = `${name || 'body'} must be ${[...new Set(typesAt(e.instancePath))].join(' or ')}`;
    } else if (e.keyword === 'type') {
      text = `${name || 'body'} must be ${String(e.params.type).split(',').join(' or ')}`;
    } else if (e.keyword === 'enum') {
      text = `${name || 'body'} must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    } else text = `${name || 'body'} ${e.message ?? 'is not valid'}`;
    param ??= name || null;
    parts.add(text);
  }
  // The first few say what is wrong; a thousand more would only make the answer a megabyte.
  return { message: [...parts].join('; ') + (more > 0 ? `; and ${more} more problem${more === 1 ? '' : 's'}` : ''), param };
}
