/**
 * Gate expressions: the conditions a model must meet before it is registered or promoted, e.g.
 *   f1_macro >= 0.9 && (!has(production) || f1_macro >= production.f1_macro - 0.005)
 *
 * A tiny language with its own tokenizer, recursive-descent parser and evaluator. It never
 * reaches JavaScript evaluation (no eval/Function) and only reads own, plain-data properties of
 * the context, so a pipeline file cannot run code or walk prototypes through a gate.
 *
 * Missing values: referencing a metric that is not in the context is an error, never silently
 * true or false, because a typo (`f1_marco`) must not pass or fail a gate by accident. Where a
 * value may legitimately be absent (no production model yet), guard it with `has(...)`:
 * `has(production)` is true when the context holds a non-null `production` value;
 * `||` and `&&` short-circuit, so the guarded side is not evaluated when the guard decides.
 *
 * Types: numbers and booleans. Arithmetic and `< <= > >=` need numbers; `&& || !` need
 * booleans; `== !=` need both sides of the same type. Comparisons do not chain (`a < b < c` is a
 * syntax error). Division by zero is an error rather than Infinity/NaN.
 */
import { InputError } from '../errors.ts';
import { closest, nameList } from '../spec/suggest.ts';
import type { ValueShape } from '../spec/types.ts';
import { classScoreAbsence } from './free-form.ts';

export type GateValue = number | boolean;

/** A syntax or evaluation error with the 1-based column it refers to. */
export class GateError extends InputError {
  override name = 'GateError';
  readonly column: number;
  readonly expression: string;
  /** The message without the caret picture. */
  readonly reason: string;
  /** When the gate read a name the metrics lack: that name (callers tell a stale comparison from a typo by it). */
  readonly missingName?: string;
  constructor(reason: string, expression: string, column: number, where?: string, missingName?: string) {
    super(`${reason} at column ${column}\n  ${expression}\n  ${' '.repeat(Math.max(0, column - 1))}^`, {
      where,
      hint: 'fix the gate expression; names with dots read nested metrics, e.g. production.f1_macro, and has(x) guards values that may be missing',
    });
    this.column = column;
    this.expression = expression;
    this.reason = reason;
    if (missingName !== undefined) this.missingName = missingName;
  }
}

const MAX_LENGTH = 2000;
const MAX_DEPTH = 64;
/** Path segments that would reach JavaScript object machinery rather than data. */
const FORBIDDEN_SEGMENTS = new Set([
  '__proto__',
  'prototype',
  'constructor',
  '__defineGetter__',
  '__defineSetter__',
  '__lookupGetter__',
  '__lookupSetter__',
]);
const FUNCTIONS: Record<string, number> = { min: 2, max: 2, abs: 1, has: 1 };

type TokKind = 'num' | 'ident' | 'op' | 'lparen' | 'rparen' | 'comma' | 'eof';
interface Token {
  kind: TokKind;
  text: string;
  /** 0-based offset into the expression. */
  pos: number;
}

export type GateNode =
  | { type: 'num'; value: number; start: number; end: number }
  | { type: 'bool'; value: boolean; start: number; end: number }
  | { type: 'ident'; name: string; start: number; end: number }
  | { type: 'unary'; op: '!' | '-'; arg: GateNode; start: number; end: number }
  | { type: 'binary'; op: string; left: GateNode; right: GateNode; start: number; end: number }
  | { type: 'call'; fn: string; args: GateNode[]; start: number; end: number };

export interface ParsedGate {
  source: string;
  ast: GateNode;
}

const TWO_CHAR_OPS = ['<=', '>=', '==', '!=', '&&', '||'];
const ONE_CHAR_OPS = '+-*/<>!';

