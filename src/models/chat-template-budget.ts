/**
 * A deterministic work budget for rendering Jinja templates with @huggingface/jinja. Chat templates come from model
 * files, and the library renders whatever they say: `range(10**8)` fills the heap, three nested `range(1000)` loops
 * run for hours, a doubled string or a huge `indent` width builds hundreds of megabytes in one step. The renderer
 * here is the library's own Interpreter with `evaluate` (its one public entry point for every node) overridden to
 * count, measure and charge what each node does; every other piece of rendering is the library's, so a template
 * within its budget renders exactly as `Template.render` renders it.
 *
 * What is bounded, per render (the limits scale with the input, see `renderLimits`):
 * - steps: every node evaluated and every loop iteration (a counter is put at the start of each loop body, because
 *   the library renders text-only bodies without evaluating anything);
 * - nesting: evaluations inside evaluations (macro recursion) and values inside values (serialising a deep value
 *   recurses as deep);
 * - size: every value a node yields, strings by length and lists, dicts and namespaces by the size of what they
 *   hold when written out (shared parts counted each time, as `tojson` writes them), the output, and what the
 *   template's variables hold together (top-level variables and namespace attributes, each counted by what it holds
 *   now);
 * - work: what each node builds or scans, in characters or items. Joining two strings costs only the new part, since
 *   V8 joins in O(1) without copying (a rope), so building an output piece by piece stays linear; but anything that
 *   reads a string's characters (indexing, slicing, a method, a comparison, `in`, a filter) costs the whole string,
 *   because a rope is copied flat the first time it is read, and a template can read a fresh rope every time. So
 *   every copy a render makes is paid for, and the memory it can take is bounded by the work limit (a character or an
 *   item for each unit). A loop costs the items it copies before its first iteration;
 * - the steps that can build far more than they read are checked before they run: `range` (ours, counted before
 *   it allocates), the `indent`, `join`, `replace` and `tojson` filters with their arguments, and a string's
 *   `replace` method.
 */
import * as jinja from '@huggingface/jinja';

// The package's declarations import './runtime' without an extension, which NodeNext cannot resolve, so its classes
// arrive untyped: these are the parts used here. Runtime values are told apart by `type` (their classes are not
// exported either).
interface Value {
  type: string;
  value: unknown;
  readonly builtins: Map<string, Value>;
}
interface Environment {
  set(name: string, value: unknown): Value;
  lookupVariable(name: string): Value;
  setVariable(name: string, value: Value): Value;
}
interface InterpreterApi {
  evaluate(node: Ast | undefined, environment: Environment): Value;
  run(program: object): Value;
}
const Interpreter = jinja.Interpreter as new (env: Environment) => InterpreterApi;
const newEnvironment = (): Environment => new jinja.Environment() as Environment;

interface Ast {
  type: string;
}
interface Named extends Ast {
  value: string;
}
interface MemberNode extends Ast {
  object: Ast;
  property: Ast;
  computed: boolean;
}
interface BinaryNode extends Ast {
  operator: { value: string };
}
interface CallNode extends Ast {
  callee: Ast;
  args: Ast[];
}
interface FilterNode extends Ast {
  operand: Ast;
  filter: Ast;
}
interface FilterBlockNode extends Ast {
  filter: Ast;
  body: Ast[];
}
interface ArgumentNode extends Ast {
  key?: Ast;
  value?: Ast;
  argument?: Ast;
}
interface Wrapper extends Ast {
  inner: Ast;
}
interface StoredNode extends Wrapper {
  assignee: Ast;
}
interface FunctionLike {
  type: 'FunctionValue';
  value: (args: Value[], scope: Environment) => Value;
}

/** Raised when a render runs over one of its limits. */
export class TemplateBudgetError extends Error {
  override name = 'TemplateBudgetError';
}

export interface RenderLimits {
  /** Nodes evaluated plus loop iterations. */
  steps: number;
  /** Characters and items built or scanned. */
  work: number;
  /** The largest value (and output), in characters, lists and dicts as written out. */
  size: number;
  /** Evaluations nested in evaluations, and values nested in values. */
  depth: number;
}

