/** Append-only typed arrays that double when full: per-row state without knowing the row count. */
type TypedCtor = Int32ArrayConstructor | Uint32ArrayConstructor | Uint16ArrayConstructor | Uint8ArrayConstructor;

export class Growable<T extends Int32Array | Uint32Array | Uint16Array | Uint8Array> {
  data: T;
  length = 0;
  constructor(
    private readonly ctor: TypedCtor,
    initial = 1024,
  ) {
    this.data = new ctor(initial) as T;
  }
  /** Makes room for `n` more elements. */
  reserve(n: number): void {
    if (this.length + n <= this.data.length) return;
    let cap = this.data.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new this.ctor(cap) as T;
    next.set(this.data.subarray(0, this.length) as never);
    this.data = next;
  }
  push(v: number): void {
    if (this.length === this.data.length) this.reserve(1);
    this.data[this.length++] = v;
  }
  view(): T {
    return this.data.subarray(0, this.length) as T;
  }
}
