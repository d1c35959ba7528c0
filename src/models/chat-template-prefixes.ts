/**
 * The renderings a conversation's training encoding locates each reply with (chat-encoding.ts `encodeConversation`):
 * for reply k, the conversation before it with the generation prompt (`head`) and the conversation up to it (`upTo`).
 * Rendered one by one they cost the square of the conversation's turns (500 one-word exchanges: 9 s). Most templates
 * are one loop over the messages whose turns do not look ahead: then every such rendering is the whole conversation's
 * text up to turn k followed by what the template writes after its loop (and, with the generation prompt, what the loop
 * writes after its last turn), and one rendering of the whole conversation with marks around each turn gives them all.
 *
 * Which templates: the loop over the messages is at the top of the template, and nothing in the template can tell how
 * many messages there are (`messages` is read only by that loop and as `messages[0]`; `loop.last`, `loop.length`,
 * `loop.revindex` and `loop.nextitem` are not read), whether the generation prompt is asked before the loop has ended
 * (`add_generation_prompt` is read only after it, or in an `if loop.last and add_generation_prompt` that ends the
 * loop's body and sets nothing, as Zephyr's and TinyLlama's templates write it), or, after the loop, anything the loop
 * wrote (a namespace it writes into is reachable by its own name only, so that no other name carries what it wrote past
 * the loop); and neither the template nor its special tokens hold a mark's character. The loop may go over `messages`,
 * over `messages[c:]`, or over a variable set to one of them before it whichever way its `if`s go and read nowhere else
 * (Mistral's `{% set loop_messages = messages[1:] %}` after a system message, its `raise_exception` on roles that do
 * not alternate): the messages it leaves out at the start (a system message the first turn writes) are as many as the
 * rendering has turns fewer than messages, and such a loop may not `break` or `continue`. A template is judged on its
 * syntax, so one that merely might look ahead (a macro that reads `add_generation_prompt`, a `messages | length`, a
 * `messages[-1:]`) is rendered reply by reply as before; so is a rendering whose marks are not where the judgement says
 * they must be.
 *
 * The budget (chat-template-budget.ts): every rendering made to encode a conversation renders within the budget of the
 * whole conversation's rendering, not one sized by the beginning it renders. A training row is the whole conversation,
 * and whether it trains must not depend on the path that encodes it: with each beginning given its own, smaller budget,
 * a template that works hard on the first turn was refused reply by reply and accepted read off the marks. Reply by
 * reply, each beginning gets that budget; read off the marks, the marked rendering does, and it does at least the work
 * of any beginning rendered with the generation prompt (the same turns, a mark more each and more of them, the
 * generation-prompt `if` still evaluating its own test first, then the same text after the loop), while a beginning
 * without it does at most the work of `whole` (its first turns and the same text after the loop). So where the marked
 * rendering is within budget every beginning is, and where it is not, the conversation is rendered reply by reply and
 * meets the budget there. Inference renders each prompt within its own budget, as before.
 */
import type { BudgetedTemplate, RenderLimits } from './chat-template-budget.ts';
import type { ChatMessage, ChatTemplate } from './chat-template.ts';

/** Noncharacters: in no template, and a conversation that holds one is rendered reply by reply. */
export const TURN_MARK = '\uFFFF';
/** Around what a loop's `{% if loop.last and add_generation_prompt %}` writes (Zephyr's and TinyLlama's templates). */
export const PROMPT_MARK = '\uFFFE';

const hasMark = (t: string): boolean => t.includes(TURN_MARK) || t.includes(PROMPT_MARK);

interface Node {
  type: string;
  [field: string]: unknown;
}

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && typeof (v as Node).type === 'string';
const isIdentifier = (v: unknown, name: string): boolean => isNode(v) && v.type === 'Identifier' && v.value === name;

/**
 * Every node under `roots` once, each with its parent (iterative: a hostile template nests deeper than the stack). Once:
 * the roots may nest (a macro's body holds the macros defined in it, and every macro is a root), and walking each
 * nested one again made 1,000 nested macros take 3.6 s.
 */
function walk(roots: readonly unknown[]): { node: Node; parent: Node | undefined }[] {
  const out: { node: Node; parent: Node | undefined }[] = [];
  const seen = new Set<Node>();
  const stack: [unknown, Node | undefined][] = roots.map((r) => [r, undefined]);
  while (stack.length > 0) {
    const [v, parent] = stack.pop()!;
    if (Array.isArray(v)) {
      for (const c of v) stack.push([c, parent]);
      continue;
    }
    if (!isNode(v) || seen.has(v)) continue;
    seen.add(v);
    out.push({ node: v, parent });
    for (const c of Object.values(v)) if (typeof c === 'object' && c !== null) stack.push([c, v]);
  }
  return out;
}

