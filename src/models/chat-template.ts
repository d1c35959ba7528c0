/**
 * Chat templates: the model's own Jinja template (tokenizer_config.json `chat_template`, a
 * `chat_template.jinja` file, or a GGUF's `tokenizer.chat_template`), rendered with @huggingface/jinja
 * the way transformers' `apply_chat_template` renders it: `messages`, `add_generation_prompt`, the
 * special tokens (`bos_token`, `eos_token`, …) and any extra variables; trim_blocks and lstrip_blocks on. A template
 * is hostile input (it comes with the model), so it renders within a work budget that scales with the conversation
 * (`chat-template-budget.ts`): one that would fill the heap or run for hours fails at once with an InputError.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { BudgetedTemplate, renderLimits, TemplateBudgetError, type RenderLimits } from './chat-template-budget.ts';
import { turnMarkedTemplate, type MarkedLoop } from './chat-template-prefixes.ts';
import { checkFileSize, MAX_TOKENIZER_CONFIG_BYTES } from './tokenizer-limits.ts';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface RenderOptions {
  /** End with the header of an assistant turn, so generation writes the reply. */
  addGenerationPrompt?: boolean;
  /** More template variables (e.g. `tools`, `documents`, model-specific switches). */
  variables?: Record<string, unknown>;
  /**
   * The work budget to render within, instead of the one these messages size (`limitsFor`): a training conversation's
   * beginnings render within the whole conversation's (chat-template-prefixes.ts).
   */
  limits?: RenderLimits;
}

const SPECIAL_KEYS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token'] as const;

function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

/** How much of its budget a render took, and the budget. */
export interface RenderUsage {
  used: RenderLimits;
  limits: RenderLimits;
}

/** The length of a value as JSON, to size the budget by; 0 for what JSON cannot hold (rendering then fails anyway). */
function jsonChars(v: unknown): number {
  try {
    return JSON.stringify(v)?.length ?? 0;
  } catch {
    return 0;
  }
}

/** Characters of a template: parsing costs with its tags (a 14 MB template of `{{ 1 }}` took 6.5 s and 490 MB). */
const MAX_TEMPLATE_CHARS = 1 << 20;

export class ChatTemplate {
  private readonly template: BudgetedTemplate;
  /** The template with its turns marked, once asked for; null where it cannot be (chat-template-prefixes.ts). */
  private marked: ({ template: BudgetedTemplate } & MarkedLoop) | null | undefined;

  /** `source` names where the template came from, for errors. */
  constructor(
    readonly text: string,
    readonly source: string,
    readonly specialTokens: Record<string, string> = {},
  ) {
    if (text.length > MAX_TEMPLATE_CHARS)
      throw new InputError(
        `chat template is ${text.length} characters long, more than the ${MAX_TEMPLATE_CHARS} a real one takes (the longest are tens of thousands)`,
        { where: source, hint: "render with a template you trust: the pipeline's chat_template field, or --chat-template FILE" },
      );
    try {
      this.template = new BudgetedTemplate(text);
    } catch (e) {
      // The parser reads past the last token of a block left open, failing in its own code rather than saying so.
      const why =
        e instanceof TypeError
          ? 'it ends inside a tag ({{ or {% without its }} or %}) or a block ({% for %}, {% if %}, {% set %}, {% macro %}…) that is never closed'
          : (e as Error).message;
      throw new InputError(`chat template does not parse: ${why}`, { where: source, cause: e });
    }
  }

  render(messages: ChatMessage[], opts: RenderOptions = {}): string {
    return this.renderWithUsage(messages, opts).text;
  }

  /** `render`, also saying how much of the budget it took (for tests and for sizing the budget). */
  renderWithUsage(messages: ChatMessage[], opts: RenderOptions = {}): { text: string } & RenderUsage {
    return this.renderBudgeted(this.template, messages, opts);
  }

  /**
   * `render` with TURN_MARK before each message's turn and after the last, PROMPT_MARK around what the loop's generation
   * prompt writes (chat-template-prefixes.ts), whether the loop may leave out messages at the start, and the budget it
   * took (as `renderWithUsage`); undefined for a
   * template whose renderings of the conversation's beginnings cannot be read off the whole one that way.
   */
  renderMarkingTurns(messages: ChatMessage[], opts: RenderOptions = {}): ({ text: string } & MarkedLoop & RenderUsage) | undefined {
    if (this.marked === undefined) this.marked = turnMarkedTemplate((edit) => new BudgetedTemplate(this.text, edit)) ?? null;
    if (this.marked === null) return undefined;
    return { ...this.renderBudgeted(this.marked.template, messages, opts), leading: this.marked.leading };
  }

