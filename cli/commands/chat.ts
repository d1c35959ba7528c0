/**
 * `tempered chat <model>`: talk to a language model in the terminal, turn after turn. Each line read is a
 * message (a line ending in `\` goes on to the next); lines starting with `/` are commands. Piped input
 * works too: every line a message, the answers on stdout, the timings on stderr.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, linkSync, lstatSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { InputError } from '../../src/errors.ts';
import { ChatServerError, Conversation, type ChatSession, type Reply } from '../../src/generate/conversation.ts';
import type { RemoteConversation } from '../../src/serve/remote-conversation.ts';
import { syncDirSync } from '../../src/util/durable-write.ts';
import { loadTextGenerator } from '../../src/generate/text-generator.ts';
import { parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { terminalTextFor } from '../format.ts';
import {
  checkedSampling,
  cliInputError,
  inputErrorMessage,
  modelDir,
  refuseLongCommandLine,
  SAMPLING_FLAGS,
  samplingFromFlags,
} from './generate.ts';
import { readChatTemplate } from './serve.ts';

const USAGE =
  'tempered chat <name[@version|@alias] | model source> [--max-tokens 512] [--temperature 0] [--top-p P] [--top-k K]\n' +
  '  [--repetition-penalty R] [--seed N] [--stop STR]... [--system TEXT] [--chat-template FILE] [--threads N]\n' +
  '  tempered chat --url http://host:port [model] [the same sampling flags and --system]   (a served model; token from TEMPERED_SERVE_TOKEN)';

const COMMANDS = `commands:
  /system [TEXT]  show the system message, or set it for the answers that follow
  /undo           forget the last question and its answer
  /reset          forget the conversation (the system message stays)
  /history        show the conversation as the model reads it
  /save FILE      write the conversation to a new FILE as one line of JSON ({"messages": [...]}, as the OpenAI API and
                  ingest's chat task take it: name it .jsonl to train on it)
  /exit           leave (so do Ctrl-D, and Ctrl-C at the prompt)
Ctrl-C while the model answers stops the answer. A message that starts with / is written //; a line that
ends with \\ goes on to the next (piped input too).`;

export async function chatCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...SAMPLING_FLAGS, url: { type: 'string' } }, USAGE);
  refuseLongCommandLine(undefined);
  const { sampling, threads } = samplingFromFlags(values, 512);
  // Checked now, or every message would fail on them one by one.
  checkedSampling(sampling);
  if (values.url !== undefined) return chatRemote(values.url, positionals, sampling, values);
  if (positionals.length !== 1) throw new CliError(`chat takes a model\nusage: ${USAGE}`, 2);
  const chatTemplate = readChatTemplate(values['chat-template']);
  const { dir, id } = await modelDir(ctx, positionals[0]!);
  const gen = await loadTextGenerator(dir, { id, threads, chatTemplate });
  const tty = process.stdin.isTTY === true;
  try {
    // A model without a chat template fails here, before the first message is typed.
    wrapInputError(() => gen.encodeChat([{ role: 'user', content: '' }]));
    const chat = new Conversation(gen, sampling, values.system);
    console.error(
      `[chatting with ${id}: context ${gen.contextLength} tokens${gen.trainedSystem !== undefined && values.system === undefined ? ', with the system message it was trained with' : ''}; /help for commands${tty ? ', Ctrl-D to leave' : ''}]`,
    );
    return exitStatus(await converse(chat, gen.trainedSystem, tty), tty);
  } finally {
    await gen.close();
  }
}

/**
 * `--url`: the model answers from a server (`tempered serve` on another machine, or any OpenAI-compatible one),
 * which holds its own threads and chat template.
 */