/** The most template nodes that raise the limits (the largest of the 53 real templates below has 880). */
const TEMPLATE_NODES_COUNTED = 10_000;

/**
 * The limits for a render whose variables (messages, tools, special tokens…) take `inputChars` characters as JSON,
 * with `messages` messages, of a template of `templateNodes` nodes (`BudgetedTemplate.nodes`: a comment or a run of
 * text is one node, however long, and nodes past TEMPLATE_NODES_COUNTED count for nothing, so padding a template
 * buys at most twice the fixed steps and a quarter more work). Measured on the 53 real templates of
 * @huggingface/jinja's end-to-end tests (Llama 3.1 and 3.2, Qwen 2.5 to 3.5, DeepSeek R1, Mistral, Command R, GLM,
 * Kimi K2, SmolLM3…) over 3 to 9,000 messages and contents up to 1 MB, the most any took was 130 steps a message,
 * 15 units of work an input character (650 a short message), values of 1.2 times the input (variables holding 2.3 times it
 * together) and a nesting of 10; the limits are 3.5 to 13 times that.
 */
export function renderLimits(inputChars: number, messages: number, templateNodes: number): RenderLimits {
  const nodes = Math.min(templateNodes, TEMPLATE_NODES_COUNTED);
  return {
    steps: 100_000 + 1_000 * messages + inputChars + 10 * nodes,
    work: 4_000_000 + 128 * inputChars + 8_000 * messages + 100 * nodes,
    size: 1_000_000 + 8 * inputChars + 1_000 * messages + 10 * nodes,
    depth: 128,
  };
}

const TICK = 'TemplateBudgetTick';
const PRECOMPUTED = 'TemplateBudgetValue';
/** Wraps what a loop iterates over: the library copies its items before the first iteration. */
const ITERATED = 'TemplateBudgetIterated';
/** Wraps the value of a `set`: what the variable holds is counted with the others. */
const STORED = 'TemplateBudgetStored';
const COMMENT: Ast = { type: 'Comment' };
/** Filters that hand back their operand or its length, without reading a string's characters. */
const CONSTANT_FILTERS = new Set(['length', 'safe', 'default']);
/** Filters that read one item: of a list in O(1), of a string (none in 0.5.13) after copying a rope flat. */
const ITEM_FILTERS = new Set(['first', 'last']);
/** Filters that can build much more than they read, checked with their arguments before they run. */
const GUARDED_FILTERS = new Set(['indent', 'join', 'replace', 'tojson']);

interface Shape {
  /** Characters of the strings and keys inside, shared parts counted each time. */
  chars: number;
  /** Lists, dicts and scalars inside, itself included. */
  nodes: number;
  /** 1 for a container of scalars. */
  depth: number;
  /** Holds a namespace, which templates can change, so the shape cannot be kept. */
  volatile: boolean;
}

/** A node whose value is already known, for handing evaluated operands and arguments to the library. */
const precomputed = (value: Value): Ast => ({ type: PRECOMPUTED, value }) as Ast;

const isContainer = (v: Value): boolean =>
  v.type === 'ArrayValue' ||
  v.type === 'TupleValue' ||
  v.type === 'ObjectValue' ||
  v.type === 'KeywordArgumentsValue' ||
  v.type === 'NamespaceValue';

function filterName(filter: Ast): string | undefined {
  if (filter.type === 'Identifier') return (filter as Named).value;
  const callee = (filter as CallNode).callee;
  return callee?.type === 'Identifier' ? (callee as Named).value : undefined;
}

function occurrences(s: string, sub: string): number {
  let n = 0;
  for (let i = s.indexOf(sub); i !== -1; i = s.indexOf(sub, i + sub.length)) n++;
  return n;
}

/**
 * The library's raise_exception and strftime_now. Its setupGlobals is not exported, so they are read back from a
 * render of its own: a namespace's value is the Map of the runtime values it holds.
 */
