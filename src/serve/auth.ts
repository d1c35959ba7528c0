import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Checks an `Authorization: Bearer <token>` header in constant time. Both sides are hashed
 * first so the comparison takes the same time whatever the length of the guess.
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (typeof header !== 'string') return false;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  const given = createHash('sha256')
    .update(m ? m[1]! : '')
    .digest();
  const want = createHash('sha256').update(token).digest();
  // Evaluate both so a malformed header costs the same as a wrong token.
  return timingSafeEqual(given, want) && m !== null;
}

/**
 * Why a token could never be sent as `Authorization: Bearer <token>` and matched, or undefined when
 * it can: a header carries visible ASCII, and the bearer's value ends at the first space.
 */
export function tokenProblem(token: string): string | undefined {
  if (/\s/.test(token)) return 'it contains whitespace, which ends a bearer token in the Authorization header, so no client could send it';
  if (!/^[\x21-\x7e]*$/.test(token)) return 'it has characters other than visible ASCII, which an HTTP header cannot carry as they are';
  return undefined;
}
