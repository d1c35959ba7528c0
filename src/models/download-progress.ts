/**
 * Lines saying what a model source's download is doing, for resolveModelSource's onProgress: a source not yet in the
 * cache (a multi-GB hf: model) was otherwise fetched without a word, by the CLI and by a stage alike.
 */
import { humanBytes } from '../util/human-bytes.ts';

/** Says what is being downloaded when it starts, then how far it got every `everyMs` (default 5 s) per file. */
export function downloadProgress(say: (line: string) => void, everyMs = 5000, now: () => number = Date.now) {
  const last = new Map<string, number>();
  return (what: string, bytes: number, total: number | undefined): void => {
    const t = now();
    const before = last.get(what);
    if (before === undefined) {
      last.set(what, t);
      say(`downloading ${what}${total ? ` (${humanBytes(total)})` : ''}`);
    } else if (t - before >= everyMs) {
      last.set(what, t);
      say(`  ${what}: ${humanBytes(bytes)}${total ? ` of ${humanBytes(total)} (${Math.floor((100 * bytes) / total)}%)` : ''}`);
    }
  };
}
