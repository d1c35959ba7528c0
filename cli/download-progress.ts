import { humanBytes } from './format.ts';

/**
 * Says on stderr what is being downloaded, when it starts and then every 5 s: a model source not yet in the cache
 * (a multi-GB hf: model) was fetched without a word, the command silent until the model had loaded. generate, chat,
 * predict and serve say it.
 */
export function downloadProgress(say: (line: string) => void = (l) => console.error(l), everyMs = 5000) {
  const last = new Map<string, number>();
  return (what: string, bytes: number, total: number | undefined): void => {
    const now = Date.now();
    const before = last.get(what);
    if (before === undefined) {
      last.set(what, now);
      say(`downloading ${what}${total ? ` (${humanBytes(total)})` : ''}`);
    } else if (now - before >= everyMs) {
      last.set(what, now);
      say(`  ${what}: ${humanBytes(bytes)}${total ? ` of ${humanBytes(total)} (${Math.floor((100 * bytes) / total)}%)` : ''}`);
    }
  };
}
