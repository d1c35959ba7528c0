/**
 * Static ReDoS analysis of one JavaScript regular expression (flags `gu`, as @huggingface/tokenizers
 * compiles tokenizer.json patterns), without running it.
 *
 * The pattern becomes its Glushkov automaton (one state per character position, bounded repeats
 * unrolled, zero-width assertions as ε), and a backtracking matcher can only blow up where that
 * automaton is ambiguous on paths that can still fail:
 * - exponential: a state with two different paths back to itself on the same text (EDA: `(a+)+`,
 *   `(a|a)*`, `(a|aa)+`), found as a strongly connected component of the automaton × itself that holds
 *   both a pair of equal states and a pair of different ones;
 * - polynomial: states p ≠ q with p→p, p→q and q→q on the same text (IDA: `\s*\s*$`, `.*.*=`), found
 *   as a path (p,p,q) → (p,q,q) in the automaton cubed.
 * Paths that reach a "sure" state cannot fail, so they do not count: a state where the pattern can end
 * with no assertion left to check and from which every way on is sure again or has no loop (the
 * matcher accepts there after bounded extra work). This is why Llama-3's `\s*[\r\n]+` and GPT-4o's
 * `[…]*[…]+(?i:'s|…)?` pass: their second loop ends the pattern. Without EDA and IDA, one match attempt
 * takes time linear in the text, so all attempts together take at most quadratic time (an attempt
 * starts at each position: `\s+$` on a run of spaces; not refused, real tokenizers have such patterns).
 * Also refused: backreferences; a "hot" lookaround (one the matcher may run at every step of a repeat,
 * bounded or not, or after an unbounded part: more than HOT_EXECUTIONS runs per attempt) whose body can
 * match more than HOT_WIDTH code points, has more than HOT_WAYS ways through it, or holds a lookaround
 * (each run would scan again: `(?:.(?=.{0,599})){0,598}` is cubic); a lookaround body that is itself ambiguous; more than MAX_WAYS label-blind
 * paths through the failing part (ambiguity that is finite but exponential in the pattern's size,
 * `(?:a|a){40}`; label-blind, so a long chain of optional parts such as `a*b` × 17 is refused too; and more than
 * MAX_SCANNING_WAYS of those paths into a failing loop, `(?:a|a){12}[^x]*y`, each of which scans the text again); patterns
 * too large to check (MAX_POSITIONS positions, MAX_EDGES transitions, MAX_WORK product steps, MAX_NESTING).
 * All the checker's work (building, products, searches, set intersections, property scans) counts
 * against one CheckBudget per tokenizer.json, so a file is accepted or refused in bounded time.
 *
 * Character sets are exact: each escape and property (`\p{L}`, `\s`) is expanded to code-point ranges
 * by running it over every code point with this process's own RegExp engine (cached per escape).
 */
import { parseRegExpLiteral, type AST } from '@eslint-community/regexpp';

/**
 * `proven`: the pattern was shown to backtrack super-linearly (an exponential or polynomial ambiguity found); absent
 * where it was refused because it passed one of the checker's limits or uses what the checker does not model, which
 * a safe pattern can do too.
 */
export type RegexVerdict =
  | { kind: 'safe' }
  | { kind: 'exponential' | 'polynomial' | 'unsupported' | 'too-complex'; reason: string; proven?: true };

/** Character positions a pattern may have once bounded repeats are unrolled. */
const MAX_POSITIONS = 600;
/** Label-blind paths through the part of the automaton that can fail. */
const MAX_WAYS = 100_000;
/**
 * Label-blind paths that reach a loop that can fail (or any path, where the pattern has a lookaround that
 * can scan more than HOT_WIDTH characters): each scans the text again, so one attempt costs up to this
 * many times the text's length (real patterns: at most 4). `(?:a|a){12}[^x]*y`: 25 s on 3000 characters.
 */
const MAX_SCANNING_WAYS = 32;
/** Steps (pairs and triples of transitions) the product searches may take: real patterns take under 100,000. */
const MAX_WORK = 3_000_000;
/** Transitions between positions (each position of `a*a*…` follows every earlier one). */
const MAX_EDGES = 30_000;
const MAX_CP = 0x10ffff;
const CAP = 1e15;
/**
 * Work units all the patterns of one tokenizer.json may cost the checker together: real patterns take
 * under 20,000 plus their properties (o200k: 9), and a unit costs up to ~0.2 µs, a property scan 5–70 ms.
 */
export const MAX_FILE_WORK = 2_000_000;
/** Work units each property a file's patterns use counts for (its expansion scans every code point: 5–70 ms). */
export const PROPERTY_COST = 200_000;
/**
 * A lookaround the matcher may run more often than this per match attempt (inside a repeat, or after
 * more than this many characters the attempt may have consumed) is "hot": its body must match at most
 * HOT_WIDTH code points, with at most HOT_WAYS ways, and hold no lookaround, so each run costs a constant.
 */
