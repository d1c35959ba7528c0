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
    this.opened ??= this.open().catch((e: unknown) => {
      this.opened = undefined;
      throw e;
    });
    return this.opened;
  }

  async close(): Promise<void> {
    const opened = this.opened;
    this.opened = undefined;
    const handle = await opened?.catch(() => undefined);
    await handle?.close();
  }
}
