/**
 * Property tests of the gate language (fast-check, fixed seeds):
 * - any string either parses or is refused with a GateError pointing inside it; nothing else is thrown;
 * - evaluation of random well-formed expressions equals a reference interpreter written from the
 *   documented semantics over the generated tree (so the parser's precedence and associativity are
 *   checked too, since the text is printed with the fewest parentheses);
 * - the static check is sound: a gate it accepts never fails at evaluation with an unknown name, a
 *   missing optional value or a type error, on any context of the declared shape.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InputError } from '../errors.ts';
import type { ValueShape } from '../spec/types.ts';
import { checkGate, evaluateGate, GateError, parseGate } from './gates.ts';

const SEED = 20261203;
const RUNS = 400;

type Node =
  | { k: 'num'; v: number }
  | { k: 'bool'; v: boolean }
  | { k: 'name'; v: string }
  | { k: 'has'; v: string }
  | { k: 'un'; op: '!' | '-'; a: Node }
  | { k: 'bin'; op: string; a: Node; b: Node }
  | { k: 'call'; fn: 'min' | 'max' | 'abs'; args: Node[] };

// ----- printing with the fewest parentheses the grammar needs

const PREC: Record<string, number> = {
  '||': 1,
  '&&': 2,
  '==': 3,
  '!=': 3,
  '<': 4,
  '<=': 4,
  '>': 4,
  '>=': 4,
  '+': 5,
  '-': 5,
  '*': 6,
  '/': 6,
};
const NON_ASSOC = new Set(['==', '!=', '<', '<=', '>', '>=']);

function print(n: Node): string {
  switch (n.k) {
    case 'num':
      return String(n.v);
    case 'bool':
      return String(n.v);
    case 'name':
      return n.v;
    case 'has':
      return `has(${n.v})`;
    case 'un': {
      const inner = print(n.a);
      return n.a.k === 'bin' ? `${n.op}(${inner})` : `${n.op}${inner}`;
    }
    case 'call':
      return `${n.fn}(${n.args.map(print).join(', ')})`;
    case 'bin': {
      const p = PREC[n.op]!;
      const side = (c: Node, right: boolean) => {
        if (c.k !== 'bin') return print(c);
        const q = PREC[c.op]!;
        const paren = q < p || (q === p && (right || NON_ASSOC.has(n.op)));
        return paren ? `(${print(c)})` : print(c);
      };
      return `${side(n.a, false)} ${n.op} ${side(n.b, true)}`;
    }
  }
}

// ----- the reference interpreter, from the documented semantics

class RefError extends Error {}
const fail = (): never => {
  throw new RefError();
};

function lookup(ctx: unknown, path: string): unknown {
  let cur = ctx;
  for (const s of path.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, s)) return undefined;
    cur = (cur as Record<string, unknown>)[s];
  }
  return cur;
}

function ref(n: Node, ctx: Record<string, unknown>): number | boolean {
  const num = (x: Node) => {
    const v = ref(x, ctx);
    return typeof v === 'number' ? v : fail();
  };
  const bool = (x: Node) => {
    const v = ref(x, ctx);
    return typeof v === 'boolean' ? v : fail();
  };
  switch (n.k) {
    case 'num':
    case 'bool':
      return n.v;
    case 'name': {
      const v = lookup(ctx, n.v);
      if (typeof v === 'boolean') return v;
      if (typeof v === 'number' && Number.isFinite(v)) return v;
      return fail();
    }
    case 'has': {
      const v = lookup(ctx, n.v);
      return v !== undefined && v !== null;
    }
    case 'un':
      return n.op === '!' ? !bool(n.a) : -num(n.a);
    case 'call':
      if (n.fn === 'abs') return Math.abs(num(n.args[0]!));
      return n.fn === 'min' ? Math.min(num(n.args[0]!), num(n.args[1]!)) : Math.max(num(n.args[0]!), num(n.args[1]!));
    case 'bin': {
      if (n.op === '&&') return bool(n.a) ? bool(n.b) : false;
      if (n.op === '||') return bool(n.a) ? true : bool(n.b);
      if (n.op === '==' || n.op === '!=') {
        const a = ref(n.a, ctx);
        const b = ref(n.b, ctx);
        if (typeof a !== typeof b) fail();
        return n.op === '==' ? a === b : a !== b;
      }
      const a = num(n.a);
      const b = num(n.b);
      switch (n.op) {
        case '+':
          return a + b;
        case '-':
          return a - b;
        case '*':
          return a * b;
        case '/':
          return b === 0 ? fail() : a / b;
        case '<':
          return a < b;
        case '<=':
          return a <= b;
        case '>':
          return a > b;
        default:
          return a >= b;
      }
    }
  }
}

function refGate(n: Node, ctx: Record<string, unknown>): boolean | 'error' {
  try {
    const v = ref(n, ctx);
    return typeof v === 'boolean' ? v : 'error';
  } catch (e) {
    if (e instanceof RefError) return 'error';
    throw e;
  }
}

// ----- generators: a context of a fixed shape, and expressions that are mostly (not always) well typed

const SHAPE: Extract<ValueShape, { type: 'object' }> = {
  type: 'object',
  fields: {
    a: { type: 'number' },
    b: { type: 'number' },
    flag: { type: 'boolean' },
    grp: { type: 'object', fields: { x: { type: 'number' }, y: { type: 'number' } } },
    opt: { type: 'object', optional: true, fields: { x: { type: 'number' } } },
    txt: { type: 'string' },
  },
};
// opt.x (optional) comes up often, so has() guards in every position get exercised.
const NUM_NAMES = ['a', 'b', 'grp.x', 'grp.y', 'opt.x', 'opt.x', 'opt.x'];
const ODD_NAMES = ['missing', 'grp', 'txt', 'grp.z', 'opt', 'flag'];

const quarter = fc.integer({ min: -12, max: 12 }).map((i) => i / 4);
const context = fc
  .record({
    a: quarter,
    b: quarter,
    flag: fc.boolean(),
    grp: fc.record({ x: quarter, y: quarter }),
    opt: fc.option(fc.record({ x: quarter }), { nil: undefined }),
    txt: fc.constant('text'),
  })
  .map((c) => {
    const out: Record<string, unknown> = { ...c };
    if (c.opt === undefined) delete out.opt;
    return out;
  });

const { num: numExpr, bool: boolExpr } = fc.letrec<{ num: Node; bool: Node }>((tie) => ({
  num: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.nat({ max: 8 }).map((v): Node => ({ k: 'num', v: v / 2 })),
    fc.constantFrom(...NUM_NAMES).map((v): Node => ({ k: 'name', v })),
    fc.constantFrom(...ODD_NAMES).map((v): Node => ({ k: 'name', v })),
    fc.tuple(fc.constantFrom('+', '-', '*', '/'), tie('num'), tie('num')).map(([op, a, b]): Node => ({ k: 'bin', op, a, b })),
    tie('num').map((a): Node => ({ k: 'un', op: '-', a })),
    fc
      .tuple(fc.constantFrom('min' as const, 'max' as const), tie('num'), tie('num'))
      .map(([fn, a, b]): Node => ({ k: 'call', fn, args: [a, b] })),
    tie('num').map((a): Node => ({ k: 'call', fn: 'abs', args: [a] })),
  ),
  bool: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.boolean().map((v): Node => ({ k: 'bool', v })),
    fc.constant<Node>({ k: 'name', v: 'flag' }),
    fc.constantFrom('opt', 'opt', 'opt.x', 'grp', 'a', 'missing').map((v): Node => ({ k: 'has', v })),
    tie('bool').map((a): Node => ({ k: 'un', op: '!', a })),
    fc.tuple(fc.constantFrom('&&', '||'), tie('bool'), tie('bool')).map(([op, a, b]): Node => ({ k: 'bin', op, a, b })),
    fc.tuple(fc.constantFrom('<', '<=', '>', '>=', '==', '!='), tie('num'), tie('num')).map(([op, a, b]): Node => ({ k: 'bin', op, a, b })),
    fc.tuple(fc.constantFrom('==', '!='), tie('bool'), tie('bool')).map(([op, a, b]): Node => ({ k: 'bin', op, a, b })),
    // Now and then a number where a condition belongs.
    tie('num'),
  ),
}));

/** Small conditions over has(opt), flag and reads of the optional opt.x: where a guard does or does not protect a read. */
const guards = fc.letrec<{ g: Node }>((tie) => ({
  g: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    fc.constantFrom<Node>(
      { k: 'has', v: 'opt' },
      { k: 'has', v: 'opt.x' },
      { k: 'name', v: 'flag' },
      { k: 'bin', op: '>', a: { k: 'name', v: 'opt.x' }, b: { k: 'num', v: 0 } },
      { k: 'bin', op: '<', a: { k: 'name', v: 'a' }, b: { k: 'name', v: 'opt.x' } },
    ),
    tie('g').map((a): Node => ({ k: 'un', op: '!', a })),
    fc.tuple(fc.constantFrom('&&', '||', '==', '!='), tie('g'), tie('g')).map(([op, a, b]): Node => ({ k: 'bin', op, a, b })),
  ),
})).g;

