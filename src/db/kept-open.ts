/**
 * A connection opened on first use and kept until `close()`, for long-lived processes (a worker, the
 * dashboard) that would otherwise open the database per stage or per request: on PostgreSQL each
 * open is a new pool, a connection and the migration lock. A failed open is not kept, so the next
 * use tries again (the database may be back by then).
 */
export class KeptOpen<T extends { close(): Promise<void> }> {
  private opened: Promise<T> | undefined;

  constructor(private readonly open: () => Promise<T>) {}

  get(): Promise<T> {
    if (!this.opened) {
      const p: Promise<T> = this.open().catch((e: unknown) => {
        // Only this open is forgotten: after a close() and a newer get(), the newer one stays.
        if (this.opened === p) this.opened = undefined;
        throw e;
      });
      this.opened = p;
    }
    return this.opened;
  }

  async close(): Promise<void> {
    const opened = this.opened;
    this.opened = undefined;
    const handle = await opened?.catch(() => undefined);
    await handle?.close();
  }
}

/**
 * Runs `fn` on a database named by its path or URL (opened for this one use and closed after) or on
 * one the caller keeps open: a command-line call opens per use, the dashboard shares its connections.
 */
export async function useOpen<T extends { close(): Promise<void> }, R>(
  source: string | KeptOpen<T>,
  open: (where: string) => Promise<T>,
  fn: (db: T) => Promise<R>,
): Promise<R> {
  if (typeof source !== 'string') return fn(await source.get());
  const db = await open(source);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