/** `loop` fields that do not depend on how many items follow. */
const LOOP_FIELDS_BEHIND = new Set(['index', 'index0', 'first', 'previtem']);

const names = (roots: readonly unknown[]): Set<string> =>
  new Set(walk(roots).flatMap(({ node }) => (node.type === 'Identifier' ? [node.value as string] : [])));

/** `messages[c:]`'s c (a non-negative integer literal, no end or step); undefined for anything else. */
function sliceStart(n: unknown): number | undefined {
  if (!isNode(n) || n.type !== 'MemberExpression' || n.computed !== true || !isIdentifier(n.object, 'messages')) return undefined;
  const p = n.property;
  if (!isNode(p) || p.type !== 'SliceExpression' || p.stop != null || p.step != null) return undefined;
  const c = isNode(p.start) && p.start.type === 'IntegerLiteral' ? p.start.value : undefined;
  return Number.isSafeInteger(c) && (c as number) >= 0 ? (c as number) : undefined;
}

const block = (v: unknown): Node[] => (Array.isArray(v) ? (v as Node[]) : []);

/** How deep in `if`s a loop's variable may be set: a hostile template nests deeper than the stack. */
const MAX_IF_DEPTH = 32;

/** The `set`s at the top of `nodes`, in `if` blocks included. */
const topSets = (nodes: Node[], depth = 0): Node[] =>
  depth > MAX_IF_DEPTH
    ? []
    : nodes.flatMap((n) =>
        n.type === 'Set' ? [n] : n.type === 'If' ? [...topSets(block(n.body), depth + 1), ...topSets(block(n.alternate), depth + 1)] : [],
      );

/** Whether `nodes` set `name` whichever way their `if`s go. */
const alwaysSet = (nodes: Node[], name: string, depth = 0): boolean =>
  depth <= MAX_IF_DEPTH &&
  nodes.some(
    (n) =>
      (n.type === 'Set' && isIdentifier(n.assignee, name)) ||
      (n.type === 'If' && alwaysSet(block(n.body), name, depth + 1) && alwaysSet(block(n.alternate), name, depth + 1)),
  );

/**
 * Whether a top-level loop's iterable is the messages: `messages`, `messages[c:]`, or a variable that the top level
 * before the loop (`before`) sets to one of those whichever way its `if`s go, and that nothing else sets or reads
 * (Mistral's `loop_messages`, `messages[1:]` after a system message). If so, the `messages` and variable nodes that make
 * it (read nowhere else: `every` is the whole template's nodes), and whether it may leave out messages at the start.
 */
function messageList(iterable: unknown, before: Node[], every: { node: Node }[]): { reads: Set<Node>; leading: boolean } | undefined {
  if (isIdentifier(iterable, 'messages')) return { reads: new Set([iterable as Node]), leading: false };
  if (sliceStart(iterable) !== undefined) return { reads: new Set([(iterable as Node).object as Node]), leading: true };
  if (!isNode(iterable) || iterable.type !== 'Identifier') return undefined;
  const name = iterable.value as string;
  const allowed = new Set(topSets(before).filter((n) => isIdentifier(n.assignee, name)));
  const reads = new Set<Node>([iterable]);
  for (const { node } of every) {
    if (node.type === 'Set' && names([node.assignee]).has(name)) {
      if (!allowed.has(node) || !(isIdentifier(node.value, 'messages') || sliceStart(node.value) !== undefined)) return undefined;
      reads
        .add(node.assignee as Node)
        .add(isIdentifier(node.value, 'messages') ? (node.value as Node) : ((node.value as Node).object as Node));
    }
  }
  if (allowed.size === 0 || !alwaysSet(before, name)) return undefined;
  if (every.some(({ node }) => isIdentifier(node, name) && !reads.has(node))) return undefined;
  return { reads, leading: true };
}

/** The names whose attributes `nodes` set; undefined where one sets an attribute of anything but a name. */
function namespacesWritten(nodes: readonly unknown[]): Set<string> | undefined {
  const out = new Set<string>();
  for (const { node } of walk(nodes)) {
    if (node.type !== 'Set' || !isNode(node.assignee) || node.assignee.type !== 'MemberExpression') continue;
    const object = node.assignee.object;
    if (!isNode(object) || object.type !== 'Identifier') return undefined;
    out.add(object.value as string);
  }
  return out;
}