function tokenize(src: string, where?: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const fail = (msg: string, pos: number): never => {
    throw new GateError(msg, src, pos + 1, where);
  };
  while (i < src.length) {
    const c = src[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      i++;
      continue;
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(src[i + 1] ?? ''))) {
      const m = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/.exec(src.slice(i))!;
      if (/[A-Za-z_]/.test(src[i + m[0].length] ?? '')) fail(`malformed number '${src.slice(i, i + m[0].length + 1)}'`, i);
      out.push({ kind: 'num', text: m[0], pos: i });
      i += m[0].length;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*/.exec(src.slice(i))!;
      if (src[i + m[0].length] === '.') fail(`identifier '${m[0]}.' ends with a dot`, i + m[0].length);
      let segPos = i;
      for (const seg of m[0].split('.')) {
        if (FORBIDDEN_SEGMENTS.has(seg)) fail(`'${seg}' is not allowed in a name`, segPos);
        segPos += seg.length + 1;
      }
      out.push({ kind: 'ident', text: m[0], pos: i });
      i += m[0].length;
      continue;
    }
    const two = src.slice(i, i + 2);
    if (TWO_CHAR_OPS.includes(two)) {
      out.push({ kind: 'op', text: two, pos: i });
      i += 2;
      continue;
    }
    if (ONE_CHAR_OPS.includes(c)) {
      out.push({ kind: 'op', text: c, pos: i });
      i++;
      continue;
    }
    if (c === '(') out.push({ kind: 'lparen', text: c, pos: i });
    else if (c === ')') out.push({ kind: 'rparen', text: c, pos: i });
    else if (c === ',') out.push({ kind: 'comma', text: c, pos: i });
    else if (c === '=') fail(`'=' is not an operator; use '==' to compare`, i);
    else if (c === '&' || c === '|') fail(`'${c}' is not an operator; use '${c}${c}'`, i);
    else fail(`unexpected character ${JSON.stringify(c)}`, i);
    i++;
  }
  out.push({ kind: 'eof', text: '', pos: src.length });
  return out;
}

class Parser {
  private k = 0;
  private depth = 0;
  constructor(
    private readonly src: string,
    private readonly toks: Token[],
    private readonly where?: string,
  ) {}

  private peek(): Token {
    return this.toks[this.k]!;
  }
  private next(): Token {
    return this.toks[this.k++]!;
  }
  private fail(msg: string, tok: Token): never {
    throw new GateError(msg, this.src, tok.pos + 1, this.where);
  }
  private describe(t: Token): string {
    return t.kind === 'eof' ? 'end of expression' : `'${t.text}'`;
  }
  private isOp(...ops: string[]): boolean {
    const t = this.peek();
    return t.kind === 'op' && ops.includes(t.text);
  }

  parseAll(): GateNode {
    if (this.peek().kind === 'eof') this.fail('empty gate expression', this.peek());
    const node = this.or();
    const t = this.peek();
    if (t.kind !== 'eof') this.fail(`unexpected ${this.describe(t)}; expected an operator or end of expression`, t);
    return node;
  }