const HOT_EXECUTIONS = 16;
const HOT_WIDTH = 16;
const HOT_WAYS = 64;
const WIDE = 1e9;

/** The checker's work for one tokenizer.json, shared by all its patterns (pass one to each regexVerdict). */
export class CheckBudget {
  work = 0;
  /** Canonical properties already expanded (charged) under this budget. */
  readonly properties = new Set<string>();
  constructor(readonly limit = MAX_FILE_WORK) {}
}

let budget = new CheckBudget(Infinity);

class Exhausted extends Error {}

function charge(n: number) {
  budget.work += n;
  if (budget.work > budget.limit) throw new Exhausted();
}

class Refusal extends Error {
  constructor(
    readonly kind: 'exponential' | 'polynomial' | 'unsupported' | 'too-complex',
    readonly reason: string,
    /** True where the automaton was shown ambiguous (EDA, IDA); false where a limit of the checker refused it. */
    readonly proven = false,
  ) {
    super(reason);
  }
}

// ---------------------------------------------------------------- code-point sets (sorted [lo, hi] pairs, flat)

type Ranges = number[];

function normalize(pairs: [number, number][]): Ranges {
  charge(pairs.length);
  pairs.sort((a, b) => a[0] - b[0]);
  const out: Ranges = [];
  for (const [lo, hi] of pairs) {
    if (out.length > 0 && lo <= out[out.length - 1]! + 1) out[out.length - 1] = Math.max(out[out.length - 1]!, hi);
    else out.push(lo, hi);
  }
  return out;
}

function complement(r: Ranges): Ranges {
  const out: Ranges = [];
  let next = 0;
  for (let i = 0; i < r.length; i += 2) {
    if (r[i]! > next) out.push(next, r[i]! - 1);
    next = r[i + 1]! + 1;
  }
  if (next <= MAX_CP) out.push(next, MAX_CP);
  return out;
}

function intersect(a: Ranges, b: Ranges): Ranges {
  charge(1 + ((a.length + b.length) >> 1));
  const out: Ranges = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const lo = Math.max(a[i]!, b[j]!);
    const hi = Math.min(a[i + 1]!, b[j + 1]!);
    if (lo <= hi) out.push(lo, hi);
    if (a[i + 1]! < b[j + 1]!) i += 2;
    else j += 2;
  }
  return out;
}

let codePointText: [string, string] | undefined;

/** Every code point in order: [U+0000..U+D7FF] and [U+E000..U+10FFFF] (surrogates are tested one by one). */
function allCodePoints(): [string, string] {
  if (codePointText) return codePointText;
  const low = new Uint16Array(0xd800);
  for (let c = 0; c < 0xd800; c++) low[c] = c;
  const high = new Uint16Array(0x2000 + 2 * 0x100000);
  for (let c = 0xe000; c <= 0xffff; c++) high[c - 0xe000] = c;
  for (let c = 0x10000, k = 0x2000; c <= MAX_CP; c++, k += 2) {
    const v = c - 0x10000;
    high[k] = 0xd800 + (v >> 10);
    high[k + 1] = 0xdc00 + (v & 0x3ff);
  }
  const dec = new TextDecoder('utf-16le');
  codePointText = [dec.decode(low), dec.decode(high)];
  return codePointText;
}

const highIndexToCp = (k: number) => (k < 0x2000 ? 0xe000 + k : 0x10000 + ((k - 0x2000) >> 1));
const escapeRanges = new Map<string, Ranges>();
const PROPERTY_KEYS: Record<string, string> = { gc: 'General_Category', sc: 'Script', scx: 'Script_Extensions' };

/** `\p{sc=Latn}` and `\p{Script=Latn}` are one property (value aliases are not merged: each costs its own scan). */
function canonicalEscape(raw: string): string {
  const m = /^\\p\{(?:([^=}]+)=)?([^}]*)\}$/.exec(raw);
  if (!m) return raw;
  return m[1] ? `\\p{${PROPERTY_KEYS[m[1]] ?? m[1]}=${m[2]}}` : raw;
}

