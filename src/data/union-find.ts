/** Disjoint sets over row indices, with path halving and union by index (the smaller index becomes root). */
import { Growable } from './growable.ts';

export class UnionFind {
  private parent = new Growable<Int32Array>(Int32Array);

  get size(): number {
    return this.parent.length;
  }

  add(): number {
    const i = this.parent.length;
    this.parent.push(i);
    return i;
  }

  find(i: number): number {
    const p = this.parent.data;
    while (p[i] !== i) {
      p[i] = p[p[i]];
      i = p[i];
    }
    return i;
  }

  /** The earliest row of a set stays its root, so roots are stable and deterministic. */
  union(a: number, b: number): boolean {
    const ra = this.find(a),
      rb = this.find(b);
    if (ra === rb) return false;
    const p = this.parent.data;
    if (ra < rb) p[rb] = ra;
    else p[ra] = rb;
    return true;
  }
}
