/**
 * A few requests at once instead of one: the round trips to an object store or a database that a
 * serial loop waits out one by one (garbage collection over a whole bucket makes one per object).
 */

/**
 * Calls `fn` on each item with at most `n` calls pending. After a failure no further call starts;
 * the first failure is thrown once the calls under way have settled, so what they did is done.
 */
export async function forEachInFlight<T>(items: Iterable<T>, n: number, fn: (item: T) => Promise<void>): Promise<void> {
  const it = items[Symbol.iterator]();
  let failure: { error: unknown } | undefined;
  const lane = async () => {
    while (!failure) {
      const next = it.next();
      if (next.done) return;
      try {
        await fn(next.value);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.floor(n)) }, lane));
  if (failure) throw failure.error;
}

/**
 * `fn` of each item of `source`, in the source's order, with up to `n` calls started ahead of the
 * consumer. A failed call is thrown when its turn comes. A consumer that stops early leaves the calls
 * already started to finish on their own (their failures then go nowhere).
 */
export async function* mapReadAhead<T, R>(source: AsyncIterable<T>, n: number, fn: (item: T) => Promise<R>): AsyncIterable<R> {
  const it = source[Symbol.asyncIterator]();
  const pending: Promise<R>[] = [];
  let done = false;
  try {
    for (;;) {
      while (!done && pending.length < Math.max(1, Math.floor(n))) {
        const next = await it.next();
        if (next.done) done = true;
        else {
          const call = fn(next.value);
          // Handled when its turn comes; until then it must not count as an unhandled rejection.
          call.catch(() => {});
          pending.push(call);
        }
      }
      const head = pending.shift();
      if (!head) return;
      yield await head;
    }
  } finally {
    if (!done) await it.return?.();
  }
}
