/**
 * Servers started on ports chosen free (tests, the dev server): a port is free when chosen but not
 * held, so another process can take it before the server binds it. Such a start is tried again.
 */
import { createServer } from 'node:net';

/** A server exited at start-up because a port it was to listen on had been taken meanwhile. */
export class PortTaken extends Error {}

/**
 * Whether a server's log says a port it tried to bind is held by another process: EADDRINUSE, or
 * SeaweedFS 4.48's own check ("Port allocation failed: port N for Master ... is not available on
 * 127.0.0.1 and cannot be used").
 */
export function saysPortTaken(log: string): boolean {
  return /address already in use|port allocation failed/i.test(log);
}

/** Runs `start`, and again, up to `retries` more times, while it fails with `PortTaken`; any other failure is thrown at once. */
export async function retryPortRace<T>(start: () => Promise<T>, retries = 3): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (!(e instanceof PortTaken) || attempt >= retries) throw e;
    }
  }
}

/** A port that was free a moment ago (the kernel's choice); see `retryPortRace` for why that is not enough. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Whether nothing listens on `host:port` now (another process may take it a moment later). */
export function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}