/**
 * Whether each of `written` (undefined: unknown) holds, wherever `every` (the whole template's nodes) names it, only a
 * namespace made there and never handed on: it is set only to `namespace(…)` (with `namespace` never rebound) and read
 * only for an attribute (a name as an attribute or a keyword is no read).
 */
function namespacesUnaliased(every: readonly { node: Node; parent: Node | undefined }[], written: Set<string> | undefined): boolean {
  if (written === undefined) return false;
  if (written.size === 0) return true;
  const makesNamespace = (v: unknown) => isNode(v) && v.type === 'CallExpression' && isIdentifier(v.callee, 'namespace');
  return every.every(({ node, parent: p }) => {
    if (node.type !== 'Identifier') return true;
    if (node.value === 'namespace') return p?.type === 'CallExpression' && p.callee === node;
    if (!written.has(node.value as string)) return true;
    return (
      (p?.type === 'MemberExpression' && (p.object === node || (p.property === node && p.computed === false))) ||
      (p?.type === 'KeywordArgumentExpression' && p.key === node) ||
      (p?.type === 'Set' && p.assignee === node && makesNamespace(p.value))
    );
  });
}

/** A template markTurns marked. */
export interface MarkedLoop {
  /**
   * The loop may leave out messages at the start (it iterates `messages[c:]`): as many as its rendering has turns fewer
   * than messages, since such a loop is never let break or continue.
   */
  leading: boolean;
}

/**
 * Whether the parsed template is one loop over the messages whose prefix renderings can be read off the whole one (see
 * above); if so, marks it: TURN_MARK before each iteration's text and after the loop, PROMPT_MARK around what the loop's
 * generation prompt writes.
 */
