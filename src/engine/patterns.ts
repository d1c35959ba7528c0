/**
 * Name patterns for choosing weights (freezing, LoRA targets, weight-decay exclusions).
 * `/…/flags` is a regular expression (searched anywhere in the name); anything else is a glob matched
 * against the whole name, where `*` matches any run of characters (dots included) and `?` one character.
 */
export function compilePattern(p: string): RegExp {
  const re = /^\/(.*)\/([a-z]*)$/.exec(p);
  if (re) return new RegExp(re[1]!, re[2]);
  const body = p
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export function matchesAny(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => compilePattern(p).test(name));
}