  private bin(op: string, left: GateNode, right: GateNode): GateNode {
    return { type: 'binary', op, left, right, start: left.start, end: right.end };
  }
  private or(): GateNode {
    let left = this.and();
    while (this.isOp('||')) {
      this.next();
      left = this.bin('||', left, this.and());
    }
    return left;
  }
  private and(): GateNode {
    let left = this.equality();
    while (this.isOp('&&')) {
      this.next();
      left = this.bin('&&', left, this.equality());
    }
    return left;
  }
  private equality(): GateNode {
    const left = this.comparison();
    if (this.isOp('==', '!=')) {
      const op = this.next().text;
      const node = this.bin(op, left, this.comparison());
      if (this.isOp('==', '!=')) this.fail('comparisons cannot be chained; combine them with && or parentheses', this.peek());
      return node;
    }
    return left;
  }
  private comparison(): GateNode {
    const left = this.additive();
    if (this.isOp('<', '<=', '>', '>=')) {
      const op = this.next().text;
      const node = this.bin(op, left, this.additive());
      if (this.isOp('<', '<=', '>', '>=')) this.fail('comparisons cannot be chained; write a < b && b < c', this.peek());
      return node;
    }
    return left;
  }
  private additive(): GateNode {
    let left = this.multiplicative();
    while (this.isOp('+', '-')) {
      const op = this.next().text;
      left = this.bin(op, left, this.multiplicative());
    }
    return left;
  }
  private multiplicative(): GateNode {
    let left = this.unary();
    while (this.isOp('*', '/')) {
      const op = this.next().text;
      left = this.bin(op, left, this.unary());
    }
    return left;
  }
  private unary(): GateNode {
    if (this.isOp('!', '-')) {
      const t = this.next();
      this.enter(t);
      const arg = this.unary();
      this.depth--;
      return { type: 'unary', op: t.text as '!' | '-', arg, start: t.pos, end: arg.end };
    }
    return this.primary();
  }
  private enter(t: Token): void {
    if (++this.depth > MAX_DEPTH) this.fail(`expression nests deeper than ${MAX_DEPTH} levels`, t);
  }
  private primary(): GateNode {
    const t = this.next();
    if (t.kind === 'num') {
      const value = Number(t.text);
      if (!Number.isFinite(value)) this.fail(`number ${t.text} is too large`, t);
      return { type: 'num', value, start: t.pos, end: t.pos + t.text.length };
    }
    if (t.kind === 'ident') {
      if (this.peek().kind === 'lparen') return this.call(t);
      if (t.text === 'true' || t.text === 'false')
        return { type: 'bool', value: t.text === 'true', start: t.pos, end: t.pos + t.text.length };
      return { type: 'ident', name: t.text, start: t.pos, end: t.pos + t.text.length };
    }
    if (t.kind === 'lparen') {
      this.enter(t);
      const inner = this.or();
      const close = this.next();
      if (close.kind !== 'rparen') this.fail(`expected ')' to close the '(' at column ${t.pos + 1}, found ${this.describe(close)}`, close);
      this.depth--;
      // Keep the parentheses in the span so explanations quote the text as written.
      return { ...inner, start: t.pos, end: close.pos + 1 };
    }
    this.fail(`unexpected ${this.describe(t)}; expected a number, a name, '(' or a function call`, t);
  }
  private call(name: Token): GateNode {
    const arity = Object.hasOwn(FUNCTIONS, name.text) ? FUNCTIONS[name.text]! : undefined;
    if (arity === undefined) this.fail(`unknown function '${name.text}'; allowed: ${Object.keys(FUNCTIONS).join(', ')}`, name);
    const open = this.next();
    this.enter(open);
    const args: GateNode[] = [];
    if (this.peek().kind !== 'rparen') {
      for (;;) {
        args.push(this.or());
        if (this.peek().kind !== 'comma') break;
        this.next();
      }
    }
    const close = this.next();
    if (close.kind !== 'rparen') this.fail(`expected ',' or ')' in call to ${name.text}, found ${this.describe(close)}`, close);
    this.depth--;
    if (args.length !== arity) this.fail(`${name.text}() takes ${arity} argument${arity === 1 ? '' : 's'}, got ${args.length}`, name);
    if (name.text === 'has' && args[0]!.type !== 'ident') this.fail('has() takes a name, e.g. has(production.f1_macro)', open);
    return { type: 'call', fn: name.text, args, start: name.pos, end: close.pos + 1 };
  }
}

/** Parses a gate; call at spec-validation time so syntax errors surface before any training. */
export function parseGate(expression: string, where?: string): ParsedGate {
  if (typeof expression !== 'string') throw new InputError('gate must be a string', { where });
  if (expression.length > MAX_LENGTH)
    throw new GateError(`gate is longer than ${MAX_LENGTH} characters`, expression.slice(0, 60) + '…', 1, where);
  const toks = tokenize(expression, where);
  return { source: expression, ast: new Parser(expression, toks, where).parseAll() };
}