const LIBRARY_FUNCTIONS: Map<string, Value> = (() => {
  let found: Map<string, Value> | undefined;
  new jinja.Template('{{ keep(namespace(raise_exception=raise_exception, strftime_now=strftime_now)) }}').render({
    keep: (m: Map<string, Value>) => {
      found = m;
    },
  });
  if (found?.get('raise_exception')?.type !== 'FunctionValue' || found.get('strftime_now')?.type !== 'FunctionValue')
    throw new Error('@huggingface/jinja no longer provides raise_exception and strftime_now as before');
  return found;
})();

class BudgetedInterpreter extends Interpreter {
  readonly used: RenderLimits = { steps: 0, work: 0, size: 0, depth: 0 };
  private level = 0;
  // Per nesting level: what the node being evaluated there has read so far (its direct children's results).
  private readonly readTotal: number[] = [0];
  private readonly readStrings: number[] = [0];
  private readonly readLongestString: number[] = [0];
  private readonly readFirst: Array<Value | undefined> = [undefined];
  private readonly shapes = new WeakMap<object, Shape>();
  private readonly guarded = new WeakSet<object>();
  /** What each top-level variable and namespace attribute holds now, by where it is held. */
  private readonly stored = new Map<object, Map<string, number>>();
  private storedTotal = 0;

  constructor(
    private readonly topLevel: Environment,
    private readonly limits: RenderLimits,
  ) {
    super(topLevel);
  }

