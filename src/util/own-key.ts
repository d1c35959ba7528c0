/**
 * Sets `key` as an own enumerable property. Plain assignment treats a key named `__proto__` (a
 * class label or a field name from data) as the prototype setter: the entry vanishes, or the
 * object's prototype changes. Objects built from keys that come from data go through this.
 */
export function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}