// ----- properties

test('any string parses or is refused with a GateError pointing inside it', () => {
  const gateish = fc.string({
    unit: fc.constantFrom(
      ...'ab_.01 ()!&|=<>+-*/,\t\n'.split(''),
      'has',
      'min',
      'f1_macro',
      '__proto__',
      'constructor',
      'true',
      '1e999',
      '..',
    ),
    maxLength: 60,
  });
  const anything = fc.string({ unit: 'binary', maxLength: 40 });
  fc.assert(
    fc.property(fc.oneof(gateish, anything), (s) => {
      try {
        parseGate(s);
      } catch (e) {
        assert.ok(e instanceof GateError, `${JSON.stringify(s)} threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
        assert.ok(e instanceof InputError);
        assert.ok(e.column >= 1 && e.column <= s.length + 1, `column ${e.column} outside ${JSON.stringify(s)}`);
      }
      // The checker never throws either, with or without a shape.
      checkGate(s);
      checkGate(s, SHAPE);
    }),
    { seed: SEED, numRuns: RUNS * 5 },
  );
});

test('printed expressions parse back, and evaluate as the reference interpreter does', () => {
  fc.assert(
    fc.property(boolExpr, context, (ast, ctx) => {
      const text = print(ast);
      const want = refGate(ast, ctx);
      let got: boolean | 'error';
      try {
        got = evaluateGate(text, ctx).passed;
      } catch (e) {
        assert.ok(e instanceof GateError, `${text}: ${(e as Error).message}`);
        got = 'error';
      }
      assert.equal(got, want, `${text} on ${JSON.stringify(ctx)}`);
    }),
    { seed: SEED, numRuns: RUNS },
  );
});

test('a gate the static check accepts fails at run time only by dividing by a computed zero', () => {
  let accepted = 0;
  fc.assert(
    fc.property(fc.oneof(boolExpr, guards), context, (ast, ctx) => {
      const text = print(ast);
      if (checkGate(text, SHAPE).length > 0) return;
      accepted++;
      try {
        evaluateGate(text, ctx);
      } catch (e) {
        assert.ok(e instanceof GateError);
        assert.match(e.reason, /^division by zero/, `${text} was accepted but failed on ${JSON.stringify(ctx)}: ${e.reason}`);
      }
    }),
    { seed: SEED, numRuns: RUNS * 10 },
  );
  assert.ok(accepted > RUNS, `only ${accepted} of ${RUNS * 10} generated gates were accepted; the generator is too wild to test much`);
});