  /**
   * Python's range, counted before it allocates. Integers only, as in Python: the library's counts up by adding the
   * step, which never gets past `10**20` (`range(10**20, 10**20 + 10**6)` fills the heap).
   */
  readonly range = (start: unknown, stop?: unknown, step: unknown = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(stop) || !Number.isSafeInteger(step))
      throw new Error('range() arguments must be integers');
    const [a, b, s] = [start as number, stop as number, step as number];
    if (s === 0) throw new Error('range() step must not be zero');
    const count = Math.max(0, Math.ceil((b - a) / s));
    if (count > this.limits.size) this.over(`range() of ${count} numbers (at most ${this.limits.size})`);
    this.spend(count);
    const out = new Array<number>(count);
    for (let k = 0; k < count; k++) out[k] = a + k * s;
    return out;
  };

  override evaluate(node: Ast | undefined, environment: Environment): Value {
    if (node === undefined) return super.evaluate(node, environment);
    const type = (node as Ast).type;
    if (type === PRECOMPUTED) return (node as unknown as { value: Value }).value;
    if (type === ITERATED) {
      const v = this.evaluate((node as Wrapper).inner, environment);
      if (v.type === 'ArrayValue' || v.type === 'TupleValue') this.spend((v.value as Value[]).length);
      else if (v.type === 'ObjectValue') this.spend((v.value as Map<string, Value>).size);
      else if (v.type === 'StringValue') this.spend((v.value as string).length);
      return v;
    }
    if (type === STORED) {
      const v = this.evaluate((node as Wrapper).inner, environment);
      this.store(node as StoredNode, v, environment);
      return v;
    }
    this.step();
    if (type === TICK) return super.evaluate(COMMENT, environment);
    const level = ++this.level;
    if (level > this.used.depth) this.used.depth = level;
    if (level > this.limits.depth) this.over(`evaluations nest deeper than ${this.limits.depth} (a macro that calls itself without end?)`);
    this.readTotal[level] = 0;
    this.readStrings[level] = 0;
    this.readLongestString[level] = 0;
    this.readFirst[level] = undefined;
    let v: Value;
    try {
      v = this.dispatch(node as Ast, environment, level);
    } finally {
      this.level = level - 1;
    }
    const size = this.measure(v);
    this.charge(node as Ast, v, size, level);
    this.read(v, size, level - 1);
    return v;
  }

  private dispatch(node: Ast, env: Environment, level: number): Value {
    switch (node.type) {
      case 'FilterExpression': {
        const f = node as FilterNode;
        if (f.filter.type === 'CallExpression' && GUARDED_FILTERS.has(filterName(f.filter) ?? ''))
          return this.guardedFilter(this.evaluate(f.operand, env), f.filter as CallNode, env);
        break;
      }
      case 'FilterStatement': {
        // The library renders the block in the same scope, as a program's body is rendered, and filters it unseen:
        // the block is measured first, as an operand is.
        const f = node as FilterBlockNode;
        const block = super.evaluate({ type: 'Program', body: f.body } as Ast, env);
        this.read(block, this.measure(block), level);
        if (f.filter.type === 'CallExpression' && GUARDED_FILTERS.has(filterName(f.filter) ?? ''))
          return this.guardedFilter(block, f.filter as CallNode, env);
        return super.evaluate({ type: 'FilterExpression', operand: precomputed(block), filter: f.filter } as Ast, env);
      }
      case 'MemberExpression': {
        const v = super.evaluate(node, env);
        const object = this.readFirst[level];
        if (v.type === 'FunctionValue' && object?.type === 'StringValue' && !this.guarded.has(v) && object.builtins.get('replace') === v)
          this.guardReplace(v as unknown as FunctionLike, object.value as string);
        return v;
      }
    }
    return super.evaluate(node, env);
  }

  /**
   * Evaluates a filter's arguments the way the library does (positional and `*` arguments in order, then keyword and
   * `**` arguments), checks what the filter would build, and hands the values to the library's filter.
   */
  private guardedFilter(operand: Value, filter: CallNode, env: Environment): Value {
    const positional: Value[] = [];
    const keywords = new Map<string, Value>();
    const args: Ast[] = filter.args.slice();
    args.forEach((a, i) => {
      if (a.type === 'KeywordArgumentExpression' || a.type === 'KeywordSpreadExpression') return;
      if (a.type === 'SpreadExpression') {
        const v = this.evaluate((a as ArgumentNode).argument, env);
        if (v.type === 'ArrayValue' || v.type === 'TupleValue') positional.push(...(v.value as Value[]));
        args[i] = { ...a, argument: precomputed(v) } as Ast;
      } else {
        const v = this.evaluate(a, env);
        positional.push(v);
        args[i] = precomputed(v);
      }
    });
    args.forEach((a, i) => {
      if (a.type === 'KeywordArgumentExpression') {
        const v = this.evaluate((a as ArgumentNode).value, env);
        keywords.set(((a as ArgumentNode).key as Named).value, v);
        args[i] = { ...a, value: precomputed(v) } as Ast;
      } else if (a.type === 'KeywordSpreadExpression') {
        const v = this.evaluate((a as ArgumentNode).argument, env);
        if (v.type === 'ObjectValue' || v.type === 'KeywordArgumentsValue')
          for (const [k, x] of v.value as Map<string, Value>) keywords.set(k, x);
        args[i] = { ...a, argument: precomputed(v) } as Ast;
      }
    });
    this.checkFilter(filterName(filter)!, operand, positional, keywords);
    const call = { type: 'CallExpression', callee: filter.callee, args };
    return super.evaluate({ type: 'FilterExpression', operand: precomputed(operand), filter: call } as Ast, env);
  }

  private checkFilter(name: string, operand: Value, positional: Value[], keywords: Map<string, Value>): void {
    const str = operand.type === 'StringValue' ? (operand.value as string) : undefined;
    const length = (v: Value | undefined): number => (v?.type === 'StringValue' ? (v.value as string).length : 0);
    switch (name) {
      case 'indent': {
        if (str === undefined) return;
        const w = positional[0] ?? keywords.get('width');
        const width = w === undefined ? 4 : w.type === 'IntegerValue' ? Math.max(0, w.value as number) : length(w);
        return this.builds('indent', str.length + (occurrences(str, '\n') + 1) * width);
      }
      case 'join': {
        const sep = length(positional[0] ?? keywords.get('separator'));
        if (str !== undefined) return this.builds('join', str.length * (1 + sep));
        if (operand.type !== 'ArrayValue' && operand.type !== 'TupleValue') return;
        const s = this.shape(operand);
        return this.builds('join', s.chars + s.nodes * (2 + sep));
      }
      case 'replace':
        if (str !== undefined) this.checkReplace(str, positional[0], positional[1], positional[2] ?? keywords.get('count'));
        return;
      case 'tojson': {
        if (!isContainer(operand)) return;
        const indent = keywords.get('indent');
        const k = indent?.type === 'IntegerValue' ? Math.max(0, indent.value as number) : 0;
        const separators = keywords.get('separators');
        const sep =
          separators?.type === 'ArrayValue' || separators?.type === 'TupleValue'
            ? (separators.value as Value[]).reduce((n, x) => n + length(x), 0)
            : 3;
        const s = this.shape(operand);
        // Escapes can lengthen strings at most sixfold (\uXXXX); the result's own size is checked when it returns.
        return this.builds('tojson', s.chars + s.nodes * (2 + sep + (k > 0 ? 1 + k * s.depth : 0)));
      }
    }
  }

  private checkReplace(s: string, old: Value | undefined, by: Value | undefined, count: Value | undefined): void {
    if (old?.type !== 'StringValue' || by?.type !== 'StringValue') return;
    const o = old.value as string;
    let n = o.length === 0 ? s.length + 1 : occurrences(s, o);
    if (count?.type === 'IntegerValue' && (count.value as number) >= 0) n = Math.min(n, count.value as number);
    this.builds('replace', s.length + n * (by.value as string).length);
  }

  /** A string's replace method, checked wherever it is called from (it can be stored and called later). */
  private guardReplace(fn: FunctionLike, s: string): void {
    const original = fn.value;
    fn.value = (args, scope) => {
      const count = args[2]?.type === 'KeywordArgumentsValue' ? (args[2].value as Map<string, Value>).get('count') : args[2];
      this.checkReplace(s, args[0], args[1], count);
      return original(args, scope);
    };
    this.guarded.add(fn);
  }

  /**
   * Counts what a `set` stores, if it stores it at the top level or in a namespace, where it lives for the rest of the
   * render (a variable set in a loop or a macro is gone after it). A variable counts what it holds now.
   */
  private store(node: StoredNode, v: Value, env: Environment): void {
    const a = node.assignee;
    let holder: object | undefined;
    let key: string | undefined;
    if (a.type === 'MemberExpression') {
      const m = a as MemberNode;
      // The library only assigns to `name.attribute`; looked up here without counting it as a step or a read.
      const object = m.object.type === 'Identifier' ? env.lookupVariable((m.object as Named).value) : undefined;
      if (object?.type === 'NamespaceValue' && m.property.type === 'Identifier') {
        holder = object.value as object;
        key = (m.property as Named).value;
      }
    } else if (env === this.topLevel) {
      holder = env;
      key = a.type === 'Identifier' ? (a as Named).value : JSON.stringify(a);
    }
    if (holder === undefined || key === undefined) return;
    let slots = this.stored.get(holder);
    if (slots === undefined) this.stored.set(holder, (slots = new Map()));
    const size = this.measure(v);
    this.storedTotal += size - (slots.get(key) ?? 0);
    slots.set(key, size);
    if (this.storedTotal > this.used.size) this.used.size = this.storedTotal;
    if (this.storedTotal > this.limits.size)
      this.over(`variables holding ${this.storedTotal} characters together (at most ${this.limits.size})`);
  }

  private builds(what: string, chars: number): void {
    if (chars > this.limits.size) this.over(`${what} would build ${chars} characters (at most ${this.limits.size})`);
  }

  /**
   * Checks a value against the size limit; returns its size, which is also what scanning it costs (sorting, searching,
   * copying or writing out a list reads its items' strings too).
   */
  private measure(v: Value): number {
    let size: number;
    if (v.type === 'StringValue') size = (v.value as string).length;
    else if (isContainer(v)) {
      const s = this.shape(v);
      size = s.chars + s.nodes;
    } else return 1;
    if (size > this.used.size) this.used.size = size;
    if (size > this.limits.size) this.over(`a value of ${size} characters (at most ${this.limits.size})`);
    return size;
  }

  /** Size and depth of a list, dict or namespace, kept for the ones templates cannot change. */
  private shape(v: Value, nesting = 0, path?: Set<object>): Shape {
    const known = this.shapes.get(v);
    if (known !== undefined) return known;
    if (nesting > this.limits.depth) this.over(`a value nests deeper than ${this.limits.depth}`);
    const namespace = v.type === 'NamespaceValue';
    if (namespace) {
      if (path?.has(v)) this.over('a namespace holds itself');
      (path ??= new Set()).add(v);
    }
    const s: Shape = { chars: 0, nodes: 1, depth: 1, volatile: namespace };
    const add = (c: Value) => {
      if (c.type === 'StringValue') s.chars += (c.value as string).length;
      else if (isContainer(c)) {
        const inner = this.shape(c, nesting + 1, path);
        s.chars += inner.chars;
        s.nodes += inner.nodes;
        s.depth = Math.max(s.depth, inner.depth + 1);
        s.volatile ||= inner.volatile;
      } else s.nodes++;
      // Stop as soon as it is too big: shared parts make a value's written-out size exponential in its steps.
      if (s.chars + s.nodes > this.limits.size) this.over(`a value of more than ${this.limits.size} characters`);
    };
    if (v.type === 'ArrayValue' || v.type === 'TupleValue') {
      for (const c of v.value as Value[]) add(c);
      this.spend((v.value as Value[]).length);
    } else {
      for (const [k, c] of v.value as Map<string, Value>) {
        s.chars += k.length;
        add(c);
      }
      this.spend((v.value as Map<string, Value>).size);
    }
    if (s.depth > this.limits.depth) this.over(`a value nests deeper than ${this.limits.depth}`);
    if (namespace) path!.delete(v);
    if (!s.volatile) this.shapes.set(v, s);
    return s;
  }

  /**
   * What a node costs beyond its step, from what it read (`readTotal`: its direct children's results) and what it
   * yields. Looking a value up costs nothing; building or scanning costs its size.
   */
  private charge(node: Ast, v: Value, size: number, level: number): void {
    const read = this.readTotal[level]!;
    switch (node.type) {
      case 'MemberExpression': {
        const m = node as MemberNode;
        if (m.computed && m.property.type === 'SliceExpression') return this.spend(read + size);
        // A method of a string scans the string when called.
        if (v.type === 'FunctionValue') return this.spend(read);
        // Indexing a string copies it flat first if it is a rope (its length does not), and looking a string key up
        // hashes it.
        const object = this.readFirst[level];
        const strings = this.readStrings[level]!;
        if (object?.type === 'StringValue' && v.type === 'IntegerValue') return this.spend(strings - (object.value as string).length);
        return this.spend(strings);
      }
      case 'BinaryExpression': {
        const op = (node as BinaryNode).operator.value;
        if (op === 'and' || op === 'or') return;
        // Joining strings copies nothing in V8 (it makes a rope): only the new characters count.
        if (v.type === 'StringValue' && (op === '+' || op === '~')) return this.spend(size - this.readLongestString[level]!);
        return this.spend(read + (isContainer(v) ? size : 0));
      }
      case 'FilterExpression': {
        const name = filterName((node as FilterNode).filter) ?? '';
        if (ITEM_FILTERS.has(name)) return this.spend(this.readStrings[level]!);
        if (!CONSTANT_FILTERS.has(name)) this.spend(read + size);
        return;
      }
      case 'TestExpression': {
        const test = (node as unknown as { test: Named }).test.value;
        if (test === 'lower' || test === 'upper') this.spend(read);
        return;
      }
      case 'CallExpression':
      case 'CallStatement':
      case 'FilterStatement':
        return this.spend(read + size);
      case 'ArrayLiteral':
      case 'TupleLiteral':
      case 'ObjectLiteral':
        return this.spend(size);
    }
  }

  private read(v: Value, size: number, level: number): void {
    this.readTotal[level]! += size;
    if (v.type === 'StringValue') {
      this.readStrings[level]! += size;
      if (size > this.readLongestString[level]!) this.readLongestString[level] = size;
    }
    if (this.readFirst[level] === undefined) this.readFirst[level] = v;
  }

  private step(): void {
    if (++this.used.steps > this.limits.steps) this.over(`more than ${this.limits.steps} steps (nodes evaluated and loop iterations)`);
  }

  private spend(n: number): void {
    if ((this.used.work += n) > this.limits.work) this.over(`more than ${this.limits.work} characters and items built or scanned`);
  }

  private over(what: string): never {
    throw new TemplateBudgetError(what);
  }
}

