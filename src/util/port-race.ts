/**
 * Servers started on ports chosen free (tests, the dev server): a port is free when chosen but not
 * held, so another process can take it before the server binds it. Such a start is tried again.
 */

/** A server exited at start-up because a port it was to listen on had been taken meanwhile. */
export class PortTaken extends Error {}

/** Whether a server's log says a port it tried to bind is held by another process (EADDRINUSE). */
export function saysPortTaken(log: string): boolean {
  return /address already in use/i.test(log);
}

/**
 * Runs `start`, and again, up to `retries` more times, while it fails with a lost port race
 * (`PortTaken`, or what `lostRace` says is one); any other failure is thrown at once.
 */
export async function retryPortRace<T>(
  start: () => Promise<T>,
  retries = 3,
  lostRace: (e: unknown) => boolean = (e) => e instanceof PortTaken,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await start();
    } catch (e) {
      if (!lostRace(e) || attempt >= retries) throw e;
    }
  }
}
