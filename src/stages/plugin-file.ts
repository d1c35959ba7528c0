/**
 * A plugin's module file as a worker loaded it, and the check that a process importing it again (a stage's child
 * process) still finds that file. Apart from plugin-kinds.ts, so a child process loads no schema validator for it.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { InputError } from '../errors.ts';

export const PLUGINS_VAR = 'TEMPERED_PLUGINS';

export interface PluginFile {
  path: string;
  /** Of the bytes imported: its first 12 digits are in the kind's code version, and so in its cache keys. */
  sha256: string;
}

export function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Refuses to go on when `file` is no longer what the worker loaded: the stage's cache key names that code, and an
 * edit since the worker started would put the new code's outputs under the old code's key.
 */
export function checkPluginFile(file: PluginFile): void {
  let sha256: string | undefined;
  try {
    sha256 = sha256Of(readFileSync(file.path));
  } catch {
    sha256 = undefined;
  }
  if (sha256 !== file.sha256)
    throw new InputError(
      `${PLUGINS_VAR}: ${file.path}: the module file ${sha256 === undefined ? 'is gone' : 'changed'} since this worker loaded it, so this stage would run other code than its cache key names`,
      { hint: 'restart the worker after editing a plugin: workers load plugin modules once, when they start' },
    );
}
