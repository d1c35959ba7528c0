import { userInfo } from 'node:os';

/**
 * Who is acting: `TEMPERED_ACTOR` when set (CI jobs and workers set it to a service identity),
 * otherwise the OS user running the process.
 */
export function defaultActor(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.TEMPERED_ACTOR?.trim();
  if (fromEnv) return fromEnv;
  try {
    return userInfo().username || 'unknown';
  } catch {
    // userInfo throws when the uid has no passwd entry (common in containers).
    return `uid:${process.getuid?.() ?? 'unknown'}`;
  }
}
