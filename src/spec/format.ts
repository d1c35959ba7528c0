/** Prints SpecErrors the way compilers do, so editors and terminals can jump to them. */
import type { SpecError } from './types.ts';

/** `file:line:col: error: path: message`, then `  hint: …` when there is one; one error per entry. */
export function formatSpecErrors(errors: readonly SpecError[]): string {
  return errors
    .map((e) => {
      const where = e.line > 0 ? `${e.file}:${e.line}:${e.column}` : e.file;
      const head = `${where}: error: ${e.path ? `${e.path}: ` : ''}${e.message}`;
      return e.hint ? `${head}\n  hint: ${e.hint}` : head;
    })
    .join('\n');
}
