/** `tempered server start|stop|status`: the embedded Temporal dev server. */
import {
  devServerPort,
  embeddedServerInfo,
  portNumber,
  ensureEmbeddedServer,
  isHealthy,
  stopEmbeddedServer,
} from '../../infra/dev-server.ts';
import { parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';

export async function serverCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage = 'tempered server start|stop|status [--port N] [--ui-port N]';
  const { values, positionals } = parse(argv, { port: { type: 'string' }, 'ui-port': { type: 'string' } }, usage);
  const sub = positionals[0];
  // Before the TEMPORAL_ADDRESS check, which answered a bare `tempered server` as if it had asked to start one.
  if (!sub) throw new CliError(`server takes a command: start, stop or status\nusage: ${usage}`, 2);
  if (!ctx.settings().embedded && sub !== 'status') {
    throw new CliError(
      `TEMPORAL_ADDRESS is set (${process.env.TEMPORAL_ADDRESS}), so tempered uses that server and manages none; unset it to use the embedded dev server.`,
      2,
    );
  }
  switch (sub) {
    case 'start': {
      const port = portFlag('port', values.port, usage);
      const uiPort = portFlag('ui-port', values['ui-port'], usage);
      // The Web UI goes on the port + 1000 unless told: past 65535 the CLI refused it with its own words.
      if (uiPort === undefined && (port ?? devServerPort()) + 1000 > 65535)
        throw new CliError(
          `the dev server's Web UI goes on its port + 1000, past 65535 for port ${port ?? devServerPort()}: give --ui-port too\nusage: ${usage}`,
          2,
        );
      const h = await ensureEmbeddedServer({ port, uiPort });
      console.log(
        `${h.started ? 'started' : 'already running'}: Temporal dev server at ${h.address}, web UI ${h.uiUrl}, state ${h.dbFile} (pid ${h.pid})`,
      );
      return 0;
    }
    case 'stop': {
      const stopped = await stopEmbeddedServer();
      console.log(stopped ? 'stopped the Temporal dev server' : 'the Temporal dev server was not running');
      return 0;
    }
    case 'status': {
      const s = ctx.settings();
      if (!s.embedded) {
        // Through the client every command uses: its TLS and API key, and the namespace checked. A bare health
        // check called a TLS cluster unreachable and a namespace it lacks fine.
        const problem = await ctx.client().then(
          () => undefined,
          (e: Error) => e.message,
        );
        console.log(
          problem ? `NOT usable: ${problem}` : `reachable: Temporal at ${s.address} (from TEMPORAL_ADDRESS), namespace ${s.namespace}`,
        );
        return problem ? 1 : 0;
      }
      const info = embeddedServerInfo();
      if (!info) {
        console.log('not running; start it with `tempered server start`');
        return 1;
      }
      const ok = await isHealthy(info.address);
      console.log(
        `${ok ? 'running' : 'started but NOT answering'}: Temporal dev server at ${info.address}, web UI ${info.uiUrl}, state ${info.dbFile} (pid ${info.pid})`,
      );
      return ok ? 0 : 1;
    }
    default:
      throw new CliError(`unknown server command '${sub ?? ''}'\nusage: ${usage}`, 2);
  }
}

/** A `--port`-like flag: a port number, 1 to 65535; undefined when not given. */
function portFlag(flag: 'port' | 'ui-port', raw: string | undefined, usage: string): number | undefined {
  if (raw === undefined) return undefined;
  const port = portNumber(raw);
  if (port === undefined) throw new CliError(`--${flag} takes a port number, 1 to 65535, not ${JSON.stringify(raw)}\nusage: ${usage}`, 2);
  return port;
}