async function chatRemote(
  url: string,
  positionals: string[],
  sampling: ReturnType<typeof samplingFromFlags>['sampling'],
  values: { system?: string; threads?: string; 'chat-template'?: string },
): Promise<number> {
  if (positionals.length > 1) throw new CliError(`chat --url takes at most a model name\nusage: ${USAGE}`, 2);
  for (const flag of ['threads', 'chat-template'] as const)
    if (values[flag] !== undefined)
      throw new CliError(`--${flag} is the server's to set (tempered serve --${flag}); chat --url does not take it`, 2);
  const token = process.env.TEMPERED_SERVE_TOKEN;
  if (!token)
    throw new CliError('set TEMPERED_SERVE_TOKEN to the token the server was started with (tempered serve reads the same variable)', 2);
  let chat: RemoteConversation;
  try {
    // Loaded here: the OpenAI client (~0.12 s to import) is no part of a chat with a model in this process.
    const { RemoteConversation } = await import('../../src/serve/remote-conversation.ts');
    chat = await RemoteConversation.connect({ url, token, model: positionals[0], sampling }, values.system);
  } catch (e) {
    if (e instanceof InputError) throw new CliError(e.message + (e.hint ? ` (${e.hint})` : ''), 2);
    if (e instanceof ChatServerError) throw new CliError(e.message);
    throw e;
  }
  const tty = process.stdin.isTTY === true;
  console.error(`[chatting with ${chat.served} at ${chat.baseURL}; /help for commands${tty ? ', Ctrl-D to leave' : ''}]`);
  return exitStatus(await converse(chat, SERVERS_OWN, tty), tty);
}

/** The trained system message of a served model: the server knows it, and gives it when none is set here. */
const SERVERS_OWN = Symbol('the server knows');

/**
 * Piped input is a script's: it learns from the exit status that something in it failed. In a terminal the user
 * saw each error as it came.
 */
function exitStatus(failed: Failures, tty: boolean): number {
  if (tty || failed.messages + failed.commands === 0) return 0;
  const n = (k: number, what: string) => `${k} ${what}${k === 1 ? '' : 's'}`;
  console.error(
    `[${[failed.messages > 0 ? `${n(failed.messages, 'message')} not answered` : '', failed.commands > 0 ? `${n(failed.commands, 'command')} failed` : ''].filter(Boolean).join(', ')}: exit status 1]`,
  );
  return 1;
}

/** What failed in a conversation: messages not answered, commands that said `error:`. */
interface Failures {
  messages: number;
  commands: number;
}

/** Reads messages and commands until the input ends or /exit; says what failed. */
async function converse(chat: ChatSession, trainedSystem: string | undefined | typeof SERVERS_OWN, tty: boolean): Promise<Failures> {
  const failed: Failures = { messages: 0, commands: 0 };
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: tty, prompt: tty ? 'you> ' : '' });
  let answering: AbortController | null = null;
  let pending = '';
  // Ctrl-C stops an answer; with a message half typed it drops that message; at an empty prompt it leaves, as Ctrl-D does.
  rl.on('SIGINT', () => {
    if (answering) return answering.abort();
    if (pending !== '' || rl.line !== '') {
      pending = '';
      // The typed line goes whole (a simulated Ctrl-U would delete only left of the cursor, and not at all on a dumb terminal).
      Object.assign(rl, { line: '', cursor: 0 });
      process.stdout.write('^C\n');
      return rl.prompt();
    }
    rl.close();
  });
  const say = (text: string) => console.error(text);
  const handle = async (text: string): Promise<'exit' | void> => {
    if (text.startsWith('/') && !text.startsWith('//')) {
      const done = runCommand(chat, text, trainedSystem, say);
      if (done === 'failed') failed.commands++;
      return done === 'exit' ? 'exit' : undefined;
    }
    if (text.trim() === '') return;
    answering = new AbortController();
    try {
      if (!(await answer(chat, text.startsWith('//') ? text.slice(1) : text, answering.signal, tty))) failed.messages++;
    } finally {
      answering = null;
    }
  };
  rl.prompt();
  for await (const line of rl) {
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + '\n';
      if (tty) process.stdout.write('...> ');
      continue;
    }
    const text = pending + line;
    pending = '';
    if ((await handle(text)) === 'exit') break;
    rl.prompt();
  }
  // Input that ended inside a message continued with `\`: it is still a message (or a command).
  if (pending !== '') await handle(pending.replace(/\n$/, ''));
  rl.close();
  return failed;
}

