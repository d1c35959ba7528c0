/**
 * One AbortController for a transfer that aborts when the transfer stalls (no `arm()` call for
 * `idleMs`) or when `cancel` aborts, so a hung server cannot hold a stage forever.
 */
export interface StallGuard {
  /** The signal to hand to fetch. */
  readonly signal: AbortSignal;
  /** True once the idle timer fired; tells a stall apart from other aborts. */
  readonly stalled: boolean;
  /** (Re)starts the idle timer; call on start and on every chunk received. */
  arm(): void;
  abort(): void;
  /** Stops the timer and the cancel listener; call in `finally`. */
  dispose(): void;
}

export function stallGuard(idleMs: number, cancel?: AbortSignal): StallGuard {
  const ctl = new AbortController();
  let stalled = false;
  let timer: NodeJS.Timeout | undefined;
  const onCancel = () => ctl.abort(cancel!.reason);
  cancel?.addEventListener('abort', onCancel, { once: true });
  return {
    signal: ctl.signal,
    get stalled() {
      return stalled;
    },
    arm() {
      clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        ctl.abort();
      }, idleMs);
    },
    abort: () => ctl.abort(),
    dispose() {
      clearTimeout(timer);
      cancel?.removeEventListener('abort', onCancel);
    },
  };
}
