import type { FastifySchemaValidationError } from 'fastify';

/** `/messages/0/content` → `messages[0].content`, the way OpenAI's errors name a parameter. */
function paramOf(instancePath: string, child?: string): string {
  const p = instancePath
    .replace(/\/(\d+)(?=\/|$)/g, '[$1]')
    .replace(/\//g, '.')
    .replace(/^\./, '');
  return child === undefined ? p : p ? `${p}.${child}` : child;
}

/**
 * One message for a request body that failed its schema, naming each field: ajv's own words for an
 * unknown field ("must NOT have additional properties") do not say which, and a value allowed in
 * several shapes gives one error a shape plus a summary.
 */
export function describeValidation(errors: readonly FastifySchemaValidationError[]): { message: string; param: string | null } {
  // A value allowed in several shapes (anyOf) fails each branch. When it has the type of one branch and
  // fails that branch's own rules (at its path or deeper), those rules are the message; only when it
  // has none of the types is the message the list of types.
  const alternatives = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  const matchedABranch = (path: string) =>
    errors.some((e) => e.instancePath.startsWith(`${path}/`) || (e.instancePath === path && e.keyword !== 'type' && e.keyword !== 'anyOf'));
  const typesAt = (path: string) =>
    errors.filter((e) => e.keyword === 'type' && e.instancePath === path).flatMap((e) => String(e.params.type).split(','));
  const parts: string[] = [];
  let param: string | null = null;
  for (const e of errors) {
    const alternative = alternatives.has(e.instancePath);
    if (alternative && e.keyword === 'type') continue;
    if (e.keyword === 'anyOf' && matchedABranch(e.instancePath)) continue;
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
    if (!parts.includes(text)) parts.push(text);
  }
  return { message: parts.join('; '), param };
}