/** The code points one escape (`\p{L}`, `\S`, `\d`) matches, as the engine that will run the pattern decides. */
function rangesOfEscape(written: string): Ranges {
  const raw = canonicalEscape(written);
  // Charged once per budget whether or not this process has scanned it before: the verdict must not depend on history.
  usedProperties?.add(raw);
  if (!budget.properties.has(raw)) {
    budget.properties.add(raw);
    propertiesCharged++;
    charge(PROPERTY_COST);
  }
  const known = escapeRanges.get(raw);
  if (known) return known;
  const pairs: [number, number][] = [];
  const [low, high] = allCodePoints();
  const run = new RegExp(`(?:${raw})+`, 'gu');
  for (const m of low.matchAll(run)) pairs.push([m.index, m.index + m[0].length - 1]);
  for (const m of high.matchAll(run)) {
    const end = m.index + m[0].length;
    pairs.push([highIndexToCp(m.index), highIndexToCp(end - (end > 0x2000 ? 2 : 1))]);
  }
  const one = new RegExp(`^(?:${raw})$`, 'u');
  for (let c = 0xd800; c <= 0xdfff; c++) if (one.test(String.fromCharCode(c))) pairs.push([c, c]);
  const r = normalize(pairs);
  escapeRanges.set(raw, r);
  return r;
}

const LINE_TERMINATORS: Ranges = normalize([
  [0x0a, 0x0a],
  [0x0d, 0x0d],
  [0x2028, 0x2029],
]);

function rangesOfClassElement(e: AST.CharacterClassElement): Ranges {
  switch (e.type) {
    case 'Character':
      return [e.value, e.value];
    case 'CharacterClassRange':
      return [e.min.value, e.max.value];
    case 'CharacterSet':
      if (e.kind === 'property' && e.strings) throw new Refusal('unsupported', `${e.raw} (a property of strings)`);
      // \P{X}, \S, \D, \W: the complement of the positive escape's scan (one scan serves both).
      return e.negate ? complement(rangesOfEscape(`\\${e.raw[1]!.toLowerCase()}${e.raw.slice(2)}`)) : rangesOfEscape(e.raw);
    default:
      throw new Refusal('unsupported', `${e.raw} (set operations in a character class)`);
  }
}

function rangesOf(node: AST.Character | AST.CharacterClass | AST.CharacterSet): Ranges {
  if (node.type === 'Character') return [node.value, node.value];
  if (node.type === 'CharacterSet') {
    if (node.kind === 'any') return complement(LINE_TERMINATORS);
    return rangesOfClassElement(node);
  }
  if (node.unicodeSets) throw new Refusal('unsupported', `${node.raw} (a v-flag class)`);
  const pairs: [number, number][] = [];
  for (const e of node.elements) {
    const r = rangesOfClassElement(e);
    for (let i = 0; i < r.length; i += 2) pairs.push([r[i]!, r[i + 1]!]);
  }
  const r = normalize(pairs);
  return node.negate ? complement(r) : r;
}

// ---------------------------------------------------------------- Glushkov automaton

interface Budget {
  positions: number;
  steps: number;
}
/** Elements visited while building (bounded repeats of empty groups add no positions but cost work). */
const MAX_STEPS = 20_000;

interface End {
  ways: number;
  /** Some way from this position to the end of the sub-expression passes no assertion. */
  clean: boolean;
}

interface Info {
  first: Map<number, number>;
  last: Map<number, End>;
  /** Ways to match the empty string (0: not nullable). */
  empty: number;
  emptyClean: boolean;
}

const mul = (a: number, b: number) => Math.min(CAP, a * b);
const add = (a: number, b: number) => Math.min(CAP, a + b);

function addWays<K>(m: Map<K, number>, k: K, w: number) {
  m.set(k, add(m.get(k) ?? 0, w));
}

/** One automaton: positions 1..n (0 is the start), their sets, and the follow relation with path counts. */
class Automaton {
  readonly sets: Ranges[] = [[]];
  readonly atoms: AST.Node[] = [];
  readonly out: Map<number, number>[] = [new Map()];
  /** Lookarounds met while building. */
  readonly lookarounds = new Set<AST.LookaroundAssertion>();

  constructor(private readonly budget: Budget) {}

  get size() {
    return this.sets.length;
  }

  private position(node: AST.Character | AST.CharacterClass | AST.CharacterSet): Info {
    if (++this.budget.positions > MAX_POSITIONS)
      throw new Refusal('too-complex', `more than ${MAX_POSITIONS} character positions once repeats are unrolled`);
    const p = this.sets.length;
    this.sets.push(rangesOf(node));
    this.atoms[p] = node;
    this.out.push(new Map());
    return { first: new Map([[p, 1]]), last: new Map([[p, { ways: 1, clean: true }]]), empty: 0, emptyClean: false };
  }

  private link(last: Map<number, End>, first: Map<number, number>) {
    charge(1 + last.size * first.size);
    for (const [p, e] of last) for (const [q, w] of first) addWays(this.out[p]!, q, mul(e.ways, w));
  }

