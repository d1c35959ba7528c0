/**
 * The renderings a conversation's training encoding locates each reply with (chat-encoding.ts `encodeConversation`):
 * for reply k, the conversation before it with the generation prompt (`head`) and the conversation up to it (`upTo`).
 * Rendered one by one they cost the square of the conversation's turns (500 one-word exchanges: 9 s). Most templates
 * are one loop over the messages whose turns do not look ahead: then every such rendering is the whole conversation's
 * text up to turn k followed by what the template writes after its loop, and one rendering of the whole conversation with
 * a mark before each turn (and one of its first message with the generation prompt) gives them all.
 *
 * Which templates: the loop over `messages` is at the top of the template, and nothing in the template can tell how many
 * messages there are (`messages` is read only by that loop and as `messages[0]`; `loop.last`, `loop.length`,
 * `loop.revindex` and `loop.nextitem` are not read), whether the generation prompt is asked before the loop has ended
 * (`add_generation_prompt` is read only after it), or, after the loop, anything the loop wrote. A template is
 * judged on its syntax, so one that merely might look ahead (a macro, a `messages | length`) is rendered reply by reply
 * as before; so is a rendering whose marks are not where the judgement says they must be.
 */
import type { BudgetedTemplate } from './chat-template-budget.ts';
import type { ChatMessage, ChatTemplate } from './chat-template.ts';

/** A noncharacter: in no template, and a conversation that holds it is rendered reply by reply. */
export const TURN_MARK = '\uFFFF';

interface Node {
  type: string;
  [field: string]: unknown;
}

const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && typeof (v as Node).type === 'string';
const isIdentifier = (v: unknown, name: string): boolean => isNode(v) && v.type === 'Identifier' && v.value === name;

/** Every node under `roots`, each with its parent (iterative: a hostile template nests deeper than the stack). */
function walk(roots: readonly unknown[]): { node: Node; parent: Node | undefined }[] {
  const out: { node: Node; parent: Node | undefined }[] = [];
  const stack: [unknown, Node | undefined][] = roots.map((r) => [r, undefined]);
  while (stack.length > 0) {
    const [v, parent] = stack.pop()!;
    if (Array.isArray(v)) {
      for (const c of v) stack.push([c, parent]);
      continue;
    }
    if (!isNode(v)) continue;
    out.push({ node: v, parent });
    for (const c of Object.values(v)) if (typeof c === 'object' && c !== null) stack.push([c, v]);
  }
  return out;
}

/** `loop` fields that do not depend on how many items follow. */
const LOOP_FIELDS_BEHIND = new Set(['index', 'index0', 'first', 'previtem']);

const names = (roots: readonly unknown[]): Set<string> =>
  new Set(walk(roots).flatMap(({ node }) => (node.type === 'Identifier' ? [node.value as string] : [])));

/**
 * Whether the parsed template is one loop over the messages whose prefix renderings can be read off the whole one (see
 * above); if so, marks it: TURN_MARK before each iteration's text and after the loop.
 */
export function markTurns(program: { body: object[] }): boolean {
  const body = program.body as Node[];
  const at = body.findIndex((n) => n.type === 'For' && isIdentifier(n.iterable, 'messages'));
  if (at < 0 || body.some((n, i) => i !== at && n.type === 'For' && isIdentifier(n.iterable, 'messages'))) return false;
  const loop = body[at]! as Node & { body: Node[]; defaultBlock?: Node[]; loopvar: Node };
  if (!Array.isArray(loop.body) || (loop.defaultBlock?.length ?? 0) > 0) return false;
  const all = walk(body);
  for (const { node, parent } of all) {
    if (!isIdentifier(node, 'messages') || node === loop.iterable) continue;
    const first =
      parent?.type === 'MemberExpression' &&
      parent.object === node &&
      parent.computed === true &&
      isNode(parent.property) &&
      parent.property.type === 'IntegerLiteral' &&
      parent.property.value === 0;
    if (!first) return false;
  }
  // Macros can be called from anywhere: what they read or write counts everywhere.
  const macros = all.filter(({ node }) => node.type === 'Macro').map(({ node }) => node.body);
  const inLoop = [loop.body, ...macros];
  if (names([...body.slice(0, at + 1), ...macros]).has('add_generation_prompt')) return false;
  for (const { node, parent } of walk(inLoop)) {
    if (!isIdentifier(node, 'loop')) continue;
    const field = parent?.type === 'MemberExpression' && parent.object === node && parent.computed === false ? parent.property : undefined;
    if (!isNode(field) || field.type !== 'Identifier' || !LOOP_FIELDS_BEHIND.has(field.value as string)) return false;
  }
  // What the loop writes: its variable, what it sets (a namespace's attribute sets the namespace), and whatever it calls a
  // method of.
  const written = names([loop.loopvar]);
  for (const { node } of walk(inLoop)) {
    if (node.type === 'Set') for (const n of names([node.assignee])) written.add(n);
    if (node.type === 'CallExpression' && isNode(node.callee) && node.callee.type === 'MemberExpression')
      for (const n of names([node.callee.object])) written.add(n);
  }
  const readAfter = names([...body.slice(at + 1), ...macros]);
  if ([...written].some((n) => readAfter.has(n))) return false;
  loop.body.unshift({ type: 'StringLiteral', value: TURN_MARK });
  body.splice(at + 1, 0, { type: 'StringLiteral', value: TURN_MARK });
  return true;
}