export function markTurns(program: { body: object[] }): MarkedLoop | undefined {
  const body = program.body as Node[];
  // A mark the template writes itself (its text, or a '\uFFFF' escape) would be taken for one of ours: where it writes
  // it only with the generation prompt (never in the whole rendering, which is checked), a loop that breaks early makes
  // the count come out right and turns land on the template's own text.
  const every = walk(body);
  if (every.some(({ node }) => node.type === 'StringLiteral' && typeof node.value === 'string' && hasMark(node.value))) return undefined;
  // The loops that may go over the messages, told apart cheaply first (a hostile template holds tens of thousands of
  // loops): more than one, and the template is rendered reply by reply.
  const fromMessages = (v: unknown) => isIdentifier(v, 'messages') || sliceStart(v) !== undefined;
  const setToMessages = new Set(
    every.flatMap(({ node }) =>
      node.type === 'Set' && isNode(node.assignee) && node.assignee.type === 'Identifier' && fromMessages(node.value)
        ? [node.assignee.value]
        : [],
    ),
  );
  const candidates = body.flatMap((n, i) =>
    n.type === 'For' &&
    (fromMessages(n.iterable) || (isNode(n.iterable) && n.iterable.type === 'Identifier' && setToMessages.has(n.iterable.value)))
      ? [i]
      : [],
  );
  if (candidates.length !== 1) return undefined;
  const at = candidates[0]!;
  const list = messageList(body[at]!.iterable, body.slice(0, at), every);
  if (list === undefined) return undefined;
  const { reads, leading } = list;
  const loop = body[at]! as Node & { body: Node[]; defaultBlock?: Node[]; loopvar: Node };
  if (!Array.isArray(loop.body) || (loop.defaultBlock?.length ?? 0) > 0) return undefined;
  // The one place a turn may read `loop.last` and `add_generation_prompt`: an `if loop.last and add_generation_prompt`
  // (no else) that ends the loop's body, writing the generation prompt after the last message's turn. It is rendered as
  // `if add_generation_prompt` (after its own test), which writes what it would write after each turn, between
  // PROMPT_MARKs; it may set nothing, since it runs after every turn then.
  const promptIf = loop.body.filter((n) => n.type !== 'Comment').at(-1);
  const isPromptIf =
    promptIf?.type === 'If' &&
    isNode(promptIf.test) &&
    promptIf.test.type === 'BinaryExpression' &&
    (promptIf.test.operator as { value?: unknown } | undefined)?.value === 'and' &&
    [promptIf.test.left, promptIf.test.right].some((n) => isIdentifier(n, 'add_generation_prompt')) &&
    [promptIf.test.left, promptIf.test.right].some(
      (n) =>
        isNode(n) &&
        n.type === 'MemberExpression' &&
        isIdentifier(n.object, 'loop') &&
        n.computed === false &&
        isIdentifier(n.property, 'last'),
    ) &&
    (!Array.isArray(promptIf.alternate) || promptIf.alternate.length === 0) &&
    Array.isArray(promptIf.body) &&
    !walk(promptIf.body as Node[]).some(({ node }) => node.type === 'Set' || node.type === 'CallExpression' || node.type === 'Macro');
  const standIn: Node = { type: 'Identifier', value: 'add_generation_prompt' };
  // Its own test is still evaluated first (`(loop.last and add_generation_prompt) or add_generation_prompt`), so that
  // each turn of the marked rendering does all the work the turn does in any rendering of a beginning (see the budget
  // note above).
  const ownTest = new Set<Node>(isPromptIf ? walk([promptIf.test]).map(({ node }) => node) : []);
  if (isPromptIf)
    promptIf.test = { type: 'BinaryExpression', operator: { type: 'Identifier', value: 'or' }, left: promptIf.test, right: standIn };
  const all = walk(body);
  for (const { node, parent } of all) {
    if (!isIdentifier(node, 'messages') || reads.has(node)) continue;
    const first =
      parent?.type === 'MemberExpression' &&
      parent.object === node &&
      parent.computed === true &&
      isNode(parent.property) &&
      parent.property.type === 'IntegerLiteral' &&
      parent.property.value === 0;
    if (!first) return undefined;
  }
  // Macros can be called from anywhere: what they read or write counts everywhere.
  const macros = all.filter(({ node }) => node.type === 'Macro').map(({ node }) => node.body);
  const inLoop = [loop.body, ...macros];
  if (
    walk([...body.slice(0, at + 1), ...macros]).some(
      ({ node }) => isIdentifier(node, 'add_generation_prompt') && node !== standIn && !ownTest.has(node),
    )
  )
    return undefined;
  for (const { node, parent } of walk(inLoop)) {
    if (!isIdentifier(node, 'loop') || ownTest.has(node)) continue;
    const field = parent?.type === 'MemberExpression' && parent.object === node && parent.computed === false ? parent.property : undefined;
    if (!isNode(field) || field.type !== 'Identifier' || !LOOP_FIELDS_BEHIND.has(field.value as string)) return undefined;
  }
  // What the loop writes: its variable, what it sets (a namespace's attribute sets the namespace), and whatever it calls a
  // method of.
  const written = names([loop.loopvar]);
  for (const { node } of walk(inLoop)) {
    if (node.type === 'Set') for (const n of names([node.assignee])) written.add(n);
    if (node.type === 'CallExpression' && isNode(node.callee) && node.callee.type === 'MemberExpression')
      for (const n of names([node.callee.object])) written.add(n);
  }
  // A namespace is the one value a set changes in place, so what the loop writes into one reaches whatever else holds
  // it: `{% set alias = ns %}` before the loop and `alias['n']` after it read the loop's count under names the loop
  // never wrote. A namespace the loop writes into must be reachable by its own name only: that name is only ever set to
  // a new `namespace(…)` and read only for an attribute, and `namespace` itself is only called.
  if (!namespacesUnaliased(all, namespacesWritten(inLoop))) return undefined;
  // A loop that leaves out messages at the start is told from the count of its turns, which a break would make wrong,
  // and so would a continue: the library drops what an iteration wrote when it continues, its mark included, so a turn
  // skipped on an empty message counted as one more message left out at the start, and the replies before it were
  // located on the turns before theirs (a user's turn trained as the assistant's reply).
  if (leading && walk(inLoop).some(({ node }) => node.type === 'Break' || node.type === 'Continue')) return undefined;
  const readAfter = names([...body.slice(at + 1), ...macros]);
  if ([...written].some((n) => readAfter.has(n))) return undefined;
  if (isPromptIf) {
    (promptIf.body as Node[]).unshift({ type: 'StringLiteral', value: PROMPT_MARK });
    (promptIf.body as Node[]).push({ type: 'StringLiteral', value: PROMPT_MARK });
  }
  loop.body.unshift({ type: 'StringLiteral', value: TURN_MARK });
  body.splice(at + 1, 0, { type: 'StringLiteral', value: TURN_MARK });
  return { leading };
}