  private seq(a: Info, b: Info): Info {
    charge(a.first.size + b.first.size + a.last.size + b.last.size);
    this.link(a.last, b.first);
    const first = new Map(a.first);
    if (a.empty > 0) for (const [q, w] of b.first) addWays(first, q, mul(a.empty, w));
    const last = new Map(b.last);
    if (b.empty > 0) for (const [p, e] of a.last) last.set(p, { ways: mul(e.ways, b.empty), clean: e.clean && b.emptyClean });
    return {
      first,
      last,
      empty: mul(a.empty, b.empty),
      emptyClean: a.emptyClean && b.emptyClean,
    };
  }

  private alt(parts: Info[]): Info {
    const r: Info = { first: new Map(), last: new Map(), empty: 0, emptyClean: false };
    for (const x of parts) {
      charge(1 + x.first.size + x.last.size);
      for (const [q, w] of x.first) addWays(r.first, q, w);
      for (const [p, e] of x.last) r.last.set(p, e);
      r.empty = add(r.empty, x.empty);
      r.emptyClean ||= x.emptyClean;
    }
    return r;
  }

  private static readonly EPSILON: Info = { first: new Map(), last: new Map(), empty: 1, emptyClean: true };

  alternatives(alts: AST.Alternative[]): Info {
    return this.alt(alts.map((a) => a.elements.reduce((acc, e) => this.seq(acc, this.element(e)), Automaton.EPSILON)));
  }

  private element(e: AST.Element): Info {
    if (++this.budget.steps > MAX_STEPS) throw new Refusal('too-complex', 'too many parts once repeats are unrolled');
    charge(1);
    switch (e.type) {
      case 'Character':
      case 'CharacterClass':
      case 'CharacterSet':
        return this.position(e);
      case 'Group':
        if (e.modifiers) throw new Refusal('unsupported', `${e.raw} (inline modifiers)`);
        return this.alternatives(e.alternatives);
      case 'CapturingGroup':
        return this.alternatives(e.alternatives);
      case 'Assertion':
        if (e.kind === 'lookahead' || e.kind === 'lookbehind') this.lookarounds.add(e);
        return { first: new Map(), last: new Map(), empty: 1, emptyClean: false };
      case 'Quantifier':
        return this.quantifier(e);
      case 'Backreference':
        throw new Refusal('unsupported', `${e.raw} (a backreference: matching it can take exponential time)`);
      default:
        throw new Refusal('unsupported', `${(e as AST.Node).raw}`);
    }
  }

  /** E{min,max}: min mandatory copies (an empty iteration allowed), then optional nested copies or a loop. */
  private quantifier(q: AST.Quantifier): Info {
    // Unrolling more copies than there can be positions only costs time before the same refusal.
    if (q.min > MAX_POSITIONS || (q.max !== Infinity && q.max > MAX_POSITIONS))
      throw new Refusal('too-complex', `${describe(q)}: a repeat bound over ${MAX_POSITIONS}`);
    let r: Info = Automaton.EPSILON;
    const copy = () => this.element(q.element);
    const mandatory = q.max === Infinity ? Math.max(q.min - 1, 0) : q.min;
    for (let i = 0; i < mandatory; i++) r = this.seq(r, copy());
    if (q.max === Infinity) {
      const body = copy();
      this.link(body.last, body.first);
      // An iteration after the mandatory ones that matches nothing fails (RepeatMatcher's empty check).
      const loop: Info = { ...body, empty: q.min >= 1 ? body.empty : 1, emptyClean: q.min >= 1 ? body.emptyClean : true };
      return this.seq(r, loop);
    }
    let tail: Info | undefined;
    for (let i = q.max - q.min; i > 0; i--) {
      const c = copy();
      const inner = tail ? this.seq(c, tail) : c;
      tail = { ...inner, empty: 1, emptyClean: true };
    }
    return tail ? this.seq(r, tail) : r;
  }
}

// ---------------------------------------------------------------- graph helpers

/** Strongly connected components (iterative Tarjan) of nodes 0..n-1 restricted to `keep`; returns component ids (-1: left out). */
function scc(n: number, succ: (v: number) => Iterable<number>, keep: (v: number) => boolean): number[] {
  charge(n);
  const index = new Array<number>(n).fill(-1);
  const low = new Array<number>(n).fill(0);
  const comp = new Array<number>(n).fill(-1);
  const onStack = new Array<boolean>(n).fill(false);
  const stack: number[] = [];
  let counter = 0;
  let comps = 0;
  for (let root = 0; root < n; root++) {
    if (!keep(root) || index[root] !== -1) continue;
    const work: [number, Iterator<number>][] = [];
    const enter = (v: number) => {
      index[v] = low[v] = counter++;
      stack.push(v);
      onStack[v] = true;
      work.push([v, succ(v)[Symbol.iterator]()]);
    };
    enter(root);
    while (work.length > 0) {
      const [v, it] = work[work.length - 1]!;
      const nx = it.next();
      charge(1);
      if (!nx.done) {
        const w = nx.value;
        if (!keep(w)) continue;
        if (index[w] === -1) enter(w);
        else if (onStack[w]) low[v] = Math.min(low[v]!, index[w]!);
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const u = work[work.length - 1]![0];
        low[u] = Math.min(low[u]!, low[v]!);
      }
      if (low[v] === index[v]) {
        let w: number;
        do {
          w = stack.pop()!;
          onStack[w] = false;
          comp[w] = comps;
        } while (w !== v);
        comps++;
      }
    }
  }
  return comp;
}