/** Answers one message; false when it was not answered (the conversation goes on as it was). */
async function answer(chat: ChatSession, text: string, signal: AbortSignal, tty: boolean): Promise<boolean> {
  const shown = terminalTextFor(process.stdout);
  const t0 = performance.now();
  let first = 0;
  if (tty) process.stdout.write('model> ');
  let reply: Reply;
  try {
    reply = await chat.reply(text, {
      signal,
      onToken: ({ text: piece }) => {
        first ||= performance.now();
        if (piece) process.stdout.write(shown(piece));
      },
    });
  } catch (e) {
    if (!(e instanceof InputError) && !(e instanceof ChatServerError)) throw e;
    // A message too long for the context is the user's to shorten, a server that failed may answer the next
    // try: either way the message was not answered, and the conversation goes on as it was.
    process.stdout.write('\n');
    const message = e instanceof InputError ? inputErrorMessage(e) : e.message;
    console.error(`error: ${message}${e instanceof InputError && e.hint ? ` (${e.hint})` : ''}; the message was not answered`);
    return false;
  }
  process.stdout.write('\n');
  const end = performance.now();
  const rate = reply.newTokens > 1 ? `${((reply.newTokens - 1) / ((end - first) / 1000)).toFixed(1)} tokens/s after it, ` : '';
  console.error(
    [
      reply.droppedExchanges > 0
        ? `[the ${reply.droppedExchanges} oldest exchange${reply.droppedExchanges > 1 ? 's' : ''} no longer fitted the model's context and ${reply.droppedExchanges > 1 ? 'were' : 'was'} left out]\n`
        : '',
      reply.promptTokens === undefined
        ? `[${reply.newTokens} new tokens, finish ${reply.finishReason === 'cancelled' ? 'stopped' : reply.finishReason}; `
        : `[${reply.promptTokens} tokens read (${reply.reusedTokens ?? 0} of them kept from the last turn), ${reply.newTokens} new, finish ${reply.finishReason === 'cancelled' ? 'stopped' : reply.finishReason}; `,
      `first token ${((first - t0) / 1000).toFixed(2)} s, ${rate}${((end - t0) / 1000).toFixed(2)} s in all]`,
    ].join(''),
  );
  return true;
}