/** The template marked by markTurns, or undefined where it is not such a template. */
export function turnMarkedTemplate(make: (edit: (program: { body: object[] }) => void) => BudgetedTemplate): BudgetedTemplate | undefined {
  let marked = false;
  const template = make((program) => {
    marked = markTurns(program);
  });
  return marked ? template : undefined;
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
function renderBoth(template: ChatTemplate, messages: ChatMessage[], whole: string, k: number): ReplyRenderings {
  const head = template.render(messages.slice(0, k), { addGenerationPrompt: true });
  const upTo = template.render(messages.slice(0, k + 1), { addGenerationPrompt: false });
  return { head: head.length, upTo: upTo.length, extendsHead: upTo.startsWith(head), inWhole: whole.startsWith(upTo) };
}

/** The marked rendering cut at its marks, or undefined where it is not `expected` with `marks` marks. */
function cutAtMarks(marked: string | undefined, marks: number): string[] | undefined {
  const parts = marked?.split(TURN_MARK);
  return parts?.length === marks + 1 ? parts : undefined;
}

/**
 * Reply k's renderings (`whole`: the rendering of all the messages, without the generation prompt), each exactly as
 * rendering `messages.slice(0, k)` with the generation prompt and `messages.slice(0, k + 1)` without would give.
 */
export function replyRenderings(template: ChatTemplate, messages: ChatMessage[], whole: string): (k: number) => ReplyRenderings {
  const one = (k: number) => renderBoth(template, messages, whole, k);
  if (
    messages.length === 0 ||
    whole.includes(TURN_MARK) ||
    messages.some((m) => m.content.includes(TURN_MARK) || m.role.includes(TURN_MARK))
  )
    return one;
  let parts: string[] | undefined;
  try {
    parts = cutAtMarks(template.renderMarkingTurns(messages, { addGenerationPrompt: false }), messages.length + 1);
  } catch {
    // Whatever made it fail, rendering reply by reply meets it (or not) as it did before.
  }
  if (parts === undefined || parts.join('') !== whole) return one;
  // turnStart[i]: where message i's turn starts in `whole`; turnStart[n]: where the loop ends.
  const turnStart = [parts[0]!.length];
  for (let i = 1; i <= messages.length; i++) turnStart.push(turnStart[i - 1]! + parts[i]!.length);
  const after = parts.at(-1)!;
  let afterPrompt: string | undefined | null;
  const withPrompt = (): string | undefined => {
    if (afterPrompt === undefined) {
      afterPrompt = null;
      try {
        const p = cutAtMarks(template.renderMarkingTurns(messages.slice(0, 1), { addGenerationPrompt: true }), 2);
        if (p !== undefined && p[0]! + p[1]! === whole.slice(0, turnStart[1])) afterPrompt = p[2]!;
      } catch {
        // As above.
      }
    }
    return afterPrompt ?? undefined;
  };
  return (k) => {
    const prompt = k === 0 ? undefined : withPrompt();
    if (prompt === undefined) return one(k);
    const end = turnStart[k + 1]!;
    return {
      head: turnStart[k]! + prompt.length,
      upTo: end + after.length,
      extendsHead: (whole.slice(turnStart[k], end) + after).startsWith(prompt),
      inWhole: whole.startsWith(after, end),
    };
  };
}