const describe = (node: AST.Node | undefined): string => {
  // The repeat that makes a position loop: its outermost unbounded quantifier, else the position itself.
  let best: AST.Node | undefined = node;
  for (let n: AST.Node | null | undefined = node; n; n = n.parent) if (n.type === 'Quantifier' && n.max === Infinity) best = n;
  const raw = best?.raw ?? '?';
  return raw.length > 80 ? `${raw.slice(0, 77)}...` : raw;
};

// ---------------------------------------------------------------- the analysis

interface Analysed {
  a: Automaton;
  info: Info;
}

/**
 * Throws a Refusal when the automaton can backtrack super-linearly within one match attempt. `hot`:
 * this is the body of a hot lookaround (run up to once per character per attempt), which must be cheap.
 */
function analyse({ a, info }: Analysed, forwards: boolean, hot = false) {
  const maxWays = hot ? HOT_WAYS : MAX_WAYS;
  const n = a.size;
  for (const [q, w] of info.first) a.out[0]!.set(q, w);
  const succ = (v: number) => a.out[v]!.keys();
  let edgeCount = 0;
  for (const m of a.out) edgeCount += m.size;
  if (edgeCount > MAX_EDGES) throw new Refusal('too-complex', `more than ${MAX_EDGES} transitions between character positions`);
  charge(n + edgeCount);
  const pred: number[][] = Array.from({ length: n }, () => []);
  for (let v = 0; v < n; v++) for (const w of a.out[v]!.keys()) pred[w]!.push(v);

  // Sure states: the pattern may end there with no assertion left, and every way on is sure or loop-free.
  const sure = new Array<boolean>(n).fill(false);
  if (forwards) {
    sure[0] = info.emptyClean;
    for (const [p, e] of info.last) sure[p] = e.clean;
    for (let changed = true; changed; ) {
      changed = false;
      charge(n + edgeCount);
      const comp = scc(n, succ, (v) => !sure[v]);
      const size = new Map<number, number>();
      for (const c of comp) if (c >= 0) size.set(c, (size.get(c) ?? 0) + 1);
      const cyclic = (v: number) => comp[v]! >= 0 && (size.get(comp[v]!)! > 1 || a.out[v]!.has(v));
      // Failing states from which a failing loop can be reached (backwards from the loops, through failing states).
      const loops = new Array<boolean>(n).fill(false);
      const todo: number[] = [];
      for (let v = 0; v < n; v++) if (!sure[v] && cyclic(v)) ((loops[v] = true), todo.push(v));
      while (todo.length > 0)
        for (const u of pred[todo.pop()!]!)
          if (!sure[u] && !loops[u]) {
            loops[u] = true;
            todo.push(u);
          }
      for (let v = 0; v < n; v++) {
        if (sure[v] && [...a.out[v]!.keys()].some((w) => !sure[w] && loops[w])) {
          sure[v] = false;
          changed = true;
        }
      }
    }
  }
  const fails = (v: number) => !sure[v];
  const comp = scc(n, succ, fails);
  const compSize = new Map<number, number>();
  for (const c of comp) if (c >= 0) compSize.set(c, (compSize.get(c) ?? 0) + 1);
  const cyclic = (v: number) => fails(v) && (compSize.get(comp[v]!)! > 1 || a.out[v]!.has(v));
  const both = new Map<number, Ranges>();
  const common = (p: number, q: number) => {
    if (p === q) return a.sets[p]!;
    const k = Math.min(p, q) * n + Math.max(p, q);
    let r = both.get(k);
    if (!r) both.set(k, (r = intersect(a.sets[p]!, a.sets[q]!)));
    return r;
  };
  const meets = (p: number, q: number) => common(p, q).length > 0;
  let work = 0;
  const step = () => {
    charge(1);
    if (++work > MAX_WORK) throw new Refusal('too-complex', `more than ${MAX_WORK} steps to check`);
  };

  // Exponential: a component of the failing automaton squared holding (q,q) and a divergent step.
  {
    const key = (x: number, y: number) => x * n + y;
    const seen = new Map<number, number>();
    const nodes: [number, number][] = [];
    const edges: number[][] = [];
    const twice: [number, number][] = [];
    const visit = (x: number, y: number) => {
      const k = key(x, y);
      let id = seen.get(k);
      if (id === undefined) {
        id = nodes.length;
        seen.set(k, id);
        nodes.push([x, y]);
        edges.push([]);
      }
      return id;
    };
    for (let q = 1; q < n; q++) if (cyclic(q)) visit(q, q);
    for (let i = 0; i < nodes.length; i++) {
      const [x, y] = nodes[i]!;
      for (const [x2, wx] of a.out[x]!) {
        if (!fails(x2)) continue;
        for (const y2 of a.out[y]!.keys()) {
          step();
          if (!fails(y2) || (x2 !== y2 && !meets(x2, y2))) continue;
          const j = visit(x2, y2);
          edges[i]!.push(j);
          if (x === y && x2 === y2 && wx >= 2) twice.push([i, j]);
        }
      }
    }
    const pc = scc(
      nodes.length,
      (v) => edges[v]!,
      () => true,
    );
    const diag = new Map<number, number>();
    const mixed = new Set<number>();
    nodes.forEach(([x, y], i) => {
      if (x === y) diag.set(pc[i]!, x);
      else mixed.add(pc[i]!);
    });
    for (const [c, q] of diag) {
      if (mixed.has(c) || twice.some(([i, j]) => pc[i] === c && pc[j] === c))
        throw new Refusal('exponential', `${describe(a.atoms[q])} can match the same text in more than one way inside a repeat`, true);
    }
  }

  // Polynomial: p ≠ q failing loops with p→p, p→q, q→q on one text, i.e. (p,p,q) →+ (p,q,q).
  {
    const reach = (from: number, step: (v: number) => Iterable<number>) => {
      const r = new Set<number>([from]);
      const todo = [from];
      while (todo.length > 0)
        for (const w of step(todo.pop()!)) {
          charge(1);
          if (fails(w) && !r.has(w)) (r.add(w), todo.push(w));
        }
      return r;
    };
    const coReach = new Map<number, Set<number>>();
    for (let p = 1; p < n; p++) {
      if (!cyclic(p)) continue;
      const fromP = reach(p, succ);
      for (const q of fromP) {
        if (q === p || !cyclic(q)) continue;
        let between = coReach.get(q);
        if (!between) coReach.set(q, (between = reach(q, (v) => pred[v]!)));
        const seen = new Set<string>();
        const todo: [number, number, number][] = [[p, p, q]];
        while (todo.length > 0) {
          const [x, y, z] = todo.pop()!;
          for (const x2 of a.out[x]!.keys()) {
            if (comp[x2] !== comp[p]) continue;
            for (const y2 of a.out[y]!.keys()) {
              step();
              if (!fromP.has(y2) || !between.has(y2)) continue;
              const xy = common(x2, y2);
              if (xy.length === 0) continue;
              for (const z2 of a.out[z]!.keys()) {
                step();
                if (comp[z2] !== comp[q] || intersect(xy, a.sets[z2]!).length === 0) continue;
                if (x2 === p && y2 === q && z2 === q)
                  throw new Refusal(
                    'polynomial',
                    `${describe(a.atoms[p])} and ${describe(a.atoms[q])} can share the same text, so a failing match tries every split of it`,
                    true,
                  );
                const k = `${x2},${y2},${z2}`;
                if (seen.has(k)) continue;
                seen.add(k);
                todo.push([x2, y2, z2]);
              }
            }
          }
        }
      }
    }
  }

  // Finite ambiguity can still be exponential in the pattern's size: bound the label-blind paths
  // through the failing part (loops counted once), from the start and from every way out of a sure state.
  {
    const order = [...new Set(comp.filter((c) => c >= 0))];
    const members = new Map<number, number[]>();
    for (let v = 0; v < n; v++) if (comp[v]! >= 0) (members.get(comp[v]!) ?? members.set(comp[v]!, []).get(comp[v]!)!).push(v);
    // Tarjan numbers components in reverse topological order: successors first.
    order.sort((x, y) => y - x);
    const paths = (seeds: Map<number, number>) => {
      const ways = new Map<number, number>();
      for (const [v, w] of seeds) if (fails(v)) addWays(ways, comp[v]!, w);
      let total = 0;
      let scanning = 0;
      for (const c of order) {
        charge(1);
        const w = ways.get(c);
        if (!w) continue;
        total = add(total, w);
        if (cyclic(members.get(c)![0]!)) scanning = add(scanning, w);
        for (const v of members.get(c)!) {
          charge(1 + a.out[v]!.size);
          for (const [u, m] of a.out[v]!) if (fails(u) && comp[u] !== c) addWays(ways, comp[u]!, mul(w, m));
        }
      }
      return [total, scanning] as const;
    };
    let total = 0;
    let scanning = 0;
    const count = (seed: Map<number, number>) => {
      const [t, s] = paths(seed);
      total = add(total, t);
      scanning = add(scanning, s);
    };
    if (fails(0)) count(new Map([[0, 1]]));
    for (let v = 0; v < n; v++) if (sure[v]) for (const [u, m] of a.out[v]!) if (fails(u)) count(new Map([[u, m]]));
    const wideLookaround = [...a.lookarounds].some((l) => maxWidth(l) > HOT_WIDTH);
    if (total > maxWays)
      throw new Refusal(
        'exponential',
        `more than ${maxWays} ways through the pattern can be tried before a match fails (alternatives or optional parts that overlap, repeated)`,
      );
    if ((wideLookaround ? total : scanning) > MAX_SCANNING_WAYS)
      throw new Refusal(
        'polynomial',
        `more than ${MAX_SCANNING_WAYS} ways through the pattern lead to a repeat or lookaround that scans the text, each again (alternatives or optional parts that overlap, before it)`,
      );
  }

  // Lookarounds: each body is matched by backtracking too, every time the matcher reaches it. One it may
  // reach often (hot) must cost a constant per run: a short body, few ways through it, no lookaround in it.
  for (const node of a.lookarounds) {
    if (hot) throw new Refusal('polynomial', `${describe(node)} is a lookaround inside a lookaround that runs at every step of a repeat`);
    const hotHere = executions(node) > HOT_EXECUTIONS;
    if (hotHere && maxWidth(node) > HOT_WIDTH)
      throw new Refusal(
        'polynomial',
        `${describe(node)} can scan ${maxWidth(node) >= WIDE ? 'without bound' : `${maxWidth(node)} characters`} each time a repeat reaches it (at most ${HOT_WIDTH} are checked)`,
      );
    analyse(build(node.alternatives, { positions: 0, steps: 0 }), node.kind === 'lookahead', hotHere);
  }
}

