import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateGate, evaluateGates, parseGate, GateError } from './gates.ts';
import { InputError } from '../errors.ts';

const ctx = {
  f1_macro: 0.97,
  accuracy: 0.95,
  n: 200,
  production: { f1_macro: 0.96, accuracy: 0.97 },
  baseline: { accuracy: 0.8, f1_macro: 0.78 },
  per_class: { spam: { f1: 0.91, support: 40 }, ham: { f1: 0.99 } },
  calibrated: true,
};

const syntaxErr = (expr: string, column: number, re: RegExp) =>
  assert.throws(
    () => parseGate(expr),
    (e: unknown) => {
      assert.ok(e instanceof GateError, `expected GateError, got ${e}`);
      assert.ok(e instanceof InputError);
      assert.equal(e.column, column, `column for ${expr}: ${e.message}`);
      assert.match(e.reason, re);
      return true;
    },
  );

test('the example gate passes with an explanation per comparison', () => {
  const r = evaluateGate('f1_macro >= 0.9 && f1_macro >= production.f1_macro - 0.005', ctx);
  assert.equal(r.passed, true);
  assert.equal(r.explanation, 'f1_macro 0.97 >= 0.9 ✓; f1_macro 0.97 >= production.f1_macro - 0.005 = 0.955 ✓');
});

test('a failing comparison is marked and short-circuiting skips the rest', () => {
  const r = evaluateGate('accuracy >= production.accuracy && f1_macro > 0.5', ctx);
  assert.equal(r.passed, false);
  assert.equal(r.explanation, 'accuracy 0.95 >= production.accuracy 0.97 ✗');
});

test('arithmetic precedence, unary minus, parentheses and functions', () => {
  const cases: [string, boolean][] = [
    ['1 + 2 * 3 == 7', true],
    ['(1 + 2) * 3 == 9', true],
    ['10 / 4 - 1 == 1.5', true],
    ['-2 * -3 == 6', true],
    ['2 - 3 - 4 == -5', true],
    ['min(accuracy, f1_macro) == 0.95', true],
    ['max(accuracy, f1_macro) == 0.97', true],
    ['abs(accuracy - production.accuracy) <= 0.02 + 1e-9', true],
    ['per_class.spam.f1 > 0.9 && per_class.ham.f1 > 0.9', true],
    ['per_class.spam.support < 10 || n >= 200', true],
    ['!(accuracy < 0.5)', true],
    ['!calibrated', false],
    ['calibrated == true', true],
    ['accuracy != 0.95', false],
    ['.5 < 0.6 && 1.5e2 == 150', true],
    ['f1_macro >= baseline.f1_macro + 0.15', true],
    ['f1_macro >= baseline.f1_macro + 0.2', false],
  ];
  for (const [expr, want] of cases) assert.equal(evaluateGate(expr, ctx).passed, want, expr);
});

test('has() guards an absent production model; && / || short-circuit', () => {
  const gate = '!has(production) || f1_macro >= production.f1_macro - 0.005';
  const first = evaluateGate(gate, { f1_macro: 0.9 });
  assert.equal(first.passed, true);
  assert.equal(first.explanation, 'has(production) = false');
  assert.equal(evaluateGate(gate, { f1_macro: 0.9, production: null }).passed, true);
  const later = evaluateGate(gate, { f1_macro: 0.9, production: { f1_macro: 0.95 } });
  assert.equal(later.passed, false);
  assert.equal(later.explanation, 'has(production) = true; f1_macro 0.9 >= production.f1_macro - 0.005 = 0.945 ✗');
  assert.equal(evaluateGate('has(per_class.spam.f1) && !has(per_class.eggs)', ctx).passed, true);
});

test('a missing name is an error that suggests has(), never a silent pass', () => {
  assert.throws(
    () => evaluateGate('f1_marco >= 0.9', ctx),
    (e: unknown) => {
      assert.ok(e instanceof GateError);
      assert.equal(e.column, 1);
      assert.match(e.message, /unknown name 'f1_marco'.*available: f1_macro/);
      return true;
    },
  );
  assert.throws(
    () => evaluateGate('f1_macro >= production.f1_macro', { f1_macro: 1 }),
    (e: unknown) => e instanceof GateError && e.column === 13 && /has\(production\)/.test(e.message),
  );
});