export interface GateResult {
  passed: boolean;
  value: GateValue;
  /** One clause per evaluated comparison or has(), e.g. `f1_macro 0.97 >= 0.9 ✓`. */
  explanation: string;
}

/** Reads `a.b.c` from plain data; undefined when any step is missing or not plain data. */
function lookup(context: unknown, path: string): unknown {
  let cur: unknown = context;
  for (const seg of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    const proto = Object.getPrototypeOf(cur);
    if (proto !== Object.prototype && proto !== null) return undefined;
    if (!Object.hasOwn(cur, seg)) return undefined;
    const desc = Object.getOwnPropertyDescriptor(cur, seg)!;
    // Accessors could run code; only data properties are read.
    if (!('value' in desc)) return undefined;
    cur = desc.value;
  }
  return cur;
}

export function formatValue(v: GateValue): string {
  if (typeof v === 'boolean') return String(v);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(6)));
}

function availableNames(context: unknown, prefix = '', out: string[] = []): string[] {
  if (context === null || typeof context !== 'object' || out.length > 40) return out;
  for (const k of Object.keys(context)) {
    const v = lookup(context, k);
    const name = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) availableNames(v, name, out);
    else if (typeof v === 'number' || typeof v === 'boolean') out.push(name);
  }
  return out;
}

class Evaluator {
  readonly clauses: string[] = [];
  constructor(
    private readonly gate: ParsedGate,
    private readonly context: unknown,
    private readonly where?: string,
  ) {}

  private fail(msg: string, node: GateNode, missingName?: string): never {
    throw new GateError(msg, this.gate.source, node.start + 1, this.where, missingName);
  }
  private text(node: GateNode): string {
    return this.gate.source.slice(node.start, node.end).trim();
  }
  private num(node: GateNode): number {
    const v = this.eval(node);
    if (typeof v !== 'number') this.fail(`'${this.text(node)}' is ${v}, a boolean, but a number is needed here`, node);
    return v;
  }
  private bool(node: GateNode): boolean {
    const v = this.eval(node);
    if (typeof v !== 'boolean')
      this.fail(`'${this.text(node)}' is the number ${formatValue(v)}, but a condition (true/false) is needed here`, node);
    return v;
  }
  private side(node: GateNode, v: GateValue): string {
    if (node.type === 'num' || node.type === 'bool') return formatValue(v);
    if (node.type === 'ident') return `${node.name} ${formatValue(v)}`;
    return `${this.text(node)} = ${formatValue(v)}`;
  }

  eval(node: GateNode): GateValue {
    switch (node.type) {
      case 'num':
      case 'bool':
        return node.value;
      case 'ident': {
        const v = lookup(this.context, node.name);
        if (typeof v === 'number') {
          if (!Number.isFinite(v)) this.fail(`'${node.name}' is ${v}`, node);
          return v;
        }
        if (typeof v === 'boolean') return v;
        if (v === undefined || v === null) {
          const dot = node.name.lastIndexOf('.');
          const owner = dot < 0 ? this.context : lookup(this.context, node.name.slice(0, dot));
          const absence = classScoreAbsence(owner, node.name.slice(dot + 1));
          if (absence) this.fail(`'${node.name}' is ${absence}`, node, node.name);
          const names = availableNames(this.context);
          this.fail(
            `unknown name '${node.name}'${names.length ? ` (available: ${names.slice(0, 12).join(', ')}${names.length > 12 ? ', …' : ''})` : ''}; if it may be absent, guard it with has(${node.name.split('.')[0]})`,
            node,
            node.name,
          );
        }
        this.fail(`'${node.name}' is not a number or boolean`, node);
      }
      case 'unary': {
        if (node.op === '!') return !this.bool(node.arg);
        return -this.num(node.arg);
      }
      case 'call': {
        if (node.fn === 'has') {
          const name = (node.args[0] as { name: string }).name;
          const v = lookup(this.context, name);
          const present = v !== undefined && v !== null;
          // Reported as a fact, not ✓/✗: a missing value is often the passing case (`!has(x) || ...`).
          this.clauses.push(`has(${name}) = ${present}`);
          return present;
        }
        if (node.fn === 'abs') return Math.abs(this.num(node.args[0]!));
        const a = this.num(node.args[0]!);
        const b = this.num(node.args[1]!);
        return node.fn === 'min' ? Math.min(a, b) : Math.max(a, b);
      }
      case 'binary':
        return this.binary(node);
    }
  }