const widths = new WeakMap<AST.Node, number>();

/** The most code points `node` can match (assertions: 0), WIDE for unbounded. */
function maxWidth(node: AST.Node): number {
  const known = widths.get(node);
  if (known !== undefined) return known;
  charge(1);
  let w: number;
  switch (node.type) {
    case 'Character':
    case 'CharacterClass':
    case 'CharacterSet':
      w = 1;
      break;
    case 'Backreference':
      w = WIDE;
      break;
    case 'Quantifier': {
      const e = maxWidth(node.element);
      w = e === 0 ? 0 : node.max === Infinity ? WIDE : Math.min(WIDE, node.max * e);
      break;
    }
    case 'Group':
    case 'CapturingGroup':
    case 'Pattern':
    case 'Assertion':
      if (node.type === 'Assertion' && node.kind !== 'lookahead' && node.kind !== 'lookbehind') w = 0;
      else {
        w = 0;
        for (const alt of (node as AST.Group).alternatives)
          w = Math.max(
            w,
            Math.min(
              WIDE,
              alt.elements.reduce((s, e) => s + maxWidth(e), 0),
            ),
          );
      }
      break;
    default:
      w = WIDE;
  }
  widths.set(node, w);
  return w;
}

/**
 * How many times, at most, the matcher may run `node` per run of its context (the pattern, or the
 * lookaround around it), ignoring ambiguity: the product of the repeats around it times the characters
 * that may come before it within the context (each can end a different way to reach it). A lookaround
 * counts as zero width where it is an ancestor's sibling.
 */