test('syntax errors point at the column with a caret', () => {
  syntaxErr('f1_macro >= ', 13, /unexpected end of expression/);
  syntaxErr('f1_macro >= 0.9 )', 17, /unexpected '\)'/);
  syntaxErr('(f1_macro >= 0.9', 17, /expected '\)' to close the '\(' at column 1/);
  syntaxErr('f1_macro = 0.9', 10, /use '=='/);
  syntaxErr('a & b', 3, /use '&&'/);
  syntaxErr('0.1 < f1_macro < 1', 16, /cannot be chained/);
  syntaxErr('min(a)', 1, /takes 2 arguments, got 1/);
  syntaxErr('has(1)', 4, /takes a name/);
  syntaxErr('f1_macro >= 0.9 #', 17, /unexpected character "#"/);
  syntaxErr('', 1, /empty/);
  syntaxErr('12abc > 1', 1, /malformed number/);
  syntaxErr('a. > 1', 2, /ends with a dot/);
  try {
    parseGate('f1_macro >= )');
    assert.fail('should throw');
  } catch (e) {
    assert.equal(
      (e as Error).message,
      "unexpected ')'; expected a number, a name, '(' or a function call at column 13\n  f1_macro >= )\n              ^",
    );
  }
});

test('type errors and division by zero are reported, not coerced', () => {
  assert.throws(() => evaluateGate('accuracy && true', ctx), /is the number 0.95, but a condition/);
  assert.throws(() => evaluateGate('calibrated + 1 > 0', ctx), /a boolean, but a number is needed/);
  assert.throws(() => evaluateGate('calibrated == 1', ctx), /cannot compare boolean/);
  assert.throws(() => evaluateGate('accuracy / 0 > 1', ctx), /division by zero/);
  assert.throws(() => evaluateGate('accuracy + 1', ctx), /must be a condition/);
  assert.throws(() => evaluateGate('production > 1', ctx), /not a number or boolean/);
  assert.throws(() => evaluateGate('x > 1', { x: 'high' }), /not a number or boolean/);
  assert.throws(() => evaluateGate('x > 1', { x: Infinity }), /is Infinity/);
});