/**
 * Prepares a parsed template for counting (once per template): a step counter at the start of every loop body, what a
 * loop iterates over and what a `set` stores wrapped to be counted. Returns the number of nodes in the template (a
 * comment or a run of text is one).
 */
function prepare(program: object): number {
  const stack: unknown[] = [program];
  const seen = new Set<object>();
  const added = new WeakSet<object>();
  let nodes = 0;
  while (stack.length > 0) {
    const n = stack.pop();
    if (typeof n !== 'object' || n === null || seen.has(n)) continue;
    seen.add(n);
    if (Array.isArray(n)) {
      // Not push(...n): a template of a million tags has a body of a million nodes, more arguments than a call takes.
      for (const c of n) stack.push(c);
      continue;
    }
    if (typeof (n as Ast).type === 'string' && !added.has(n)) nodes++;
    if ((n as Ast).type === 'For') {
      const loop = n as { body: Ast[]; iterable: Ast & { lhs?: Ast } };
      const tick = { type: TICK };
      loop.body.unshift(tick);
      added.add(tick);
      // The library looks for a SelectExpression (`for x in xs if …`) by its type: its operand is wrapped instead.
      const select = loop.iterable.type === 'SelectExpression';
      const iterated = { type: ITERATED, inner: select ? loop.iterable.lhs : loop.iterable } as Wrapper;
      if (select) loop.iterable.lhs = iterated;
      else loop.iterable = iterated;
      added.add(iterated);
    } else if ((n as Ast).type === 'Set') {
      const set = n as { assignee: Ast; value: Ast | null; body: Ast[] };
      // A block set (`{% set x %}…{% endset %}`) renders its body as a program in the same scope, as the library does.
      const inner = set.value ?? ({ type: 'Program', body: set.body } as Ast);
      set.value = { type: STORED, inner, assignee: set.assignee } as StoredNode;
      added.add(inner).add(set.value);
    }
    for (const c of Object.values(n)) if (typeof c === 'object' && c !== null) stack.push(c);
  }
  return nodes;
}