function executions(node: AST.LookaroundAssertion): number {
  let pre = 0;
  let mult = 1;
  for (let child: AST.Node = node, n = node.parent as AST.Node | null; n; child = n, n = n.parent as AST.Node | null) {
    if (n.type === 'Alternative') {
      for (const e of n.elements) {
        if (e === child) break;
        pre = Math.min(WIDE, pre + maxWidth(e));
      }
    } else if (n.type === 'Quantifier') {
      if (n.max > 1) mult = n.max === Infinity ? WIDE : Math.min(WIDE, mult * n.max);
      pre = Math.min(WIDE, pre + (n.max === Infinity ? (maxWidth(n.element) > 0 ? WIDE : 0) : (n.max - 1) * maxWidth(n.element)));
    } else if (n.type === 'Pattern' || (n.type === 'Assertion' && (n.kind === 'lookahead' || n.kind === 'lookbehind'))) break;
  }
  return Math.min(WIDE, mult * (pre + 1));
}

function build(alts: AST.Alternative[], budget: Budget): Analysed {
  const a = new Automaton(budget);
  return { a, info: a.alternatives(alts) };
}

/** Compiled sources longer than this are refused before parsing (the library's rewrite lengthens `\b` ~140×). */
const MAX_SOURCE_CHARS = 65_536;