/** The template marked by markTurns, or undefined where it is not such a template. */
export function turnMarkedTemplate(
  make: (edit: (program: { body: object[] }) => void) => BudgetedTemplate,
): ({ template: BudgetedTemplate } & MarkedLoop) | undefined {
  let marked: MarkedLoop | undefined;
  const template = make((program) => {
    marked = markTurns(program);
  });
  return marked === undefined ? undefined : { template, ...marked };
}

/** Reply k's two renderings, by length, and whether they are what locating it needs. */
export interface ReplyRenderings {
  /** The conversation before message k, with the generation prompt. */
  head: number;
  /** The conversation through message k. */
  upTo: number;
  /** `upTo` starts with `head`. */
  extendsHead: boolean;
  /** The whole conversation starts with `upTo`. */
  inWhole: boolean;
}

/** Renders each one, as encodeConversation did before: for a template that is not one marked loop, and for k = 0. */
function renderBoth(template: ChatTemplate, messages: ChatMessage[], whole: string, k: number, limits: RenderLimits): ReplyRenderings {
  const head = template.render(messages.slice(0, k), { addGenerationPrompt: true, limits });
  const upTo = template.render(messages.slice(0, k + 1), { addGenerationPrompt: false, limits });
  return { head: head.length, upTo: upTo.length, extendsHead: upTo.startsWith(head), inWhole: whole.startsWith(upTo) };
}

/**
 * Reply k's renderings (`whole`: the rendering of all the messages, without the generation prompt), each exactly as
 * rendering `messages.slice(0, k)` with the generation prompt and `messages.slice(0, k + 1)` without would give.
 */
export function replyRenderings(template: ChatTemplate, messages: ChatMessage[], whole: string): (k: number) => ReplyRenderings {
  // The budget `whole` was rendered within (see the budget note above).
  const limits = template.limitsFor(messages, { addGenerationPrompt: false });
  const one = (k: number) => renderBoth(template, messages, whole, k, limits);
  // Every mark in the marked rendering must be one markTurns put there: none may come from what is rendered (the
  // special tokens the template may write, such as {{ bos_token }}, included).
  if (
    messages.length === 0 ||
    hasMark(whole) ||
    messages.some((m) => hasMark(m.content) || hasMark(m.role)) ||
    Object.values(template.specialTokens).some((v) => typeof v === 'string' && hasMark(v))
  )
    return one;
  let marked: ReturnType<ChatTemplate['renderMarkingTurns']>;
  try {
    // With the generation prompt: the turns as in `whole`, what each would be followed by as the last one, and what
    // the template writes after its loop.
    marked = template.renderMarkingTurns(messages, { addGenerationPrompt: true, limits });
  } catch {
    // Whatever made it fail, rendering reply by reply meets it (or not) as it did before.
  }
  if (marked === undefined) return one;
  const parts = marked.text.split(TURN_MARK);
  // The messages before the first turn: none, or those a loop over `messages[c:]` leaves out (it never breaks or
  // continues, so each message from the c-th on has its turn).
  const first = messages.length + 2 - parts.length;
  if (parts.length < 2 || first < 0 || (first > 0 && !marked.leading)) return one;
  // turnStart[t]: where the loop's turn t (message first + t) starts in `whole`, and where the loop ends after the last.
  // promptAfter[t]: what the loop writes after turn t when it is the last one.
  const turnStart: number[] = [];
  const promptAfter: string[] = [];
  let at = parts[0]!.length;
  if (!whole.startsWith(parts[0]!)) return one;
  for (let i = 1; i < parts.length - 1; i++) {
    const t = parts[i]!;
    const open = t.indexOf(PROMPT_MARK);
    const close = open < 0 ? -1 : t.indexOf(PROMPT_MARK, open + 1);
    if (open >= 0 && close !== t.length - 1) return one;
    const turn = open < 0 ? t : t.slice(0, open);
    if (!whole.startsWith(turn, at)) return one;
    turnStart.push(at);
    promptAfter.push(open < 0 ? '' : t.slice(open + 1, close));
    at += turn.length;
  }
  turnStart.push(at);
  const after = whole.slice(at);
  const prompt = parts.at(-1)!;
  return (k) => {
    // Rendering no message, the template reads an undefined `messages[0]`; before turn 0 the loop has no turn to go by.
    if (k === 0 || k < first) return one(k);
    const t = k - first;
    const end = turnStart[t + 1]!;
    const head = (promptAfter[t - 1] ?? '') + prompt;
    return {
      head: turnStart[t]! + head.length,
      upTo: end + after.length,
      extendsHead: (whole.slice(turnStart[t], end) + after).startsWith(head),
      inWhole: whole.startsWith(after, end),
    };
  };
}