test('malicious inputs are rejected without running anything', () => {
  let exited = false;
  const realExit = process.exit;
  process.exit = (() => {
    exited = true;
  }) as typeof process.exit;
  try {
    syntaxErr('process.exit()', 1, /unknown function 'process.exit'/);
    syntaxErr('constructor.constructor("return 1")() > 0', 1, /'constructor' is not allowed/);
    syntaxErr('production.__proto__.x > 1', 12, /'__proto__' is not allowed/);
    syntaxErr('a.prototype > 1', 3, /'prototype' is not allowed/);
    syntaxErr('require("fs")', 9, /unexpected character '"'|unexpected character "\\""/);
    syntaxErr('this.x > 1; process.exit(1)', 11, /unexpected character ";"/);
    syntaxErr('eval(1)', 1, /unknown function 'eval'/);
    syntaxErr('toString() > 1', 1, /unknown function 'toString'/);
    syntaxErr('`x`', 1, /unexpected character/);
    syntaxErr('a[0] > 1', 2, /unexpected character "\["/);
  } finally {
    process.exit = realExit;
  }
  assert.equal(exited, false);
  // Inherited members are not data: toString/hasOwnProperty exist on every object's prototype.
  assert.throws(() => evaluateGate('toString > 1', ctx), /unknown name 'toString'/);
  assert.throws(() => evaluateGate('production.hasOwnProperty > 1', ctx), /unknown name/);
  // A JSON-parsed "__proto__" key is an own property, but the name is refused at parse time.
  const poisoned = JSON.parse('{"__proto__": {"x": 1}}') as Record<string, unknown>;
  assert.throws(() => evaluateGate('__proto__.x == 1', poisoned), GateError);
  // Getters are never invoked.
  let called = false;
  const withGetter = Object.defineProperty({}, 'g', {
    get() {
      called = true;
      return 1;
    },
    enumerable: true,
  });
  assert.throws(() => evaluateGate('g == 1', withGetter), /unknown name 'g'/);
  assert.equal(called, false);
  // Class instances are not plain data.
  assert.throws(() => evaluateGate('m.size == 0', { m: new Map() }), /unknown name/);
});

test('pathological inputs hit limits instead of exhausting the stack', () => {
  syntaxErr('('.repeat(100) + '1' + ')'.repeat(100), 65, /nests deeper than 64/);
  syntaxErr('!'.repeat(100) + 'true', 65, /nests deeper/);
  assert.throws(() => parseGate('1 + '.repeat(600) + '1 > 0'), /longer than 2000/);
  syntaxErr('1e999 > 0', 1, /too large/);
});

test('evaluateGates reports every gate and names the failing one', () => {
  const r = evaluateGates(['accuracy >= 0.9', 'f1_macro >= 0.99', 'n >= 100'], ctx);
  assert.equal(r.passed, false);
  assert.deepEqual(
    r.results.map((x) => x.passed),
    [true, false, true],
  );
  assert.throws(
    () => evaluateGates(['accuracy >= 0.9', 'bad >= 1'], ctx),
    (e: unknown) => e instanceof GateError && e.where === 'gates[1]',
  );
});

test('seeded fuzz: any input either evaluates or raises a GateError, never another exception', () => {
  let s = 20260101;
  const rnd = (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
  const pieces = [
    'f1_macro',
    'production.f1_macro',
    'per_class.spam.f1',
    'calibrated',
    'missing',
    '0.5',
    '2',
    '1e3',
    '.5',
    'true',
    'false',
    '+',
    '-',
    '*',
    '/',
    '<',
    '<=',
    '>',
    '>=',
    '==',
    '!=',
    '&&',
    '||',
    '!',
    '(',
    ')',
    ',',
    'min(',
    'max(',
    'abs(',
    'has(',
    ' ',
    '__proto__',
    'constructor',
    '.',
    '=',
    '&',
    '"',
    '[',
    ']',
    ';',
    'process.exit(',
    '\u2028',
    'é',
  ];
  // Grammar-shaped expressions reach the evaluator; token soup exercises the tokenizer and parser.
  const num = (d: number): string => {
    const leaves = ['f1_macro', 'production.f1_macro', 'per_class.spam.f1', '0.5', '2', '0', 'missing'];
    if (d > 3 || rnd(3) === 0) return leaves[rnd(leaves.length)]!;
    const k = rnd(5);
    if (k === 0) return `(${num(d + 1)} ${['+', '-', '*', '/'][rnd(4)]} ${num(d + 1)})`;
    if (k === 1) return `${['min', 'max'][rnd(2)]}(${num(d + 1)}, ${num(d + 1)})`;
    if (k === 2) return `abs(${num(d + 1)})`;
    if (k === 3) return `-${num(d + 1)}`;
    return num(d + 1);
  };
  const cond = (d: number): string => {
    if (d > 3 || rnd(3) === 0)
      return rnd(4) === 0
        ? ['has(production)', 'calibrated', 'true'][rnd(3)]!
        : `${num(d)} ${['<', '<=', '>', '>=', '==', '!='][rnd(6)]} ${num(d)}`;
    const k = rnd(3);
    if (k === 0) return `(${cond(d + 1)} ${['&&', '||'][rnd(2)]} ${cond(d + 1)})`;
    if (k === 1) return `!${cond(d + 1)}`;
    return cond(d + 1);
  };
  let evaluated = 0;
  for (let i = 0; i < 3000; i++) {
    const expr = i % 2 ? cond(0) : Array.from({ length: 1 + rnd(12) }, () => pieces[rnd(pieces.length)]).join(rnd(2) ? ' ' : '');
    try {
      const r = evaluateGate(expr, ctx);
      assert.equal(typeof r.passed, 'boolean');
      evaluated++;
    } catch (e) {
      assert.ok(e instanceof GateError, `${JSON.stringify(expr)} threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
      assert.ok(e.column >= 1 && e.column <= expr.length + 1, `column ${e.column} outside ${JSON.stringify(expr)}`);
    }
  }
  // The generator must reach the evaluator sometimes, or the test would only exercise the parser.
  assert.ok(evaluated > 300, `only ${evaluated} expressions evaluated`);
});