/** Groups nested deeper than this are refused before parsing (the parser and the analysis recurse). */
const MAX_NESTING = 100;

function nesting(source: string): number {
  let depth = 0;
  let max = 0;
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === '\\') i++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '(') max = Math.max(max, ++depth);
    else if (c === ')') depth--;
  }
  return max;
}

/** A verdict, the work it took without its properties, and the (canonical) properties it expanded. */
const verdicts = new Map<string, { v: RegexVerdict; work: number; properties: string[] }>();
let usedProperties: Set<string> | undefined;
let propertiesCharged = 0;

const EXHAUSTED: RegexVerdict = {
  kind: 'too-complex',
  reason: `the checker's work budget for this file (${MAX_FILE_WORK} steps) is spent`,
};

/**
 * The verdict on one compiled pattern (flags g and u only), cached per source. Its work counts against
 * `shared` (one per tokenizer.json: all its patterns together); when that runs out the verdict is
 * too-complex. A cached verdict counts the work it took the first time, so verdicts do not depend on
 * what this process checked before.
 */
export function regexVerdict(re: RegExp, shared: CheckBudget = new CheckBudget()): RegexVerdict {
  const key = `${re.flags}/${re.source}`;
  const known = verdicts.get(key);
  const outer = budget;
  budget = shared;
  try {
    if (known) {
      charge(known.work);
      for (const p of known.properties) if (!shared.properties.has(p)) (shared.properties.add(p), charge(PROPERTY_COST));
      return known.v;
    }
    const before = shared.work;
    usedProperties = new Set();
    propertiesCharged = 0;
    const v = verdictOf(re);
    const properties = [...usedProperties];
    const work = shared.work - before - propertiesCharged * PROPERTY_COST;
    if (verdicts.size >= 1024) verdicts.clear();
    verdicts.set(key, { v, work, properties });
    return v;
  } catch (e) {
    if (e instanceof Exhausted) return EXHAUSTED;
    throw e;
  } finally {
    usedProperties = undefined;
    budget = outer;
  }
}

/**
 * Whether a repeat of the pattern holds a lookaround or a word boundary (`\b`, `\B`): assertions that look at the text
 * around, which can keep the repeat's ways apart. Outside repeats they cannot (the library writes `$` as two lookaheads
 * at the end of the pattern, where `(a+)+$` stays exponential).
 */
function hasContextAssertion(node: AST.Node, inRepeat = false): boolean {
  if (node.type === 'Assertion' && (node.kind === 'lookahead' || node.kind === 'lookbehind' || node.kind === 'word')) {
    if (inRepeat) return true;
  }
  const repeat = inRepeat || (node.type === 'Quantifier' && node.max > 1);
  const children: AST.Node[] =
    'alternatives' in node ? node.alternatives : 'elements' in node ? node.elements : 'element' in node ? [node.element] : [];
  return children.some((c) => hasContextAssertion(c, repeat));
}

function verdictOf(re: RegExp): RegexVerdict {
  let v: RegexVerdict;
  let literal: AST.RegExpLiteral | undefined;
  if (re.flags.replace(/[gu]/g, '') !== '') v = { kind: 'unsupported', reason: `flags ${re.flags}` };
  else if (nesting(re.source) > MAX_NESTING) v = { kind: 'too-complex', reason: `groups nested more than ${MAX_NESTING} deep` };
  else {
    try {
      if (re.source.length > MAX_SOURCE_CHARS)
        throw new Refusal('too-complex', `${re.source.length} characters once compiled, more than ${MAX_SOURCE_CHARS}`);
      charge(re.source.length);
      literal = parseRegExpLiteral(re);
      analyse(build(literal.pattern.alternatives, { positions: 0, steps: 0 }), true);
      v = { kind: 'safe' };
    } catch (e) {
      // The automaton takes lookarounds and word boundaries as always true, so an ambiguity found through them may not
      // be one: `(?:a(?=b)|a(?!b))+$` runs in linear time per attempt. Proven only where no repeat holds one.
      const proven = e instanceof Refusal && e.proven && literal !== undefined && !hasContextAssertion(literal.pattern);
      if (e instanceof Refusal) v = { kind: e.kind, reason: e.reason, ...(proven ? { proven: true as const } : {}) };
      else if (e instanceof SyntaxError) v = { kind: 'unsupported', reason: e.message };
      else if (e instanceof RangeError) v = { kind: 'too-complex', reason: 'nested too deeply' };
      else throw e;
    }
  }
  return v;
}
