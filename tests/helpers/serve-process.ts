/** `tempered serve` as a real process on a free port, for tests that talk to it over HTTP or send it signals. */
import { spawn, type ChildProcess } from 'node:child_process';
import { BIN } from './cli.ts';

export interface ServeProcess {
  url: string;
  child: ChildProcess;
  /** What it printed so far, stdout and stderr together. */
  output(): string;
}

/** Starts `tempered serve <args>` with `env` added; resolves once it says where it listens. */
export async function startServeProcess(args: string[], env: Record<string, string>): Promise<ServeProcess> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving .* at (http:\/\/\S+)\s+\(/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', () => reject(new Error(`serve exited: ${out}`)));
  });
  return { url, child, output: () => out };
}