  private binary(node: Extract<GateNode, { type: 'binary' }>): GateValue {
    const { op, left, right } = node;
    if (op === '&&') return this.bool(left) ? this.bool(right) : false;
    if (op === '||') return this.bool(left) ? true : this.bool(right);
    if (op === '==' || op === '!=') {
      const a = this.eval(left);
      const b = this.eval(right);
      if (typeof a !== typeof b) this.fail(`cannot compare ${typeof a} '${this.text(left)}' with ${typeof b} '${this.text(right)}'`, node);
      const r = op === '==' ? a === b : a !== b;
      this.clauses.push(`${this.side(left, a)} ${op} ${this.side(right, b)} ${r ? '✓' : '✗'}`);
      return r;
    }
    const a = this.num(left);
    const b = this.num(right);
    switch (op) {
      case '+':
        return a + b;
      case '-':
        return a - b;
      case '*':
        return a * b;
      case '/':
        if (b === 0) this.fail(`division by zero ('${this.text(right)}' is 0)`, right);
        return a / b;
    }
    let r: boolean;
    if (op === '<') r = a < b;
    else if (op === '<=') r = a <= b;
    else if (op === '>') r = a > b;
    else r = a >= b;
    this.clauses.push(`${this.side(left, a)} ${op} ${this.side(right, b)} ${r ? '✓' : '✗'}`);
    return r;
  }
}

/**
 * Evaluates a gate against a metrics context such as
 * `{ f1_macro: 0.97, production: { f1_macro: 0.96 }, baseline: {...}, per_class: { spam: { f1 } } }`.
 * The top level must be a condition; a bare number is an error (it is almost always a typo).
 */
export function evaluateGate(gate: string | ParsedGate, context: Record<string, unknown>, where?: string): GateResult {
  const parsed = typeof gate === 'string' ? parseGate(gate, where) : gate;
  const ev = new Evaluator(parsed, context, where);
  const value = ev.eval(parsed.ast);
  if (typeof value !== 'boolean') {
    throw new GateError(
      `gate evaluates to the number ${formatValue(value)}; a gate must be a condition such as '>= 0.9'`,
      parsed.source,
      1,
      where,
    );
  }
  const explanation = ev.clauses.length ? ev.clauses.join('; ') : `${parsed.source.trim()} ${value ? '✓' : '✗'}`;
  return { passed: value, value, explanation };
}

export interface GatesResult {
  passed: boolean;
  results: (GateResult & { gate: string })[];
}

/** Evaluates every gate (no short-circuit, so the report shows all failures at once). */
export function evaluateGates(gates: readonly string[], context: Record<string, unknown>, where = 'gates'): GatesResult {
  const results = gates.map((g, i) => ({ gate: g, ...evaluateGate(g, context, `${where}[${i}]`) }));
  return { passed: results.every((r) => r.passed), results };
}

// ---------------------------------------------------------------------------------------------
// Checking a gate before any run: syntax, names, types and has() guards against the shape of
// the context it will be evaluated in.

/** A problem found before evaluation; `column` is 1-based in the expression. */
export interface GateIssue {
  reason: string;
  column: number;
  hint?: string;
}

type StaticType = 'number' | 'boolean' | 'unknown';
type ObjectShape = Extract<ValueShape, { type: 'object' }>;