  /** The budget rendering `messages` with `opts` gets unless given one (`RenderOptions.limits`). */
  limitsFor(messages: ChatMessage[], opts: RenderOptions = {}): RenderLimits {
    return renderLimits(jsonChars(this.items(messages, opts)), messages.length, this.template.nodes);
  }

  private items(messages: ChatMessage[], opts: RenderOptions): Record<string, unknown> {
    messages.forEach((m, i) => {
      if (typeof m?.role !== 'string' || typeof m.content !== 'string')
        throw new InputError('each message needs a string role and a string content', { where: `messages[${i}]` });
    });
    return {
      ...this.specialTokens,
      ...opts.variables,
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: opts.addGenerationPrompt ?? false,
    };
  }

  private renderBudgeted(template: BudgetedTemplate, messages: ChatMessage[], opts: RenderOptions): { text: string } & RenderUsage {
    const items = this.items(messages, opts);
    // The marked template has a few nodes more than the template: the budget is the template's either way.
    const limits = opts.limits ?? renderLimits(jsonChars(items), messages.length, this.template.nodes);
    try {
      return { ...template.render(items, limits), limits };
    } catch (e) {
      if (e instanceof TemplateBudgetError)
        throw new InputError(
          `chat template exceeds its work budget: ${e.message}; a real chat template loops over the messages: see where this model comes from, and render with a template you trust`,
          {
            where: this.source,
            hint: "give a template explicitly to use instead of the model's: the pipeline's chat_template field, serve's and generate's --chat-template FILE, or the call's template option",
            cause: e,
          },
        );
      throw new InputError(`chat template failed: ${(e as Error).message}`, { where: this.source, cause: e });
    }
  }
}

/**
 * The chat template of a model directory. `override` (a template given in the pipeline or the call) wins;
 * a model without a template and no override is an error that says how to give one.
 */
export function loadChatTemplate(dir: string, override?: string): ChatTemplate {
  const cfgPath = join(dir, 'tokenizer_config.json');
  let config: Record<string, unknown> = {};
  if (existsSync(cfgPath)) {
    checkFileSize(cfgPath, MAX_TOKENIZER_CONFIG_BYTES);
    try {
      config = JSON.parse(readFileSync(cfgPath, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new InputError(`not valid JSON (${(e as Error).message})`, { where: cfgPath, cause: e });
    }
  }
  const specials: Record<string, string> = {};
  for (const k of SPECIAL_KEYS) {
    const t = tokenString(config[k]);
    if (t !== undefined) specials[k] = t;
  }
  if (override !== undefined) return new ChatTemplate(override, 'chat_template (given explicitly)', specials);
  const jinjaPath = join(dir, 'chat_template.jinja');
  if (existsSync(jinjaPath)) {
    checkFileSize(jinjaPath, MAX_TOKENIZER_CONFIG_BYTES);
    return new ChatTemplate(readFileSync(jinjaPath, 'utf8'), jinjaPath, specials);
  }
  const given = config.chat_template;
  let t = given;
  // Some tokenizer configs carry several named templates; 'default' is the chat one.
  if (Array.isArray(given)) {
    const named = given as Array<{ name?: unknown; template?: unknown } | null>;
    t = named.find((x) => x?.name === 'default')?.template;
    if (typeof t !== 'string')
      throw new InputError(
        `chat_template lists ${named.length} templates but none named "default" with a string template (names: ${named
          .map((x) => JSON.stringify(x?.name ?? null).slice(0, 40))
          .slice(0, 8)
          .join(', ')})`,
        { where: `${cfgPath}: chat_template`, hint: "give the template to use explicitly (the pipeline's chat_template field)" },
      );
  }
  if (typeof t === 'string' && t.length > 0) return new ChatTemplate(t, `${cfgPath}: chat_template`, specials);
  if (given !== undefined && given !== null && typeof given !== 'string')
    throw new InputError(
      `chat_template must be a string, or a list of {"name", "template"} with one named "default"; got ${typeof given}`,
      {
        where: `${cfgPath}: chat_template`,
        hint: "give the template to use explicitly (the pipeline's chat_template field)",
      },
    );
  throw new InputError('the model has no chat template', {
    where: dir,
    hint: "give one explicitly (the pipeline's chat_template field, or the call's template option), or use a prompt template for plain prompt/response training",
  });
}