/** A parsed template that renders within a budget. */
export class BudgetedTemplate {
  private readonly template: jinja.Template;
  /** Nodes in the template, for `renderLimits`. */
  readonly nodes: number;

  /** Throws the library's parse errors. `edit` may change the parsed program first (chat-template-prefixes.ts marks turns). */
  constructor(text: string, edit?: (program: { body: object[] }) => void) {
    this.template = new jinja.Template(text);
    edit?.(this.template.parsed as unknown as { body: object[] });
    this.nodes = prepare(this.template.parsed);
  }

  /**
   * Renders as `Template.render(items)` does (the library's globals, then `items`, which may not redeclare them).
   * Throws TemplateBudgetError past `limits`; `used` says how much of each limit the render took.
   */
  render(items: Record<string, unknown>, limits: RenderLimits): { text: string; used: RenderLimits } {
    const env = newEnvironment();
    const interpreter = new BudgetedInterpreter(env, limits);
    env.set('false', false);
    env.set('true', true);
    env.set('none', null);
    env.setVariable('raise_exception', LIBRARY_FUNCTIONS.get('raise_exception')!);
    env.set('range', interpreter.range);
    env.setVariable('strftime_now', LIBRARY_FUNCTIONS.get('strftime_now')!);
    env.set('True', true);
    env.set('False', false);
    env.set('None', null);
    for (const [key, value] of Object.entries(items)) env.set(key, value);
    try {
      const out = interpreter.run(this.template.parsed);
      return { text: out.value as string, used: interpreter.used };
    } catch (e) {
      // Loop bodies append to the output unseen (as ropes, so no memory is spent), until V8's longest string.
      if (e instanceof RangeError && /Invalid string length/.test(e.message))
        throw new TemplateBudgetError(`the output passes the longest string JavaScript can hold (at most ${limits.size} characters)`);
      throw e;
    }
  }
}
