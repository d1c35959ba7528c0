/**
 * Canonical JSON: object keys sorted by UTF-16 code unit, no whitespace, so the same value always
 * serialises to the same bytes. Hash chains and stored JSON depend on that stability.
 * Refuses values JSON cannot represent faithfully (undefined inside arrays, NaN, Infinity,
 * functions, bigint, class instances other than Date) instead of silently changing them.
 */
import { createHash } from 'node:crypto';
import { InputError } from '../errors.ts';

export function canonicalJson(value: unknown, where = 'value'): string {
  return write(value, where);
}

function write(v: unknown, path: string): string {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'boolean':
      return v ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(v)) throw new InputError(`${v} cannot be stored as JSON`, { where: path, hint: 'use a finite number or null' });
      return JSON.stringify(v);
    case 'object': {
      if (Array.isArray(v)) {
        // By index, not map(): map skips the holes of a sparse array and join would write `[,1]`.
        const parts: string[] = [];
        for (let i = 0; i < v.length; i++) {
          const x: unknown = v[i];
          if (x === undefined)
            throw new InputError(`${i in v ? 'undefined' : 'a hole in a sparse array'} cannot be stored as JSON`, {
              where: `${path}[${i}]`,
              hint: 'use null',
            });
          parts.push(write(x, `${path}[${i}]`));
        }
        return `[${parts.join(',')}]`;
      }
      if (v instanceof Date) {
        if (Number.isNaN(v.getTime())) throw new InputError('an invalid Date cannot be stored as JSON', { where: path });
        return JSON.stringify(v.toISOString());
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) {
        throw new InputError(`a ${proto?.constructor?.name ?? 'non-plain'} object cannot be stored as JSON`, {
          where: path,
          hint: 'pass plain objects, arrays, strings, numbers, booleans or null',
        });
      }
      const keys = Object.keys(v)
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${keys.map((k) => `${JSON.stringify(k)}:${write((v as Record<string, unknown>)[k], `${path}.${k}`)}`).join(',')}}`;
    }
    default:
      throw new InputError(`a ${typeof v} cannot be stored as JSON`, { where: path });
  }
}

export function sha256Hex(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

/** sha256 of a value's canonical JSON: the same value, in any key order, gives the same hash. */
export function hashJson(value: unknown, where = 'value'): string {
  return sha256Hex(canonicalJson(value, where));
}
