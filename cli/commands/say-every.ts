/**
 * A log that says a line at most once every `everyMs`: a worker waiting at start (for its store, its database, a
 * migration) polls every few seconds and would otherwise fill its log with the same line.
 */
export function sayEvery(log: (line: string) => void, everyMs = 60_000): (line: string) => void {
  let saidAt = -Infinity;
  return (line) => {
    if (Date.now() - saidAt < everyMs) return;
    log(line);
    saidAt = Date.now();
  };
}