/** One /command; 'exit' ends the conversation, 'failed' says it did nothing but say `error:`. */
function runCommand(
  chat: ChatSession,
  line: string,
  trainedSystem: string | undefined | typeof SERVERS_OWN,
  say: (text: string) => void,
): 'exit' | 'failed' | void {
  const [, name, rest = ''] = /^\/(\S*)\s*([\s\S]*)$/.exec(line)!;
  const arg = rest.trim();
  const fail = (text: string): 'failed' => (say(`error: ${text}`), 'failed');
  // What the model wrote (and a system message from its files) goes to the terminal with its control characters shown, not obeyed.
  const shown = terminalTextFor(process.stderr);
  switch (name) {
    case 'exit':
    case 'quit':
      return 'exit';
    case 'help':
      return say(COMMANDS);
    case 'reset':
      chat.reset();
      return say('[conversation forgotten]');
    case 'undo':
      return say(chat.undo() ? '[last exchange forgotten]' : '[nothing to forget]');
    case 'system':
      if (arg === '') {
        if (chat.system === undefined && trainedSystem === SERVERS_OWN)
          return say('[no system message set here; the server gives the model the one it was trained with, if it has one]');
        const current = chat.system ?? (trainedSystem === SERVERS_OWN ? undefined : trainedSystem);
        return say(
          current === undefined
            ? '[no system message]'
            : `[system message${chat.system === undefined ? ' (trained with)' : ''}: ${shown(JSON.stringify(current))}]`,
        );
      }
      chat.system = arg;
      return say('[system message set; it applies from the next answer]');
    case 'history': {
      const trained = chat.system === undefined && typeof trainedSystem === 'string' ? [`system (trained with): ${trainedSystem}`] : [];
      const lines = [...trained, ...chat.messages.map((m) => `${m.role}: ${m.content}`)];
      return say(lines.length === 0 ? '[no conversation yet]' : shown(lines.join('\n')));
    }
    case 'save': {
      if (arg === '') return fail('/save needs a file name');
      let problem: string | undefined;
      try {
        problem = saveConversation(arg, chat.messages);
      } catch (e) {
        // A look at the path itself failed (a folder on the way that cannot be read): nothing was written.
        problem = `could not write ${arg}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      }
      if (problem) return fail(problem);
      return say(`[${chat.exchanges} exchange${chat.exchanges === 1 ? '' : 's'} saved to ${arg}]`);
    }
    default:
      return fail(`unknown command /${name}; /help lists them (a message that starts with / is written //)`);
  }
}

/**
 * Writes the conversation to a new file, whole or not at all: written and synced aside, then linked into place,
 * which fails on an existing file, so none is ever overwritten, even one made meanwhile. Where the file system has
 * no hard links it is created with O_EXCL instead. What went wrong, or undefined. The side file has a short name
 * of its own (a name near the 255-byte limit still fits) and no message names it.
 */
function saveConversation(path: string, messages: { role: string; content: string }[]): string | undefined {
  if (path.endsWith('/') || path.endsWith(sep) || statSync(path, { throwIfNoEntry: false })?.isDirectory() === true)
    return `${path} names a folder; /save needs a file name (e.g. ${join(path, 'conversation.jsonl')})`;
  const dir = dirname(path);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) return `${dir} is not a folder; /save writes into one that exists`;
  const exists = () => {
    const link = lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink() === true;
    return `${path} exists${link ? ' (as a link)' : ''}; /save does not overwrite, give another name`;
  };
  // lstat, not exists: a link to nothing is there too, and linking onto it fails.
  if (lstatSync(path, { throwIfNoEntry: false }) !== undefined) return exists();
  // One line: a `.jsonl` file of it is a row ingest's chat task reads, and files of it concatenate into a training set.
  const text = JSON.stringify({ messages }) + '\n';
  const aside = join(dir, `.tempered-save-${randomBytes(6).toString('hex')}.tmp`);
  let made = false;
  try {
    writeSynced(aside, text);
    made = true;
    try {
      linkSync(aside, path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw e;
      writeSynced(path, text);
    }
    // The new name itself is on disk too.
    syncDirSync(dir);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EEXIST' && lstatSync(path, { throwIfNoEntry: false }) !== undefined) return exists();
    // Node's message names the paths of the call (the side file among them): the code and its words only.
    const why = err.code !== undefined ? err.message.replace(/^([A-Z0-9]+: [^,]*),.*$/s, '$1') : err.message;
    return `could not write ${path}: ${why.split(aside).join(path)}`;
  } finally {
    if (made) rmSync(aside, { force: true });
  }
  return undefined;
}

/** Creates `path` (never over an existing file) with `text`, on disk before it returns; a failed write leaves no file. */
function writeSynced(path: string, text: string): void {
  const fd = openSync(path, 'wx');
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } catch (e) {
    // Created here exclusively, so it is ours to remove: a full disk must not leave half a file behind.
    closeSync(fd);
    rmSync(path, { force: true });
    throw e;
  }
  closeSync(fd);
}

function wrapInputError<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof InputError) throw cliInputError(e);
    throw e;
  }
}
