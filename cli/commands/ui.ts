/** `tempered ui`: the web dashboard (runs, live training curves, evaluations, models, audit, schedules). */
import { randomBytes } from 'node:crypto';
import { runUrl } from '../../infra/connection.ts';
import { tokenProblem } from '../../src/serve/auth.ts';
import { createUiServer, isLoopback, type UiServer } from '../../ui/server.ts';
import { actor, parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { runBackends } from './sharing.ts';

/**
 * The dashboard's token: given (TEMPERED_UI_TOKEN), required off loopback, else a random one. Not the serve token: that
 * one is in every client that calls a served model, and this one promotes models.
 */
export function uiToken(host: string, given = process.env.TEMPERED_UI_TOKEN || undefined): string {
  // The server's own test of a loopback bind, which decides whether its reads need the token.
  if (!given && !isLoopback(host))
    throw new CliError(`binding ${host} exposes the dashboard beyond this machine: set TEMPERED_UI_TOKEN to a long random string`, 2);
  if (given !== undefined && given.length < 16) throw new CliError('TEMPERED_UI_TOKEN must be at least 16 characters', 2);
  const unusable = given === undefined ? undefined : tokenProblem(given);
  if (unusable) throw new CliError(`TEMPERED_UI_TOKEN cannot be used: ${unusable}; use letters, digits and -._~+/`, 2);
  return given ?? randomBytes(24).toString('base64url');
}

/** The dashboard's address with its token in the fragment, encoded (a + typed as it is reads as a space elsewhere). */
export function dashboardLink(address: string, token: string): string {
  return `${address}/#token=${encodeURIComponent(token)}`;
}

/**
 * What to print: the link with a token made up here, which nobody else knows; a token the user set is not printed
 * (it would sit in the process's log, where the serve journey found it), only where it goes.
 */
export function printedLink(address: string, token: string, given: string | undefined): string {
  if (token !== given) return dashboardLink(address, token);
  // The page decodes the fragment (ui/static/format.js tokenFromFragment): typed as it is, a % would start an escape
  // and a & end the token, and the actions would fail 401 with a token that looks right.
  const escapes = [...(token.includes('%') ? ['% as %25'] : []), ...(token.includes('&') ? ['& as %26'] : [])];
  const typed = escapes.length ? `; write ${escapes.join(' and ')}` : '';
  return `${address}/#token=<TEMPERED_UI_TOKEN> (your token in place${typed}; it is not printed)`;
}

/**
 * Starts the dashboard; the URL it returns carries the token in its fragment (never sent to the
 * server, so it stays out of logs), from where the page keeps it for its actions.
 */
export async function startUi(
  ctx: CliContext,
  o: { port?: number; host?: string; token?: string; anyPortIfBusy?: boolean },
): Promise<{ server: UiServer; url: string }> {
  const host = o.host ?? '127.0.0.1';
  const given = process.env.TEMPERED_UI_TOKEN || undefined;
  const token = uiToken(host, o.token ?? given);
  const server = await createUiServer({
    paths: ctx.paths,
    store: ctx.store(),
    client: () => ctx.client(),
    token,
    actor: actor(),
    taskQueue: ctx.taskQueue,
    backends: await runBackends(ctx),
    webUiRunUrl: (runId) => runUrl(ctx.settings(), runId),
  });
  let address: string;
  try {
    address = await server.listen(o.port ?? 8270, host);
  } catch (e) {
    // The demo takes any free port when the usual one is taken (a second demo, another program).
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !o.anyPortIfBusy) throw e;
    address = await server.listen(0, host);
  }
  return { server, url: printedLink(address, token, given) };
}

export async function uiCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered ui [--port 8270] [--host 127.0.0.1]   (token from TEMPERED_UI_TOKEN; a random one when unset on 127.0.0.1)';
  const { values, positionals } = parse(argv, { port: { type: 'string' }, host: { type: 'string' } }, usage);
  if (positionals.length) throw new CliError(`ui takes no arguments\nusage: ${usage}`, 2);
  const port = values.port === undefined ? undefined : Number(values.port);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536))
    throw new CliError(`--port: not a port: ${values.port}`, 2);
  // A bad bind or token is refused before anything starts (the embedded dev server included).
  const token = uiToken(values.host ?? '127.0.0.1');
  await ctx.client({ startServer: true });
  const { server, url } = await startUi(ctx, { port, host: values.host, token });
  // The handlers go in before the line: whoever waits for it may signal at once (Node's default action kills).
  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  console.log(`dashboard: ${url}`);
  await stopRequested;
  await server.close();
  return 0;
}