/**
 * Everything evaluation would refuse that the text already shows: a syntax error; with the
 * context's shape, a name the context never holds, a group used as a number, text in a comparison,
 * a value that may be absent (`optional` in the shape) read without a has() guard on the path
 * that reads it, operands of the wrong type, a literal division by zero, and a gate that is not a
 * condition. With no shape only syntax is checked. Returns [] when the gate is fine.
 */
export function checkGate(expression: string, shape?: ObjectShape): GateIssue[] {
  let parsed: ParsedGate;
  try {
    parsed = parseGate(expression);
  } catch (e) {
    if (e instanceof GateError) return [{ reason: e.reason, column: e.column }];
    if (e instanceof InputError) return [{ reason: e.message, column: 1 }];
    throw e;
  }
  if (!shape) return [];
  return new GateChecker(parsed, shape).run();
}

type Resolved =
  | { found: true; leaf: ValueShape; optional: Array<{ path: string; description?: string }> }
  | { found: false; at: string; candidates: string[]; lacking?: string };

class GateChecker {
  readonly issues: GateIssue[] = [];
  constructor(
    private readonly gate: ParsedGate,
    private readonly shape: ObjectShape,
  ) {}

  run(): GateIssue[] {
    const t = this.type(this.gate.ast, new Set());
    if (t === 'number') this.issue(this.gate.ast, 'the gate is a number, not a condition', "compare it, e.g. '>= 0.9'");
    return this.issues;
  }

  private issue(node: GateNode, reason: string, hint?: string): void {
    this.issues.push(hint ? { reason, column: node.start + 1, hint } : { reason, column: node.start + 1 });
  }
  private text(node: GateNode): string {
    return this.gate.source.slice(node.start, node.end).trim();
  }

  private resolve(name: string): Resolved {
    let cur: ValueShape = this.shape;
    const optional: Array<{ path: string; description?: string }> = [];
    const segs = name.split('.');
    for (let i = 0; i < segs.length; i++) {
      const here = segs.slice(0, i).join('.');
      if (cur.type === 'unknown') break;
      if (cur.type !== 'object') return { found: false, at: here, candidates: [] };
      const next: ValueShape | undefined = Object.hasOwn(cur.fields, segs[i]!) ? cur.fields[segs[i]!] : cur.rest;
      if (!next)
        return {
          found: false,
          at: here,
          candidates: Object.keys(cur.fields).map((k) => (here ? `${here}.${k}` : k)),
          ...(cur.lacking ? { lacking: cur.lacking } : {}),
        };
      if (next.optional) optional.push({ path: segs.slice(0, i + 1).join('.'), description: next.description });
      cur = next;
    }
    return { found: true, leaf: cur, optional };
  }

  private unknownName(node: GateNode, name: string, r: Extract<Resolved, { found: false }>, inHas: boolean): void {
    const all = leafNames(this.shape);
    const guess = closest(name, all);
    const where = r.at ? `'${r.at}' has no '${name.slice(r.at.length + 1).split('.')[0]}'` : 'the metrics have no such name';
    const reason = inHas ? `has(${name}) is always false: ${where}` : `unknown name '${name}': ${where}`;
    const known = r.candidates.length ? r.candidates : all;
    this.issue(
      node,
      reason,
      all.length
        ? `${guess ? `did you mean '${guess}'? ` : ''}names here: ${nameList(known)}${r.lacking ? `; ${r.lacking}` : ''}`
        : "the gate reads no metrics; set with.metrics to an evaluate stage's outputs.metrics",
    );
  }

  /** Names proven present when `node` evaluates to `value` (has() results, through !, && and ||). */
  private facts(node: GateNode, value: boolean): string[] {
    if (node.type === 'call' && node.fn === 'has' && value) return [(node.args[0] as { name: string }).name];
    if (node.type === 'unary' && node.op === '!') return this.facts(node.arg, !value);
    if (node.type === 'binary' && ((node.op === '&&' && value) || (node.op === '||' && !value)))
      return [...this.facts(node.left, value), ...this.facts(node.right, value)];
    return [];
  }

  private want(node: GateNode, present: ReadonlySet<string>, want: 'number' | 'boolean'): void {
    const t = this.type(node, present);
    if (t !== 'unknown' && t !== want) {
      this.issue(
        node,
        want === 'number'
          ? `'${this.text(node)}' is a condition (true/false), but a number is needed here`
          : `'${this.text(node)}' is a number, but a condition (true/false) is needed here`,
      );
    }
  }

  private type(node: GateNode, present: ReadonlySet<string>): StaticType {
    switch (node.type) {
      case 'num':
        return 'number';
      case 'bool':
        return 'boolean';
      case 'ident': {
        const r = this.resolve(node.name);
        if (!r.found) {
          this.unknownName(node, node.name, r, false);
          return 'unknown';
        }
        if (r.leaf.type === 'object') {
          const first = Object.keys(r.leaf.fields)[0];
          this.issue(
            node,
            `'${node.name}' is a group of values, not a number`,
            first ? `name one of them, e.g. ${node.name}.${first}` : undefined,
          );
          return 'unknown';
        }
        if (r.leaf.type === 'string') {
          this.issue(node, `'${node.name}' is text; gates compare numbers and conditions`);
          return 'unknown';
        }
        const unguarded = r.optional.find((o) => !isProven(o.path, present));
        if (unguarded) {
          this.issue(
            node,
            `'${node.name}' may be missing when the gate runs${unguarded.description ? ` (${unguarded.description})` : ''}, and a missing name fails the gate with an error`,
            `guard it: '!has(${unguarded.path}) || …' or 'has(${unguarded.path}) && …'`,
          );
        }
        return r.leaf.type === 'unknown' ? 'unknown' : r.leaf.type;
      }
      case 'unary':
        this.want(node.arg, present, node.op === '!' ? 'boolean' : 'number');
        return node.op === '!' ? 'boolean' : 'number';
      case 'call': {
        if (node.fn === 'has') {
          const name = (node.args[0] as { name: string }).name;
          const r = this.resolve(name);
          if (!r.found) this.unknownName(node.args[0]!, name, r, true);
          return 'boolean';
        }
        for (const a of node.args) this.want(a, present, 'number');
        return 'number';
      }
      case 'binary': {
        const { op, left, right } = node;
        if (op === '&&' || op === '||') {
          this.want(left, present, 'boolean');
          const more = new Set([...present, ...this.facts(left, op === '&&')]);
          this.want(right, more, 'boolean');
          return 'boolean';
        }
        if (op === '==' || op === '!=') {
          const a = this.type(left, present);
          const b = this.type(right, present);
          if (a !== 'unknown' && b !== 'unknown' && a !== b)
            this.issue(node, `cannot compare ${a} '${this.text(left)}' with ${b} '${this.text(right)}'`);
          return 'boolean';
        }
        this.want(left, present, 'number');
        this.want(right, present, 'number');
        if (op === '/' && right.type === 'num' && right.value === 0) this.issue(right, 'division by zero');
        return op === '+' || op === '-' || op === '*' || op === '/' ? 'number' : 'boolean';
      }
    }
  }
}

/** has(a.b) proves a and a.b present. */
function isProven(path: string, present: ReadonlySet<string>): boolean {
  for (const p of present) if (p === path || p.startsWith(path + '.')) return true;
  return false;
}

/** Every readable name of a shape, for suggestions (names under `rest` are shown with <name>). */
function leafNames(shape: ValueShape, prefix = '', out: string[] = []): string[] {
  if (shape.type !== 'object') {
    if (prefix && (shape.type === 'number' || shape.type === 'boolean')) out.push(prefix);
    return out;
  }
  for (const [k, v] of Object.entries(shape.fields)) leafNames(v, prefix ? `${prefix}.${k}` : k, out);
  if (shape.rest) leafNames(shape.rest, prefix ? `${prefix}.<name>` : '<name>', out);
  return out;
}
